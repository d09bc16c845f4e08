// Failover candidate ranking: WAL position first, sync tie-break, the acknowledged-commit floor, lag and identity rules.

import { describe, expect, test } from "bun:test";
import { rankCandidates } from "../../src/cluster/candidates.ts";
import { Cluster, type NodeStatus, type NodeView, type ReplicaStatus } from "../../src/cluster/cluster.ts";
import { nodeStatus, nodeView } from "../support/node-views.ts";

const status = nodeStatus;

function node(name: string, o: Partial<NodeView> = {}, st: Partial<NodeStatus> | null = {}): NodeView {
  return nodeView(name, { status: st === null ? null : status(st), ...o });
}

const replica = (applicationName: string, syncState: string, flushLsn: number): ReplicaStatus => ({ applicationName, syncState, flushLsn, replayLsn: flushLsn });
const opts = { preferSync: true, maxLagBytes: 0 };

function primary(replicas: ReplicaStatus[], walLsn = 2000): NodeView {
  return node("p", { role: "primary", health: "down" }, { inRecovery: false, walLsn, replicas });
}

const ranked = (r: ReturnType<typeof rankCandidates>) => r.candidates.map((c) => (c.eligible ? c.name : `${c.name}: ${c.reason}`));

describe("rankCandidates", () => {
  test("highest WAL position wins, even over the sync standby", () => {
    const old = primary([replica("s1", "sync", 1500), replica("a1", "async", 1400)]);
    const r = rankCandidates([old, node("s1", {}, { walLsn: 1500 }), node("a1", {}, { walLsn: 1600 })], old, opts);
    expect(ranked(r)).toEqual(["a1", "s1"]);
    expect(r.ackFloor).toBe(1500);
  });

  test("at equal positions the last known sync standby wins (prefer_sync); without it, config order", () => {
    const old = primary([replica("s1", "sync", 1500), replica("a1", "async", 1500)]);
    const nodes = [old, node("a1", {}, { walLsn: 1500 }), node("s1", {}, { walLsn: 1500 })];
    expect(ranked(rankCandidates(nodes, old, opts))).toEqual(["s1", "a1"]);
    expect(ranked(rankCandidates(nodes, old, { ...opts, preferSync: false }))).toEqual(["a1", "s1"]);
  });

  test("a standby behind the last acknowledged commit is never eligible", () => {
    const old = primary([replica("s1", "sync", 1800)]);
    const r = rankCandidates([old, node("s1", { health: "down", lastError: "connection refused" }), node("a1", {}, { walLsn: 1700 })], old, opts);
    expect(ranked(r)).toEqual(["s1: down: connection refused", "a1: behind the last acknowledged commit (at 1700, commits acknowledged up to 1800)"]);
  });

  test("quorum standbys count for the floor; with no sync standby there is no floor", () => {
    const q = primary([replica("s1", "quorum", 1800), replica("s2", "quorum", 1900)]);
    expect(rankCandidates([q, node("s1", {}, { walLsn: 1800 })], q, opts).ackFloor).toBe(1900);
    const none = primary([replica("a1", "async", 1800)]);
    const r = rankCandidates([none, node("a1", {}, { walLsn: 10 })], none, opts);
    expect(r.ackFloor).toBeNull();
    expect(ranked(r)).toEqual(["a1"]);
  });

  test("max_lag_bytes, drained, fenced, other cluster, not in recovery, no status", () => {
    const old = primary([], 100_000);
    const nodes = [
      old,
      node("lagging", {}, { walLsn: 1000 }),
      node("drained", { drained: true }),
      node("fenced", { fenced: true }),
      node("foreign", {}, { systemId: "7", walLsn: 99_999 }),
      node("writable", {}, { inRecovery: false, walLsn: 99_999 }),
      node("silent", {}, null),
      node("ok", {}, { walLsn: 99_000 }),
    ];
    const r = rankCandidates(nodes, { ...old, status: status({ inRecovery: false, walLsn: 100_000, systemId: "42" }) }, { preferSync: true, maxLagBytes: 4096 });
    expect(ranked(r)).toEqual([
      "ok",
      "lagging: 99000 bytes behind the old primary (failover.max_lag_bytes 4096)",
      "drained: drained",
      "fenced: a fenced old primary",
      "foreign: another cluster (system identifier 7, primary's 42)",
      "writable: not in recovery (not a standby)",
      "silent: no status probe has answered yet",
    ]);
  });

  test("config sync flag stands in when the old primary never reported its standbys", () => {
    const old = node("p", { role: "primary" }, null);
    const r = rankCandidates([old, node("a1", {}, { walLsn: 5 }), node("s1", { sync: true }, { walLsn: 5 })], old, opts);
    expect(r.candidates.map((c) => [c.name, c.sync])).toEqual([["s1", true], ["a1", false]]);
  });
});

describe("Cluster.syncMemory", () => {
  test("a sync standby that vanished from pg_stat_replication still sets the floor; a new primary starts over", () => {
    const c = new Cluster([
      { name: "p", host: "h", port: 1, role: "primary", sync: false, weight: 1 },
      { name: "s1", host: "h", port: 2, role: "standby", sync: true, weight: 1 },
      { name: "a1", host: "h", port: 3, role: "standby", sync: false, weight: 1 },
    ]);
    c.setStatus("p", status({ inRecovery: false, walLsn: 2000, replicas: [replica("s1", "sync", 1800), replica("a1", "async", 1700)] }));
    // s1 disconnects: the next probe lists a1 only.
    c.setStatus("p", status({ inRecovery: false, walLsn: 2100, replicas: [replica("a1", "async", 1700)] }));
    c.setStatus("a1", status({ walLsn: 1700 }));
    c.setHealth("s1", "down", "stopped");
    expect(c.syncMemory.ackFloor).toBe(1800);
    expect([...c.syncMemory.lastSync]).toEqual(["s1"]);
    const r = rankCandidates(c.snapshot(), c.node("p")!, opts, c.syncMemory);
    expect(r.candidates.find((x) => x.name === "a1")!.reason).toBe("behind the last acknowledged commit (at 1700, commits acknowledged up to 1800)");
    c.setStatus("a1", status({ walLsn: 1900 }));
    expect(ranked(rankCandidates(c.snapshot(), c.node("p")!, opts, c.syncMemory))[0]).toBe("a1");
    c.setPrimary("a1", "test");
    expect(c.syncMemory.ackFloor).toBeNull();
  });
});
