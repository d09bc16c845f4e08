// Test fixture: a primary + sync standby + async standby cluster (src/devcluster) per test file, with helpers for proxy configs.

import { afterAll, beforeAll } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import pg from "pg";
import { DevCluster, type DevClusterOptions, type DevNode, type StopMode } from "../../src/devcluster/cluster.ts";
import type { PsqlOptions } from "../../src/devcluster/node.ts";
import { pgBinDir } from "../../src/devcluster/pg-bin.ts";
import { copyTemplate } from "./pg-template.ts";
import { configText, freePort, startProxyWithConfig, waitForPort, writeConfig, type RunningProxy } from "./proxy.ts";

export type NodeRef = string | { name: string };

export interface ClusterNode {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** Current role (a promoted standby reports primary). */
  readonly role: "primary" | "standby";
  readonly sync: boolean;
  readonly dataDir: string;
}

/**
 * Where the HA tests put synchronous_standby_names: "every-node" (default: in every node's
 * postgresql.conf before the standbys are cloned, the common production layout) or "primary"
 * (set on the primary after cloning). HELIOS_SYNC_LAYOUT=primary runs them on the latter.
 */
export const SYNC_LAYOUT: "primary" | "every-node" = process.env.HELIOS_SYNC_LAYOUT === "primary" ? "primary" : "every-node";

export interface PgClusterOptions extends DevClusterOptions {
  /** Databases created on the primary once the standbys stream (and replayed by them before the tests start). */
  databases?: string[];
  /**
   * Run initdb for the primary instead of copying the prepared data directory (pg-template.ts):
   * a cluster with a system identifier of its own, not shared with the other test clusters.
   */
  freshInitdb?: boolean;
}

export interface NodesTomlOptions {
  /** weight per node name (default 1). */
  weights?: Record<string, number>;
  /** Override a node's port in the config (e.g. to point it elsewhere). */
  ports?: Record<string, number>;
  /** Leave these nodes out. */
  omit?: string[];
}

export interface PgCluster {
  /** Primary first, then node2 (sync standby) and node3 (async standby). */
  readonly nodes: readonly ClusterNode[];
  readonly baseDir: string;
  /** The node that is primary now. */
  primary(): ClusterNode;
  standbys(): ClusterNode[];
  node(ref: NodeRef): ClusterNode;
  /** Run SQL as the superuser over the node's unix socket; `psql -At` output, trimmed. */
  psql(ref: NodeRef, sql: string, opts?: PsqlOptions): Promise<string>;
  stopNode(ref: NodeRef, mode?: StopMode): Promise<void>;
  startNode(ref: NodeRef): Promise<void>;
  restartNode(ref: NodeRef, mode?: StopMode): Promise<void>;
  kill9(ref: NodeRef): Promise<void>;
  promote(ref: NodeRef): Promise<void>;
  running(ref: NodeRef): boolean;
  /** Wait until the running standbys stream from the primary (sync one with sync_state sync). */
  waitStreaming(timeoutMs?: number): Promise<void>;
  /** Wait until the running standbys have replayed everything the primary has written so far. */
  waitReplayed(timeoutMs?: number): Promise<void>;
  /** Run SQL on the primary and wait until the standbys have replayed it (tables for a test). */
  setup(sql: string, db?: string): Promise<void>;
  /** `[[nodes]]` entries (name, host, port, role, sync, weight) for a proxy config. */
  nodesToml(o?: NodesTomlOptions): string;
  /** The underlying product-code cluster. */
  readonly dev: DevCluster;
  destroy(): Promise<void>;
}

const refName = (ref: NodeRef): string => (typeof ref === "string" ? ref : ref.name);

function view(n: DevNode): ClusterNode {
  return {
    get name() {
      return n.name;
    },
    get host() {
      return n.host;
    },
    get port() {
      return n.port;
    },
    get role() {
      return n.role;
    },
    get sync() {
      return n.sync;
    },
    get dataDir() {
      return n.dataDir;
    },
  };
}

