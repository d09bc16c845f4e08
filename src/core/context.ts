// Process-wide state shared by listeners and sessions: config, pools, cancel keys (the open sessions are kept by client/registry.ts).

import { AlarmBoard } from "../util/alarms.ts";
import type { ReplayRegistry } from "../cluster/ha/replay-registry.ts";
import type { TapFactory } from "./request-tap.ts";
import { readFileSync } from "node:fs";
import { tickClock } from "../util/clock.ts";
import type { HeliosConfig, NodeEntry, UserEntry } from "../config/types.ts";
import { Pool, movePoolStats, emptyPoolStats, type PoolSettings, type PoolStats } from "../server/pool.ts";
import { LoginError, type ServerCredentials } from "../server/login.ts";
import type { ServerEndpoint } from "../server/connection.ts";
import { Cluster, type ClusterEvent, type NodeView } from "../cluster/cluster.ts";
import type { HealthChecker } from "../cluster/health.ts";
import { makeBalancer, type Balancer, type LoadInfo } from "../router/balancers.ts";
import { routeView, type RouteContext } from "../router/route.ts";
import { QueryClassifier } from "../sql/classify.ts";
import { PoolGroup } from "../server/pool-group.ts";
import { isPaused } from "./pause.ts";
import { SwitchoverBuffer } from "../cluster/switchover-buffer.ts";
import type { FailoverController } from "../cluster/failover.ts";
import type { Fleet } from "../cluster/coordination/fleet.ts";
import type { ModuleRoute, QueryHooks } from "./module-host.ts";
import type { CommitTracker } from "./commit-positions.ts";
import type { ShowResult } from "./hooks.ts";
import type { StartupHook } from "./startup-hooks.ts";
import type { ConsoleOpener } from "./console.ts";
import { QueryShapeCache } from "../sql/fingerprint.ts";

/** pool.stateless_functions as looked up (lower case). */
export function statelessSet(config: HeliosConfig): ReadonlySet<string> {
  return new Set(config.pool.stateless_functions.map((f) => f.toLowerCase()));
}

/** Certificate and key handed to Bun for client-facing TLS. */
export interface TlsMaterial {
  cert: string;
  key: string;
  ca?: string;
  requestCert?: boolean;
  rejectUnauthorized?: boolean;
}

/** What a session needs from its surroundings; one per process. */
export interface CancelTarget {
  cancelKeyMatches(secret: Uint8Array): boolean;
  forwardCancel(): void;
}

export class ProxyContext {
  /** Pools of the proxy's own (auth_query); client pools live in groups. */
  readonly pools = new Map<string, Pool>();
  readonly groups = new Map<string, PoolGroup>();
  cluster: Cluster;
  health: HealthChecker | null = null;
  /** Holds requests for the primary while it changes. */
  readonly buffer: SwitchoverBuffer;
  /** Promotes standbys and moves the primary (set by startProxy). */
  failover: FailoverController | null = null;
  /** The fleet of proxies this one coordinates with ([coordination] backend etcd); null when it decides alone. */
  fleet: Fleet | null = null;
  /** Hooks of the started feature modules; null when none looks at queries (the path then decodes nothing). */
  hooks: QueryHooks | null = null;
  /** The modules' onStartup hooks, in module order; null when none has one (logins then skip them). */
  startupHooks: readonly StartupHook[] | null = null;
  /** Hands a cluster event to the modules' onServerEvent hooks; null when none has one. */
  serverEvent: ((e: ClusterEvent) => void) | null = null;
  /** Commit positions for read-your-writes; null unless a module asked (then writes are followed by an LSN read). */
  commits: CommitTracker | null = null;
  /** Transaction journal and replay across failover (ha-tr); null when off. */
  replay: ReplayRegistry | null = null;
  /** Makes each session's request tap (ha-tr); null when no module taps requests. */
  tap: TapFactory | null = null;
  /** Answers admin console logins (installed by startProxy: the client layer never names the admin one). */
  openConsole: ConsoleOpener | null = null;
  /** Admin HTTP routes ("GET /queries") and console SHOWs added by modules. */
  moduleRoutes = new Map<string, ModuleRoute>();
  moduleShows = new Map<string, () => ShowResult>();
  /** Prometheus text feature modules add to GET /metrics. */
  moduleMetrics: (() => string)[] = [];
  /** Normalised text, fingerprint and kind per query text, shared by modules (made on first use). */
  private shapeCache: QueryShapeCache | null = null;

