// Candidate safety on a real cluster: no promotion of a standby missing acknowledged commits (alarm, clean errors); an async standby ahead of the sync one is promoted when that is safe.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { adminApi, startClusterProxy, usePgCluster, waitNodeState } from "../support/pg-cluster.ts";

const cluster = usePgCluster({ databases: ["app"] });
let proxy: RunningProxy;

beforeAll(async () => {
  await cluster().setup("CREATE TABLE acks (id int)", "app");
  proxy = await startClusterProxy(cluster(), {
    split: false,
    health: { interval: 0.3, timeout: 1, failureThreshold: 3 },
    toml: "[failover]\npolicy = \"auto\"\nbuffer_timeout_secs = 1.5\n",
  });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
});

/** GET /failovers once the `n`th failover has finished (whatever its result). */
async function settledFailover(n: number): Promise<any> {
  for (let i = 0; i < 150; i++) {
    const r = await adminApi(proxy, "GET", "/failovers");
    if (r.body.failovers.length >= n && r.body.failovers[0].result !== "running") return r.body;
    await Bun.sleep(100);
  }
  throw new Error(`failover ${n} did not finish`);
}

async function connect(): Promise<pg.Client> {
  const cl = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: "app", query_timeout: 30000 });
  cl.on("error", () => {});
  await cl.connect();
  return cl;
}

/** Stop a standby's WAL receiver (it stays up, in recovery); returns its primary_conninfo to restore. */
async function detach(node: string): Promise<string> {
  const c = cluster();
  const conninfo = await c.psql(node, "SHOW primary_conninfo");
  await c.psql(node, "ALTER SYSTEM SET primary_conninfo = ''");
  await c.psql(node, "SELECT pg_reload_conf()");
  for (let i = 0; i < 100 && (await c.psql(node, "SELECT count(*) FROM pg_stat_wal_receiver")) !== "0"; i++) await Bun.sleep(50);
  return conninfo;
}

async function attach(node: string, conninfo: string): Promise<void> {
  await cluster().psql(node, `ALTER SYSTEM SET primary_conninfo = '${conninfo.replaceAll("'", "''")}'`);
  await cluster().psql(node, "SELECT pg_reload_conf()");
}

test("the only standby left lacks acknowledged commits: no promotion, an alarm, held requests get 57P03 and the connection stays", async () => {
  const c = cluster();
  const node3Conninfo = await detach("node3");
  const cl = await connect();
  // Acknowledged by the sync standby node2, never seen by node3.
  for (let i = 0; i < 20; i++) await cl.query(`INSERT INTO acks VALUES (${i})`);
  await Bun.sleep(800); // a status probe of the primary reports node2's flush position
  await c.stopNode("node2", "immediate");
  await c.kill9("node1");
  await waitNodeState(proxy, "node1", "down", 10_000);
  const f = { body: await settledFailover(1) };
  const rec = f.body.failovers[0];
  expect(rec).toMatchObject({ kind: "failover", trigger: "auto", from: "node1", result: "refused", to: null });
  expect(rec.reason).toStartWith("no safe candidate (node2: down");
  expect(rec.reason).toContain("node3: behind the last acknowledged commit");
  expect(f.body.alarm).toContain("failover from node1 refused: no safe candidate");
  expect(f.body.epoch).toBe(0);
  const err = await cl.query("SELECT 1").catch((e: Error & { code?: string }) => `${e.code} ${e.message}`);
  expect(err).toBe("57P03 the primary is changing (primary node1 down); the request waited 1.5 s (failover.buffer_timeout_secs)");
  // The same connection still works once the primary is back: held requests go on.
  await c.startNode("node1");
  await waitNodeState(proxy, "node1", "up", 15_000);
  expect((await cl.query("SELECT count(*)::int AS n FROM acks")).rows[0].n).toBe(20);
  expect((await adminApi(proxy, "GET", "/failovers")).body).toMatchObject({ alarm: null, buffer: { holding: false }, primary: "node1" });
  await cl.end();
  await c.startNode("node2");
  await attach("node3", node3Conninfo);
  await c.waitStreaming();
}, 60_000);

test("an async standby ahead of the (config) sync one is promoted: it has everything the sync one has; the sync one follows it", async () => {
  const c = cluster();
  const node2Conninfo = await detach("node2");
  // Commits that only the async standby receives (the sync one is detached).
  await c.psql("node1", "SET synchronous_commit = local; INSERT INTO acks SELECT generate_series(100, 199)", { db: "app" });
  for (let i = 0; i < 100 && (await c.psql("node3", "SELECT count(*) FROM acks WHERE id >= 100", { db: "app" })) !== "100"; i++) await Bun.sleep(50);
  await attach("node2", node2Conninfo.replace(/port=\d+/, "port=1")); // keeps trying a closed port: stays behind
  await Bun.sleep(800);
  await c.kill9("node1");
  const f = await settledFailover(2);
  const rec = f.failovers[0];
  expect(rec).toMatchObject({ result: "done", to: "node3", epoch: 1 });
  expect(rec.candidates.map((x: { name: string; eligible: boolean; sync: boolean }) => [x.name, x.eligible, x.sync])).toEqual([
    ["node3", true, false],
    ["node2", true, true],
  ]);
  expect(rec.candidates[0].position).toBeGreaterThan(rec.candidates[1].position);
  const cl = await connect();
  expect((await cl.query("SELECT count(*)::int AS n, inet_server_port() AS p FROM acks WHERE id >= 100")).rows[0]).toEqual({ n: 100, p: c.node("node3").port });
  await cl.end();
  // node2 was repointed to node3 and catches up on the new timeline.
  let n = "";
  for (let i = 0; i < 100 && n !== "100"; i++) {
    n = await c.psql("node2", "SELECT count(*) FROM acks WHERE id >= 100", { db: "app" }).catch(() => "");
    if (n !== "100") await Bun.sleep(100);
  }
  expect(n).toBe("100");
}, 60_000);
