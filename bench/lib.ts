// Shared benchmark helpers: start PgBouncer and HeliosProxy on free ports, prepare the pgbench database, run pgbench, read /proc, parse flags, write docs/benchmarks.md sections.

import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { freePort, waitForPort } from "../src/util/net.ts";
import { configText } from "../test/support/proxy.ts";

export const ROOT = resolve(import.meta.dir, "..");
export const DOC = join(ROOT, "docs", "benchmarks.md");

export const PG = {
  host: process.env.BENCH_PGHOST ?? "127.0.0.1",
  port: Number(process.env.BENCH_PGPORT ?? 5432),
  user: process.env.BENCH_PGUSER ?? "postgres",
};

// ---- small utilities --------------------------------------------------------------------

export { freePort, waitForPort };

/** Run a command, return its exit code and output (never throws on a non-zero exit). */
export function sh(cmd: string[], env: Record<string, string> = {}): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(cmd, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

export function psql(sql: string, db = "postgres"): string {
  const cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", PG.host, "-p", String(PG.port), "-U", PG.user, "-d", db, "-c", sql];
  let r = sh(cmd);
  // The server may be full for a moment when other work shares it: retry a connection refusal.
  for (let i = 0; i < 20 && r.code !== 0 && /too many clients/.test(r.err); i++) {
    Bun.sleepSync(500);
    r = sh(cmd);
  }
  if (r.code !== 0) throw new Error(`psql failed (${sql}): ${r.err.trim()}`);
  return r.out.trim();
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Nearest-rank percentile (with fewer than 100 runs, p99 is the largest value). */
export function pct(xs: number[], p: number): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))]!;
}

export function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return "n/a";
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// ---- /proc ----------------------------------------------------------------------------

const CLK_TCK = Number(sh(["getconf", "CLK_TCK"]).out.trim()) || 100;

/** utime + stime of a process (all its threads) in microseconds. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1e6) / CLK_TCK;
}

/** VmRSS and VmHWM (peak) of a process, in kB. */
export function memKb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: get("VmRSS"), hwm: get("VmHWM") };
}

// ---- machine description ---------------------------------------------------------------

export interface MachineInfo {
  date: string;
  nproc: number;
  cpu: string;
  kernel: string;
  memTotal: string;
  loadavg: string;
  bun: string;
  pgbouncer: string;
  postgres: string;
  pgbench: string;
  pgMaxConnections: number;
  commit: string;
}

export function machineInfo(): MachineInfo {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  const memKbTotal = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    nproc: Number(sh(["nproc"]).out.trim()),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    kernel: sh(["uname", "-r"]).out.trim(),
    memTotal: `${(memKbTotal / 1024 / 1024).toFixed(1)} GiB`,
    loadavg: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    bun: Bun.version,
    pgbouncer: pgbouncerBinary() ? sh([pgbouncerBinary()!, "--version"]).out.split("\n")[0]!.trim() : "not installed",
    postgres: psql("SHOW server_version"),
    pgbench: sh(["pgbench", "--version"]).out.trim(),
    pgMaxConnections: Number(psql("SHOW max_connections")),
    commit: codeVersion(),
  };
}

/** Short commit of the checkout, marked when src/ has uncommitted changes. */
export function codeVersion(): string {
  const head = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]);
  if (head.code !== 0) return "unknown";
  const dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--", "src"]).out.trim() !== "";
  return head.out.trim() + (dirty ? " with uncommitted changes in src/" : "");
}

export function machineMarkdown(m: MachineInfo): string {
  return [
    `- Date: ${m.date}; HeliosProxy code: commit ${m.commit}`,
    `- Machine: ${m.nproc} CPUs (${m.cpu}), ${m.memTotal} RAM, Linux ${m.kernel}; load average at start: ${m.loadavg}`,
    `- Versions: Bun ${m.bun}; ${m.pgbouncer}; PostgreSQL ${m.postgres} (max_connections ${m.pgMaxConnections}); ${m.pgbench}`,
  ].join("\n");
}

// ---- PgBouncer -----------------------------------------------------------------------------