/** Build and start a cluster; databases are created once it streams. */
export async function startPgCluster(o: PgClusterOptions = {}): Promise<PgCluster> {
  const dev = await DevCluster.create({ makeDataDir: o.freshInitdb ? undefined : copyTemplate(pgBinDir()), ...o });
  try {
    for (const db of o.databases ?? []) await dev.createDatabase(db);
  } catch (e) {
    await dev.destroy();
    throw e;
  }
  const views = dev.nodes.map(view);
  const byName = (ref: NodeRef) => dev.node(refName(ref));
  return {
    nodes: views,
    baseDir: dev.baseDir,
    dev,
    primary: () => views.find((v) => v.role === "primary") ?? views[0]!,
    standbys: () => views.filter((v) => v.role === "standby"),
    node: (ref) => {
      const v = views.find((x) => x.name === refName(ref));
      if (!v) throw new Error(`no node ${refName(ref)}`);
      return v;
    },
    psql: (ref, sql, opts) => byName(ref).psql(sql, opts),
    stopNode: (ref, mode) => byName(ref).stop(mode),
    startNode: (ref) => byName(ref).start(),
    restartNode: (ref, mode) => byName(ref).restart(mode),
    kill9: (ref) => byName(ref).kill9(),
    promote: (ref) => dev.promote(refName(ref)),
    running: (ref) => byName(ref).running(),
    async waitStreaming(timeoutMs) {
      await dev.waitStreaming(timeoutMs);
    },
    waitReplayed: (timeoutMs) => dev.waitReplayed(timeoutMs),
    setup: (sql, db) => dev.setup(sql, db),
    nodesToml(t = {}) {
      return dev.nodes
        .filter((n) => !t.omit?.includes(n.name))
        .map((n) =>
          [
            "[[nodes]]",
            `name = "${n.name}"`,
            `host = "${n.host}"`,
            `port = ${t.ports?.[n.name] ?? n.port}`,
            `role = "${n.role}"`,
            `sync = ${n.sync}`,
            `weight = ${t.weights?.[n.name] ?? 1}`,
          ].join("\n"),
        )
        .join("\n\n");
    },
    destroy: () => dev.destroy(),
  };
}

/**
 * One cluster for the calling test file: built in beforeAll, destroyed in afterAll. Call the
 * returned function inside tests (and later hooks) to get it.
 */
export function usePgCluster(o: PgClusterOptions = {}): () => PgCluster {
  let cluster: PgCluster | null = null;
  beforeAll(async () => {
    cluster = await startPgCluster(o);
  }, 60_000);
  afterAll(async () => {
    await cluster?.destroy();
  }, 60_000);
  return () => {
    if (!cluster) throw new Error("the cluster is not started (usePgCluster must be called at the top of the file)");
    return cluster;
  };
}

// ---- the proxy in front of a cluster ---------------------------------------------------------

export interface ClusterProxyOptions extends NodesTomlOptions {
  strategy?: "round_robin" | "least_connections" | "latency";
  /** [load_balancer] read_write_split (default true). */
  split?: boolean;
  mode?: "session" | "transaction" | "statement";
  maxConnections?: number;
  minConnections?: number;
  /** More [pool] keys, as TOML lines (e.g. "wait_timeout_secs = 5"). */
  pool?: string;
  /** [health]: tests default to 0.5 s probes, down after 2 misses, up after 1 success, 1 s timeout. */
  health?: { interval?: number; timeout?: number; failureThreshold?: number; recoveryThreshold?: number };
  /** More TOML sections (not [health], [load_balancer] or [[nodes]]). */
  toml?: string;
  env?: Record<string, string>;
}

/** The whole config text of a proxy in front of `c` listening on `port` (admin API on `adminPort`). */
export function clusterProxyConfig(c: PgCluster, port: number, adminPort: number, o: ClusterProxyOptions = {}): string {
  const h = o.health ?? {};
  return configText(port, adminPort, {
    mode: o.mode ?? "transaction",
    maxConnections: o.maxConnections ?? 10,
    minConnections: o.minConnections ?? 0,
    poolExtra: o.pool,
    nodes: [],
    toml: [
      "[health]",
      `check_interval_secs = ${h.interval ?? 0.5}`,
      `check_timeout_secs = ${h.timeout ?? 1}`,
      `failure_threshold = ${h.failureThreshold ?? 2}`,
      `recovery_threshold = ${h.recoveryThreshold ?? 1}`,
      "[load_balancer]",
      `strategy = "${o.strategy ?? "round_robin"}"`,
      `read_write_split = ${o.split ?? true}`,
      o.toml ?? "",
      c.nodesToml(o),
      "",
    ].join("\n"),
  });
}

/** Start the proxy process in front of the cluster and wait for its client and admin ports. */
export async function startClusterProxy(c: PgCluster, o: ClusterProxyOptions = {}): Promise<RunningProxy> {
  const port = freePort();
  const adminPort = freePort();
  const p = await startProxyWithConfig(writeConfig(clusterProxyConfig(c, port, adminPort, o)), port, adminPort, o.env);
  await waitForPort(adminPort);
  return p;
}

export interface AdminReply {
  status: number;
  body: any;
}

/** Call the proxy's admin HTTP API; the body parsed as JSON when it is JSON. */
export async function adminApi(p: RunningProxy, method: "GET" | "POST", path: string, headers: Record<string, string> = {}, body?: unknown): Promise<AdminReply> {
  const init = body === undefined ? { method, headers } : { method, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) };
  const res = await fetch(`http://127.0.0.1:${p.adminPort}${path}`, init);
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

