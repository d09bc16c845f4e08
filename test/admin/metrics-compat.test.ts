// /metrics against pgbouncer_exporter's names and labels (dashboards built for PgBouncer), build_info, database labels, and counters that never go down.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { psql, startProxy, type RunningProxy } from "../support/proxy.ts";
import { pgClient } from "../support/clients.ts";

/**
 * The series prometheus-community/pgbouncer_exporter exports (its collector's metric maps, lists,
 * config, version and up), with their labels and types. Kept here so a rename on our side fails.
 */
const EXPORTER: [name: string, type: "counter" | "gauge", labels: string[]][] = [
  ["pgbouncer_up", "gauge", []],
  ["pgbouncer_version_info", "gauge", ["version"]],
  // SHOW STATS
  ["pgbouncer_stats_queries_pooled_total", "counter", ["database"]],
  ["pgbouncer_stats_queries_duration_seconds_total", "counter", ["database"]],
  ["pgbouncer_stats_received_bytes_total", "counter", ["database"]],
  ["pgbouncer_stats_queries_total", "counter", ["database"]],
  ["pgbouncer_stats_sent_bytes_total", "counter", ["database"]],
  ["pgbouncer_stats_client_wait_seconds_total", "counter", ["database"]],
  ["pgbouncer_stats_sql_transactions_pooled_total", "counter", ["database"]],
  ["pgbouncer_stats_server_in_transaction_seconds_total", "counter", ["database"]],
  ["pgbouncer_stats_client_parses_total", "counter", ["database"]],
  ["pgbouncer_stats_server_parses_total", "counter", ["database"]],
  ["pgbouncer_stats_binds_total", "counter", ["database"]],
  // SHOW POOLS
  ["pgbouncer_pools_client_active_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_client_active_cancel_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_client_waiting_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_client_waiting_cancel_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_server_active_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_server_active_cancel_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_server_being_canceled_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_server_idle_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_server_used_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_server_testing_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_server_login_connections", "gauge", ["database", "user"]],
  ["pgbouncer_pools_client_maxwait_seconds", "gauge", ["database", "user"]],
  // SHOW DATABASES
  ["pgbouncer_databases_pool_size", "gauge", ["name", "host", "port", "database", "force_user", "pool_mode"]],
  ["pgbouncer_databases_reserve_pool", "gauge", ["name", "host", "port", "database", "force_user", "pool_mode"]],
  ["pgbouncer_databases_max_connections", "gauge", ["name", "host", "port", "database", "force_user", "pool_mode"]],
  ["pgbouncer_databases_current_connections", "gauge", ["name", "host", "port", "database", "force_user", "pool_mode"]],
  ["pgbouncer_databases_paused", "gauge", ["name", "host", "port", "database", "force_user", "pool_mode"]],
  ["pgbouncer_databases_disabled", "gauge", ["name", "host", "port", "database", "force_user", "pool_mode"]],
  // SHOW LISTS
  ["pgbouncer_databases", "gauge", []],
  ["pgbouncer_users", "gauge", []],
  ["pgbouncer_pools", "gauge", []],
  ["pgbouncer_free_clients", "gauge", []],
  ["pgbouncer_used_clients", "gauge", []],
  ["pgbouncer_login_clients", "gauge", []],
  ["pgbouncer_free_servers", "gauge", []],
  ["pgbouncer_used_servers", "gauge", []],
  ["pgbouncer_cached_dns_names", "gauge", []],
  ["pgbouncer_cached_dns_zones", "gauge", []],
  ["pgbouncer_in_flight_dns_queries", "gauge", []],
  // SHOW CONFIG
  ["pgbouncer_config_max_client_connections", "gauge", []],
  ["pgbouncer_config_max_user_connections", "gauge", []],
];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parse Prometheus text: TYPE lines and samples. */
function parse(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

const key = (s: Sample) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;

let proxy: RunningProxy;
const scrape = async () => parse(await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text());
const find = (m: { samples: Sample[] }, name: string, labels: Record<string, string> = {}) =>
  m.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

beforeAll(async () => {
  proxy = await startProxy();
  for (let i = 0; i < 5; i++) expect((await psql(proxy.port, ["-Atc", `select ${i}`])).code).toBe(0);
});

afterAll(async () => {
  await proxy.stop();
});

describe("pgbouncer_exporter compatibility", () => {
  test("every exporter series is there, with the exporter's type and exactly its labels", async () => {
    const m = await scrape();
    const problems: string[] = [];
    for (const [name, type, labels] of EXPORTER) {
      if (m.types.get(name) !== type) problems.push(`${name}: type ${m.types.get(name)}, want ${type}`);
      const samples = m.samples.filter((s) => s.name === name);
      if (samples.length === 0) problems.push(`${name}: no sample`);
      for (const s of samples) {
        const got = Object.keys(s.labels).sort().join(",");
        if (got !== [...labels].sort().join(",")) problems.push(`${name}: labels ${got}, want ${[...labels].sort().join(",")}`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("values follow the proxy's own: queries and transactions of the database, pools of (database, user)", async () => {
    const c = await pgClient(proxy.port, { database: "test" });
    try {
      await c.query("BEGIN");
      await c.query("SELECT pg_sleep(0.05)");
      const m = await scrape();
      const db = { database: "test" };
      expect(find(m, "pgbouncer_stats_queries_pooled_total", db)!.value).toBeGreaterThanOrEqual(5);
      expect(find(m, "pgbouncer_stats_queries_pooled_total", db)!.value).toBe(
        m.samples.filter((s) => s.name === "heliosproxy_queries_total" && s.labels.database === "test").reduce((a, s) => a + s.value, 0),
      );
      expect(find(m, "pgbouncer_stats_queries_duration_seconds_total", db)!.value).toBeGreaterThanOrEqual(0.05);
      expect(find(m, "pgbouncer_pools_server_active_connections", { database: "test", user: "postgres" })!.value).toBe(1);
      expect(find(m, "pgbouncer_pools_client_active_connections", { database: "test", user: "postgres" })!.value).toBeGreaterThanOrEqual(1);
      expect(find(m, "pgbouncer_databases_pool_size", { name: "test", host: "127.0.0.1", port: "5432" })!.value).toBe(10);
      expect(find(m, "pgbouncer_version_info")!.labels.version).toMatch(/^HeliosProxy \d+\.\d+\.\d+/);
      expect(find(m, "pgbouncer_config_max_client_connections")!.value).toBe(10000);
      await c.query("COMMIT");
    } finally {
      await c.end();
    }
  });
});

describe("own series", () => {
  test("heliosproxy_build_info carries version, profile and Bun version", async () => {
    const m = await scrape();
    const b = find(m, "heliosproxy_build_info")!;
    expect(b.value).toBe(1);
    const pkg = require("../../package.json") as { version: string };
    expect(b.labels).toEqual({ version: pkg.version, profile: "dev", bun_version: Bun.version });
  });

  test("query, transaction, byte and error counters carry the database", async () => {
    await psql(proxy.port, ["-Atc", "select 1/0"]);
    const m = await scrape();
    for (const name of ["heliosproxy_queries_total", "heliosproxy_transactions_total", "heliosproxy_query_time_seconds_total", "heliosproxy_transaction_time_seconds_total", "heliosproxy_bytes_total", "heliosproxy_errors_total"]) {
      const samples = m.samples.filter((s) => s.name === name);
      expect({ name, n: samples.length > 0 }).toEqual({ name, n: true });
      for (const s of samples) expect({ name, database: s.labels.database }).toEqual({ name, database: "test" });
    }
  });

  test("no counter goes down between scrapes while work goes on", async () => {
    const first = await scrape();
    const script = Array.from({ length: 50 }, (_, i) => `select ${i};`).join("\n") + "\nselect 1/0;";
    await psql(proxy.port, ["-Atq"], { input: script });
    const second = await scrape();
    const counters = [...first.types].filter(([, t]) => t === "counter").map(([n]) => n);
    expect(counters.length).toBeGreaterThan(15);
    const after = new Map(second.samples.map((s) => [key(s), s.value]));
    const down: string[] = [];
    for (const s of first.samples) {
      if (!counters.includes(s.name)) continue;
      const v = after.get(key(s));
      if (v === undefined || v < s.value) down.push(`${key(s)}: ${s.value} -> ${v}`);
    }
    expect(down).toEqual([]);
    expect(find(second, "pgbouncer_stats_queries_pooled_total", { database: "test" })!.value).toBeGreaterThan(
      find(first, "pgbouncer_stats_queries_pooled_total", { database: "test" })!.value,
    );
  });
});

describe("deploy/grafana/heliosproxy.json", () => {
  test("every series a panel queries is one the proxy exports, and panels have units and unique ids", async () => {
    const dashboard = JSON.parse(readFileSync(join(import.meta.dir, "../../deploy/grafana/heliosproxy.json"), "utf8"));
    const m = await scrape();
    const exported = new Set(m.types.keys());
    const used = new Set<string>();
    for (const p of dashboard.panels) {
      expect(typeof p.fieldConfig.defaults.unit).toBe("string");
      for (const t of p.targets) for (const name of t.expr.match(/\bheliosproxy_\w+/g) ?? []) used.add(name.replace(/_(bucket|sum|count)$/, ""));
    }
    expect(used.size).toBeGreaterThan(15);
    expect([...used].filter((n) => !exported.has(n))).toEqual([]);
    const ids = dashboard.panels.map((p: { id: number }) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
