// Schema routing on a primary + sync standby + async standby: rule tables, workload classes and cold data reach their node groups (split on and off); writes stay on the primary.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import postgres from "postgres";
import { psql, writeConfig, type RunningProxy } from "../support/proxy.ts";
import { adminApi, clusterProxyConfig, startClusterProxy, usePgCluster, waitNodeState } from "../support/pg-cluster.ts";
import { freePort } from "../../src/util/net.ts";

const cluster = usePgCluster({ databases: ["app"] });
const port = (name: string) => cluster().node(name).port;
const ROOT = `${import.meta.dir}/../..`;

const ROUTING = `
[auth]
method = "trust"
admin_users = ["postgres"]
[schema_routing.groups]
reporting = ["node3"]
oltp = ["node2"]
vectors = ["node2"]
[[schema_routing.rules]]
tables = ["analytics.*", "events_archive_*"]
group = "reporting"
[[schema_routing.rules]]
tables = ["orders"]
group = "oltp"
[[schema_routing.rules]]
tables = ["ledger"]
group = "primary"
[schema_routing.workloads]
analytics = "reporting"
vector = "vectors"
[schema_routing.temperature]
cold_tables = ["*_2019"]
cold_group = "reporting"
[routing_hints]
`;
const OBSERVING = `
[auth]
method = "trust"
admin_users = ["postgres"]
[schema_routing.groups]
reporting = ["node3"]
[schema_routing.temperature]
observe = true
cold_after_secs = 1
cold_group = "reporting"
`;

let split: RunningProxy, direct: RunningProxy, observing: RunningProxy;
const clients: pg.Client[] = [];
let on: pg.Client, off: pg.Client, obs: pg.Client;

async function connect(p: RunningProxy): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "app" });
  await c.connect();
  clients.push(c);
  return c;
}