  get shapes(): QueryShapeCache {
    return (this.shapeCache ??= new QueryShapeCache(10_000));
  }
  balancer: Balancer;
  classifier: QueryClassifier;
  /** Leased servers per node, for least-connections balancing. */
  readonly load: LoadInfo = {
    active: (node: string) => {
      let n = 0;
      for (const g of this.groups.values()) n += g.pools.get(node)?.active ?? 0;
      return n;
    },
    latencyMs: (node: string) => this.requestLatency.get(node) ?? null,
  };
  /** Moving average of sampled request latency per node, ms (kept outside the immutable node views). */
  private readonly requestLatency = new Map<string, number>();
  /** Client-facing TLS, loaded at start and on reload; null when [tls] mode is disable. */
  tls: TlsMaterial | null = null;
  /** Proxy-issued BackendKeyData pid -> session. */
  readonly cancelTargets = new Map<number, CancelTarget>();
  clientCount = 0;
  /** Logged-in clients per database and per user (for limits). */
  readonly perDatabase = new Map<string, number>();
  readonly perUser = new Map<string, number>();
  shuttingDown = false;
  /** Re-read and apply the config file (validated first; the old config stays on error). */
  reload: () => Promise<{ ok: boolean; error?: string }> = async () => ({ ok: false, error: "no config file to reload" });
  /** Secret for stable mock SCRAM salts of unknown users. */
  readonly mockSecret = crypto.getRandomValues(new Uint8Array(32));
  readonly stats = { loginsOk: 0, loginsFailed: 0, clientsRefused: 0 };
  /** Alarms raised by any part of the proxy (the cluster's own are derived on demand by admin/alarms-view.ts). */
  readonly alarms = new AlarmBoard();

  constructor(public config: HeliosConfig) {
    this.cluster = new Cluster(config.nodes);
    this.buffer = new SwitchoverBuffer(bufferSettings(config));
    this.balancer = makeBalancer(config.load_balancer.strategy);
    this.classifier = new QueryClassifier(config.load_balancer.read_safe_functions);
    this.statelessFunctions = statelessSet(config);
  }

  /** pool.stateless_functions, lower case: calls of these leave no state the proxy must reset. */
  statelessFunctions: ReadonlySet<string>;

  /** True when reads may leave the primary: split on and a standby configured. */
  get splitting(): boolean {
    return this.config.load_balancer.read_write_split && this.config.nodes.length > 1;
  }

  userEntry(name: string): UserEntry | undefined {
    return this.config.users.find((u) => u.name === name);
  }

  poolSettings(user?: UserEntry): PoolSettings {
    const p = this.config.pool;
    return {
      minConnections: p.min_connections,
      maxConnections: user && user.max_connections > 0 ? Math.min(user.max_connections, p.max_connections) : p.max_connections,
      idleTimeoutMs: p.idle_timeout_secs * 1000,
      lifetimeMs: p.server_lifetime_secs * 1000,
      connectTimeoutMs: p.connect_timeout_secs * 1000,
      waitTimeoutMs: p.wait_timeout_secs * 1000,
    };
  }

  /** How to reach a node, with the configured server-facing TLS. */
  endpoint(node: NodeView | NodeEntry): ServerEndpoint {
    const tls = this.config.tls;
    return {
      host: node.host,
      port: node.port,
      name: node.name,
      sslmode: tls.server_sslmode,
      ca: tls.server_ca_file ? readFileSync(tls.server_ca_file, "utf8") : undefined,
    };
  }

  primaryEndpoint(): ServerEndpoint {
    return this.endpoint(this.cluster.primary());
  }

  /**
   * Unlisted groups with logins in progress, and how many: concurrent first logins of a (database,
   * user, tenant) share one, so together they open no more servers than its pool allows.
   */
  private readonly unlisted = new Map<string, { group: PoolGroup; logins: number }>();

