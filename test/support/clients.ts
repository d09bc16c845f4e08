// Client-driver helpers for integration tests: node-postgres, postgres.js, psycopg, pgbench and a raw wire-protocol connection.

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
export async function psycopg(scenario: string, port: number, db = "test"): Promise<Record<string, unknown>> {
  const r = await run([PYTHON, PSYCOPG_SCRIPT, scenario, String(port), db]);
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
  output: string;
}

/** Run pgbench and pull out processed/failed transaction counts. */
export async function pgbench(port: number, db: string, args: string[]): Promise<PgbenchResult> {
  const r = await run(["pgbench", "-h", PG_HOST, "-p", String(port), "-U", "postgres", ...args, db], { timeoutMs: 60000 });
  const output = r.stdout + r.stderr;
  const processed = /number of transactions actually processed: (\d+)/.exec(output);
  const failed = /number of failed transactions: (\d+)/.exec(output);
  return { code: r.code, processed: processed ? Number(processed[1]) : -1, failed: failed ? Number(failed[1]) : -1, output };
}

// ---- raw protocol -------------------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();

class Builder {
  private parts: number[] = [];
  byte(v: number) {
    this.parts.push(v & 0xff);
    return this;
  }
  int16(v: number) {
    this.parts.push((v >> 8) & 0xff, v & 0xff);
    return this;
  }
  int32(v: number) {
    this.parts.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    return this;
  }
  bytes(b: Uint8Array) {
    for (const x of b) this.parts.push(x);
    return this;
  }
  cstr(s: string) {
    return this.bytes(enc.encode(s)).byte(0);
  }
  /** Frame the collected body as one message of `type` (0 = untyped, as startup). */
  message(type: number): Uint8Array {
    const head = type === 0 ? 0 : 1;
    const out = new Uint8Array(head + 4 + this.parts.length);
    if (head) out[0] = type;
    new DataView(out.buffer).setInt32(head, 4 + this.parts.length);
    out.set(this.parts, head + 4);
    return out;
  }
}

const ch = (c: string) => c.charCodeAt(0);

/** Frontend message builders. */
export const fe = {
  startup(params: Record<string, string>): Uint8Array {
    const b = new Builder().int32(196608);
    for (const [k, v] of Object.entries(params)) b.cstr(k).cstr(v);
    return b.byte(0).message(0);
  },
  query: (sql: string) => new Builder().cstr(sql).message(ch("Q")),
  parse: (name: string, sql: string, types: number[] = []) => {
    const b = new Builder().cstr(name).cstr(sql).int16(types.length);
    for (const t of types) b.int32(t);
    return b.message(ch("P"));
  },
  /** Bind with text-format parameters (null = SQL NULL) and text results. */
  bind: (portal: string, stmt: string, params: (string | null)[] = []) => {
    const b = new Builder().cstr(portal).cstr(stmt).int16(0).int16(params.length);
    for (const p of params) {
      if (p === null) b.int32(-1);
      else {
        const v = enc.encode(p);
        b.int32(v.length).bytes(v);
      }
    }
    return b.int16(0).message(ch("B"));
  },
  describe: (kind: "S" | "P", name: string) => new Builder().byte(ch(kind)).cstr(name).message(ch("D")),
  execute: (portal = "", maxRows = 0) => new Builder().cstr(portal).int32(maxRows).message(ch("E")),
  close: (kind: "S" | "P", name: string) => new Builder().byte(ch(kind)).cstr(name).message(ch("C")),
  sync: () => new Builder().message(ch("S")),
  flush: () => new Builder().message(ch("H")),
  copyData: (data: string | Uint8Array) => new Builder().bytes(typeof data === "string" ? enc.encode(data) : data).message(ch("d")),
  copyDone: () => new Builder().message(ch("c")),
  copyFail: (msg: string) => new Builder().cstr(msg).message(ch("f")),
  terminate: () => new Builder().message(ch("X")),
};

/** Concatenate messages into one buffer (one TCP write). */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface Msg {
  type: string;
  body: Uint8Array;
}

/** Fields of an ErrorResponse/NoticeResponse body, keyed by field letter. */
export function fields(m: Msg): Record<string, string> {
  const out: Record<string, string> = {};
  let p = 0;
  while (p < m.body.length && m.body[p] !== 0) {
    const z = m.body.indexOf(0, p + 1);
    out[String.fromCharCode(m.body[p]!)] = dec.decode(m.body.subarray(p + 1, z));
    p = z + 1;
  }
  return out;
}

/** Text of a CommandComplete tag. */
export function tag(m: Msg): string {
  return dec.decode(m.body.subarray(0, m.body.indexOf(0)));
}

/** Text columns of a DataRow (null for SQL NULL). */
export function row(m: Msg): (string | null)[] {
  const v = new DataView(m.body.buffer, m.body.byteOffset, m.body.byteLength);
  const n = v.getInt16(0);
  const out: (string | null)[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const len = v.getInt32(p);
    p += 4;
    if (len < 0) out.push(null);
    else {
      out.push(dec.decode(m.body.subarray(p, p + len)));
      p += len;
    }
  }
  return out;
}

/**
 * A compact, comparable rendering of a reply stream: type letters, with the SQLSTATE of errors
 * and notices, command tags, DataRow values and ReadyForQuery status.
 */
