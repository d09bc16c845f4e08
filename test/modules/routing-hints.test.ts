// Routing hints on a primary + two standbys: route, node and lag hints steer reads (simple, extended, prepared), never writes; hostile comments are ignored.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { psql } from "../support/proxy.ts";
import { adminApi, startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";

const cluster = usePgCluster({ databases: ["app"] });
let proxy: RunningProxy;
let client: pg.Client;
let other: pg.Client;
const port = (name: string) => cluster().node(name).port;

beforeAll(async () => {
  await cluster().setup("CREATE TABLE hinted (id int)", "app");
  proxy = await startClusterProxy(cluster(), {
    split: false,
    toml: '[routing_hints]\nnode_hint_users = ["postgres"]\n[auth]\nmethod = "trust"\nadmin_users = ["postgres"]\n',
  });
  client = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: "app" });
  await client.connect();
  other = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "someone", database: "app" });
  await cluster().psql("node1", "CREATE ROLE someone LOGIN SUPERUSER");
  await cluster().waitReplayed();
  await other.connect();
}, 60_000);

afterAll(async () => {
  await client?.end();
  await other?.end();
  await proxy?.stop();
});

async function ports(c: pg.Client, sql: string, n = 6): Promise<number[]> {
  const out = new Set<number>();
  for (let i = 0; i < n; i++) out.add((await c.query(sql)).rows[0].p);
  return [...out].sort((a, b) => a - b);
}

test("with the automatic split off, route=standby sends reads to the standbys; no hint stays on the primary", async () => {
  expect(await ports(client, "SELECT inet_server_port() AS p")).toEqual([port("node1")]);
  expect(await ports(client, "/*+ route=standby */ SELECT inet_server_port() AS p")).toEqual([port("node2"), port("node3")].sort((a, b) => a - b));
  expect(await ports(client, "SELECT /*+ route=primary */ inet_server_port() AS p")).toEqual([port("node1")]);
});

test("a hinted write goes to the primary whatever the hint says", async () => {
  const r = await client.query("/*+ route=standby */ INSERT INTO hinted VALUES (1) RETURNING inet_server_port() AS p");
  expect(r.rows[0].p).toBe(port("node1"));
  const n = await client.query("/*+ node=node3 */ WITH x AS (DELETE FROM hinted RETURNING 1) SELECT inet_server_port() AS p");
  expect(n.rows[0].p).toBe(port("node1"));
});

test("node hints: simple, extended and a named prepared statement; unknown node falls back to a standby", async () => {
  expect(await ports(client, "/*+ node=node3 */ SELECT inet_server_port() AS p")).toEqual([port("node3")]);
  const ext = await client.query({ text: "/*+ node=node2 */ SELECT inet_server_port() AS p, $1::int AS x", values: [7] });
  expect(ext.rows[0]).toEqual({ p: port("node2"), x: 7 });
  for (let i = 0; i < 3; i++) {
    const r = await client.query({ name: "by_node3", text: "/*+ node=node3 */ SELECT inet_server_port() AS p", values: [] });
    expect(r.rows[0].p).toBe(port("node3"));
  }
  const fallback = await ports(client, "/*+ node=nowhere */ SELECT inet_server_port() AS p");
  expect(fallback.every((p) => p === port("node2") || p === port("node3"))).toBe(true);
});

test("node hints of users not in node_hint_users are ignored (route hints still count)", async () => {
  expect(await ports(other, "/*+ node=node3 */ SELECT inet_server_port() AS p")).toEqual([port("node1")]);
  expect(await ports(other, "/*+ route=standby node=node3 */ SELECT inet_server_port() AS p", 8)).toEqual([port("node2"), port("node3")].sort((a, b) => a - b));
});

test("max_lag: a standby applying WAL late leaves the candidates; with no standby fresh enough the primary answers", async () => {
  const c = cluster();
  c.dev.node("node3").setConf({ recovery_min_apply_delay: "'3s'" });
  await c.dev.node("node3").reload();
  // Keep writing so node3's replay falls behind in bytes and in time.
  for (let i = 0; i < 20; i++) {
    await client.query(`INSERT INTO hinted VALUES (${i})`);
    await Bun.sleep(50);
  }
  await Bun.sleep(800);
  const lag = (await adminApi(proxy, "GET", "/nodes/node3")).body;
  expect(lag.lag_bytes).toBeGreaterThan(0);
  expect(await ports(client, "/*+ route=standby max_lag=100ms */ SELECT inet_server_port() AS p")).toEqual([port("node2")]);
  expect(await ports(client, "/*+ node=node3 max_lag=1kB */ SELECT inet_server_port() AS p")).toEqual([port("node2")]);
  c.dev.node("node3").setConf({ recovery_min_apply_delay: "0" });
  await c.dev.node("node3").reload();
});

test("hostile comments: hints inside strings, identifiers or dollar quotes, unterminated, nested, oversized or malformed are ignored; the query still runs", async () => {
  const cases = [
    "SELECT inet_server_port() AS p, '/*+ node=node3 */' AS s",
    "SELECT inet_server_port() AS p, $$ /*+ route=standby */ $$ AS s",
    'SELECT inet_server_port() AS "/*+ node=node3 */", inet_server_port() AS p',
    `/*+ node=node3 ${"x".repeat(5000)} */ SELECT inet_server_port() AS p`,
    "/*+ node=node3 /* nested */ */ SELECT inet_server_port() AS p",
    "/*+ node=node3; DROP TABLE hinted */ SELECT inet_server_port() AS p",
    "/*+ route=everywhere node=../../etc max_lag=-5s */ SELECT inet_server_port() AS p",
  ];
  for (const sql of cases) expect(await ports(client, sql, 2)).toEqual([port("node1")]);
  const unterminated = await client.query("SELECT 1 AS one /*+ node=node3").catch((e: Error & { code?: string }) => e.code);
  expect(unterminated).toBe("42601");
  expect((await client.query("SELECT count(*)::int AS n FROM hinted")).rows[0].n).toBeGreaterThan(0);
});

test("SHOW ROUTING_HINTS in the console counts hinted requests and refused node hints", async () => {
  const out = await psql(proxy.port, ["-At", "-c", "SHOW ROUTING_HINTS"], { db: "heliosproxy" });
  const [hinted, refused] = out.stdout.trim().split("|").map(Number);
  expect(hinted).toBeGreaterThan(20);
  expect(refused).toBe(14); // the other user's 6 + 8 node hints
});
