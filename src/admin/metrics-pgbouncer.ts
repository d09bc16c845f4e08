// The pgbouncer_exporter series (same names, labels and units), read from the console's SHOW views, so dashboards and alerts built for PgBouncer work unchanged.

import { Counter, Gauge, type Registry } from "prom-client";
import type { ProxyContext } from "../core/context.ts";
import type { Cell, ResultSet } from "./console-wire.ts";
import { VERSION_STRING, showDatabases, showLists, showPools, statsByDatabase, type TotalKey } from "./console-show.ts";

type Labels = Record<string, string>;
type Sample = { labels: Labels; value: number };

/** One series family: a gauge or counter whose samples are read on each scrape. */
function family(registry: Registry, type: "gauge" | "counter", name: string, help: string, labelNames: string[], read: () => Sample[]): void {
  const Kind = type === "gauge" ? Gauge : Counter;
  new Kind({
    name,
    help,
    labelNames,
    registers: [registry],
    collect(this: Gauge | Counter) {
      this.reset();
      for (const s of read()) (this as Gauge).inc(s.labels, s.value);
    },
  });
}

/** The rows of a SHOW view as objects keyed by column name. */
function rowsOf(rs: ResultSet): Record<string, Cell>[] {
  return rs.rows.map((r) => Object.fromEntries(rs.columns.map((c, i) => [c.name, r[i] ?? null])));
}

const num = (c: Cell): number => (c === null ? 0 : Number(c));
const text = (c: Cell): string => (c === null ? "" : String(c));

/** SHOW STATS_TOTALS column -> pgbouncer_stats_<name> (counters, by database; times in seconds). */
const STATS: [TotalKey, string, string, number][] = [
  ["queries", "queries_pooled_total", "Total number of SQL queries pooled", 1],
  ["queries", "queries_total", "Total number of SQL requests pooled", 1],
  ["queryUs", "queries_duration_seconds_total", "Total number of seconds spent by servers on client queries", 1e-6],
  ["received", "received_bytes_total", "Total volume in bytes of network traffic received from clients", 1],
  ["sent", "sent_bytes_total", "Total volume in bytes of network traffic sent to clients", 1],
  ["waitUs", "client_wait_seconds_total", "Time spent by clients waiting for a server in seconds", 1e-6],
  ["xacts", "sql_transactions_pooled_total", "Total number of SQL transactions pooled (server leases)", 1],
  ["xactUs", "server_in_transaction_seconds_total", "Total number of seconds servers spent in client transactions", 1e-6],
  ["clientParses", "client_parses_total", "Total number of prepared statement Parse messages received from clients", 1],
  ["serverParses", "server_parses_total", "Total number of prepared statement Parse messages sent to servers", 1],
  ["binds", "binds_total", "Total number of prepared statements readied for execution with a Bind message", 1],
];

/** SHOW POOLS column -> pgbouncer_pools_<name> (gauges, by database and user; summed over nodes). */
const POOLS: [string, string, string][] = [
  ["cl_active", "client_active_connections", "Client connections linked to server connection and able to process queries"],
  ["cl_active_cancel_req", "client_active_cancel_connections", "Client connections that have forwarded query cancellations to the server"],
  ["cl_waiting", "client_waiting_connections", "Client connections waiting on a server connection"],
  ["cl_waiting_cancel_req", "client_waiting_cancel_connections", "Client connections that have not forwarded query cancellations to the server yet"],
  ["sv_active", "server_active_connections", "Server connections linked to a client connection"],
  ["sv_active_cancel", "server_active_cancel_connections", "Server connections currently forwarding a cancel request"],
  ["sv_being_canceled", "server_being_canceled_connections", "Servers waiting for in-flight cancel requests to complete"],
  ["sv_idle", "server_idle_connections", "Server connections idle and ready for a client query"],
  ["sv_used", "server_used_connections", "Server connections idle more than server_check_delay"],
  ["sv_tested", "server_testing_connections", "Server connections currently running a reset or check query"],
  ["sv_login", "server_login_connections", "Server connections currently in the process of logging in"],
];

/** SHOW DATABASES column -> pgbouncer_databases_<name> (gauges). */
const DATABASES: [string, string, string][] = [
  ["pool_size", "pool_size", "Maximum number of server connections"],
  ["reserve_pool_size", "reserve_pool", "Maximum number of additional connections for this database"],
  ["max_connections", "max_connections", "Maximum number of allowed connections for this database"],
  ["current_connections", "current_connections", "Current number of connections for this database"],
  ["paused", "paused", "1 if this database is currently paused, else 0"],
  ["disabled", "disabled", "1 if this database is currently disabled, else 0"],
];
const DATABASE_LABELS = ["name", "host", "port", "database", "force_user", "pool_mode"];