/** A node's state as GET /nodes reports it: up, down or draining. */
export async function nodeState(p: RunningProxy, name: string): Promise<string> {
  const r = await adminApi(p, "GET", `/nodes/${name}`);
  if (r.status !== 200) throw new Error(`GET /nodes/${name}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.state as string;
}

/** Poll GET /nodes/{name} until it reports `state`; the milliseconds that took. Throws after `limitMs`. */
export async function waitNodeState(p: RunningProxy, name: string, state: string, limitMs: number): Promise<number> {
  const t0 = performance.now();
  let last = "";
  while (performance.now() - t0 < limitMs) {
    last = await nodeState(p, name);
    if (last === state) return performance.now() - t0;
    await Bun.sleep(20);
  }
  throw new Error(`node ${name} is still ${last}, not ${state}, after ${limitMs} ms\n${p.output().slice(-2000)}`);
}

// ---- load ------------------------------------------------------------------------------------

export interface LoopRead {
  /** performance.now() when the answer came. */
  at: number;
  /** Backend port that answered (inet_server_port()). */
  port: number;
  ms: number;
  /** Which of the loop's clients (0-based). */
  client: number;
}

/**
 * Clients running `sql` (which must return the backend port as its first column, e.g.
 * `SELECT inet_server_port()`) back to back through a proxy; a client whose query fails records
 * the error and is replaced by a new connection.
 */
/** `clients` new connections each running `SELECT inet_server_port()` `reads` times: ports that answered (sorted), count, errors. */
export async function readPorts(port: number, database: string, clients: number, reads: number): Promise<{ ports: number[]; reads: number; errors: string[] }> {
  const ports = new Set<number>();
  const errors: string[] = [];
  let n = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database, connectionTimeoutMillis: 10000, query_timeout: 10000 });
      c.on("error", () => {});
      try {
        await c.connect();
        for (let i = 0; i < reads; i++) {
          ports.add((await c.query("SELECT inet_server_port() AS p")).rows[0].p);
          n++;
        }
      } catch (e) {
        errors.push(`${(e as Error & { code?: string }).code ?? "client"}: ${(e as Error).message}`);
      } finally {
        await c.end().catch(() => {});
      }
    }),
  );
  return { ports: [...ports].sort((a, b) => a - b), reads: n, errors };
}

export class QueryLoop {
  readonly reads: LoopRead[] = [];
  readonly errors: string[] = [];
  private running = true;
  private readonly done: Promise<void>[];

  constructor(
    port: number,
    o: { clients: number; database: string; sql?: string; queryTimeoutMs?: number; pauseMs?: number },
  ) {
    this.done = Array.from({ length: o.clients }, (_, i) => this.worker(i, port, o.database, o.sql ?? "SELECT inet_server_port()", o.queryTimeoutMs ?? 10000, o.pauseMs ?? 2));
  }

  private async worker(client: number, port: number, database: string, sql: string, timeoutMs: number, pauseMs: number): Promise<void> {
    let c: pg.Client | null = null;
    while (this.running) {
      try {
        if (c === null) {
          c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
          c.on("error", () => {});
          await c.connect();
        }
        const t0 = performance.now();
        const r = await c.query({ text: sql, rowMode: "array" });
        this.reads.push({ at: performance.now(), port: Number(r.rows[0][0]), ms: performance.now() - t0, client });
      } catch (e) {
        this.errors.push(`${(e as Error & { code?: string }).code ?? "client"}: ${(e as Error).message}`);
        await c?.end().catch(() => {});
        c = null;
      }
      await Bun.sleep(pauseMs);
    }
    await c?.end().catch(() => {});
  }

  /** Answers per backend port after time `from` (performance.now()). */
  portsSince(from: number): Map<number, number> {
    const m = new Map<number, number>();
    for (const r of this.reads) if (r.at >= from) m.set(r.port, (m.get(r.port) ?? 0) + 1);
    return m;
  }

  /** How many different clients got an answer after time `from`. */
  clientsSince(from: number): number {
    return new Set(this.reads.filter((r) => r.at >= from).map((r) => r.client)).size;
  }

  /** Wait until `port` answers a query issued after now. */
  async waitFor(port: number, limitMs = 5000): Promise<void> {
    const t0 = performance.now();
    while (performance.now() - t0 < limitMs) {
      if ((this.portsSince(t0).get(port) ?? 0) > 0) return;
      await Bun.sleep(20);
    }
    throw new Error(`no answer from port ${port} within ${limitMs} ms (errors: ${this.errors.slice(-3).join("; ")})`);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }
}

/** "received promote request" lines in every node's server log, by node: one per pg_promote() (or promote_command) that promoted it. */
export function promoteRequests(c: PgCluster): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of c.dev.nodes) out[n.name] = existsSync(n.logFile) ? (readFileSync(n.logFile, "utf8").match(/received promote request/g) ?? []).length : 0;
  return out;
}
