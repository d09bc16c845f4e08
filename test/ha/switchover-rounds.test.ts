// Layout report under failover.synchronous = keep; then switchover back and forth three times under an autocommit write load, the old primary rejoining each time through rejoin_command (pg_rewind): every write completes, and synchronous_standby_names is what failover.synchronous = "remaining" says after each move.

import { beforeAll, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminApi, startClusterProxy } from "../support/pg-cluster.ts";
import { useLedgerClusterProxy } from "../support/ledger-cluster.ts";
import { LedgerLoad, checkLedger } from "../support/ledger.ts";

// rejoin_command must be in the config before the cluster exists: it runs a per-node script written once it does.
const hooks = mkdtempSync(join(tmpdir(), "helios-rejoin-"));
const { cluster, proxy } = useLedgerClusterProxy({
  syncNames: "every-node",
  health: { interval: 0.5, timeout: 1, failureThreshold: 3 },
  toml: `[failover]\npolicy = "manual"\ndrain_timeout_secs = 2\nrejoin_command = "sh ${hooks}/rejoin-%n.sh"\n`,
});

beforeAll(() => {
  for (const n of cluster().dev.nodes) writeFileSync(join(hooks, `rejoin-${n.name}.sh`), `exec ${n.writeRejoinScript()}\n`);
});

test("failover.synchronous = keep on the layout pg_basebackup gives (FIRST 1 (node2) everywhere): node2 is reported before any failover, in the log, /health, /nodes and the metrics", async () => {
  const c = cluster();
  const keep = await startClusterProxy(c, { split: false, toml: '[failover]\npolicy = "manual"\nsynchronous = "keep"\n' });
  try {
    const problems = async () => JSON.stringify((await adminApi(keep, "GET", "/health")).body.synchronous_replication?.problems ?? null);
    const deadline = Date.now() + 10_000;
    while ((await problems()) === "[]" || (await problems()) === "null") {
      if (Date.now() > deadline) break;
      await Bun.sleep(100);
    }
    const health = (await adminApi(keep, "GET", "/health")).body;
    expect(health.status).toBe("ok");
    expect(health.synchronous_replication.mode).toBe("keep");
    expect(health.synchronous_replication.problems).toHaveLength(1);
    expect(health.synchronous_replication.problems[0]).toStartWith(`synchronous_standby_names = 'FIRST 1 ("node2")' on node2 (it names node2, node2 itself): once promoted, its commits would wait forever`);
    const nodes = (await adminApi(keep, "GET", "/nodes")).body.nodes as { id: string; synchronous_standby_names: string; application_name: string; sync_after_promotion: string | null }[];
    expect(nodes.map((n) => [n.id, n.synchronous_standby_names, n.application_name, n.sync_after_promotion !== null])).toEqual([
      ["node1", 'FIRST 1 ("node2")', "walreceiver", false],
      ["node2", 'FIRST 1 ("node2")', "node2", true],
      ["node3", 'FIRST 1 ("node2")', "node3", false],
    ]);
    expect((await adminApi(keep, "GET", "/metrics")).body).toContain("heliosproxy_sync_layout_problems 1");
    // The log line comes from the controller's upkeep tick, which may run just after /health first showed the problem.
    const logged = "synchronous replication: synchronous_standby_names = 'FIRST 1 (\"node2\")' on node2";
    const logDeadline = Date.now() + 5_000;
    while (!keep.output().includes(logged) && Date.now() < logDeadline) await Bun.sleep(50);
    expect(keep.output()).toContain(logged);
  } finally {
    await keep.stop();
  }
  // The proxy of this file (remaining) reports nothing: it sets the value itself at promotion.
  expect((await adminApi(proxy(), "GET", "/health")).body.synchronous_replication.problems).toEqual([]);
}, 60_000);

/**
 * Poll `read` until it returns `want` (bounded); the last value read. A read that fails (a node
 * restarting in a rejoin has no socket for a moment) counts as not yet; its error is the value.
 */
async function until(read: () => Promise<string>, want: string, limitMs = 30_000): Promise<string> {
  const deadline = Date.now() + limitMs;
  const attempt = () => read().catch((e: Error) => `error: ${e.message}`);
  let v = await attempt();
  while (v !== want && Date.now() < deadline) {
    await Bun.sleep(100);
    v = await attempt();
  }
  return v;
}

test("three switchovers with the old primary rejoining each time: no write fails or hangs, the ledger is exact, synchronous_standby_names follows the primary", async () => {
  const c = cluster();
  const load = new LedgerLoad(proxy().port, { clients: 4, database: "app", queryTimeoutMs: 8000 });
  const moves: [string, string][] = [
    ["node1", "node2"],
    ["node2", "node1"],
    ["node1", "node2"],
  ];
  const ssn = (n: string) => c.psql(n, "SHOW synchronous_standby_names");
  for (const [i, [from, to]] of moves.entries()) {
    const third = ["node1", "node2", "node3"].find((n) => n !== from && n !== to)!;
    await Bun.sleep(500);
    const r = await adminApi(proxy(), "POST", "/switchover", {}, { target: to });
    if (r.status !== 200) console.log(`switchover ${from} -> ${to}: ${JSON.stringify(r.body)}\n${proxy().output().slice(-3000)}`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ kind: "switchover", from, to, result: "done", epoch: i + 1 });
    const steps = (r.body.steps as { step: string }[]).map((s) => s.step);
    // Cleared on the new primary before writes were released (no standby streams from it yet).
    expect(steps).toContain(`synchronous_standby_names on ${to}: '' (failover.synchronous = remaining)`);
    // The old primary rejoins (rejoin_command: stop, pg_rewind, standby.signal) and streams from the new one.
    const streaming = `${[from, third].sort().join(",")}`;
    const seen = await until(() => c.psql(to, "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_replication WHERE state = 'streaming'"), streaming);
    if (seen !== streaming) console.log(`${from} did not rejoin:\n${proxy().output().slice(-4000)}\n${c.dev.node(from).logTail(3000)}`);
    expect(seen).toBe(streaming);
    // The proxy takes it back once a probe sees it in recovery on the new timeline.
    const topo = async () => {
      const t = (await adminApi(proxy(), "GET", "/topology")).body;
      return `${t.primary} fenced:${t.fenced.join(",")} standbys:${t.standbys.join(",")}`;
    };
    const back = `${to} fenced: standbys:${[from, third].sort().join(",")}`;
    expect(await until(topo, back)).toBe(back);
    // The primary names both standbys, FIRST 1 kept from the first layout; standbys carry none; the fence is undone.
    const want = `FIRST 1 (${[from, third].sort().join(", ")})`;
    expect(await until(() => ssn(to), want)).toBe(want);
    expect(await until(() => ssn(from), "")).toBe("");
    expect(await ssn(third)).toBe("");
    expect(await c.psql(from, "SHOW default_transaction_read_only")).toBe("off");
    expect(await c.psql(to, "SELECT string_agg(sync_state, ',') FROM pg_stat_replication")).toContain("sync");
  }
  await Bun.sleep(500);
  await load.stop();
  expect(load.errors).toEqual([]);
  expect(load.acked.length).toBeGreaterThan(50);
  const ids = (await c.psql("node2", "SELECT id FROM ledger", { db: "app" })).split("\n").filter(Boolean).map(Number);
  expect(checkLedger(load.acked, ids)).toEqual({ missing: [], duplicated: [] });
  const health = await adminApi(proxy(), "GET", "/health");
  expect(health.body.synchronous_replication).toMatchObject({ mode: "remaining", problems: [], alarm: null, waits_ended: 0 });
}, 180_000);