/** SHOW LISTS row -> pgbouncer_<name>; lists HeliosProxy does not keep (free slots, DNS cache) are 0. */
const LISTS: [string, string, string][] = [
  ["databases", "databases", "Count of databases"],
  ["users", "users", "Count of users"],
  ["pools", "pools", "Count of pools"],
  ["free_clients", "free_clients", "Count of free clients"],
  ["used_clients", "used_clients", "Count of used clients"],
  ["login_clients", "login_clients", "Count of clients in login state"],
  ["free_servers", "free_servers", "Count of free servers"],
  ["used_servers", "used_servers", "Count of used servers"],
  ["dns_names", "cached_dns_names", "Count of DNS names in the cache"],
  ["dns_zones", "cached_dns_zones", "Count of DNS zones in the cache"],
  ["dns_queries", "in_flight_dns_queries", "Count of in-flight DNS queries"],
];

/**
 * The value of `read`, computed at most once per scrape: the families of one view share it. A
 * scrape collects every family in one turn of the event loop, so the value is dropped on the next
 * turn (a time window would hand a scrape that follows closely the previous scrape's figures).
 */
function perScrape<T>(read: () => T): () => T {
  let cached: { value: T } | null = null;
  return () => {
    if (cached === null) {
      cached = { value: read() };
      setTimeout(() => (cached = null), 0);
    }
    return cached.value;
  };
}

export function pgbouncerMetrics(ctx: ProxyContext, registry: Registry): void {
  const gauge = (name: string, help: string, labels: string[], read: () => Sample[]) => family(registry, "gauge", name, help, labels, read);

  gauge("pgbouncer_up", "The pgbouncer scrape succeeded (always 1: the proxy answers its own scrape)", [], () => [{ labels: {}, value: 1 }]);
  gauge("pgbouncer_version_info", "The pgbouncer version info (HeliosProxy's SHOW VERSION)", ["version"], () => [{ labels: { version: VERSION_STRING }, value: 1 }]);

  const stats = perScrape(() => statsByDatabase(ctx));
  for (const [key, name, help, factor] of STATS) {
    family(registry, "counter", `pgbouncer_stats_${name}`, help, ["database"], () =>
      [...stats()].map(([database, t]) => ({ labels: { database }, value: t[key] * factor })),
    );
  }

  const pools = perScrape(() => {
    const acc = new Map<string, { labels: Labels; row: Record<string, number> }>();
    for (const r of rowsOf(showPools(ctx))) {
      const labels = { database: text(r.database!), user: text(r.user!) };
      const k = JSON.stringify(labels);
      const cur = acc.get(k) ?? { labels, row: {} as Record<string, number> };
      for (const [col] of POOLS) cur.row[col] = (cur.row[col] ?? 0) + num(r[col]!);
      // Oldest wait across the (database, user)'s node pools.
      cur.row.maxwait = Math.max(cur.row.maxwait ?? 0, num(r.maxwait!) + num(r.maxwait_us!) / 1e6);
      acc.set(k, cur);
    }
    return [...acc.values()];
  });
  for (const [col, name, help] of POOLS) gauge(`pgbouncer_pools_${name}`, help, ["database", "user"], () => pools().map((p) => ({ labels: p.labels, value: p.row[col]! })));
  gauge("pgbouncer_pools_client_maxwait_seconds", "Age of oldest unserved client connection, in seconds", ["database", "user"], () =>
    pools().map((p) => ({ labels: p.labels, value: p.row.maxwait! })),
  );

  const databases = perScrape(() => rowsOf(showDatabases(ctx)));
  for (const [col, name, help] of DATABASES) {
    gauge(`pgbouncer_databases_${name}`, help, DATABASE_LABELS, () =>
      databases().map((r) => ({ labels: Object.fromEntries(DATABASE_LABELS.map((l) => [l, text(r[l]!)])), value: num(r[col]!) })),
    );
  }

  const lists = perScrape(() => showLists(ctx).rows);
  for (const [list, name, help] of LISTS) {
    gauge(`pgbouncer_${name}`, help, [], () => {
      const row = lists().find((r) => r[0] === list);
      return [{ labels: {}, value: row ? num(row[1]!) : 0 }];
    });
  }

  gauge("pgbouncer_config_max_client_connections", "Config [limits] max_client_conn: most client connections", [], () => [{ labels: {}, value: ctx.config.limits.max_client_conn }]);
  gauge("pgbouncer_config_max_user_connections", "Config [limits] max_user_connections: most logged-in clients per user (0 = unlimited)", [], () => [
    { labels: {}, value: ctx.config.limits.max_user_connections },
  ]);
}