beforeAll(async () => {
  await cluster().setup(
    `CREATE SCHEMA analytics;
     CREATE TABLE analytics.events (id int, day date DEFAULT current_date); INSERT INTO analytics.events (id) VALUES (1), (2);
     CREATE TABLE events_archive_2020 (id int); INSERT INTO events_archive_2020 VALUES (1);
     CREATE TABLE orders (id int, region text); INSERT INTO orders VALUES (1, 'eu'), (2, 'us');
     CREATE TABLE ledger (id int); INSERT INTO ledger VALUES (1);
     CREATE TABLE items (id int, kind text, pos point); INSERT INTO items VALUES (1, 'a', '(0,0)'), (2, 'b', '(3,4)');
     CREATE TABLE logs_2019 (id int); INSERT INTO logs_2019 VALUES (1);
     CREATE TABLE sensor_data (id int); INSERT INTO sensor_data VALUES (1);
     -- pgvector's cosine-distance spelling, on points: a real query the lexer flags as vector.
     CREATE OPERATOR <=> (LEFTARG = point, RIGHTARG = point, FUNCTION = point_distance);`,
    "app",
  );
  [split, direct, observing] = await Promise.all([
    startClusterProxy(cluster(), { split: true, toml: ROUTING }),
    startClusterProxy(cluster(), { split: false, toml: ROUTING }),
    startClusterProxy(cluster(), { split: false, toml: OBSERVING }),
  ]);
  [on, off, obs] = await Promise.all([connect(split), connect(direct), connect(observing)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await Promise.all([split?.stop(), direct?.stop(), observing?.stop()]);
});

/** Backend ports that answered `sql` (first column `p`) over `n` runs, sorted; `values` makes it extended protocol. */
async function ports(c: pg.Client, sql: string, n = 10, values?: unknown[]): Promise<number[]> {
  const out = new Set<number>();
  for (let i = 0; i < n; i++) out.add((await c.query(values === undefined ? sql : { text: sql, values })).rows[0].p);
  return [...out].sort((a, b) => a - b);
}
const only = (...names: string[]) => names.map(port).sort((a, b) => a - b);

test("reads of rule tables land only on their group's nodes: simple and extended protocol, split on and off", async () => {
  for (const c of [on, off]) {
    expect(await ports(c, "SELECT inet_server_port() AS p FROM analytics.events LIMIT 1")).toEqual(only("node3"));
    expect(await ports(c, "SELECT inet_server_port() AS p, id FROM analytics.events WHERE id = $1::int", 10, [2])).toEqual(only("node3"));
    expect(await ports(c, "select inet_server_port() as p from EVENTS_ARCHIVE_2020 a")).toEqual(only("node3"));
    expect(await ports(c, "SELECT inet_server_port() AS p FROM public.orders WHERE id = $1", 10, [1])).toEqual(only("node2"));
    expect(await ports(c, "SELECT inet_server_port() AS p FROM ledger")).toEqual(only("node1"));
    // A table in a subquery counts.
    expect(await ports(c, "SELECT inet_server_port() AS p, (SELECT count(*) FROM analytics.events) AS n")).toEqual(only("node3"));
  }
  // A named prepared statement keeps its route on every execution.
  for (let i = 0; i < 5; i++) {
    const r = await on.query({ name: "by_rule", text: "SELECT inet_server_port() AS p FROM orders WHERE id = $1", values: [1 + (i % 2)] });
    expect(r.rows[0].p).toBe(port("node2"));
  }
});

test("postgres.js (named prepared statements) follows the rules too", async () => {
  // One query at a time: a request pipelined behind another while its server is still attached
  // goes with it (see the README), so per-request routing is checked without pipelining.
  for (const p of [split, direct]) {
    const sql = postgres({ host: "127.0.0.1", port: p.port, user: "postgres", database: "app", max: 1, fetch_types: false, onnotice: () => {} });
    try {
      const events = new Set<number>(), orders = new Set<number>();
      for (let i = 0; i < 8; i++) {
        events.add((await sql`SELECT inet_server_port() AS p FROM analytics.events WHERE id = ${1 + (i % 2)}`)[0]!.p);
        orders.add((await sql`SELECT inet_server_port() AS p FROM orders WHERE id = ${1 + (i % 2)}`)[0]!.p);
      }
      expect([...events]).toEqual(only("node3"));
      expect([...orders]).toEqual(only("node2"));
    } finally {
      await sql.end();
    }
  }
});

test("reads that match nothing follow normal routing: both standbys with the split on, the primary with it off", async () => {
  expect(await ports(on, "SELECT inet_server_port() AS p FROM items WHERE id = 1")).toEqual(only("node2", "node3"));
  expect(await ports(on, "SELECT inet_server_port() AS p")).toEqual(only("node2", "node3"));
  expect(await ports(off, "SELECT inet_server_port() AS p FROM items WHERE id = 1")).toEqual(only("node1"));
  expect(await ports(off, "SELECT inet_server_port() AS p FROM analytics_other", 1).catch((e) => e.code)).toBe("42P01"); // not analytics.*: the primary says so
});

test("writes to rule tables go to the primary, whatever the rule says", async () => {
  for (const c of [on, off]) {
    expect(await ports(c, "INSERT INTO analytics.events (id) VALUES (9) RETURNING inet_server_port() AS p", 3)).toEqual(only("node1"));
    expect(await ports(c, "UPDATE orders SET region = region WHERE id = $1 RETURNING inet_server_port() AS p", 3, [1])).toEqual(only("node1"));
    expect(await ports(c, "WITH d AS (DELETE FROM events_archive_2020 WHERE id = 99 RETURNING 1) SELECT inet_server_port() AS p FROM analytics.events LIMIT 1", 3)).toEqual(only("node1"));
    // A read inside a transaction block that has written stays on the primary with it.
    await c.query("BEGIN");
    await c.query("INSERT INTO orders VALUES (100, 'tx')");
    expect((await c.query("SELECT inet_server_port() AS p FROM analytics.events LIMIT 1")).rows[0].p).toBe(port("node1"));
    await c.query("ROLLBACK");
  }
});

test("a JOIN across groups goes where the first table a rule matches (in the text) says", async () => {
  for (const c of [on, off]) {
    expect(await ports(c, "SELECT inet_server_port() AS p FROM orders o JOIN analytics.events e ON e.id = o.id LIMIT 1")).toEqual(only("node2"));
    expect(await ports(c, "SELECT inet_server_port() AS p FROM analytics.events e JOIN orders o ON e.id = o.id LIMIT 1")).toEqual(only("node3"));
    expect(await ports(c, "SELECT inet_server_port() AS p FROM items i JOIN ledger l ON l.id = i.id JOIN orders o ON o.id = i.id")).toEqual(only("node1"));
  }
});

test("analytics (GROUP BY, window) and vector (<->, <=>) reads go to their workload groups; a rule table wins over the class", async () => {
  for (const c of [on, off]) {
    expect(await ports(c, "SELECT inet_server_port() AS p, kind, count(*) FROM items GROUP BY kind LIMIT 1")).toEqual(only("node3"));
    expect(await ports(c, "SELECT inet_server_port() AS p, row_number() OVER (ORDER BY id) AS rn FROM items LIMIT 1")).toEqual(only("node3"));
    expect(await ports(c, "SELECT inet_server_port() AS p, id FROM items ORDER BY pos <-> '(1,1)'::point LIMIT 1")).toEqual(only("node2"));
    expect(await ports(c, "SELECT inet_server_port() AS p, pos <=> $1::point AS d FROM items ORDER BY 2 LIMIT 1", 10, ["(2,2)"])).toEqual(only("node2"));
    expect(await ports(c, "SELECT inet_server_port() AS p, count(*) FROM ledger GROUP BY 1")).toEqual(only("node1"));
  }
  const d = (await on.query("SELECT '(0,0)'::point <=> '(3,4)'::point AS d")).rows[0].d;
  expect(d).toBe(5);
});

test("a statement with a routing hint follows the hint, not its tables", async () => {
  for (const c of [on, off]) {
    expect(await ports(c, "/*+ route=primary */ SELECT inet_server_port() AS p FROM analytics.events LIMIT 1")).toEqual(only("node1"));
    expect(await ports(c, "SELECT /*+ node=node2 */ inet_server_port() AS p FROM analytics.events LIMIT 1")).toEqual(only("node2"));
  }
});

test("a cold table by rule goes to the cold group", async () => {
  expect(await ports(on, "SELECT inet_server_port() AS p FROM logs_2019")).toEqual(only("node3"));
  expect(await ports(off, "SELECT inet_server_port() AS p FROM logs_2019 WHERE id = $1", 10, [1])).toEqual(only("node3"));
});

test("observed temperature: a table not read for cold_after_secs goes to the cold group once, then it is hot", async () => {
  await Bun.sleep(1600); // past cold_after_secs since the proxy started: a table not read since is cold
  const sql = "SELECT inet_server_port() AS p FROM sensor_data";
  expect(await ports(obs, sql, 1)).toEqual(only("node3"));
  expect(await ports(obs, sql, 8)).toEqual(only("node1"));
  await Bun.sleep(1600);
  expect(await ports(obs, "SELECT inet_server_port() AS p FROM sensor_data WHERE id = $1", 1, [1])).toEqual(only("node3"));
  expect(await ports(obs, sql, 3)).toEqual(only("node1"));
  const view = (await adminApi(observing, "GET", "/schema-routing")).body;
  expect(view.decisions.cold_observed).toBe(2);
  expect(view.temperature.tables).toEqual([{ table: "public.sensor_data", reads: 13, idle_secs: expect.any(Number), state: "hot" }]);
  const show = await psql(observing.port, ["-At", "-c", "SHOW SCHEMA_ROUTING_TABLES"], { db: "heliosproxy" });
  expect(show.stdout.trim()).toMatch(/^public\.sensor_data\|13\|[\d.]+\|hot$/);
});

test("GET /schema-routing and SHOW SCHEMA_ROUTING count decisions per rule and class", async () => {
  const before = (await adminApi(direct, "GET", "/schema-routing")).body;
  expect(before.groups).toEqual({ reporting: ["node3"], oltp: ["node2"], vectors: ["node2"] });
  for (let i = 0; i < 7; i++) await off.query("SELECT id FROM analytics.events WHERE id = 1");
  for (let i = 0; i < 4; i++) await off.query("SELECT kind, count(*) FROM items GROUP BY kind");
  for (let i = 0; i < 3; i++) await off.query("SELECT 1 FROM items");
  for (let i = 0; i < 2; i++) await off.query("SET application_name = 'x'");
  const after = (await adminApi(direct, "GET", "/schema-routing")).body;
  expect(after.rules[0].decisions - before.rules[0].decisions).toBe(7);
  expect(after.rules[0]).toMatchObject({ tables: ["analytics.*", "events_archive_*"], schemas: [], group: "reporting" });
  expect(after.workloads.analytics.decisions - before.workloads.analytics.decisions).toBe(4);
  expect(after.decisions.none - before.decisions.none).toBe(3);
  expect(after.decisions.not_read - before.decisions.not_read).toBe(2);
  expect(after.decisions.in_transaction).toBe(1); // the read inside BEGIN ... ROLLBACK earlier
  const show = await psql(direct.port, ["-At", "-c", "SHOW SCHEMA_ROUTING"], { db: "heliosproxy" });
  const rows = show.stdout.trim().split("\n").map((l) => l.split("|"));
  expect(rows.map((r) => r.slice(0, 3))).toEqual([
    ["rule 0: analytics.* events_archive_*", "reporting", "node3"],
    ["rule 1: orders", "oltp", "node2"],
    ["rule 2: ledger", "primary", "primary"],
    ["cold table", "reporting", "node3"],
    ["cold observed", "reporting", "node3"],
    ["workload analytics", "reporting", "node3"],
    ["workload vector", "vectors", "node2"],
    ["none", "", ""],
    ["not a read", "", ""],
    ["in a transaction", "", ""],
    ["routing hint", "", ""],
  ]);
  expect(Number(rows[0]![3])).toBe(after.rules[0].decisions);
});

test("config errors: check-config names the key; a group naming an unknown node stops the proxy at start", async () => {
  const bad = writeConfig(clusterProxyConfig(cluster(), freePort(), freePort(), { toml: ROUTING.replace('group = "oltp"', 'group = "olpt"') }));
  const check = Bun.spawnSync([process.execPath, `--config=${ROOT}/bunfig.toml`, `${ROOT}/src/cli/main.ts`, "check-config", "--config", bad], { cwd: ROOT });
  expect(check.exitCode).toBe(1);
  expect(check.stderr.toString()).toMatch(/:\d+: schema_routing\.rules(\.1|\[1\])\.group: unknown group "olpt" \(groups: reporting, oltp, vectors, primary, standby, any\)/);
  const unknownNode = writeConfig(clusterProxyConfig(cluster(), freePort(), freePort(), { toml: ROUTING.replace('reporting = ["node3"]', 'reporting = ["node3", "node9"]') }));
  const run = Bun.spawn([process.execPath, `--config=${ROOT}/bunfig.toml`, `${ROOT}/src/cli/main.ts`, "--config", unknownNode], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect(await run.exited).toBe(1);
  const out = (await new Response(run.stdout).text()) + (await new Response(run.stderr).text());
  expect(out).toContain('schema_routing.groups.reporting: node \\"node9\\" is not in [[nodes]] (nodes: node1, node2, node3)');
});

test("a group whose nodes are all down falls back to the primary (not to other standbys)", async () => {
  await cluster().stopNode("node3");
  await Promise.all([waitNodeState(split, "node3", "down", 10_000), waitNodeState(direct, "node3", "down", 10_000)]);
  for (const c of [on, off]) {
    expect(await ports(c, "SELECT inet_server_port() AS p FROM analytics.events LIMIT 1")).toEqual(only("node1"));
    expect(await ports(c, "SELECT inet_server_port() AS p, kind, count(*) FROM items GROUP BY kind LIMIT 1")).toEqual(only("node1"));
    expect(await ports(c, "SELECT inet_server_port() AS p FROM orders")).toEqual(only("node2"));
  }
  expect(await ports(on, "SELECT inet_server_port() AS p FROM items")).toEqual(only("node2"));
}, 20_000);
