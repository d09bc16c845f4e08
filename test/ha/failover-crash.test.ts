// Crash failover: kill -9 of the primary under autocommit write loops (node-postgres, psycopg 3) through the proxy, on the layout with synchronous_standby_names on every node; the standby furthest ahead (the sync one on a tie) is promoted with synchronous replication set to the standby left, the other repointed; no write hangs, no acknowledged write lost or doubled.

import { expect, test } from "bun:test";
import pg from "pg";
import { adminApi, SYNC_LAYOUT } from "../support/pg-cluster.ts";
import { psycopg } from "../support/clients.ts";
import { useLedgerClusterProxy } from "../support/ledger-cluster.ts";
import { LedgerLoad, checkLedger } from "../support/ledger.ts";

const { cluster, proxy } = useLedgerClusterProxy({
  health: { interval: 1, timeout: 1, failureThreshold: 3 },
  toml: "[failover]\npolicy = \"auto\"\nbuffer_timeout_secs = 15\n",
});

test("kill -9 of the primary: writes resume on the promoted standby; every acknowledged write is there exactly once", async () => {
  const c = cluster();
  // Every statement has a watchdog (8 s, well under buffer_timeout_secs + the failover): a hang fails the test.
  const load = new LedgerLoad(proxy().port, { clients: 8, database: "app", queryTimeoutMs: 8000 });
  const py = psycopg("ledger_loop", proxy().port, "app", { LEDGER_SECONDS: "6", LEDGER_WRITER: "80", LEDGER_WATCHDOG: "8" });
  // Idle clients, logged in before the crash, each send one autocommit write during the failover.
  const idle = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const cl = new pg.Client({ host: "127.0.0.1", port: proxy().port, user: "postgres", database: "app", query_timeout: 20000 });
      cl.on("error", () => {});
      await cl.connect();
      return cl;
    }),
  );
  await Bun.sleep(1500);
  expect(load.acked.length).toBeGreaterThan(20);
  expect(await c.psql("node2", "SHOW synchronous_standby_names")).toBe(SYNC_LAYOUT === "every-node" ? 'FIRST 1 ("node2")' : "");
  const killedAt = performance.now();
  const killedAtWall = Date.now();
  await c.kill9("node1");
  await Bun.sleep(300);
  const held = await Promise.allSettled(idle.map((cl, i) => cl.query(`INSERT INTO ledger (id, writer) VALUES (${900_000 + i}, 99) RETURNING inet_server_port() AS p`)));
  // The sync standby, unless the async one had received more WAL at the kill (then it has all the sync one has).
  const promoted: string = (await adminApi(proxy(), "GET", "/failovers")).body.primary;
  expect(["node2", "node3"]).toContain(promoted);
  const other = promoted === "node2" ? "node3" : "node2";
  const first = await load.waitAckAfter(killedAt, c.node(promoted).port, 20000);
  await Bun.sleep(1000);
  await load.stop();
  for (const cl of idle) await cl.end().catch(() => {});
  const pyReport = (await py) as { acked: [number, number][]; errors: string[]; hangs: number };
  expect(pyReport.hangs).toBe(0);
  for (const code of pyReport.errors) expect(["08006", "57P01", "OperationalError"]).toContain(code);
  expect(pyReport.acked.some(([, at]) => at > killedAtWall + 300)).toBe(true);

  // Statements issued while the primary was gone waited and then ran on the new primary.
  expect(held.map((r) => (r.status === "fulfilled" ? r.value.rows[0].p : String(r.reason)))).toEqual(Array(4).fill(c.node(promoted).port));
  const firstWriteMs = first.ackAt - killedAt;
  expect(firstWriteMs).toBeLessThan(10_000);

  const f = await adminApi(proxy(), "GET", "/failovers");
  expect(f.body.epoch).toBe(1);
  expect(f.body.alarm).toBeNull();
  const rec = f.body.failovers[0];
  expect(rec).toMatchObject({ kind: "failover", trigger: "auto", from: "node1", to: promoted, result: "done" });
  expect(Number(rec.n0)).toBeGreaterThan(0);
  expect(rec.candidates.map((x: { name: string; eligible: boolean }) => [x.name, x.eligible])).toEqual([[promoted, true], [other, true]]);
  const [best, next] = rec.candidates as { position: number; sync: boolean }[];
  // Ranked by WAL position, the sync standby first on a tie.
  expect(best!.position > next!.position || (best!.position === next!.position && best!.sync)).toBe(true);
  const topo = await adminApi(proxy(), "GET", "/topology");
  expect(topo.body.primary).toBe(promoted);
  expect(topo.body.fenced).toEqual(["node1"]);

  // Errors only for writes in flight on the killed primary (connection lost), none of another kind.
  const kinds = new Set(load.errors.map((e) => e.code));
  for (const k of kinds) expect(["08006", "57P01", "client"]).toContain(k);
  expect(load.errors.filter((e) => e.code === "hang")).toEqual([]);
  expect(load.errors.every((e) => e.at >= killedAt)).toBe(true);

  // The ledger on the new primary: every acknowledged write exactly once.
  const ids = (await c.psql(promoted, "SELECT id FROM ledger", { db: "app" })).split("\n").filter(Boolean).map(Number);
  const acked = [
    ...load.acked,
    ...[0, 1, 2, 3].map((i) => ({ id: 900_000 + i, sentAt: 0, ackAt: 0, port: 0 })),
    ...pyReport.acked.map(([id]) => ({ id, sentAt: 0, ackAt: 0, port: 0 })),
  ];
  expect(checkLedger(acked, ids)).toEqual({ missing: [], duplicated: [] });

  // The other standby follows the new primary without a restart.
  let streaming = "";
  for (let i = 0; i < 100 && streaming !== `${other}|streaming`; i++) {
    streaming = await c.psql(promoted, "SELECT application_name || '|' || state FROM pg_stat_replication");
    if (streaming !== `${other}|streaming`) await Bun.sleep(50);
  }
  expect(streaming).toBe(`${other}|streaming`);
  // failover.synchronous = "remaining": the new primary names the standby left (FIRST 1 kept from the old setting); the standby carries none.
  const want = `FIRST 1 (${other})`;
  for (let i = 0; i < 100 && (await c.psql(promoted, "SHOW synchronous_standby_names")) !== want; i++) await Bun.sleep(50);
  expect(await c.psql(promoted, "SHOW synchronous_standby_names")).toBe(want);
  expect(await c.psql(other, "SHOW synchronous_standby_names")).toBe("");
  expect(await c.psql(promoted, "SELECT sync_state FROM pg_stat_replication", { db: "app" })).toBe("sync");
  // A write after that is confirmed by the standby and answered.
  const after = new pg.Client({ host: "127.0.0.1", port: proxy().port, user: "postgres", database: "app", query_timeout: 8000 });
  await after.connect();
  expect((await after.query("INSERT INTO ledger (id, writer) VALUES (999999, 98)")).rowCount).toBe(1);
  await after.end();
  const again = await adminApi(proxy(), "GET", "/failovers");
  expect(again.body.failovers[0].repointed).toMatchObject([{ node: other, ok: true }]);
  const metrics = (await adminApi(proxy(), "GET", "/metrics")).body as string;
  expect(metrics).toContain('heliosproxy_failovers_total{kind="failover",trigger="auto",result="done"} 1');
  expect(metrics).toContain("heliosproxy_failover_epoch 1");
  expect(metrics).toContain('heliosproxy_node_fenced{node="node1"} 1');
  expect(metrics).toContain(`heliosproxy_node_primary{node="${promoted}"} 1`);
  expect(metrics).toContain("heliosproxy_switchover_buffer_held 0");
  expect(metrics).toMatch(/heliosproxy_switchover_buffer_requests_total\{outcome="released"\} [1-9]/);
  console.log(`first write after kill: ${firstWriteMs.toFixed(0)} ms; failover ${rec.duration_ms} ms; held ${rec.hold_ms} ms; acked ${load.acked.length}; errors ${load.errors.length}; ${promoted} promoted, ${other} repointed in ${again.body.failovers[0].repointed[0].ms} ms`);
}, 60_000);