  /**
   * The pools of (database, user, tenant) a login is checked against: the listed group, or an
   * unlisted one nobody sees (no /pools row, no metrics, no upkeep) until `listGroup` after a login
   * succeeded, shared by the logins in progress. A login given one ends with `listGroup` or
   * `dropUnlisted`; refused logins leave nothing behind.
   */
  loginGroup(database: string, user: string, tenant = ""): PoolGroup {
    const key = groupKey(database, user, tenant);
    const g = this.groups.get(key);
    if (g !== undefined) return g;
    let u = this.unlisted.get(key);
    if (u === undefined) {
      const shared = { creds: { user, database, password: serverPassword(this.userEntry(user)) }, serverParams: null, passthrough: "unknown" as const, firstLogin: null, trustProbe: null };
      this.unlisted.set(key, (u = { group: new PoolGroup(database, user, tenant, shared), logins: 0 }));
    }
    u.logins++;
    return u.group;
  }

  /** A login with `g` succeeded: list it; when another login listed one meanwhile, that one is used (with what this login learned). */
  listGroup(g: PoolGroup): PoolGroup {
    const key = groupKey(g.database, g.user, g.tenant);
    const listed = this.groups.get(key);
    if (listed === g) return g;
    if (listed === undefined) {
      this.groups.set(key, g);
      // Its other logins in progress find it listed from now on.
      if (this.unlisted.get(key)?.group === g) this.unlisted.delete(key);
      return g;
    }
    listed.shared.creds = g.shared.creds;
    if (g.shared.passthrough !== "unknown") listed.shared.passthrough = g.shared.passthrough;
    this.dropUnlisted(g);
    return listed;
  }

  /**
   * A login with unlisted `g` is over without listing it (refused, a console login, or it joined a
   * group listed meanwhile): the last such login closes what the group opened.
   */
  dropUnlisted(g: PoolGroup): void {
    const key = groupKey(g.database, g.user, g.tenant);
    if (this.groups.get(key) === g) return;
    const u = this.unlisted.get(key);
    if (u?.group === g) {
      if (--u.logins > 0) return;
      this.unlisted.delete(key);
    }
    for (const p of g.pools.values()) p.closeAll("login not completed");
  }

  /** Totals of reclaimed pools per (node, database), so counters by node and database never go back. */
  readonly retiredStats = new Map<string, { node: string; database: string; stats: PoolStats }>();

  /** Statistics by (node, database): every client pool, and what reclaimed pools counted. */
  *nodeStats(): IterableIterator<{ node: string; database: string; stats: PoolStats }> {
    yield* this.clientPools();
    yield* this.retiredStats.values();
  }

  /**
   * Groups whose pools have had no server, no client and no waiter for a while (idle_timeout_secs,
   * 300 s when that is 0) are dropped: /pools, SHOW POOLS and per-pool metric series do not grow
   * with every (database, user) ever seen. The next login makes the group again.
   */
  private reclaimIdleGroups(now: number): void {
    const after = (this.config.pool.idle_timeout_secs || 300) * 1000;
    for (const [key, g] of this.groups) {
      let empty = true;
      for (const p of g.pools.values()) if (!p.empty) empty = false;
      if (!empty) {
        g.emptySince = 0;
        continue;
      }
      if (g.emptySince === 0) g.emptySince = now;
      if (now - g.emptySince < after) continue;
      this.groups.delete(key);
      for (const p of g.pools.values()) {
        const k = `${p.node}\u0000${p.database}`;
        let into = this.retiredStats.get(k);
        if (into === undefined) this.retiredStats.set(k, (into = { node: p.node, database: p.database, stats: emptyPoolStats() }));
        movePoolStats(into.stats, p.stats);
        p.closeAll("pool reclaimed");
      }
    }
  }