export function pgbouncerBinary(): string | null {
  for (const p of [process.env.BENCH_PGBOUNCER, "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]) {
    if (p && existsSync(p)) return p;
  }
  return null;
}

export interface Proc {
  name: string;
  port: number;
  pid: number;
  proc: Subprocess;
  output(): string;
  stop(): Promise<void>;
}

function collect(proc: Subprocess): () => string {
  let out = "";
  const read = async (s: ReadableStream<Uint8Array> | number | undefined | null) => {
    if (!s || typeof s === "number") return;
    const dec = new TextDecoder();
    for await (const chunk of s) {
      out += dec.decode(chunk);
      if (out.length > 200_000) out = out.slice(-100_000);
    }
  };
  void read(proc.stdout as ReadableStream<Uint8Array>);
  void read(proc.stderr as ReadableStream<Uint8Array>);
  return () => out;
}

/** Spawn `cmd` in `cwd` and wait for `port` (up to `timeoutMs`); stop() ends the process and removes `dir`. */
async function launch(name: string, cmd: string[], cwd: string, port: number, dir: string, env: Record<string, string> = {}, timeoutMs?: number): Promise<Proc> {
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const output = collect(proc);
  try {
    await waitForPort(port, timeoutMs);
  } catch (e) {
    await stopProc(proc);
    throw new Error(`${name} did not start: ${(e as Error).message}\n${output()}`);
  }
  return {
    name,
    port,
    pid: proc.pid,
    proc,
    output,
    async stop() {
      await stopProc(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function stopProc(proc: Subprocess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
  if (!exited) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

/** Soft and hard open-files limits of this process. */
export function nofileLimits(): { soft: number; hard: number } {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files")) ?? "";
  const [soft, hard] = line.replace("Max open files", "").trim().split(/\s+/).map((v) => (v === "unlimited" ? Infinity : Number(v)));
  return { soft: soft ?? 1024, hard: hard ?? 1024 };
}

/**
 * `prlimit` prefix raising a child's open-files limit to `n`, capped at the hard limit (raising
 * that needs CAP_SYS_RESOURCE, which containers often lack). prlimit execs: the pid stays the child's.
 */
export function withNofile(cmd: string[], n: number): string[] {
  const { soft, hard } = nofileLimits();
  const want = Math.min(n, hard);
  if (want <= soft || !existsSync("/usr/bin/prlimit")) return cmd;
  return ["/usr/bin/prlimit", `--nofile=${want}:${hard === Infinity ? "unlimited" : hard}`, "--", ...cmd];
}

export interface PgbouncerOptions {
  poolSize?: number;
  /** server_idle_timeout in seconds (a bench that also runs direct clients lets idle servers go). */
  serverIdleTimeout?: number;
  maxClientConn?: number;
  nofile?: number;
}

/** Start PgBouncer in transaction mode (trust auth) in a temp dir; as the postgres OS user when run as root. */
export async function startPgbouncer(o: PgbouncerOptions = {}): Promise<Proc> {
  const bin = pgbouncerBinary();
  if (!bin) throw new Error("pgbouncer is not installed (apt-get install pgbouncer)");
  const port = freePort();
  const dir = mkdtempSync(join(tmpdir(), "helios-bench-pgbouncer-"));
  const ini = join(dir, "pgbouncer.ini");
  const users = join(dir, "userlist.txt");
  writeFileSync(users, `"${PG.user}" ""\n`);
  writeFileSync(
    ini,
    [
      "[databases]",
      `* = host=${PG.host} port=${PG.port}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${users}`,
      "pool_mode = transaction",
      `default_pool_size = ${o.poolSize ?? 20}`,
      ...(o.serverIdleTimeout !== undefined ? [`server_idle_timeout = ${o.serverIdleTimeout}`] : []),
      "min_pool_size = 0",
      "reserve_pool_size = 0",
      `max_client_conn = ${o.maxClientConn ?? 20000}`,
      "ignore_startup_parameters = extra_float_digits",
      "log_connections = 0",
      "log_disconnections = 0",
      "log_pooler_errors = 1",
      "stats_period = 3600",
      "",
    ].join("\n"),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const pw = sh(["id", "-u", "postgres"]);
    const gr = sh(["id", "-g", "postgres"]);
    const uid = Number(pw.out.trim());
    const gid = Number(gr.out.trim());
    for (const p of [dir, ini, users]) chownSync(p, uid, gid);
  }
  // `-u postgres`: PgBouncer refuses to run as root, and switches user itself (same pid).
  const cmd = withNofile([bin, ...(asRoot ? ["-u", "postgres"] : []), ini], o.nofile ?? 65536);
  return launch("pgbouncer", cmd, dir, port, dir);
}

// ---- HeliosProxy ----------------------------------------------------------------------------

export interface HeliosOptions {
  mode?: "session" | "transaction" | "statement";
  maxConnections?: number;
  maxClientConn?: number;
  nofile?: number;
  /** A compiled binary (dist/heliosproxy-all) instead of `bun src/cli/main.ts`. */
  bin?: string;
  /** More config sections, appended to the generated TOML (e.g. `[transaction_replay]\nenabled = true\n`). */
  toml?: string;
  /** More [pool] keys (e.g. `idle_timeout_secs = 1`). */
  poolExtra?: string;
  /** More environment for the proxy process (on top of this process's). */
  env?: Record<string, string>;
  /** A command the proxy runs under, which execs it in its own process (e.g. valgrind and its options): the pid stays the proxy's. */
  prefix?: string[];
  /** How long to wait for the proxy's ports (default 10 s; a proxy under valgrind starts far slower). */
  startTimeoutMs?: number;
}

export async function startHelios(o: HeliosOptions = {}): Promise<Proc & { adminPort: number }> {
  const port = freePort();
  const adminPort = freePort();
  const dir = mkdtempSync(join(tmpdir(), "helios-bench-proxy-"));
  const cfg = join(dir, "proxy.toml");
  writeFileSync(
    cfg,
    configText(port, adminPort, {
      mode: o.mode ?? "transaction",
      maxConnections: o.maxConnections ?? 20,
      ...(o.poolExtra !== undefined ? { poolExtra: o.poolExtra } : {}),
      nodes: [{ host: PG.host, port: PG.port }],
      toml: `[limits]\nmax_client_conn = ${o.maxClientConn ?? 20000}\n${o.toml ?? ""}`,
    }),
  );
  const base = o.bin
    ? [resolve(o.bin), "--config", cfg]
    : [process.execPath, `--config=${join(ROOT, "bunfig.toml")}`, join(ROOT, "src/cli/main.ts"), "--config", cfg];
  // prlimit execs the command, so the pid is the proxy's own.
  const proc = await launch("heliosproxy", withNofile([...(o.prefix ?? []), ...base], o.nofile ?? 65536), ROOT, port, dir, o.env, o.startTimeoutMs);
  try {
    // The admin API binds a few ms after the client listener.
    await waitForPort(adminPort, o.startTimeoutMs);
  } catch (e) {
    await proc.stop();
    throw new Error(`heliosproxy admin API did not start: ${(e as Error).message}\n${proc.output()}`);
  }
  return Object.assign(proc, { adminPort });
}

// ---- pgbench -------------------------------------------------------------------------------

/**
 * Create `db` if missing (dropped first with `reinit`), `pgbench -i -s scale` it when its scale
 * differs, then empty pgbench_history and VACUUM ANALYZE.
 */
export function ensurePgbenchDatabase(db: string, scale: number, reinit = false): void {
  if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`database name must be a plain lower-case identifier, got ${JSON.stringify(db)}`);
  const exists = psql(`SELECT 1 FROM pg_database WHERE datname = '${db}'`) === "1";
  if (exists && reinit) psql(`DROP DATABASE ${db}`);
  if (!exists || reinit) psql(`CREATE DATABASE ${db}`);
  let current = 0;
  try {
    current = Number(psql("SELECT count(*) FROM pgbench_branches", db));
  } catch {
    current = 0;
  }
  if (current !== scale) {
    console.log(`initialising ${db} with pgbench -i -s ${scale} ...`);
    pgbenchInit(db, scale);
  }
  // tpcb rounds grow pgbench_history; start every run from the same small table.
  psql("TRUNCATE pgbench_history", db);
  psql("VACUUM ANALYZE", db);
}

/** `pgbench -i -q -s scale db` against `server` (default: the PostgreSQL of BENCH_PG*); throws on failure. */
export function pgbenchInit(db: string, scale: number, server: { host: string; port: number; user: string } = PG): void {
  const r = sh(["pgbench", "-i", "-q", "-s", String(scale), "-h", server.host, "-p", String(server.port), "-U", server.user, db]);
  if (r.code !== 0) throw new Error(`pgbench -i failed:\n${r.err}`);
}

export interface PgbenchResult {
  tps: number;
  transactions: number;
  failed: number;
  abortedClients: number;
  latencyMs: number;
  exitCode: number;
  firstError: string;
}

export function parsePgbench(out: string, err: string, exitCode: number): PgbenchResult {
  const all = out + "\n" + err;
  const num = (re: RegExp) => {
    const m = re.exec(all);
    return m ? Number(m[1]) : NaN;
  };
  const aborted = new Set<string>();
  for (const m of all.matchAll(/client (\d+) (?:script \d+ )?aborted/g)) aborted.add(m[1]!);
  const errLine = all.split("\n").find((l) => /error|FATAL|aborted/i.test(l) && !/^number of/.test(l)) ?? "";
  return {
    tps: num(/^tps = ([\d.]+)/m),
    transactions: num(/number of transactions actually processed: (\d+)/),
    failed: Number.isNaN(num(/number of failed transactions: (\d+)/)) ? 0 : num(/number of failed transactions: (\d+)/),
    abortedClients: aborted.size,
    latencyMs: num(/latency average = ([\d.]+) ms/),
    exitCode,
    firstError: errLine.trim().slice(0, 200),
  };
}

export async function runPgbench(args: string[], port: number, db: string): Promise<PgbenchResult> {
  const cmd = ["pgbench", ...args, "-h", "127.0.0.1", "-p", String(port), "-U", PG.user, db];
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, PGAPPNAME: "helios-bench" } });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  return parsePgbench(out, err, code);
}

/** CPU busy share (all processes) over `msWindow`, from /proc/stat. */
export function cpuBusy(msWindow: number): number {
  const read = () => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  Bun.sleepSync(msWindow);
  const b = read();
  return b.total > a.total ? 1 - (b.idle - a.idle) / (b.total - a.total) : NaN;
}

export const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

// ---- docs/benchmarks.md ----------------------------------------------------------------------

const DOC_HEADER = `# Benchmarks

Results written by the scripts in \`bench/\`. Each section is replaced by the latest run of its
script; the exact command, machine and versions are recorded with it. See "How to run" below.
`;

/** Replace (or append) the block between `<!-- BEGIN id -->` and `<!-- END id -->` in docs/benchmarks.md. */
export function updateDoc(id: string, markdown: string, docPath = DOC): void {
  const begin = `<!-- BEGIN ${id} -->`;
  const end = `<!-- END ${id} -->`;
  const block = `${begin}\n${markdown.trim()}\n${end}`;
  let text = existsSync(docPath) ? readFileSync(docPath, "utf8") : DOC_HEADER;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) text = text.slice(0, i) + block + text.slice(j + end.length);
  else text = text.trimEnd() + "\n\n" + block + "\n";
  writeFileSync(docPath, text.endsWith("\n") ? text : text + "\n");
}

/** What parseFlags calls for a flag; `value()` takes the flag's argument. */
export type FlagHandler = (value: () => string) => void;

/**
 * Parse command-line flags (`--flag value`, `--flag=value`, bare `--flag`) with a table of
 * handlers, each given a `value()` that takes its argument, the inline one or the next.
 * `--help` and `-h` call `usage(0)`; an unknown flag (named on stderr) and a missing argument `usage(2)`.
 */
export function parseFlags(argv: string[], usage: (exitCode: number) => never, handlers: Record<string, FlagHandler>): void {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf("=");
    const flag = eq >= 0 ? a.slice(0, eq) : a;
    const inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    const handler = Object.hasOwn(handlers, flag) ? handlers[flag] : undefined;
    if (!handler) {
      if (flag === "--help" || flag === "-h") usage(0);
      console.error(`unknown option ${a}`);
      usage(2);
    }
    handler(() => inline ?? argv[++i] ?? usage(2));
  }
}

