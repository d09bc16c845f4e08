// One local PostgreSQL server of a dev cluster: initdb or pg_basebackup, its config, start/stop/kill -9/promote, psql.

import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, asPostgresUser, giveToPostgres, pgBinDir, pgCommand, psqlBinary, run, runOk, shQuote, startServer, type RunResult } from "./pg-bin.ts";

export type DevNodeRole = "primary" | "standby";
export type StopMode = "smart" | "fast" | "immediate";

/** postgresql.conf settings, values verbatim (quote strings yourself: "'on'" is not needed, "'a b'" is). */
export type PgConf = Record<string, string>;

export interface DevNodeSpec {
  name: string;
  port: number;
  role: DevNodeRole;
  /** Synchronous standby (named in the primary's synchronous_standby_names). */
  sync: boolean;
}

export interface PsqlOptions {
  db?: string;
  user?: string;
  /** Extra environment (e.g. PGOPTIONS). */
  env?: Record<string, string>;
}

/** Settings of our own go in a file included from postgresql.conf, so they can be rewritten per node. */
const CONF_FILE = "devcluster.conf";

/** initdb's options for every throwaway server (the dev cluster's and the tests'). */
export const INITDB_ARGS = ["-A", "trust", "--username=postgres", "--no-sync", "-E", "UTF8", "--locale=C"];

/** Makes a new, empty data directory at `dataDir` (default: initdb with INITDB_ARGS). */
export type MakeDataDir = (dataDir: string) => Promise<void>;

const HBA = [
  "local all all trust",
  "local replication all trust",
  "host all all 127.0.0.1/32 trust",
  "host replication all 127.0.0.1/32 trust",
];

function confText(conf: PgConf): string {
  return Object.entries(conf)
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n") + "\n";
}

export class DevNode {
  readonly name: string;
  readonly port: number;
  readonly host = "127.0.0.1";
  /** What the server is now (a promoted standby becomes primary). */
  role: DevNodeRole;
  sync: boolean;
  readonly dir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;

  constructor(baseDir: string, spec: DevNodeSpec) {
    this.name = spec.name;
    this.port = spec.port;
    this.role = spec.role;
    this.sync = spec.sync;
    this.dir = join(baseDir, spec.name);
    this.dataDir = join(this.dir, "data");
    this.socketDir = join(this.dir, "sock");
    this.logFile = join(this.dir, "postgres.log");
    mkdirSync(this.socketDir, { recursive: true });
    giveToPostgres(this.dir, 0o755);
    giveToPostgres(this.socketDir, 0o755);
    writeFileSync(this.logFile, "");
    giveToPostgres(this.logFile, 0o644);
  }

  /** libpq URL over TCP. */
  url(db = "postgres", user = "postgres"): string {
    return `postgresql://${user}@${this.host}:${this.port}/${db}`;
  }

  /** primary_conninfo a standby of this node uses. */
  conninfo(applicationName: string): string {
    return `host=${this.host} port=${this.port} user=postgres application_name=${applicationName}`;
  }

  /** A new, empty primary: initdb (or `make`), then our settings. */
  async initdb(conf: PgConf, make?: MakeDataDir): Promise<void> {
    if (make) await make(this.dataDir);
    else await runOk(pgCommand("initdb", ["-D", this.dataDir, ...INITDB_ARGS]), { cwd: this.dir });
    this.configure(conf);
  }

