// A standby promoted outside the fleet (an operator's pg_promote) with etcd answering: no failover record will come, so the proxies follow it at once, without an N0, rather than hold writes for promote_timeout_secs.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { pgClient } from "../support/clients.ts";
import { coordinationToml, startEtcd, type EtcdServer } from "../support/etcd.ts";
import { adminApi, nodeState, startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";
import { waitFor } from "../support/pg-instance.ts";
import type { RunningProxy } from "../support/proxy.ts";

const cluster = usePgCluster({ databases: ["app"] });
const PREFIX = `/heliosproxy/fleet-external-${process.pid}`;
let etcd: EtcdServer;
const proxies: RunningProxy[] = [];

beforeAll(async () => {
  const c = cluster();
  await c.setup("CREATE TABLE external_writes (n int)", "app");
  etcd = await startEtcd();
  for (const name of ["p1", "p2"]) {
    // policy manual: no proxy promotes; promote_timeout_secs long enough to tell a wait for a record from none.
    const toml = ['[failover]\npolicy = "manual"\npromote_timeout_secs = 20\nbuffer_timeout_secs = 25', coordinationToml(name, etcd.url, PREFIX)].join("\n");
    proxies.push(await startClusterProxy(c, { split: false, health: { interval: 0.5, timeout: 1, failureThreshold: 2 }, toml }));
  }
  await waitFor("one leader both proxies know", async () => {
    const v = await Promise.all(proxies.map(async (p) => (await adminApi(p, "GET", "/fleet")).body));
    return v.every((f) => f.leader !== null && f.leader === v[0].leader && f.proxies.length === 2);
  }, 10_000, 25);
}, 60_000);

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await etcd?.destroy();
}, 30_000);

test("the primary stopped, a standby promoted by hand: every proxy writes to it within seconds (no record awaited), with no failover of its own", async () => {
  const c = cluster();
  // What the operator does: the standby will not wait for a synchronous standby of its own, then it is promoted.
  await c.psql("node3", "ALTER SYSTEM SET synchronous_standby_names = ''");
  await c.psql("node3", "SELECT pg_reload_conf()");
  const clients = await Promise.all(proxies.map((p) => pgClient(p.port, { database: "app", query_timeout: 30_000 })));
  await c.stopNode("node1", "fast");
  await waitFor("node1 down on both proxies", async () => (await Promise.all(proxies.map((p) => nodeState(p, "node1")))).every((s) => s === "down"), 10_000, 25);
  const t0 = performance.now();
  await c.psql("node3", "SELECT pg_promote()");
  const ports = await Promise.all(clients.map(async (cl) => (await cl.query("INSERT INTO external_writes VALUES (1) RETURNING inet_server_port() AS port")).rows[0].port as number));
  const ms = performance.now() - t0;
  expect(ports).toEqual([c.node("node3").port, c.node("node3").port]);
  // Waiting for a record would have taken promote_timeout_secs (20 s).
  expect(ms).toBeLessThan(8000);
  for (const p of proxies) {
    expect(p.output()).toContain("node3 was promoted outside the fleet");
    const f = (await adminApi(p, "GET", "/failovers")).body;
    expect([f.primary, f.failovers]).toEqual(["node3", []]);
  }
  expect((await adminApi(proxies[0]!, "GET", "/fleet")).body.failover).toBeNull();
  for (const cl of clients) await cl.end();
  console.log(`writes through both proxies on node3 ${ms.toFixed(0)} ms after pg_promote()`);
}, 60_000);
