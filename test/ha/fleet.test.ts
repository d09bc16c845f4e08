// A fleet of proxies coordinated through a real etcd in front of one real cluster: one leader, one promotion and one N0 per failover, shared drain, no promotion without etcd.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { adminApi, nodeState, promoteRequests, startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";
import { FaultRelay } from "../support/fault-relay.ts";
import { coordinationToml, startEtcd, type EtcdServer } from "../support/etcd.ts";
import { LEDGER_DDL, LedgerLoad, checkLedger } from "../support/ledger.ts";
import { freePort, type RunningProxy } from "../support/proxy.ts";

const cluster = usePgCluster({ databases: ["app"] });
let etcd: EtcdServer;
/** p1..p3 share etcd; p4's endpoint is a dead port (cut off from the fleet). */
const proxies: RunningProxy[] = [];
const PREFIX = `/heliosproxy/fleet-test-${process.pid}`;
const flagDir = mkdtempSync(join(tmpdir(), "helios-fleet-"));
/** While this file exists, the promote hook sleeps after promoting (a failover stays half done for a while). */
const SLOW = join(flagDir, "slow");

function fleetToml(name: string, endpoint: string): string {
  return [
    "[failover]",
    'policy = "auto"',
    "buffer_timeout_secs = 15",
    "promote_timeout_secs = 10",
    `promote_command = "psql -X -q -h %h -p %p -U postgres -d postgres -Atc 'SELECT pg_promote()' >/dev/null && if [ -f ${SLOW} ]; then sleep 4; fi"`,
    coordinationToml(name, endpoint, PREFIX),
    "[transaction_replay]",
    "enabled = true",
  ].join("\n");
}

