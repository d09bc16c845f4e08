// Switchover back and forth three times under an autocommit write load, the old primary rejoining each time through rejoin_command (pg_rewind): every write completes, and synchronous_standby_names is what failover.synchronous = "remaining" says after each move.

import { beforeAll, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminApi } from "../support/pg-cluster.ts";
import { useLedgerClusterProxy } from "../support/ledger-cluster.ts";
import { LedgerLoad, checkLedger } from "../support/ledger.ts";

// rejoin_command must be in the config before the cluster exists: it runs a per-node script written once it does.
const hooks = mkdtempSync(join(tmpdir(), "helios-rejoin-"));
const { cluster, proxy } = useLedgerClusterProxy({
  health: { interval: 0.5, timeout: 1, failureThreshold: 3 },
  toml: `[failover]\npolicy = "manual"\ndrain_timeout_secs = 2\nrejoin_command = "sh ${hooks}/rejoin-%n.sh"\n`,
});

beforeAll(() => {
  for (const n of cluster().dev.nodes) writeFileSync(join(hooks, `rejoin-${n.name}.sh`), `exec ${n.writeRejoinScript()}\n`);
});

/** Poll `read` until it returns `want` (bounded); the last value read. */
async function until(read: () => Promise<string>, want: string, limitMs = 30_000): Promise<string> {
  const deadline = Date.now() + limitMs;
  let v = await read();
  while (v !== want && Date.now() < deadline) {
    await Bun.sleep(100);
    v = await read();
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
