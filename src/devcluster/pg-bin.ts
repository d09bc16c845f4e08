// Finding the installed PostgreSQL server binaries and running them as the postgres OS user (they refuse root).

import { chmodSync, chownSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
export { freePort, portInUse } from "../util/net.ts";

/** The OS account PostgreSQL runs as when we are root. */
export const PG_OS_USER = "postgres";

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  cwd?: string;
  input?: string;
  env?: Record<string, string>;
}

/** Run a command to completion; never throws on a non-zero exit. */
export async function run(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd,
    stdin: opts.input !== undefined ? new TextEncoder().encode(opts.input) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

/** Run a command; throw with its output when it fails. */
export async function runOk(cmd: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The process exists and is not a zombie (which still answers kill(0) but is gone for PostgreSQL's purposes). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * postmaster.pid of `dataDir` names a live postmaster started in or after the second of `sinceMs`
 * that accepts connections (status line "ready"; a hot standby: "standby").
 */
function postmasterReady(dataDir: string, sinceMs: number): boolean {
  try {
    const f = readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n");
    const status = f[7]?.trim();
    return (status === "ready" || status === "standby") && Number(f[2]) >= Math.floor(sinceMs / 1000) && alive(Number(f[0]));
  } catch {
    return false;
  }
}

/**
 * Run `pg_ctl start -w` (argv) and return once the server accepts connections. pg_ctl looks only
 * every 100 ms; postmaster.pid is read every 10 ms as well, so a start is not rounded up to the
 * next look. Failures are still pg_ctl's (it goes on and exits by itself once ready).
 */
export async function startServer(argv: string[], dataDir: string, opts: RunOptions = {}): Promise<void> {
  const since = Date.now();
  let done = false;
  const ctl = runOk(argv, opts).finally(() => {
    done = true;
  });
  ctl.catch(() => {});
  while (!done) {
    if (postmasterReady(dataDir, since)) return;
    await Promise.race([ctl, Bun.sleep(10)]).catch(() => {});
  }
  await ctl;
}

function versionOf(dir: string): number {
  const m = /\/(\d+)(?:\.\d+)?\/bin$/.exec(dir);
  return m ? Number(m[1]) : 0;
}

let cachedBinDir: string | null = null;

/**
 * Directory of initdb, pg_ctl, pg_basebackup and postgres: $PG_BIN, else `pg_config --bindir`
 * when it holds initdb, else the highest /usr/lib/postgresql/N/bin.
 */
export function pgBinDir(): string {
  if (cachedBinDir) return cachedBinDir;
  const candidates: string[] = [];
  if (process.env.PG_BIN) candidates.push(process.env.PG_BIN);
  try {
    const r = Bun.spawnSync(["pg_config", "--bindir"], { stdout: "pipe", stderr: "ignore" });
    if (r.exitCode === 0) candidates.push(r.stdout.toString().trim());
  } catch {
    // no pg_config on PATH
  }
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    const dirs = readdirSync(root).map((v) => join(root, v, "bin"));
    candidates.push(...dirs.sort((a, b) => versionOf(b) - versionOf(a)));
  }
  const found = candidates.find((d) => d && existsSync(join(d, "initdb")) && existsSync(join(d, "pg_ctl")));
  if (!found) throw new Error("PostgreSQL server binaries not found: install PostgreSQL (initdb, pg_ctl) or set PG_BIN");
  cachedBinDir = found;
  return found;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** util-linux runuser (in /usr/sbin, which a non-login PATH may lack). */
function runuserBinary(): string {
  return Bun.which("runuser") ?? ["/usr/sbin/runuser", "/sbin/runuser"].find((p) => existsSync(p)) ?? "runuser";
}

/** Command line running PostgreSQL binary `bin` (as the postgres OS user when we are root). */
export function pgCommand(bin: string, args: string[]): string[] {
  return asPostgresUser([join(pgBinDir(), bin), ...args]);
}

/** `argv` run as the postgres OS user when we are root (the environment is kept). */
export function asPostgresUser(argv: string[]): string[] {
  return isRoot() ? [runuserBinary(), "-u", PG_OS_USER, "--", ...argv] : argv;
}

/** psql as a client: the server's own when present, else whatever is on PATH. */
export function psqlBinary(): string {
  const own = join(pgBinDir(), "psql");
  return existsSync(own) ? own : "psql";
}

function osUserIds(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${PG_OS_USER}:`));
  if (!line) throw new Error(`running as root needs a ${PG_OS_USER} OS user to run PostgreSQL as`);
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Hand a path to the postgres OS user when we are root; set its mode when given. */
export function giveToPostgres(path: string, mode?: number): void {
  if (isRoot()) {
    const { uid, gid } = osUserIds();
    chownSync(path, uid, gid);
  }
  if (mode !== undefined) chmodSync(path, mode);
}

/** Single-quote a string for sh. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
