// Test fixture: throwaway PostgreSQL servers (initdb/pg_ctl as the postgres OS user) and TLS files (raw wire clients: wire.ts).

import { chownSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./proxy.ts";
import { run, runOk, startServer, type RunResult } from "../../src/devcluster/pg-bin.ts";
import { INITDB_ARGS } from "../../src/devcluster/node.ts";
import { copyTemplate } from "./pg-template.ts";

export const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";
const PG_OS_USER = "postgres";

// ---- processes ---------------------------------------------------------------------------



/** Run a PostgreSQL server binary as the postgres OS user (they refuse to run as root). */
function asPostgres(bin: string, args: string[]): string[] {
  const path = join(PG_BIN, bin);
  return process.getuid?.() === 0 ? ["runuser", "-u", PG_OS_USER, "--", path, ...args] : [path, ...args];
}

function pgIds(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${PG_OS_USER}:`));
  if (!line) throw new Error(`no ${PG_OS_USER} OS user`);
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Give a path to the postgres OS user (no-op when not root). */
function givePostgres(path: string, mode?: number): void {
  if (process.getuid?.() === 0) {
    const { uid, gid } = pgIds();
    chownSync(path, uid, gid);
  }
  if (mode !== undefined) chmodSync(path, mode);
}

// ---- TLS material -------------------------------------------------------------------------

export interface TlsFiles {
  dir: string;
  /** CA that signed serverCert. */
  caCert: string;
  caKey: string;
  /** Certificate for CN=localhost with SANs DNS:localhost and IP:127.0.0.1, signed by caCert. */
  serverCert: string;
  serverKey: string;
  /** An unrelated CA: verifying serverCert against it must fail. */
  otherCaCert: string;
  /** Self-signed CN=localhost certificate and key. */
  selfSignedCert: string;
  selfSignedKey: string;
}

const tlsCache = new Map<string, TlsFiles>();

/** Generate a CA, a CA-signed localhost certificate, an unrelated CA and a self-signed certificate in `dir`. */
export async function makeTlsFiles(dir: string = mkdtempSync(join(tmpdir(), "helios-tls-"))): Promise<TlsFiles> {
  const cached = tlsCache.get(dir);
  if (cached) return cached;
  mkdirSync(dir, { recursive: true });
  const p = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const ossl = (args: string[]) => runOk(["openssl", ...args], { cwd: dir });
  await ossl(["req", "-x509", ...ec, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "3", "-subj", "/CN=Helios Test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await ossl(["req", "-x509", ...ec, "-keyout", p("other-ca.key"), "-out", p("other-ca.crt"), "-days", "3", "-subj", "/CN=Unrelated Test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await ossl(["req", "-new", ...ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost"]);
  writeFileSync(p("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n");
  await ossl(["x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "3", "-extfile", p("server.ext"), "-out", p("server.crt")]);
  await ossl(["req", "-x509", ...ec, "-keyout", p("self.key"), "-out", p("self.crt"), "-days", "3", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
  for (const k of ["ca.key", "other-ca.key", "server.key", "self.key"]) chmodSync(p(k), 0o600);
  const files: TlsFiles = {
    dir,
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    serverCert: p("server.crt"),
    serverKey: p("server.key"),
    otherCaCert: p("other-ca.crt"),
    selfSignedCert: p("self.crt"),
    selfSignedKey: p("self.key"),
  };
  tlsCache.set(dir, files);
  return files;
}

// ---- PostgreSQL instances -----------------------------------------------------------------

export interface PgInstanceOptions {
  /** pg_hba.conf lines, placed after the fixture's own `local` trust lines (used by psql()). */
  hba?: string[];
  /**
   * postgresql.conf settings (values written verbatim: quote strings yourself, e.g. "'md5'").
   * With synchronous_standby_names set, commits made through psql() wait until a standby attaches.
   */
  conf?: Record<string, string>;
  /** Serve TLS with `certs.serverCert` (signed by `certs.caCert`). */
  ssl?: boolean;
  /** Databases created once the server is up. */
  databases?: string[];
  /** TCP port (default: a free one). */
  port?: number;
  /** Build the data directory with pg_basebackup from this running instance and start as its standby. */
  standbyOf?: PgInstance;
  /** With standbyOf: application_name of the standby (for synchronous_standby_names). */
  applicationName?: string;
  /**
   * Run initdb instead of copying the prepared data directory (pg-template.ts): a server with a
   * system identifier of its own, not shared with the other test servers.
   */
  freshInitdb?: boolean;
}

export interface PsqlOptions {
  db?: string;
  user?: string;
}

export interface PgInstance {
  readonly host: string;
  readonly port: number;
  /** Temp directory holding everything below (removed by destroy()). */
  readonly baseDir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  /** TLS files (generated when ssl was asked for). */
  readonly certs: TlsFiles | null;
  /** libpq URL over TCP. */
  url(db?: string, user?: string): string;
  /** Run SQL as the superuser over the unix socket (trust); returns `psql -At` output, trimmed. Throws on error. */
  psql(sql: string, opts?: PsqlOptions): Promise<string>;
  /** Like psql() but never throws. */
  tryPsql(sql: string, opts?: PsqlOptions): Promise<RunResult>;
  /** Postmaster pid while running. */
  pid(): number | null;
  running(): boolean;
  start(): Promise<void>;
  stop(mode?: "smart" | "fast" | "immediate"): Promise<void>;
  restart(mode?: "smart" | "fast" | "immediate"): Promise<void>;
  /** SIGKILL the postmaster and its children (a crash); start() then runs crash recovery. */
  kill9(): Promise<void>;
  /** Re-read config files (pg_hba.conf, postgresql.conf). */
  reload(): Promise<void>;
  /** Replace the custom pg_hba.conf lines (call reload() after). */
  setHba(lines: string[]): void;
  /** Append postgresql.conf settings (call reload() or restart() after). */
  setConf(conf: Record<string, string>): void;
  /** Promote a standby. */
  promote(): Promise<void>;
  /** Stop (immediate) and remove the directory. Safe to call twice. */
  destroy(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A detached shell that outlives a crashed or killed test process: once `ownerPid` is gone it stops
 * the server and removes its directory (bun test runs no exit hooks and kills the children it
 * spawned, so the shell puts itself in the background). destroy() ends it first.
 */
function spawnJanitor(ownerPid: number, dataDir: string, baseDir: string): { kill(): void } {
  const stop = asPostgres("pg_ctl", ["stop", "-D", dataDir, "-m", "immediate", "-w"]).map((a) => `'${a}'`).join(" ");
  const body = `while kill -0 ${ownerPid} 2>/dev/null; do sleep 1; done; if [ -f '${dataDir}/postmaster.pid' ]; then ${stop}; fi; rm -rf '${baseDir}'`;
  const r = Bun.spawnSync(["sh", "-c", `(${body}) </dev/null >/dev/null 2>&1 & echo $!`]);
  const pid = Number(r.stdout.toString().trim());
  return {
    kill() {
      try {
        if (pid > 0) process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    },
  };
}

const FIXTURE_HBA = ["local all all trust", "local replication all trust", "host replication all 127.0.0.1/32 trust"];

function confLines(conf: Record<string, string>): string {
  return Object.entries(conf)
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n");
}

/** A copy of the prepared data directory (or initdb, or pg_basebackup for a standby), configure, start and wait until it accepts connections. */
export async function startPgInstance(o: PgInstanceOptions = {}): Promise<PgInstance> {
  const baseDir = mkdtempSync(join(tmpdir(), "helios-pg-"));
  givePostgres(baseDir, 0o755);
  const dataDir = join(baseDir, "data");
  const janitor = spawnJanitor(process.pid, dataDir, baseDir);
  const socketDir = join(baseDir, "sock");
  const logFile = join(baseDir, "postgres.log");
  mkdirSync(socketDir);
  givePostgres(socketDir, 0o755);
  writeFileSync(logFile, "");
  givePostgres(logFile, 0o644);
  const port = o.port ?? freePort();
  let certs: TlsFiles | null = null;
  if (o.ssl) {
    const certDir = join(baseDir, "certs");
    certs = await makeTlsFiles(certDir);
    givePostgres(certDir, 0o755);
    for (const f of [certs.serverCert, certs.serverKey, certs.caCert]) givePostgres(f);
  }

  if (o.standbyOf) {
    const p = o.standbyOf;
    await runOk(asPostgres("pg_basebackup", ["-h", p.socketDir, "-p", String(p.port), "-U", "postgres", "-D", dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"]), { cwd: baseDir });
    if (o.applicationName) {
      appendFileSync(join(dataDir, "postgresql.auto.conf"), `primary_conninfo = 'host=${p.socketDir} port=${p.port} user=postgres application_name=${o.applicationName}'\n`);
    }
  } else if (o.freshInitdb) {
    await runOk(asPostgres("initdb", ["-D", dataDir, ...INITDB_ARGS]), { cwd: baseDir });
  } else {
    await copyTemplate(PG_BIN)(dataDir);
  }

  const conf: Record<string, string> = {
    port: String(port),
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${socketDir}'`,
    // Durability off for speed; WAL stays complete so standbys, promotion and pg_rewind work.
    fsync: "off",
    wal_log_hints: "on",
    max_connections: "200",
    shared_buffers: "32MB",
    max_wal_senders: "10",
    wal_level: "replica",
    hot_standby: "on",
    logging_collector: "off",
    ...(certs ? { ssl: "on", ssl_cert_file: `'${certs.serverCert}'`, ssl_key_file: `'${certs.serverKey}'`, ssl_ca_file: `'${certs.caCert}'` } : {}),
    ...o.conf,
  };
  // The fixture's settings go in a file of their own so setConf() can append without touching initdb's.
  const confFile = join(dataDir, "helios-test.conf");
  writeFileSync(confFile, confLines(conf) + "\n");
  givePostgres(confFile, 0o644);
  const mainConf = join(dataDir, "postgresql.conf");
  if (!readFileSync(mainConf, "utf8").includes("include 'helios-test.conf'")) appendFileSync(mainConf, "\ninclude 'helios-test.conf'\n");
  let hba = o.hba ?? ["host all all 127.0.0.1/32 trust"];
  const writeHba = () => {
    const f = join(dataDir, "pg_hba.conf");
    writeFileSync(f, [...FIXTURE_HBA, ...hba].join("\n") + "\n");
    givePostgres(f, 0o600);
  };
  writeHba();

  const pgctl = (args: string[]) => runOk(asPostgres("pg_ctl", ["-D", dataDir, ...args]), { cwd: baseDir });
  const readPid = (): number | null => {
    try {
      const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      if (!pid) return null;
      process.kill(pid, 0);
      if (/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) return null;
      return pid;
    } catch {
      return null;
    }
  };
  const psqlArgs = (sql: string, po: PsqlOptions) => [
    "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(port), "-U", po.user ?? "postgres", "-d", po.db ?? "postgres", "-c", sql,
  ];
  let destroyed = false;

  const inst: PgInstance = {
    host: "127.0.0.1",
    port,
    baseDir,
    dataDir,
    socketDir,
    logFile,
    certs,
    url: (db = "postgres", user = "postgres") => `postgresql://${user}@127.0.0.1:${port}/${db}`,
    async psql(sql, po = {}) {
      const r = await run(psqlArgs(sql, po));
      if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr.trim()}\nSQL: ${sql}`);
      return r.stdout.trim();
    },
    tryPsql: (sql, po = {}) => run(psqlArgs(sql, po)),
    pid: readPid,
    running: () => readPid() !== null,
    async start() {
      await startServer(asPostgres("pg_ctl", ["-D", dataDir, "start", "-w", "-t", "60", "-l", logFile]), dataDir, { cwd: baseDir });
    },
    async stop(mode = "fast") {
      if (readPid() === null) return;
      await pgctl(["stop", "-w", "-t", "60", "-m", mode]);
    },
    async restart(mode = "fast") {
      await pgctl(["restart", "-w", "-t", "60", "-m", mode, "-l", logFile]);
    },
    async kill9() {
      const pm = readPid();
      if (pm === null) return;
      let children: number[] = [];
      try {
        children = readFileSync(`/proc/${pm}/task/${pm}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        // no children listed
      }
      process.kill(pm, "SIGKILL");
      for (const c of children) {
        try {
          process.kill(c, "SIGKILL");
        } catch {
          // already gone
        }
      }
      // Wait until the processes are gone (PostgreSQL refuses its lock file while even a zombie holds the pid).
      const deadline = Date.now() + 10000;
      const exists = (p: number) => {
        try {
          process.kill(p, 0);
          return true;
        } catch {
          return false;
        }
      };
      while (Date.now() < deadline && [pm, ...children].some(exists)) await Bun.sleep(20);
      if (exists(pm)) rmSync(join(dataDir, "postmaster.pid"), { force: true });
    },
    async reload() {
      await pgctl(["reload"]);
      await Bun.sleep(100);
    },
    setHba(lines) {
      hba = lines;
      writeHba();
    },
    setConf(c) {
      appendFileSync(confFile, confLines(c) + "\n");
    },
    async promote() {
      await pgctl(["promote", "-w", "-t", "60"]);
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        if (readPid() !== null) await pgctl(["stop", "-w", "-t", "30", "-m", "immediate"]);
      } catch {
        await inst.kill9().catch(() => {});
      }
      rmSync(baseDir, { recursive: true, force: true });
      janitor.kill();
    },
    async [Symbol.asyncDispose]() {
      await inst.destroy();
    },
  };
  try {
    await inst.start();
    // Setup commits never wait for a synchronous standby that is not there yet.
    for (const db of o.databases ?? []) {
      const r = await run(psqlArgs(`CREATE DATABASE "${db.replaceAll('"', '""')}"`, {}), { env: { PGOPTIONS: "-c synchronous_commit=local" } });
      if (r.code !== 0) throw new Error(`CREATE DATABASE ${db} failed: ${r.stderr.trim()}`);
    }
  } catch (e) {
    const log = existsSync(logFile) ? readFileSync(logFile, "utf8").slice(-4000) : "";
    await inst.destroy();
    throw new Error(`${(e as Error).message}\n--- postgres log ---\n${log}`);
  }
  return inst;
}

/** Poll `check` until it returns true (or a truthy value), or throw after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : String(last)})`);
    await Bun.sleep(everyMs);
  }
}

/** Resident set size of a process in kB (Linux). */
export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}
