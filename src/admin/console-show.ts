// Admin console SHOW commands: pools, clients, servers, stats, databases, users, nodes, config, lists, state.

import type { ClientSession } from "../client/session.ts";
import { ClientState } from "../client/client-state.ts";
import { clientsOf } from "../client/registry.ts";
import { configRows } from "../config/load.ts";
import type { ProxyContext } from "../core/context.ts";
import { ServerState, type ServerConnection } from "../server/connection.ts";
import type { Pool } from "../server/pool.ts";
import { anythingPaused, isPaused } from "../core/pause.ts";
import { columns, type Cell, type ResultSet } from "./console-wire.ts";

export const VERSION = (require("../../package.json") as { version: string }).version;
export const VERSION_STRING = `HeliosProxy ${VERSION}`;

/** Every pool in a stable order: database, user, node. */
function sortedPools(ctx: ProxyContext): Pool[] {
  return [...ctx.allPools()].sort(
    (a, b) => cmp(a.database, b.database) || cmp(a.user, b.user) || cmp(a.node, b.node),
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Logged-in sessions (clients of a pool, or of the console). */
function loggedIn(ctx: ProxyContext): ClientSession[] {
  return [...clientsOf(ctx)].filter((s) => s.loggedIn);
}

/** Wall-clock text for a performance.now() instant. */
function timeText(t: number, offset: number): string {
  return new Date(t + offset).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** application_name as the client set it (startup parameter or SET), "" when unknown. */
function applicationName(s: ClientSession | null): string {
  const key = s?.sessionState?.key ?? "";
  const m = /(?:^|\u0001)application_name=([^\u0001\u0002]*)\u0001/.exec(key);
  return m ? m[1]! : "";
}

function isClient(l: unknown): l is ClientSession {
  return typeof l === "object" && l !== null && typeof (l as { pid?: unknown }).pid === "number" && "forwarder" in l;
}

const clientPtr = (s: ClientSession) => `c${s.pid}`;
const serverPtr = (s: ServerConnection) => `s${s.id}`;

// ---- SHOW POOLS -------------------------------------------------------------------------

const POOL_COLUMNS = columns(`database user cl_active:i cl_waiting:i cl_active_cancel_req:i cl_waiting_cancel_req:i
  sv_active:i sv_active_cancel:i sv_being_canceled:i sv_idle:i sv_used:i sv_tested:i sv_login:i
  maxwait:i maxwait_us:i pool_mode node`);

export function showPools(ctx: ProxyContext): ResultSet {
  const now = performance.now();
  const active = new Map<Pool, number>();
  const oldestWait = new Map<Pool, number>();
  for (const s of loggedIn(ctx)) {
    if (s.pool === null) continue;
    if (!s.waiting) {
      const home = (s.server?.owner as Pool | undefined) ?? s.pool;
      active.set(home, (active.get(home) ?? 0) + 1);
    } else if (s.group !== null) {
      // The pool a client waits in is not visible; charge its wait to every pool of its group with waiters.
      for (const p of s.group.pools.values()) {
        if (p.waiting > 0) oldestWait.set(p, Math.max(oldestWait.get(p) ?? 0, now - s.waitingSince));
      }
    }
  }
  const mode = ctx.config.pool.mode;
  const rows = sortedPools(ctx).map((p): Cell[] => {
    const c = p.counts();
    const waitUs = Math.max(0, Math.round((oldestWait.get(p) ?? 0) * 1000));
    return [p.database, p.user, active.get(p) ?? 0, c.waiting, 0, 0, c.active, 0, 0, c.idle, 0, 0, c.connecting,
      Math.floor(waitUs / 1e6), waitUs % 1e6, mode, p.node];
  });
  return { columns: POOL_COLUMNS, rows };
}

// ---- SHOW CLIENTS / SERVERS ---------------------------------------------------------------

const SOCKET_COLUMNS = `type user database replication state addr port:i local_addr local_port:i connect_time request_time
  wait:i wait_us:i close_needed:i ptr link remote_pid:i tls application_name prepared_statements:i id:i`;
const CLIENT_COLUMNS = columns(SOCKET_COLUMNS);
const SERVER_COLUMNS = columns(`${SOCKET_COLUMNS} node`);

function sockAddr(s: { remoteAddress?: string; remotePort?: number; localAddress?: string; localPort?: number } | null): [Cell, Cell, Cell, Cell] {
  try {
    return [s?.remoteAddress ?? null, s?.remotePort ?? null, s?.localAddress ?? null, s?.localPort ?? null];
  } catch {
    return [null, null, null, null];
  }
}

export function showClients(ctx: ProxyContext): ResultSet {
  const now = performance.now();
  const offset = Date.now() - now;
  const rows = loggedIn(ctx)
    .sort((a, b) => a.pid - b.pid)
    .map((s): Cell[] => {
      const state = CLIENT_STATE[s.state] ?? "idle";
      const waitUs = s.waiting ? Math.max(0, Math.round((now - s.waitingSince) * 1000)) : 0;
      const [addr, port, laddr, lport] = sockAddr(s.sock as never);
      return ["C", s.user, s.database, "none", state, addr, port, laddr, lport, timeText(s.connectedAt, offset), timeText(s.lastActivity, offset),
        Math.floor(waitUs / 1e6), waitUs % 1e6, 0, clientPtr(s), s.server ? serverPtr(s.server) : null, 0, "",
        applicationName(s), s.forwarder.statements.size, s.pid];
    });
  return { columns: CLIENT_COLUMNS, rows };
}

/** SHOW CLIENTS' state for each logged-in session state, in PgBouncer's words (a console session is idle). */
const CLIENT_STATE: Record<number, string> = {
  [ClientState.Idle]: "idle",
  [ClientState.Leased]: "active",
  [ClientState.WaitingPool]: "waiting",
  [ClientState.WaitingReplay]: "waiting",
  [ClientState.Held]: "waiting",
  [ClientState.Recovering]: "waiting",
  [ClientState.Console]: "idle",
};

const SERVER_STATE: Record<number, string> = {
  [ServerState.Connecting]: "new",
  [ServerState.SslWait]: "new",
  [ServerState.Login]: "new",
  [ServerState.Idle]: "idle",
  [ServerState.Active]: "active",
};

export function showServers(ctx: ProxyContext): ResultSet {
  const offset = Date.now() - performance.now();
  const rows: Cell[][] = [];
  for (const p of sortedPools(ctx)) {
    for (const s of [...p.all].sort((a, b) => a.id - b.id)) {
      const state = SERVER_STATE[s.state];
      if (state === undefined) continue;
      const lessee = isClient(s.lessee) ? s.lessee : null;
      const [, , laddr, lport] = sockAddr(s.sock as never);
      rows.push(["S", p.user, p.database, "none", state, s.endpoint.host, s.endpoint.port, laddr, lport,
        timeText(s.createdAt, offset), timeText(s.lastUsedAt, offset), 0, 0, s.generation !== p.generation ? 1 : 0,
        serverPtr(s), lessee ? clientPtr(lessee) : null, s.pid, "", applicationName(lessee), s.prepared.size, s.id, p.node]);
    }
  }
  return { columns: SERVER_COLUMNS, rows };
}

// ---- SHOW STATS and friends -----------------------------------------------------------

/** PgBouncer's SHOW STATS counters, in its column order (times in microseconds). */
const TOTAL_KEYS = ["assignments", "xacts", "queries", "received", "sent", "xactUs", "queryUs", "waitUs", "clientParses", "serverParses", "binds"] as const;
export type TotalKey = (typeof TOTAL_KEYS)[number];
type Totals = Record<TotalKey, number>;

interface Snapshot {
  at: number;
  byDb: Map<string, Totals>;
}

/** Averages cover at least this much time, like PgBouncer's stats_period. */
const STATS_PERIOD_MS = 60_000;
const history = new WeakMap<ProxyContext, Snapshot[]>();

function zero(): Totals {
  return Object.fromEntries(TOTAL_KEYS.map((k) => [k, 0])) as Totals;
}

/** Counters of the client pools by database (the proxy's own auth_query pools are not client traffic, and come and go). */
export function statsByDatabase(ctx: ProxyContext): Map<string, Totals> {
  return collect(ctx).byDb;
}

function collect(ctx: ProxyContext): Snapshot {
  const byDb = new Map<string, Totals>();
  for (const p of ctx.clientPools()) {
    let t = byDb.get(p.database);
    if (t === undefined) byDb.set(p.database, (t = zero()));
    const st = p.stats;
    // A lease is a transaction in transaction mode; the pool counts leases.
    t.assignments += st.xactCount;
    t.xacts += st.xactCount;
    t.queries += st.queryCount;
    t.received += st.bytesIn;
    t.sent += st.bytesOut;
    t.xactUs += st.xactTimeUs;
    t.queryUs += st.queryTimeUs;
    t.waitUs += st.totalWaitUs;
    t.clientParses += st.clientParseCount;
    t.serverParses += st.serverParseCount;
    t.binds += st.bindCount;
  }
  for (const t of byDb.values()) for (const k of ["xactUs", "queryUs", "waitUs"] as const) t[k] = Math.round(t[k]);
  return { at: performance.now(), byDb };
}

/**
 * Record the counters now and return the snapshot averages are taken against: the newest one at
 * least STATS_PERIOD_MS old, else the oldest kept. Snapshots are taken when stats are read.
 */
export function sampleStats(ctx: ProxyContext): { now: Snapshot; base: Snapshot } {
  const cur = collect(ctx);
  let list = history.get(ctx);
  if (list === undefined) history.set(ctx, (list = []));
  let keepFrom = 0;
  for (let i = 0; i < list.length; i++) if (cur.at - list[i]!.at >= STATS_PERIOD_MS) keepFrom = i;
  if (keepFrom > 0) list.splice(0, keepFrom);
  const base = list[0] ?? cur;
  if (list.length === 0 || cur.at - list[list.length - 1]!.at >= 1000) list.push(cur);
  return { now: cur, base };
}

/**
 * As PgBouncer: counts and bytes per second; xact_time, query_time per transaction and query,
 * wait_time per server assignment (microseconds).
 */
function averages(cur: Totals, old: Totals | undefined, ms: number): Totals {
  const o = old ?? zero();
  const d = (k: TotalKey) => Math.max(0, cur[k] - o[k]);
  const per = (k: TotalKey, n: TotalKey) => (d(n) > 0 ? Math.round(d(k) / d(n)) : 0);
  const out = zero();
  for (const k of TOTAL_KEYS) out[k] = ms > 0 ? Math.round((d(k) * 1000) / ms) : 0;
  out.xactUs = per("xactUs", "xacts");
  out.queryUs = per("queryUs", "queries");
  out.waitUs = per("waitUs", "assignments");
  return out;
}

/** Column stems in TOTAL_KEYS order, as PgBouncer names them in SHOW STATS_TOTALS. */
const STEMS = ["server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time",
  "client_parse_count", "server_parse_count", "bind_count"];
/** SHOW STATS and SHOW TOTALS say received/sent (total_) and recv/sent (avg_) where the parts say bytes_received/bytes_sent. */
const statsName = (prefix: "total" | "avg", stem: string) =>
  stem === "bytes_received" ? (prefix === "total" ? "total_received" : "avg_recv") : stem === "bytes_sent" ? `${prefix}_sent` : `${prefix}_${stem}`;
const STATS_COLUMNS = columns(`database ${["total", "avg"].flatMap((p) => STEMS.map((st) => `${statsName(p as "total" | "avg", st)}:i`)).join(" ")}`);
const STATS_PART_COLUMNS = columns(`database ${STEMS.map((st) => `${st}:i`).join(" ")}`);
const NAME_VALUE_COLUMNS = columns("name value:i");

function statsRows(ctx: ProxyContext, which: "all" | "totals" | "averages"): Cell[][] {
  const { now, base } = sampleStats(ctx);
  const ms = now.at - base.at;
  return [...now.byDb.keys()].sort(cmp).map((db): Cell[] => {
    const t = now.byDb.get(db)!;
    const a = averages(t, base.byDb.get(db), ms);
    const totals = TOTAL_KEYS.map((k) => t[k]);
    const avgs = TOTAL_KEYS.map((k) => a[k]);
    return [db, ...(which === "all" ? [...totals, ...avgs] : which === "totals" ? totals : avgs)];
  });
}

export const showStats = (ctx: ProxyContext): ResultSet => ({ columns: STATS_COLUMNS, rows: statsRows(ctx, "all") });
export const showStatsTotals = (ctx: ProxyContext): ResultSet => ({ columns: STATS_PART_COLUMNS, rows: statsRows(ctx, "totals") });
export const showStatsAverages = (ctx: ProxyContext): ResultSet => ({ columns: STATS_PART_COLUMNS, rows: statsRows(ctx, "averages") });

/** SHOW TOTALS: SHOW STATS summed over databases, one name/value row each. */
export function showTotals(ctx: ProxyContext): ResultSet {
  const { now, base } = sampleStats(ctx);
  const sum = (s: Snapshot) => {
    const t = zero();
    for (const x of s.byDb.values()) for (const k of TOTAL_KEYS) t[k] += x[k];
    return t;
  };
  const t = sum(now);
  const a = averages(t, sum(base), now.at - base.at);
  const rows: Cell[][] = [
    ...TOTAL_KEYS.map((k, i) => [statsName("total", STEMS[i]!), t[k]]),
    ...TOTAL_KEYS.map((k, i) => [statsName("avg", STEMS[i]!), a[k]]),
  ];
  return { columns: NAME_VALUE_COLUMNS, rows };
}

// ---- SHOW DATABASES / USERS ------------------------------------------------------------

const DATABASE_COLUMNS = columns(`name host port:i database force_user pool_size:i min_pool_size:i reserve_pool_size:i
  server_lifetime:i pool_mode load_balance_hosts max_connections:i current_connections:i max_client_connections:i
  current_client_connections:i paused:i disabled:i`);

export function showDatabases(ctx: ProxyContext): ResultSet {
  const servers = new Map<string, number>();
  for (const p of ctx.allPools()) servers.set(p.database, (servers.get(p.database) ?? 0) + p.all.size);
  const primary = ctx.cluster.primary();
  const c = ctx.config;
  const rows = [...servers.keys()].sort(cmp).map((db): Cell[] => [
    db, primary.host, primary.port, db, null, c.pool.max_connections, c.pool.min_connections, 0,
    Math.round(c.pool.server_lifetime_secs), null, null, c.limits.max_db_connections, servers.get(db) ?? 0, 0,
    ctx.perDatabase.get(db) ?? 0, isPaused(ctx, db) ? 1 : 0, 0,
  ]);
  return { columns: DATABASE_COLUMNS, rows };
}

const USER_COLUMNS = columns(`name pool_size reserve_pool_size pool_mode max_user_connections:i current_connections:i
  max_user_client_connections:i current_client_connections:i`);

export function showUsers(ctx: ProxyContext): ResultSet {
  const servers = new Map<string, number>();
  for (const u of ctx.config.users) servers.set(u.name, 0);
  for (const p of ctx.allPools()) servers.set(p.user, (servers.get(p.user) ?? 0) + p.all.size);
  const rows = [...servers.keys()].sort(cmp).map((name): Cell[] => {
    const u = ctx.userEntry(name);
    return [name, u && u.max_connections > 0 ? String(u.max_connections) : null, null, u?.pool_mode || null,
      ctx.config.limits.max_user_connections, servers.get(name) ?? 0, 0, ctx.perUser.get(name) ?? 0];
  });
  return { columns: USER_COLUMNS, rows };
}

// ---- SHOW NODES ------------------------------------------------------------------------

const NODE_COLUMNS = columns("name host port:i role state lag_bytes:i lag_seconds:f latency_ms:f sync weight:i fenced timeline:i");

export function showNodes(ctx: ProxyContext): ResultSet {
  const rows = ctx.cluster.snapshot().map((n): Cell[] => [
    n.name, n.host, n.port, n.role, n.health === "down" ? "down" : n.drained ? "draining" : "up",
    n.lagBytes, n.lagSeconds, n.latencyMs, n.sync ? "yes" : "no", n.weight, n.fenced ? "yes" : "no", n.status?.timeline ?? null,
  ]);
  return { columns: NODE_COLUMNS, rows };
}

// ---- SHOW FAILOVERS ---------------------------------------------------------------------

const FAILOVER_COLUMNS = columns("id:i kind trigger from_node to_node result started_at duration_ms:f hold_ms:f epoch:i n0 reason");

/** Failovers and switchovers, newest first (GET /failovers has the full records). */
export function showFailovers(ctx: ProxyContext): ResultSet {
  const rows = [...(ctx.failover?.history() ?? [])].reverse().map((r): Cell[] => [
    r.id, r.kind, r.trigger, r.from, r.to, r.result, r.started_at, r.duration_ms, r.hold_ms, r.epoch, r.n0, r.result === "done" ? "" : r.reason,
  ]);
  return { columns: FAILOVER_COLUMNS, rows };
}

// ---- SHOW CONFIG -----------------------------------------------------------------------

const CONFIG_COLUMNS = columns("key value default changeable");

export function showConfig(ctx: ProxyContext): ResultSet {
  const rows = configRows(ctx.config).map((r): Cell[] => [r.key, r.value, r.default, r.changeable ? "yes" : "no"]);
  return { columns: CONFIG_COLUMNS, rows };
}

// ---- SHOW VERSION / LISTS / STATE -------------------------------------------------------

export const showVersion = (): ResultSet => ({ columns: columns("version"), rows: [[VERSION_STRING]] });

export function showLists(ctx: ProxyContext): ResultSet {
  const pools = [...ctx.allPools()];
  const sessions = [...clientsOf(ctx)].filter((s) => !s.closed);
  const logged = sessions.filter((s) => s.loggedIn).length;
  const rows: Cell[][] = [
    ["databases", new Set(pools.map((p) => p.database)).size],
    ["users", new Set([...ctx.config.users.map((u) => u.name), ...pools.map((p) => p.user)]).size],
    ["pools", pools.length],
    ["used_clients", logged],
    ["login_clients", sessions.length - logged],
    ["used_servers", pools.reduce((n, p) => n + p.all.size, 0)],
  ];
  return { columns: columns("list items:i"), rows };
}

export function showState(ctx: ProxyContext): ResultSet {
  const paused = anythingPaused(ctx);
  return {
    columns: columns("key value"),
    rows: [
      ["active", paused ? "no" : "yes"],
      ["paused", paused ? "yes" : "no"],
      ["suspended", "no"],
    ],
  };
}

/** SHOW HELP's NOTICE detail. */
export const HELP_TEXT = [
  "SHOW HELP|VERSION|CONFIG|DATABASES|USERS|POOLS|CLIENTS|SERVERS|NODES|FAILOVERS",
  "SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|LISTS|STATE",
  "PAUSE [<db>]      wait for transactions to finish, close servers, hold new transactions",
  "RESUME [<db>]     end PAUSE or KILL",
  "RECONNECT [<db>]  replace server connections (idle now, busy when their transaction ends)",
  "KILL [<db>]       close the database's clients and servers now; it stays paused until RESUME",
  "RELOAD            re-read the config file",
  "Stats users may run SHOW only.",
].join("\n\t");