beforeAll(async () => {
  const c = cluster();
  await c.setup(LEDGER_DDL, "app");
  etcd = await startEtcd();
  const dead = `http://127.0.0.1:${freePort()}`;
  for (const [i, endpoint] of [etcd.url, etcd.url, etcd.url, dead].entries()) {
    proxies.push(await startClusterProxy(c, { split: false, maxConnections: 20, health: { interval: 0.5, timeout: 1, failureThreshold: 2 }, toml: fleetToml(`p${i + 1}`, endpoint) }));
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await etcd?.destroy();
  rmSync(flagDir, { recursive: true, force: true });
}, 30_000);

const fleetOf = async (p: RunningProxy) => (await adminApi(p, "GET", "/fleet")).body;

async function until<T>(what: string, check: () => Promise<T | null | undefined | false>, limitMs: number): Promise<T> {
  const deadline = performance.now() + limitMs;
  for (;;) {
    const v = await check().catch(() => null);
    if (v) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}\n${proxies.map((p, i) => `--- p${i + 1}\n${p.output().slice(-1500)}`).join("\n")}`);
    await Bun.sleep(25);
  }
}

const promotions = () => promoteRequests(cluster());

const live = () => proxies.filter((p) => p.proc.exitCode === null && p.proc.signalCode === null);

test("one leader; every proxy's heartbeat, version and view in GET /fleet; the cut-off proxy is degraded", async () => {
  const views = await until("three proxies to agree on one leader", async () => {
    const v = await Promise.all(proxies.slice(0, 3).map(fleetOf));
    return v.every((f) => f.leader !== null && f.leader === v[0].leader && f.proxies.length === 3) ? v : null;
  }, 10_000);
  expect(views.filter((f) => f.is_leader).map((f) => f.self)).toEqual([views[0].leader]);
  const f = views[0];
  expect(f.proxies.map((m: { name: string }) => m.name).sort()).toEqual(["p1", "p2", "p3"]);
  for (const m of f.proxies) {
    expect(m.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(m.view.primary).toBe("node1");
    expect(m.lease).not.toBe("0");
  }
  expect(f.etcd.reachable).toBe(true);
  const health = (await adminApi(proxies[0]!, "GET", "/health")).body;
  expect(health).toMatchObject({ status: "ok", degraded: [], fleet_leader: f.leader });
  // Cut off: serves (200) but degraded, never leads.
  const cut = await adminApi(proxies[3]!, "GET", "/health");
  expect(cut.status).toBe(200);
  expect(cut.body.status).toBe("degraded");
  expect(cut.body.degraded[0]).toContain("etcd unreachable");
  expect((await fleetOf(proxies[3]!)).is_leader).toBe(false);
  // A follower passes POST /switchover on to the leader (which refuses a target that is not a standby, changing nothing).
  const follower = proxies.find((_, i) => `p${i + 1}` !== f.leader && i < 3)!;
  const sw = await adminApi(follower, "POST", "/switchover", {}, { target: "node1" });
  expect(sw.status).toBe(400);
  expect(sw.body.forwarded_to).toBe(f.leader);
  expect(sw.body.message).toContain("not a standby");
});

test("drain through one proxy's admin API: every proxy of the fleet drains the node within a second; undrain likewise", async () => {
  const t0 = performance.now();
  const r = await adminApi(proxies[1]!, "POST", "/nodes/node3/drain");
  expect(r.status).toBe(200);
  expect(r.body.fleet).toEqual({ shared: true });
  const states = async () => Promise.all(proxies.slice(0, 3).map(async (p) => (await adminApi(p, "GET", "/nodes/node3")).body.state as string));
  await until("node3 draining on every proxy", async () => (await states()).every((s) => s === "draining"), 1000);
  const drainMs = performance.now() - t0;
  expect(drainMs).toBeLessThan(1000);
  expect((await fleetOf(proxies[0]!)).shared.drained).toEqual(["node3"]);
  await adminApi(proxies[2]!, "POST", "/nodes/node3/undrain");
  await until("node3 up again on every proxy", async () => (await states()).every((s) => s === "up"), 1000);
  console.log(`drain seen by all three proxies in ${drainMs.toFixed(0)} ms`);
});

test("a follower that cannot reach the primary reports it down and promotes nothing; the leader probes it, finds it answering, and does not fail over", async () => {
  const c = cluster();
  const relay = await FaultRelay.start(c.node("node1").port);
  const p5 = await startClusterProxy(c, { split: false, maxConnections: 5, health: { interval: 0.5, timeout: 1, failureThreshold: 2 }, ports: { node1: relay.port }, toml: fleetToml("p5", etcd.url) });
  try {
    const leaderName = await until("p5 in the fleet, under the same leader", async () => {
      const f = await fleetOf(proxies[0]!);
      return f.proxies.some((m: { name: string }) => m.name === "p5") && (await fleetOf(p5)).leader === f.leader ? (f.leader as string) : null;
    }, 10_000);
    const leader = proxies[Number(leaderName.slice(1)) - 1]!;
    const before = promotions();
    // p5 alone loses its path to node1.
    await relay.close();
    const reported = await until("the leader's note of p5's report and of its own probe", async () => {
      const r = (await fleetOf(leader)).primary_down_reports.find((x: { proxy: string }) => x.proxy === "p5");
      return r?.probe === "answered" ? r : null;
    }, 10_000);
    expect(reported).toMatchObject({ proxy: "p5", node: "node1" });
    // p5's own heartbeat, as every proxy sees it: node1 down.
    const seen = (await fleetOf(proxies[1]!)).proxies.find((m: { name: string }) => m.name === "p5");
    expect(seen.view.nodes.node1).toBe("down");
    expect(await nodeState(p5, "node1")).toBe("down");
    // A few of the leader's probe intervals: no failover anywhere.
    await Bun.sleep(1500);
    expect(promotions()).toEqual(before);
    for (const n of ["node2", "node3"]) expect(await c.psql(n, "SELECT pg_is_in_recovery()")).toBe("t");
    for (const p of proxies) expect(await nodeState(p, "node1")).toBe("up");
    const p5Failovers = (await adminApi(p5, "GET", "/failovers")).body;
    expect(p5Failovers.failovers).toEqual([]);
    expect(p5Failovers.primary).toBe("node1");
    expect((await fleetOf(p5)).is_leader).toBe(false);
    expect(p5.output()).toContain("not promoting here: this proxy is not the fleet leader");
    expect(leader.output()).toContain("fleet member p5 reports the primary node1 down; it answers this proxy's probe: no failover");
  } finally {
    await p5.stop();
    await relay.close();
  }
  // p5 gone: its report goes with its heartbeat key.
  await until("p5's report gone", async () => (await fleetOf(proxies[0]!)).primary_down_reports.length === 0, 10_000);
});

test("etcd down: every proxy degraded with an alarm, writes on the healthy primary go on, and a lost primary is promoted by nobody", async () => {
  const c = cluster();
  await etcd.stop();
  await until("all proxies degraded", async () => (await Promise.all(proxies.map((p) => adminApi(p, "GET", "/health")))).every((h) => h.status === 200 && h.body.status === "degraded"), 5000);
  const alarm = (await adminApi(proxies[0]!, "GET", "/failovers")).body.alarm as string;
  expect(alarm).toContain("etcd unreachable");
  // Client traffic on the healthy primary is unaffected.
  for (const p of proxies) {
    const cl = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "app" });
    await cl.connect();
    const r = await cl.query("INSERT INTO ledger (id, writer) VALUES (1, -1) RETURNING inet_server_port() AS port");
    expect(r.rows[0].port).toBe(c.node("node1").port);
    await cl.end();
  }
  const before = promotions();
  await c.kill9("node1");
  // Every proxy sees the primary down (2 missed probes) and holds; none promotes.
  await until("node1 down on every proxy", async () => (await Promise.all(proxies.map((p) => adminApi(p, "GET", "/nodes/node1")))).every((r) => r.body.state === "down"), 5000);
  await Bun.sleep(1500);
  expect(promotions()).toEqual(before);
  for (const n of ["node2", "node3"]) expect(await c.psql(n, "SELECT pg_is_in_recovery()")).toBe("t");
  for (const p of proxies) {
    const f = (await adminApi(p, "GET", "/failovers")).body;
    expect(f.failovers.filter((r: { result: string }) => r.result === "done")).toEqual([]);
    expect(f.primary).toBe("node1");
  }
  // The primary comes back, then etcd: held writes go on, the fleet is whole again.
  await c.startNode("node1");
  await etcd.start();
  await until("every coordinated proxy healthy again", async () => (await Promise.all(proxies.slice(0, 3).map((p) => adminApi(p, "GET", "/health")))).every((h) => h.body.status === "ok"), 10_000);
  await until("node1 up on every proxy", async () => (await Promise.all(proxies.map((p) => adminApi(p, "GET", "/nodes/node1")))).every((r) => r.body.state === "up"), 5000);
  await c.waitStreaming(30_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${c.dev.nodes.map((n) => `--- ${n.name} log ---\n${n.logTail(3000)}`).join("\n")}`);
  });
  await c.psql("node1", "DELETE FROM ledger", { db: "app" });
}, 60_000);