  /** The pool of a group on one node; made paused while its database or the proxy is (core/pause.ts). */
  nodePool(g: PoolGroup, node: NodeView): Pool {
    let p = g.pools.get(node.name);
    if (p === undefined) {
      p = new Pool(g.database, g.user, this.endpoint(node), g.shared, this.poolSettings(this.userEntry(g.user)));
      p.onBackendFailure = (reason) => this.health?.reportFailure(node.name, reason);
      // PostgreSQL 14+ reports in_hot_standby at login: a "primary" in recovery must not take writes.
      p.loginCheck = (params) =>
        params.get("in_hot_standby") === "on" && this.cluster.primary().name === node.name
          ? new LoginError(`node ${node.name} is in recovery: not writable as the primary`, "57P03")
          : null;
      p.suspended = node.health !== "up" || node.drained;
      p.onRequestTimed = (ms) => {
        const cur = this.requestLatency.get(node.name);
        this.requestLatency.set(node.name, cur === undefined ? ms : cur + 0.2 * (ms - cur));
      };
      if (isPaused(this, g.database)) p.pause();
      g.pools.set(node.name, p);
    }
    return p;
  }

  /** Every pool, for upkeep, admin output and reloads. */
  *allPools(): IterableIterator<Pool> {
    yield* this.clientPools();
    yield* this.pools.values();
  }

  /** Pools serving clients (not the proxy's own auth_query pools), optionally of one database. */
  *clientPools(database: string | null = null): IterableIterator<Pool> {
    for (const g of this.groups.values()) if (database === null || g.database === database) yield* g.pools.values();
  }

  /** Inputs of the routing decision, as of now (rebuilt only when the cluster or config changed). */
  routeContext(): RouteContext {
    const c = this.routeCache;
    if (c !== null && c.cluster === this.cluster && c.version === this.cluster.version && c.config === this.config && c.ctx.balancer === this.balancer) return c.ctx;
    const ctx: RouteContext = { ...routeView(this.cluster.snapshot()), readWriteSplit: this.config.load_balancer.read_write_split, balancer: this.balancer, load: this.load };
    this.routeCache = { cluster: this.cluster, version: this.cluster.version, config: this.config, ctx };
    return ctx;
  }

  private routeCache: { cluster: Cluster; version: number; config: HeliosConfig; ctx: RouteContext } | null = null;

  /** Pool the auth_query runs on: auth_user in auth_database ("postgres" when unset); at most 2 servers. */
  authQueryPool(): Pool {
    const a = this.config.auth;
    const database = a.auth_database || "postgres";
    const key = `\u0001auth\u0000${database}\u0000${a.auth_user}`;
    let p = this.pools.get(key);
    if (p === undefined) {
      const creds: ServerCredentials = { user: a.auth_user, database, password: a.auth_password || null };
      p = new Pool(database, a.auth_user, this.primaryEndpoint(), { creds, serverParams: null, passthrough: "unknown", firstLogin: null, trustProbe: null }, {
        ...this.poolSettings(),
        minConnections: 0,
        maxConnections: 2,
      });
      this.pools.set(key, p);
    }
    return p;
  }

  adjust(map: Map<string, number>, key: string, delta: number): number {
    const n = (map.get(key) ?? 0) + delta;
    if (n <= 0) map.delete(key);
    else map.set(key, n);
    return n;
  }

  /** Periodic upkeep of every pool and of the switchover buffer. */
  tick(): void {
    const now = tickClock();
    for (const p of this.allPools()) p.tick(now);
    this.reclaimIdleGroups(now);
    this.buffer.expire();
  }
}

function groupKey(database: string, user: string, tenant: string): string {
  return `${database}\u0000${user}\u0000${tenant}`;
}

/** The switchover buffer's limits from [failover]. */
export function bufferSettings(cfg: HeliosConfig): { timeoutMs: number; maxClients: number } {
  return { timeoutMs: cfg.failover.buffer_timeout_secs * 1000, maxClients: cfg.failover.buffer_max_clients };
}

/** The password the proxy uses towards PostgreSQL for a configured user (null: none known). */
export function serverPassword(u: UserEntry | undefined): string | null {
  if (!u) return null;
  if (u.server_password) return u.server_password;
  if (u.password && !u.password.startsWith("SCRAM-SHA-256$") && !/^md5[0-9a-f]{32}$/.test(u.password)) return u.password;
  return null;
}