export function summarize(msgs: Msg[]): string[] {
  return msgs.map((m) => {
    switch (m.type) {
      case "E":
      case "N":
        return `${m.type}:${fields(m).C}`;
      case "C":
        return `C:${tag(m)}`;
      case "D":
        return `D:${JSON.stringify(row(m))}`;
      case "Z":
        return `Z:${String.fromCharCode(m.body[0]!)}`;
      default:
        return m.type;
    }
  });
}

/** A bare protocol-3 client on a Bun TCP socket: write bytes, read framed messages. */
export class RawConn {
  private buf = new Uint8Array(0);
  private queued: Uint8Array[] = [];
  private waiter: (() => void) | null = null;
  /** Messages received at login (up to and including the first ReadyForQuery). */
  startup: Msg[] = [];
  ended = false;
  private constructor(private sock: import("bun").Socket<undefined>) {}

  static async connect(port: number, params: Record<string, string> = {}): Promise<RawConn> {
    let conn!: RawConn;
    const sock = await Bun.connect({
      hostname: PG_HOST,
      port,
      socket: {
        data(_s, chunk) {
          conn.onData(chunk);
        },
        drain() {
          conn.flushQueue();
        },
        close() {
          conn.onEnd();
        },
        end() {
          conn.onEnd();
        },
        error() {
          conn.onEnd();
        },
      },
    });
    conn = new RawConn(sock);
    conn.send(fe.startup({ user: "postgres", database: "test", ...params }));
    conn.startup = await conn.readUntilReady(1);
    const err = conn.startup.find((m) => m.type === "E");
    if (err) throw new Error(`login failed: ${JSON.stringify(fields(err))}`);
    return conn;
  }

  private onData(chunk: Uint8Array): void {
    const next = new Uint8Array(this.buf.length + chunk.length);
    next.set(this.buf);
    next.set(chunk, this.buf.length);
    this.buf = next;
    this.wake();
  }

  private onEnd(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Write bytes, queueing whatever the socket does not take at once. */
  send(...parts: Uint8Array[]): void {
    this.queued.push(parts.length === 1 ? parts[0]! : concat(...parts));
    this.flushQueue();
  }

  private flushQueue(): void {
    while (this.queued.length > 0) {
      const head = this.queued[0]!;
      const n = this.sock.write(head);
      if (n < head.length) {
        this.queued[0] = head.subarray(Math.max(0, n));
        return;
      }
      this.queued.shift();
    }
  }

  /** Next whole message, or null once the connection ended with nothing left. */
  async next(timeoutMs = 10000): Promise<Msg | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.buf.length >= 5) {
        const len = new DataView(this.buf.buffer, this.buf.byteOffset).getInt32(1);
        if (this.buf.length >= len + 1) {
          const m = { type: String.fromCharCode(this.buf[0]!), body: this.buf.slice(5, len + 1) };
          this.buf = this.buf.subarray(len + 1);
          return m;
        }
      }
      if (this.ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for a message");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Read until `count` ReadyForQuery messages arrived (or the connection ended). */
  async readUntilReady(count = 1, timeoutMs = 10000): Promise<Msg[]> {
    const out: Msg[] = [];
    let seen = 0;
    while (seen < count) {
      const m = await this.next(timeoutMs);
      if (m === null) break;
      out.push(m);
      if (m.type === "Z") seen++;
    }
    return out;
  }

  /** Read until a message of `type` arrives (inclusive). */
  async readUntil(type: string, timeoutMs = 10000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m === null) return out;
      out.push(m);
      if (m.type === type) return out;
    }
  }

  /** Send a simple Query and return its replies up to ReadyForQuery. */
  async query(sql: string): Promise<Msg[]> {
    this.send(fe.query(sql));
    return this.readUntilReady(1);
  }

  /** Drop the connection without a Terminate message (a client that vanished). */
  abort(): void {
    if (!this.ended) this.sock.end();
  }

  close(): void {
    if (!this.ended) {
      try {
        this.sock.write(fe.terminate());
      } catch {}
      this.sock.end();
    }
  }
}

/** One step of a scripted conversation: bytes to send, then read up to `ready` ReadyForQuery messages or until a message of type `until`. */
export interface Step {
  send: Uint8Array[];
  ready?: number;
  until?: string;
}

/** Run `steps` on a connection and return each step's summarised replies. */
export async function runScript(conn: RawConn, steps: Step[]): Promise<string[][]> {
  const out: string[][] = [];
  for (const s of steps) {
    if (s.send.length > 0) conn.send(concat(...s.send));
    out.push(summarize(s.until ? await conn.readUntil(s.until) : await conn.readUntilReady(s.ready ?? 1)));
  }
  return out;
}

/** Run the same script against the proxy and directly against PostgreSQL. */
export async function parity(proxyPort: number, steps: Step[] | (() => Step[])): Promise<{ proxy: string[][]; direct: string[][] }> {
  const mk = typeof steps === "function" ? steps : () => steps;
  const results: string[][][] = [];
  for (const port of [proxyPort, PG_PORT]) {
    const c = await RawConn.connect(port);
    try {
      results.push(await runScript(c, mk()));
    } finally {
      c.close();
    }
  }
  return { proxy: results[0]!, direct: results[1]! };
}