/** What every script that runs interleaved rounds takes: --quick, --rounds N, --duration SECS, --no-doc, --note TEXT. */
export interface RoundsOptions {
  quick: boolean;
  rounds: number;
  duration: number;
  doc: boolean;
  note: string;
}

/** RoundsOptions before parsing: rounds and duration unset (NaN) until given or defaulted by settleRounds. */
export function unsetRounds(): RoundsOptions {
  return { quick: false, rounds: NaN, duration: NaN, doc: true, note: "" };
}

/** parseFlags handlers for the RoundsOptions flags, writing into `o`. */
export function roundsFlags(o: RoundsOptions): Record<"--quick" | "--rounds" | "--duration" | "--no-doc" | "--note", FlagHandler> {
  return {
    "--quick": () => (o.quick = true),
    "--rounds": (v) => (o.rounds = Number(v())),
    "--duration": (v) => (o.duration = Number(v())),
    "--no-doc": () => (o.doc = false),
    "--note": (v) => (o.note = v()),
  };
}

/** Defaults for what was not given: 1 round of `quickSecs` with --quick, else 3 rounds of `fullSecs`. */
export function settleRounds(o: RoundsOptions, quickSecs: number, fullSecs: number): void {
  if (Number.isNaN(o.duration)) o.duration = o.quick ? quickSecs : fullSecs;
  if (Number.isNaN(o.rounds)) o.rounds = o.quick ? 1 : 3;
}

/** The opening lines of a results section: title, the command, the machine. */
export function sectionTitle(title: string, script: string, machine: MachineInfo): string[] {
  return [`## ${title}`, "", "```", commandLine(script), "```", "", machineMarkdown(machine)];
}

/** sectionTitle, then a line with the wall time, the load at the end and the note. */
export function sectionHead(title: string, script: string, machine: MachineInfo, startedAt: number, note: string): string[] {
  const load = loadavg();
  const minutes = ((Date.now() - startedAt) / 60000).toFixed(1);
  return [...sectionTitle(title, script, machine), `- Run took ${minutes} min; load average at the end: ${load}${note ? `; note: ${note}` : ""}`];
}

/** The command line as the user typed it (relative to the repository). */
export function commandLine(script: string): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`);
  return ["bun", script, ...process.argv.slice(2)].map(quote).join(" ");
}
