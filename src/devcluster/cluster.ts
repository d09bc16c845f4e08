// A local streaming-replication cluster (primary + sync standby + async standby) in a temp dir, cleaned up even if we die.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DevNode, type MakeDataDir, type PgConf, type StopMode } from "./node.ts";
import { freePort, giveToPostgres, pgCommand, shQuote } from "./pg-bin.ts";

export { DevNode, type MakeDataDir, type PgConf, type StopMode } from "./node.ts";

export type StandbyKind = "sync" | "async";

export interface DevClusterOptions {
  /** Parent of the cluster's temp dir (default: the OS temp dir). */
  parentDir?: string;
  /** Standbys after the primary, in order (default: one sync, one async). */
  standbys?: StandbyKind[];
  /** TCP ports, primary first (default: free ones). */
  ports?: number[];
  /** Physical replication slots, one per standby (default off: wal_keep_size covers short outages). */
  slots?: boolean;
  /** Extra postgresql.conf settings for every node (values verbatim). */
  conf?: PgConf;
  /**
   * Where synchronous_standby_names naming the sync standbys goes: "primary" (set on the primary
   * once they stream) or "every-node" (in every node's postgresql.conf from the start, so the
   * standbys are cloned with it: the layout pg_basebackup gives from a typical primary). Default "primary".
   */
  syncNames?: "primary" | "every-node";
  /**
   * How the primary's empty data directory is made (default: initdb). The tests pass a copy of a
   * prepared one; every cluster made that way shares its system identifier.
   */
  makeDataDir?: MakeDataDir;
  /** Progress lines ("initdb", "pg_basebackup node2"...). */
  onProgress?: (line: string) => void;
}

/** Settings every node gets: fast and disposable, but with complete WAL so standbys, promotion and pg_rewind work. */
const BASE_CONF: PgConf = {
  listen_addresses: "'127.0.0.1'",
  fsync: "off",
  wal_level: "replica",
  hot_standby: "on",
  hot_standby_feedback: "on",
  max_wal_senders: "10",
  max_replication_slots: "10",
  wal_keep_size: "'256MB'",
  wal_log_hints: "on",
  wal_receiver_status_interval: "'1s'",
  max_connections: "100",
  shared_buffers: "'32MB'",
  logging_collector: "off",
};

export interface ReplicationRow {
  application_name: string;
  state: string;
  sync_state: string;
}

export class DevCluster {
  private destroyed = false;
  private janitor: { kill(): void } | null = null;

  private constructor(
    /** Temp directory holding every node (removed by destroy()). */
    readonly baseDir: string,
    /** Primary first, then the standbys in the order asked for. */
    readonly nodes: DevNode[],
    private readonly conf: PgConf,
  ) {}

  /** Build, start and wait until every standby streams (the sync one with sync_state = sync). */
  static async create(o: DevClusterOptions = {}): Promise<DevCluster> {
    const kinds = o.standbys ?? ["sync", "async"];
    const say = o.onProgress ?? (() => {});
    const baseDir = mkdtempSync(join(o.parentDir ?? tmpdir(), "helios-cluster-"));
    giveToPostgres(baseDir, 0o755);
    const ports = o.ports ?? [];
    const used = new Set<number>();
    const port = (i: number): number => {
      let p = ports[i] ?? freePort();
      while (used.has(p)) p = freePort();
      used.add(p);
      return p;
    };
    const nodes = [new DevNode(baseDir, { name: "node1", port: port(0), role: "primary", sync: false })];
    kinds.forEach((k, i) => nodes.push(new DevNode(baseDir, { name: `node${i + 2}`, port: port(i + 1), role: "standby", sync: k === "sync" })));
    const syncList = nodes.filter((n) => n.sync).map((n) => `"${n.name}"`);
    const everyNode = o.syncNames === "every-node" && syncList.length > 0;
    const conf = { ...BASE_CONF, ...(everyNode ? { synchronous_standby_names: `'FIRST ${syncList.length} (${syncList.join(", ")})'` } : {}), ...o.conf };
    const cluster = new DevCluster(baseDir, nodes, conf);
    cluster.janitor = spawnJanitor(process.pid, baseDir, nodes.map((n) => n.dataDir));
    const [primary, ...standbys] = nodes as [DevNode, ...DevNode[]];
    try {
      say(`initdb ${primary.name} (port ${primary.port})`);
      await primary.initdb(conf, o.makeDataDir);
      await primary.start();
      if (o.slots) for (const s of standbys) await primary.psql(`SELECT pg_create_physical_replication_slot('${s.name}')`);
      say(`pg_basebackup ${standbys.map((s) => `${s.name} (port ${s.port}, ${s.sync ? "sync" : "async"})`).join(", ")}`);
      await Promise.all(standbys.map((s) => s.basebackup(primary, conf, o.slots ? s.name : null)));
      await Promise.all(standbys.map((s) => s.start()));
      // Named only now: a commit made before its standby attached would wait for it (every-node: nothing commits before).
      if (!everyNode && syncList.length > 0) {
        primary.setConf({ synchronous_standby_names: `'FIRST ${syncList.length} (${syncList.join(", ")})'` });
        await primary.reload();
      }
      say("waiting for the standbys to stream");
      await cluster.waitStreaming();
    } catch (e) {
      const logs = nodes.map((n) => `--- ${n.name} log ---\n${n.logTail(2000)}`).join("\n");
      await cluster.destroy();
      throw new Error(`${(e as Error).message}\n${logs}`);
    }
    return cluster;
  }

