// A COMMIT in doubt across a fleet failover: a follower settles it with the leader's N0; a proxy cut off from etcd has no N0 for the change it followed by probing, so it replays only a transaction the new primary says aborted and answers 08007 where the status could belong to a reused id.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { pgClient } from "../support/clients.ts";
import { coordinationToml, startEtcd, type EtcdServer } from "../support/etcd.ts";
import { FaultRelay } from "../support/fault-relay.ts";
import { adminApi, startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";
import { waitFor } from "../support/pg-instance.ts";
import { freePort, type RunningProxy } from "../support/proxy.ts";

const cluster = usePgCluster({ databases: ["app"] });
const PREFIX = `/heliosproxy/fleet-in-doubt-${process.pid}`;
let etcd: EtcdServer;
let leader: RunningProxy;
/** The leader probes every 60 s: a lost primary reaches it as the follower's report. follower: coordinated; cut-off: its etcd endpoint is a dead port. Both reach every node through relays that can swallow a COMMIT or its reply. */
const via: { name: string; proxy: RunningProxy; relays: Record<string, FaultRelay> }[] = [];

const toml = (name: string, endpoint: string) => ['[failover]\npolicy = "auto"', coordinationToml(name, endpoint, PREFIX), "[transaction_replay]\nenabled = true"].join("\n");
const health = { interval: 0.5, timeout: 1, failureThreshold: 2 };

/** waitFor, with the proxies' output when it times out. */
function until<T>(what: string, check: () => Promise<T>, limitMs: number): Promise<NonNullable<T>> {
  return waitFor(what, check, limitMs, 25).catch((e: Error) => {
    throw new Error(`${e.message}\n${[leader, ...via.map((v) => v.proxy)].map((p) => p?.output().slice(-1500)).join("\n---\n")}`);
  }) as Promise<NonNullable<T>>;
}

beforeAll(async () => {
  const c = cluster();
  await c.setup("CREATE TABLE doubt (v text NOT NULL)", "app");
  etcd = await startEtcd();
  // The leader's own probes are slow: it learns of a lost primary from the follower's report (and confirms it with its own probes).
  leader = await startClusterProxy(c, { split: false, health: { ...health, interval: 60 }, toml: toml("leader", etcd.url) });
  await until("the leader elected", async () => (await adminApi(leader, "GET", "/fleet")).body.is_leader === true, 10_000);
  for (const [name, endpoint] of [["follower", etcd.url], ["cut-off", `http://127.0.0.1:${freePort()}`]] as const) {
    const relays: Record<string, FaultRelay> = {};
    for (const n of ["node1", "node2", "node3"]) relays[n] = await FaultRelay.start(c.node(n).port);
    const ports = Object.fromEntries(Object.entries(relays).map(([n, r]) => [n, r.port]));
    via.push({ name, relays, proxy: await startClusterProxy(c, { split: false, health, ports, toml: toml(name, endpoint) }) });
  }
}, 60_000);

afterAll(async () => {
  await Promise.all([leader, ...via.map((v) => v.proxy)].map((p) => p?.stop()));
  for (const v of via) for (const r of Object.values(v.relays)) await r.close();
  await etcd?.destroy();
}, 30_000);

test("COMMIT committed on the old primary, its reply lost, then kill -9 (the slow leader acts on the follower's report): the follower answers it committed (fleet N0); the cut-off proxy answers 08007; the row is there once", async () => {
  const c = cluster();
  const clients = await Promise.all(via.map((v) => pgClient(v.proxy.port, { database: "app", query_timeout: 30_000 })));
  const outcomes: Promise<string>[] = [];
  for (const [i, v] of via.entries()) {
    await clients[i]!.query("BEGIN");
    await clients[i]!.query(`INSERT INTO doubt VALUES ('${v.name}')`);
    // The COMMIT reaches node1 and commits there; its reply never comes back and the connection stays until node1 goes.
    v.relays.node1!.armOnce("cut-after-commit", { holdMs: 60_000 });
    outcomes.push(clients[i]!.query("COMMIT").then(() => "COMMIT", (e: Error & { code?: string }) => e.code ?? e.message));
  }
  await until("both COMMIT replies swallowed", async () => via.every((v) => v.relays.node1!.fired.length === 1), 10_000);
  // Committed on node1 and on its synchronous standby.
  await until("both rows on node2", async () => (await c.psql("node2", "SELECT count(*) FROM doubt", { db: "app" })) === "2", 10_000);
  await c.kill9("node1");

  expect(await outcomes[0]!).toBe("COMMIT");
  expect(await outcomes[1]!).toBe("08007");
  const record = await until("the leader's record", async () => {
    const r = (await adminApi(leader, "GET", "/fleet")).body.failover;
    return r?.state === "done" ? r : null;
  }, 10_000);
  expect(Number(record.n0)).toBeGreaterThan(0);
  expect(leader.output()).toContain("fleet member follower reports the primary node1 down; this proxy's probe failed too");
  expect((await c.psql(record.to, "SELECT string_agg(v, ',' ORDER BY v) FROM doubt", { db: "app" })).split(",")).toEqual(["cut-off", "follower"]);

  // Each proxy's account of the recovery.
  const recent = async (i: number) => (await adminApi(via[i]!.proxy, "GET", `/journal?session=${(clients[i] as unknown as { processID: number }).processID}`)).body.recent[0];
  expect(await recent(0)).toMatchObject({ outcome: "committed" });
  const cut = await recent(1);
  expect(cut).toMatchObject({ outcome: "unknown", sqlstate: "08007" });
  expect(cut.reason).toContain("holds no N0");
  // The follower took the fleet's N0 for the change; the cut-off proxy followed by probing, promoted nothing, and is degraded.
  expect((await adminApi(via[0]!.proxy, "GET", "/failovers")).body.failovers[0]).toMatchObject({ trigger: "fleet", to: record.to, n0: record.n0 });
  const cutView = (await adminApi(via[1]!.proxy, "GET", "/failovers")).body;
  expect([cutView.primary, cutView.failovers]).toEqual([record.to, []]);
  expect((await adminApi(via[1]!.proxy, "GET", "/health")).body.status).toBe("degraded");
  for (const cl of clients) await cl.end().catch(() => {});
}, 60_000);

test("COMMIT that never reached the primary, then kill -9: both proxies replay it once; the cut-off proxy needs no N0 for that (the new primary says aborted, or never assigned the id)", async () => {
  const c = cluster();
  const first = (await adminApi(leader, "GET", "/fleet")).body.failover;
  const primary: string = first.to;
  await until(`a standby streaming from ${primary}`, async () => (await c.psql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")) === "1", 15_000);
  const clients = await Promise.all(via.map((v) => pgClient(v.proxy.port, { database: "app", query_timeout: 30_000 })));
  const outcomes: Promise<string>[] = [];
  for (const [i, v] of via.entries()) {
    await clients[i]!.query("BEGIN");
    await clients[i]!.query(`INSERT INTO doubt VALUES ('${v.name} again')`);
    // The COMMIT is dropped (the transaction-id read sent with it is answered); the connection stays silent until the primary goes.
    v.relays[primary]!.armOnce("cut-before-commit", { holdMs: 60_000 });
    outcomes.push(clients[i]!.query("COMMIT").then(() => "COMMIT", (e: Error & { code?: string }) => e.code ?? e.message));
  }
  await until("both COMMITs dropped", async () => via.every((v) => v.relays[primary]!.fired.length === 1), 10_000);
  await c.kill9(primary);

  expect(await outcomes[0]!).toBe("COMMIT");
  expect(await outcomes[1]!).toBe("COMMIT");
  const record = await until("the leader's second record", async () => {
    const r = (await adminApi(leader, "GET", "/fleet")).body.failover;
    return r?.state === "done" && r.epoch === first.epoch + 1 ? r : null;
  }, 10_000);
  expect((await c.psql(record.to, "SELECT string_agg(v, ',' ORDER BY v) FROM doubt", { db: "app" })).split(",")).toEqual(["cut-off", "cut-off again", "follower", "follower again"]);
  for (const [i, cl] of clients.entries()) {
    const recent = (await adminApi(via[i]!.proxy, "GET", `/journal?session=${(cl as unknown as { processID: number }).processID}`)).body.recent[0];
    expect(recent).toMatchObject({ outcome: "replayed" });
    await cl.end().catch(() => {});
  }
}, 60_000);
