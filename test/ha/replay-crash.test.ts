// kill -9 of the primary under pgbench (20 clients) with transaction replay: open transactions replayed, in-doubt COMMITs resolved, the tpcb invariant holds, session state and cursor position survive.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { adminApi, startClusterProxy, SYNC_LAYOUT, usePgCluster } from "../support/pg-cluster.ts";
import { pgbench, run, tpcbBalances } from "../support/clients.ts";

const DB = "bench";
const cluster = usePgCluster({ databases: [DB], syncNames: SYNC_LAYOUT });
let proxy: RunningProxy;

/** pgbench's tpcb-like transaction with a fixed history time: no value in it differs on a second run. */
const REPLAYABLE_TPCB = `\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, '2026-01-01');
END;
`;

beforeAll(async () => {
  const c = cluster();
  const init = await run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", String(c.node("node1").port), "-U", "postgres", DB]);
  expect(init.code).toBe(0);
  await c.setup("CREATE TABLE cursor_rows AS SELECT g AS id FROM generate_series(1, 50) g", DB);
  proxy = await startClusterProxy(c, {
    split: false,
    maxConnections: 24,
    health: { interval: 1, timeout: 1, failureThreshold: 2 },
    toml: '[failover]\npolicy = "auto"\nbuffer_timeout_secs = 15\n[transaction_replay]\nenabled = true\n',
  });
}, 90_000);

afterAll(async () => {
  await proxy?.stop();
});

test("kill -9 under pgbench -c 20: no failed transaction, nothing lost or doubled, sessions keep their state and cursor", async () => {
  const c = cluster();
  const script = join(c.baseDir, "tpcb-replayable.sql");
  writeFileSync(script, REPLAYABLE_TPCB);
  const before = await tpcbBalances(c.node("node1").port, DB);

  // A session with state a new server must be given: SET, LISTEN, an advisory lock, SQL PREPARE, a WITH HOLD cursor.
  const s = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: DB, application_name: "stateful" });
  s.on("error", () => {});
  await s.connect();
  await s.query("SET work_mem = '5MB'");
  await s.query("LISTEN failover_news");
  await s.query("SELECT pg_advisory_lock(777)");
  await s.query("PREPARE plus_one (int) AS SELECT $1 + 1 AS v");
  await s.query("DECLARE held CURSOR WITH HOLD FOR SELECT id FROM cursor_rows ORDER BY id");
  expect((await s.query("FETCH 4 FROM held")).rows.map((r) => r.id)).toEqual([1, 2, 3, 4]);
  // A client idle inside a transaction at the moment of the crash.
  const t = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: DB });
  t.on("error", () => {});
  await t.connect();
  await t.query("BEGIN");
  await t.query("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, '2026-01-01')");

  const bench = pgbench(proxy.port, DB, ["-n", "-c", "20", "-j", "4", "-T", "7", "-M", "prepared", "-f", script]);
  await Bun.sleep(2500);
  await c.kill9("node1");
  const { code, output: out, processed, failed } = await bench;
  const j = await adminApi(proxy, "GET", "/journal");
  const outcomes: Record<string, number> = {};
  for (const rec of j.body.recent as { outcome: string }[]) outcomes[rec.outcome] = (outcomes[rec.outcome] ?? 0) + 1;
  console.log(`pgbench through the crash: ${processed} transactions, ${failed} failed; recoveries ${JSON.stringify(outcomes)}`);

  expect(out).not.toContain("aborted");
  expect(code).toBe(0);
  expect(failed).toBe(0);
  expect(processed).toBeGreaterThan(100);
  expect(j.body.counts.refused + j.body.counts.unknown + j.body.counts.closed).toBe(0);
  expect(j.body.counts.replayed + j.body.counts.committed).toBeGreaterThan(0);

  // The sync standby, unless the async one had received more WAL at the kill (test/ha/failover-crash checks the choice).
  const promoted: string = (await adminApi(proxy, "GET", "/failovers")).body.primary;
  expect(["node2", "node3"]).toContain(promoted);
  const metrics = (await adminApi(proxy, "GET", "/metrics")).body as string;
  expect(metrics).toContain(`heliosproxy_session_recoveries_total{outcome="replayed"} ${j.body.counts.replayed}`);
  expect(metrics).toContain('heliosproxy_session_recoveries_total{outcome="refused"} 0');

  // The idle transaction goes on where it was: its first insert was replayed, the second joins it.
  await t.query("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, '2026-01-02')");
  await t.query("COMMIT");
  await t.end();

  // Every committed pgbench transaction left exactly one history row, and the balances agree.
  const after = await tpcbBalances(c.node(promoted).port, DB);
  expect(after.n - before.n).toBe(processed + 2);
  expect(after.a).toBe(after.h);
  expect(after.t).toBe(after.h);
  expect(after.b).toBe(after.h);

  // The stateful session moved: same settings, statement, lock, channel and cursor position.
  expect((await s.query("SHOW work_mem")).rows[0].work_mem).toBe("5MB");
  expect((await s.query("EXECUTE plus_one(41)")).rows[0].v).toBe(42);
  expect((await s.query("FETCH 3 FROM held")).rows.map((r) => r.id)).toEqual([5, 6, 7]);
  const lock = await c.psql(promoted, "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.objid = 777", { db: DB });
  expect(lock).toBe("stateful");
  const heard = new Promise<string>((resolve) => s.once("notification", (n) => resolve(n.channel)));
  await c.psql(promoted, "NOTIFY failover_news", { db: DB });
  await s.query("SELECT 1");
  expect(await heard).toBe("failover_news");
  await s.end();
}, 90_000);