  /** A standby of `primary`: pg_basebackup, standby.signal, primary_conninfo with our name as application_name. */
  async basebackup(primary: DevNode, conf: PgConf, slot: string | null): Promise<void> {
    // --no-sync as initdb's: a disposable server (fsync = off); syncing the copy took seconds on a busy disk.
    const args = ["-h", primary.socketDir, "-p", String(primary.port), "-U", "postgres", "-D", this.dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"];
    await runOk(pgCommand("pg_basebackup", args), { cwd: this.dir });
    // -R wrote a primary_conninfo without application_name; a later line of the same file wins.
    const auto = join(this.dataDir, "postgresql.auto.conf");
    appendFileSync(auto, `primary_conninfo = '${primary.conninfo(this.name)}'\n${slot ? `primary_slot_name = '${slot}'\n` : ""}`);
    this.configure(conf);
  }

  private configure(conf: PgConf): void {
    this.writeConf(conf);
    const main = join(this.dataDir, "postgresql.conf");
    if (!readFileSync(main, "utf8").includes(`include '${CONF_FILE}'`)) appendFileSync(main, `\ninclude '${CONF_FILE}'\n`);
    const hba = join(this.dataDir, "pg_hba.conf");
    writeFileSync(hba, HBA.join("\n") + "\n");
    giveToPostgres(hba, 0o600);
  }

  /** Replace our settings file (reload() or restart() to apply). */
  writeConf(conf: PgConf): void {
    const f = join(this.dataDir, CONF_FILE);
    writeFileSync(f, confText({ ...conf, port: String(this.port), unix_socket_directories: `'${this.socketDir}'` }));
    giveToPostgres(f, 0o644);
  }

  /** Append settings to our file; later lines win (reload() or restart() to apply). */
  setConf(conf: PgConf): void {
    appendFileSync(join(this.dataDir, CONF_FILE), confText(conf));
  }

  private pgctl(args: string[]): Promise<string> {
    return runOk(pgCommand("pg_ctl", ["-D", this.dataDir, ...args]), { cwd: this.dir });
  }

  /** Postmaster pid while it runs, else null. */
  pid(): number | null {
    try {
      const pid = Number(readFileSync(join(this.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      return pid > 0 && alive(pid) ? pid : null;
    } catch {
      return null;
    }
  }

  running(): boolean {
    return this.pid() !== null;
  }

  /**
   * Write a script that makes this node (an old primary, running or not) a standby of the primary
   * named by $HELIOS_PRIMARY_HOST / $HELIOS_PRIMARY_PORT: stop, CHECKPOINT there, pg_rewind from it, standby.signal,
   * primary_conninfo with our name as application_name, start. Returns the command line that runs
   * it as the postgres OS user, for [failover] rejoin_command.
   */
  writeRejoinScript(): string {
    const bin = (b: string) => shQuote(join(pgBinDir(), b));
    const d = shQuote(this.dataDir);
    const script = join(this.dir, "rejoin.sh");
    const lines = [
      "set -e",
      `if [ -f ${d}/postmaster.pid ]; then ${bin("pg_ctl")} stop -D ${d} -m fast -w -t 60; fi`,
      // A just-promoted source still shows the old timeline in its control file until a checkpoint: pg_rewind would see nothing to do.
      `${shQuote(psqlBinary())} -X -q "host=$HELIOS_PRIMARY_HOST port=$HELIOS_PRIMARY_PORT user=postgres dbname=postgres" -c CHECKPOINT`,
      // pg_rewind copies the source's configuration files: ours (port, socket directory) is put back.
      `cp ${d}/${CONF_FILE} ${d}/../${CONF_FILE}.keep`,
      `${bin("pg_rewind")} --target-pgdata=${d} --source-server="host=$HELIOS_PRIMARY_HOST port=$HELIOS_PRIMARY_PORT user=postgres dbname=postgres"`,
      `cp ${d}/../${CONF_FILE}.keep ${d}/${CONF_FILE}`,
      `touch ${d}/standby.signal`,
      `echo "primary_conninfo = 'host=$HELIOS_PRIMARY_HOST port=$HELIOS_PRIMARY_PORT user=postgres application_name=${this.name}'" >> ${d}/postgresql.auto.conf`,
      `${bin("pg_ctl")} start -D ${d} -w -t 60 -l ${shQuote(this.logFile)}`,
    ];
    writeFileSync(script, lines.join("\n") + "\n");
    giveToPostgres(script, 0o755);
    return asPostgresUser(["sh", script]).map(shQuote).join(" ");
  }

  /** Start and wait until it accepts connections (a standby: until it allows read-only ones). */
  async start(): Promise<void> {
    if (this.running()) return;
    try {
      await startServer(pgCommand("pg_ctl", ["-D", this.dataDir, "start", "-w", "-t", "60", "-l", this.logFile]), this.dataDir, { cwd: this.dir });
    } catch (e) {
      // pg_ctl says only "could not start server": the server's own last words say why.
      throw new Error(`${(e as Error).message}\n--- ${this.name} postgres.log (end) ---\n${this.logTail(2000)}`);
    }
  }


  async stop(mode: StopMode = "fast"): Promise<void> {
    if (!this.running()) return;
    await this.pgctl(["stop", "-w", "-t", "60", "-m", mode]);
  }

  async restart(mode: StopMode = "fast"): Promise<void> {
    if (!this.running()) return this.start();
    await this.pgctl(["restart", "-w", "-t", "60", "-m", mode, "-l", this.logFile]);
  }

  /** The postmaster and its children (empty when not running). */
  processes(): number[] {
    const pm = this.pid();
    if (pm === null) return [];
    let children: number[] = [];
    try {
      children = readFileSync(`/proc/${pm}/task/${pm}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      // none listed
    }
    return [pm, ...children];
  }

  private signalAll(pids: number[], signal: NodeJS.Signals): void {
    for (const p of pids) {
      try {
        process.kill(p, signal);
      } catch {
        // already gone
      }
    }
  }

  /**
   * Freeze every process of the node for `ms` (SIGSTOP, then SIGCONT): it keeps its sockets but
   * answers nothing, as behind a network blip.
   */
  async freeze(ms: number): Promise<void> {
    const pids = this.processes();
    this.signalAll(pids, "SIGSTOP");
    try {
      await Bun.sleep(ms);
    } finally {
      this.signalAll(pids, "SIGCONT");
    }
  }

  /** SIGKILL the postmaster and all its children (a crash); start() then runs crash recovery. */
  async kill9(): Promise<void> {
    // Stopped first, the postmaster cannot fork a backend between the listing of its children and the kill
    // (such an orphan would hold the shared memory and make the next start fail).
    const pm0 = this.pid();
    if (pm0 !== null) this.signalAll([pm0], "SIGSTOP");
    const all = this.processes();
    if (all.length === 0) return;
    const [pm, ...children] = all as [number, ...number[]];
    this.signalAll(all, "SIGKILL");
    // PostgreSQL refuses to start while any old process still holds the shared memory or the pid.
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline && [pm, ...children].some(alive)) await Bun.sleep(20);
  }

  /** Re-read postgresql.conf and pg_hba.conf. */
  async reload(): Promise<void> {
    await this.pgctl(["reload"]);
  }

  /** Promote a standby to primary and wait until it accepts writes. */
  async promote(): Promise<void> {
    await this.pgctl(["promote", "-w", "-t", "60"]);
    this.role = "primary";
  }

  private psqlArgs(sql: string, o: PsqlOptions): string[] {
    return [psqlBinary(), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", this.socketDir, "-p", String(this.port), "-U", o.user ?? "postgres", "-d", o.db ?? "postgres", "-c", sql];
  }

  /** Run SQL as the superuser over the unix socket; `psql -At` output, trimmed. Throws on error. */
  async psql(sql: string, o: PsqlOptions = {}): Promise<string> {
    const r = await this.tryPsql(sql, o);
    if (r.code !== 0) throw new Error(`psql on ${this.name} failed (${r.code}): ${r.stderr.trim()}\nSQL: ${sql}`);
    return r.stdout.trim();
  }

  /** Like psql() but never throws. */
  tryPsql(sql: string, o: PsqlOptions = {}): Promise<RunResult> {
    return run(this.psqlArgs(sql, o), { env: o.env });
  }

  /** The last `chars` characters of the server log. */
  logTail(chars = 4000): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8").slice(-chars) : "";
  }

  /** Stop at once (immediate, or kill -9 when that fails) and remove the node's directory. */
  async destroy(): Promise<void> {
    try {
      await this.stop("immediate");
    } catch {
      await this.kill9();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