test("kill -9 of the primary under writes through three coordinated proxies: one promotion, one N0, every proxy on the new primary, ledger exact; the cut-off proxy follows by probing", async () => {
  const c = cluster();
  const before = promotions();
  // Transactions (BEGIN; INSERT; COMMIT): a COMMIT in flight at the kill is settled by the N0 rule, with the fleet's N0.
  const loads = proxies.map((p, i) => new LedgerLoad(p.port, { clients: 3, database: "app", firstWriter: i * 10, transactions: true }));
  await until("writes through every proxy", async () => loads.every((l) => l.acked.length > 10), 10_000);
  const killedAt = performance.now();
  await c.kill9("node1");
  const record = await until("the fleet's failover record", async () => {
    const r = (await fleetOf(proxies[0]!)).failover;
    return r?.state === "done" ? r : null;
  }, 20_000);
  const promoted: string = record.to;
  expect(["node2", "node3"]).toContain(promoted);
  for (const l of loads) await l.waitAckAfter(killedAt, c.node(promoted).port, 20_000);
  await Bun.sleep(500);
  await Promise.all(loads.map((l) => l.stop()));

  // Exactly one pg_promote() in the whole cluster, and one record of it (epoch 1, with N0).
  const after = promotions();
  expect(Object.values(after).reduce((a, b) => a + b, 0) - Object.values(before).reduce((a, b) => a + b, 0)).toBe(1);
  expect(after[promoted]! - before[promoted]!).toBe(1);
  expect(record).toMatchObject({ epoch: 1, state: "done", from: "node1", to: promoted });
  expect(Number(record.n0)).toBeGreaterThan(0);
  const keys = await etcd.list(`${PREFIX}/`);
  expect(keys.get(`${PREFIX}/epoch`)).toBe("1");

  // Every coordinated proxy: one finished failover, with the fleet's N0 (what commit-outcome resolution reads) and epoch.
  const leader = (await fleetOf(proxies[0]!)).leader;
  for (const [i, p] of proxies.slice(0, 3).entries()) {
    const f = (await adminApi(p, "GET", "/failovers")).body;
    const done = f.failovers.filter((r: { result: string }) => r.result === "done");
    expect(done.length).toBe(1);
    expect(done[0]).toMatchObject({ from: "node1", to: promoted, n0: record.n0, epoch: 1, trigger: `p${i + 1}` === leader ? "auto" : "fleet" });
    expect(f.primary).toBe(promoted);
    expect(f.epoch).toBe(1);
  }
  // The cut-off proxy promoted nothing and follows the new primary by probing.
  const cut = (await adminApi(proxies[3]!, "GET", "/failovers")).body;
  expect(cut.failovers.filter((r: { trigger: string }) => r.trigger !== "fleet")).toEqual([]);
  expect(cut.primary).toBe(promoted);
  const cutHealth = (await adminApi(proxies[3]!, "GET", "/health")).body;
  expect(cutHealth.status).toBe("degraded");
  expect(cutHealth.degraded[0]).toContain("follows the topology by probing");

  // Every acknowledged write through every proxy is on the new primary exactly once.
  const ids = (await c.psql(promoted, "SELECT id FROM ledger", { db: "app" })).split("\n").filter(Boolean).map(Number);
  expect(checkLedger(loads.flatMap((l) => l.acked), ids)).toEqual({ missing: [], duplicated: [] });
  // Sessions cut by the kill were recovered; on the coordinated proxies no COMMIT was left unknown (the shared N0 settles
  // those in doubt). The cut-off proxy has no N0: a COMMIT in doubt there is replayed only when the new primary says aborted, else answered 08007.
  const recoveries: Record<string, number>[] = [];
  for (const [i, p] of proxies.entries()) {
    const metrics = (await adminApi(p, "GET", "/metrics")).body as string;
    recoveries.push(Object.fromEntries([...metrics.matchAll(/^heliosproxy_session_recoveries_total\{outcome="(\w+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])])));
    if (i < 3) expect(recoveries[i]!.unknown).toBe(0);
    for (const e of loads[i]!.errors) expect(i < 3 ? ["08006", "57P01", "client"] : ["08006", "57P01", "client", "08007"]).toContain(e.code);
  }
  const firstWrites = loads.map((l) => (l.firstAckAfter(killedAt, c.node(promoted).port)!.ackAt - killedAt).toFixed(0));
  console.log(`one promotion of ${promoted} (N0 ${record.n0}); first write after the kill per proxy: ${firstWrites.join(", ")} ms; acked ${loads.map((l) => l.acked.length).join("/")}; errors ${loads.map((l) => l.errors.length).join("/")}; recoveries ${recoveries.map((r) => `replayed ${r.replayed} committed ${r.committed}`).join(", ")}`);
}, 60_000);

test("the leader is killed in the middle of a failover: another proxy finishes it from the record, nothing is promoted twice", async () => {
  const c = cluster();
  const old: string = (await fleetOf(proxies[0]!)).failover.to;
  const target = ["node2", "node3"].find((n) => n !== old)!;
  await until(`${target} streaming from ${old}`, async () => (await c.psql(old, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")) === "1", 10_000);
  const leaderName: string = (await fleetOf(proxies[0]!)).leader;
  const leader = proxies[Number(leaderName.slice(1)) - 1]!;
  const others = live().filter((p) => p !== leader && p !== proxies[3]);
  const before = promotions();
  writeFileSync(SLOW, "");
  const loads = others.map((p, i) => new LedgerLoad(p.port, { clients: 2, database: "app", firstWriter: 50 + i * 10 }));
  await until("writes through the followers", async () => loads.every((l) => l.acked.length > 5), 10_000);
  const killedAt = performance.now();
  await c.kill9(old);
  // The leader has won epoch 2 and its hook promoted the target; it is killed before it records N0.
  await until(`the leader's half-done failover to ${target}`, async () => {
    const r = (await etcd.list(`${PREFIX}/failover`)).get(`${PREFIX}/failover`);
    return r !== undefined && JSON.parse(r).state === "promoting" && (await c.psql(target, "SELECT pg_is_in_recovery()")) === "f";
  }, 15_000);
  leader.proc.kill("SIGKILL");
  await leader.proc.exited;
  const record = await until("another proxy to finish the failover", async () => {
    const r = (await fleetOf(others[0]!)).failover;
    return r?.state === "done" && r.epoch === 2 ? r : null;
  }, 15_000);
  expect(record).toMatchObject({ from: old, to: target, epoch: 2 });
  expect(record.leader).not.toBe(leaderName);
  expect(Number(record.n0)).toBeGreaterThan(0);
  for (const l of loads) await l.waitAckAfter(killedAt, c.node(target).port, 15_000);
  await Promise.all(loads.map((l) => l.stop()));
  const after = promotions();
  expect(after[target]! - before[target]!).toBe(1);
  expect(Object.values(after).reduce((a, b) => a + b, 0) - Object.values(before).reduce((a, b) => a + b, 0)).toBe(1);
  for (const p of others) {
    const f = (await adminApi(p, "GET", "/failovers")).body;
    expect(f.primary).toBe(target);
    expect(f.failovers[0]).toMatchObject({ to: target, n0: record.n0, result: "done" });
  }
  const ids = (await c.psql(target, "SELECT id FROM ledger", { db: "app" })).split("\n").filter(Boolean).map(Number);
  expect(checkLedger(loads.flatMap((l) => l.acked), ids)).toEqual({ missing: [], duplicated: [] });
  console.log(`leader ${leaderName} killed mid-failover; ${record.leader} finished it in ${(performance.now() - killedAt).toFixed(0)} ms after the kill of ${old}`);
}, 60_000);
