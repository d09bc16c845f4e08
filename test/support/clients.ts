// Client-driver helpers for integration tests: node-postgres, postgres.js, psql, psycopg and pgbench (raw protocol: wire.ts).

import { join } from "node:path";
import pg from "pg";
import postgres from "postgres";
import { PG_HOST, PG_PORT } from "./proxy.ts";

export { PG_HOST, PG_PORT };
export const PYTHON = "/usr/bin/python3";
export const PSYCOPG_SCRIPT = join(import.meta.dir, "psycopg_script.py");

// ---- node-postgres and postgres.js ---------------------------------------------------------

/** A connected node-postgres client. Errors emitted outside a query are kept in `asyncErrors`. */
export async function pgClient(port: number, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client & { asyncErrors: Error[] }> {
  const c = new pg.Client({ host: PG_HOST, port, user: "postgres", database: "test", connectionTimeoutMillis: 10000, ...extra }) as pg.Client & {
    asyncErrors: Error[];
  };
  c.asyncErrors = [];
  c.on("error", (e: Error) => c.asyncErrors.push(e));
  await c.connect();
  return c;
}

/** A postgres.js instance pointed at `port`. */
export function pgjs(port: number, opts: postgres.Options<Record<string, postgres.PostgresType>> = {}) {
  return postgres({ host: PG_HOST, port, user: "postgres", database: "test", max: 1, onnotice: () => {}, connect_timeout: 10, ...opts });
}

/** The rejection of `p` (fails the test if `p` resolves). */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error("expected the promise to reject, but it resolved");
}

// ---- processes --------------------------------------------------------------------------

export interface ProcResult {
  code: number;
  stdout: string;
  stderr: string;
  bytes: Uint8Array;
}

/** Run a command; stdin from `input` when given. */
export async function run(cmd: string[], opts: { input?: string | Uint8Array; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ProcResult> {
  const proc = Bun.spawn(cmd, {
    stdin: opts.input === undefined ? "ignore" : typeof opts.input === "string" ? new TextEncoder().encode(opts.input) : opts.input,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, PGCONNECT_TIMEOUT: "10", ...opts.env },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60000);
  const [out, stderr, code] = await Promise.all([new Response(proc.stdout).arrayBuffer(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const bytes = new Uint8Array(out);
  return { code, stdout: new TextDecoder().decode(bytes), stderr, bytes };
}

/** psql with raw byte output (for COPY comparisons). */
export function psqlRaw(port: number, args: string[], opts: { db?: string; input?: string | Uint8Array } = {}): Promise<ProcResult> {
  return run(["psql", "-X", "-q", "-h", PG_HOST, "-p", String(port), "-U", "postgres", "-d", opts.db ?? "test", ...args], { input: opts.input });
}

/** Run the psycopg driver script in `scenario` against `port`; returns its JSON report. */
export async function psycopg(scenario: string, port: number, db = "test", env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const r = await run([PYTHON, PSYCOPG_SCRIPT, scenario, String(port), db], { env, timeoutMs: 120_000 });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`psycopg script failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

export interface PgbenchResult {
  code: number;
  processed: number;
  failed: number;
  /** Transactions pgbench ran again after a serialization failure or deadlock (--max-tries). */
  retried: number;
  output: string;
}

/** Run pgbench and pull out processed/failed/retried transaction counts. */
export async function pgbench(port: number, db: string, args: string[]): Promise<PgbenchResult> {
  const r = await run(["pgbench", "-h", PG_HOST, "-p", String(port), "-U", "postgres", ...args, db], { timeoutMs: 60000 });
  const output = r.stdout + r.stderr;
  const count = (re: RegExp, none: number) => Number(re.exec(output)?.[1] ?? none);
  return {
    code: r.code,
    processed: count(/number of transactions actually processed: (\d+)/, -1),
    failed: count(/number of failed transactions: (\d+)/, -1),
    retried: count(/number of transactions retried: (\d+)/, 0),
    output,
  };
}

/** pgbench's tpcb balances (sums of accounts, tellers, branches and history deltas, as text) and the history row count. */
export async function tpcbBalances(port: number, database: string): Promise<{ a: string; t: string; b: string; h: string; n: number }> {
  const c = new pg.Client({ host: PG_HOST, port, user: "postgres", database });
  await c.connect();
  try {
    const r = await c.query(
      `SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text AS a, (SELECT sum(tbalance) FROM pgbench_tellers)::text AS t,
              (SELECT sum(bbalance) FROM pgbench_branches)::text AS b, (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::text AS h,
              (SELECT count(*) FROM pgbench_history)::int AS n`,
    );
    return r.rows[0];
  } finally {
    await c.end();
  }
}