  /** The node that is primary now (by what we did to it: promote() moves the role). */
  primary(): DevNode {
    return this.nodes.find((n) => n.role === "primary") ?? this.nodes[0]!;
  }

  standbys(): DevNode[] {
    return this.nodes.filter((n) => n.role === "standby");
  }

  node(name: string): DevNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node named ${name} (nodes: ${this.nodes.map((x) => x.name).join(", ")})`);
    return n;
  }

  /** The primary's pg_stat_replication. */
  async replication(): Promise<ReplicationRow[]> {
    const out = await this.primary().psql("SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY application_name");
    return out
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const [application_name, state, sync_state] = l.split("|");
        return { application_name: application_name!, state: state!, sync_state: sync_state! };
      });
  }

  /**
   * Wait until every running standby streams from the primary, a sync one with sync_state 'sync'
   * and the others 'async' (or `names` only, when given).
   */
  async waitStreaming(timeoutMs = 30000, names?: string[]): Promise<ReplicationRow[]> {
    const want = names ? names.map((n) => this.node(n)) : this.standbys().filter((s) => s.running());
    const deadline = Date.now() + timeoutMs;
    let rows: ReplicationRow[] = [];
    for (;;) {
      try {
        rows = await this.replication();
        const ok = want.every((s) => rows.some((r) => r.application_name === s.name && r.state === "streaming" && r.sync_state === (s.sync ? "sync" : "async")));
        if (ok) return rows;
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
      if (Date.now() > deadline) throw new Error(`standbys not streaming after ${timeoutMs} ms: ${JSON.stringify(rows)}`);
      await Bun.sleep(50);
    }
  }

  /**
   * Wait until every running standby has replayed the primary's WAL up to now (streaming is not
   * enough: an async standby may not have the database or table just created).
   */
  async waitReplayed(timeoutMs = 30000): Promise<void> {
    const lsn = await this.primary().psql("SELECT pg_current_wal_lsn()");
    const deadline = Date.now() + timeoutMs;
    for (const s of this.standbys().filter((n) => n.running())) {
      for (;;) {
        const r = await s.tryPsql(`SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn`);
        if (r.code === 0 && r.stdout.trim() === "t") break;
        if (Date.now() > deadline) throw new Error(`${s.name} has not replayed up to ${lsn} after ${timeoutMs} ms`);
        await Bun.sleep(20);
      }
    }
  }

  /** Create a database on the primary and wait until the standbys have it too. */
  async createDatabase(name: string): Promise<void> {
    await this.primary().psql(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
    await this.waitReplayed();
  }

  /** Run setup SQL on the primary (e.g. tables) and wait until the standbys have replayed it. */
  async setup(sql: string, db = "postgres"): Promise<void> {
    await this.primary().psql(sql, { db });
    await this.waitReplayed();
  }

  async stop(name: string, mode: StopMode = "fast"): Promise<void> {
    await this.node(name).stop(mode);
  }

  async start(name: string): Promise<void> {
    await this.node(name).start();
  }

  async restart(name: string, mode: StopMode = "fast"): Promise<void> {
    await this.node(name).restart(mode);
  }

  async kill9(name: string): Promise<void> {
    await this.node(name).kill9();
  }

  async promote(name: string): Promise<void> {
    const n = this.node(name);
    for (const other of this.nodes) if (other !== n && other.role === "primary") other.role = "standby";
    await n.promote();
  }

  /** Settings every node was built with (for a node rebuilt later). */
  settings(): PgConf {
    return { ...this.conf };
  }

  /** Stop every server at once and remove the directory. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all(this.nodes.map((n) => n.destroy().catch(() => {})));
    rmSync(this.baseDir, { recursive: true, force: true });
    this.janitor?.kill();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}

/**
 * A detached shell that outlives us: once `ownerPid` is gone (killed, crashed, or a test runner
 * that runs no exit hooks), it stops every server and removes the directory. destroy() ends it.
 * Backgrounded by a non-interactive shell, it also ignores the terminal's Ctrl-C.
 */
function spawnJanitor(ownerPid: number, baseDir: string, dataDirs: string[]): { kill(): void } {
  const stops = dataDirs
    .map((d) => `if [ -f ${shQuote(join(d, "postmaster.pid"))} ]; then ${pgCommand("pg_ctl", ["stop", "-D", d, "-m", "immediate", "-w"]).map(shQuote).join(" ")}; fi`)
    .join("; ");
  const body = `while kill -0 ${ownerPid} 2>/dev/null; do sleep 1; done; ${stops}; rm -rf ${shQuote(baseDir)}`;
  const r = Bun.spawnSync(["sh", "-c", `(${body}) </dev/null >/dev/null 2>&1 & echo $!`], { stdout: "pipe", stderr: "ignore" });
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
