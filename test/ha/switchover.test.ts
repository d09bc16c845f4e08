// Planned switchover under load: open transactions finish, new ones wait, then everything runs on the new primary with no client error.

import { expect, test } from "bun:test";
import pg from "pg";
import { psql } from "../support/proxy.ts";
import { adminApi } from "../support/pg-cluster.ts";
import { useLedgerClusterProxy } from "../support/ledger-cluster.ts";
import { LedgerLoad, checkLedger } from "../support/ledger.ts";

const { cluster, proxy } = useLedgerClusterProxy({
  health: { interval: 0.5, timeout: 1, failureThreshold: 3 },
  toml: '[failover]\npolicy = "manual"\ndrain_timeout_secs = 1\n[auth]\nmethod = "trust"\nadmin_users = ["postgres"]\n',
});

async function connect(): Promise<pg.Client> {
  const cl = new pg.Client({ host: "127.0.0.1", port: proxy().port, user: "postgres", database: "app", query_timeout: 20000 });
  cl.on("error", () => {});
  await cl.connect();
  return cl;
}

test("bad requests: unknown target, a body that is not JSON, a target that is not a standby: 400", async () => {
  expect((await adminApi(proxy(), "POST", "/switchover", {}, { target: "nodeX" })).status).toBe(400);
  const notJson = await fetch(`http://127.0.0.1:${proxy().adminPort}/switchover`, { method: "POST", body: "{oops" });
  expect(notJson.status).toBe(400);
  expect(((await notJson.json()) as { message: string }).message).toBe("the body is not valid JSON");
  const self = await adminApi(proxy(), "POST", "/switchover", {}, { target: "node1" });
  expect(self.status).toBe(400);
  expect(self.body.message).toContain("not a standby");
  expect((await adminApi(proxy(), "GET", "/failovers")).body.epoch).toBe(0);
});

test("a transaction that does not finish within drain_timeout calls the switchover off; nothing changes", async () => {
  const cl = await connect();
  await cl.query("BEGIN");
  await cl.query("INSERT INTO ledger (id, writer) VALUES (1, -1)");
  const r = await adminApi(proxy(), "POST", "/switchover", {}, { target: "node2" });
  expect(r.status).toBe(409);
  expect(r.body.record).toMatchObject({ kind: "switchover", result: "aborted", from: "node1", to: null });
  expect(r.body.message).toContain("1 open transaction still running");
  // The transaction goes on and commits on the primary it began on; other clients were only paused.
  await cl.query("COMMIT");
  const other = await connect();
  expect((await other.query("SELECT inet_server_port() AS p")).rows[0].p).toBe(cluster().node("node1").port);
  await other.end();
  await cl.end();
  expect((await adminApi(proxy(), "GET", "/failovers")).body).toMatchObject({ epoch: 0, primary: "node1", buffer: { holding: false } });
});

test("switchover under load: 0 client errors, open transactions finish, writes move to node2, ledger exact", async () => {
  const c = cluster();
  const load = new LedgerLoad(proxy().port, { clients: 8, database: "app" });
  // Multi-statement transactions running across the switchover.
  let txDone = 0;
  const txErrors: string[] = [];
  let txRunning = true;
  const txIds: number[] = [];
  const txWorker = (async () => {
    const cl = await connect();
    let n = 0;
    while (txRunning) {
      try {
        await cl.query("BEGIN");
        const id = 90_000_000 + ++n;
        await cl.query(`INSERT INTO ledger (id, writer) VALUES (${id}, 50)`);
        await Bun.sleep(20);
        await cl.query(`UPDATE ledger SET writer = 51 WHERE id = ${id}`);
        await cl.query("COMMIT");
        txIds.push(id);
        txDone++;
      } catch (e) {
        txErrors.push((e as Error).message);
      }
    }
    await cl.end();
  })();
  // A client between transactions with session settings: it must not notice the move.
  const settled = await connect();
  await settled.query("SET search_path = audit, public");
  await settled.query("SET statement_timeout = '12s'");
  await Bun.sleep(1000);
  const r = await adminApi(proxy(), "POST", "/switchover", {}, { target: "node2" });
  expect(r.status).toBe(200);
  const rec = r.body;
  expect(rec).toMatchObject({ kind: "switchover", from: "node1", to: "node2", result: "done", epoch: 1 });
  const after = performance.now();
  await load.waitAckAfter(after, c.node("node2").port);
  await Bun.sleep(500);
  txRunning = false;
  await txWorker;
  await load.stop();

  const shown = (await settled.query("SELECT current_setting('search_path') AS sp, current_setting('statement_timeout') AS st, inet_server_port() AS p")).rows[0];
  expect(shown).toEqual({ sp: "audit, public", st: "12s", p: c.node("node2").port });
  await settled.end();
  expect(load.errors).toEqual([]);
  expect(txErrors).toEqual([]);
  expect(txDone).toBeGreaterThan(10);
  // Nothing acknowledged after the switchover came from the old primary.
  expect(load.acked.filter((a) => a.sentAt > after && a.port !== c.node("node2").port)).toEqual([]);
  const ids = (await c.psql("node2", "SELECT id FROM ledger WHERE writer <> -1", { db: "app" })).split("\n").filter(Boolean).map(Number);
  const acked = [...load.acked, ...txIds.map((id) => ({ id, sentAt: 0, ackAt: 0, port: 0 }))];
  expect(checkLedger(acked, ids)).toEqual({ missing: [], duplicated: [] });
  expect(await c.psql("node2", `SELECT count(*) FROM ledger WHERE writer = 50`, { db: "app" })).toBe("0");

  // The old primary is fenced (read-only, out of rotation); node3 streams from node2.
  expect(await c.psql("node1", "SHOW default_transaction_read_only")).toBe("on");
  const topo = await adminApi(proxy(), "GET", "/topology");
  expect(topo.body).toMatchObject({ primary: "node2", fenced: ["node1"], standbys: ["node3"], epoch: 1 });
  let streaming = "";
  for (let i = 0; i < 100 && streaming !== "node3|streaming"; i++) {
    streaming = await c.psql("node2", "SELECT application_name || '|' || state FROM pg_stat_replication");
    if (streaming !== "node3|streaming") await Bun.sleep(50);
  }
  expect(streaming).toBe("node3|streaming");
  // The fenced old primary still says it is a primary, on the old timeline: probes never make it primary again.
  await Bun.sleep(1200);
  const later = await adminApi(proxy(), "GET", "/topology");
  expect(later.body).toMatchObject({ primary: "node2", fenced: ["node1"], epoch: 1 });
  expect(later.body.nodes.map((n: { id: string; timeline: number }) => [n.id, n.timeline])).toEqual([["node1", 1], ["node2", 2], ["node3", 2]]);
  // The console shows the history too, newest first (the refused request with target node1 included).
  const shown2 = await psql(proxy().port, ["-At", "-F", "|", "-c", "SHOW FAILOVERS"], { db: "heliosproxy" });
  expect(shown2.stdout.trim().split("\n").map((l) => l.split("|").slice(0, 6))).toEqual([
    ["3", "switchover", "api", "node1", "node2", "done"],
    ["2", "switchover", "api", "node1", "", "aborted"],
    ["1", "switchover", "api", "node1", "", "refused"],
  ]);
  const maxLatency = Math.max(...load.acked.map((a) => a.ackAt - a.sentAt));
  console.log(`switchover ${rec.duration_ms} ms, requests held ${rec.hold_ms} ms, slowest write ${maxLatency.toFixed(0)} ms, ${load.acked.length} writes + ${txDone} transactions, 0 errors`);
}, 60_000);

test("POST /failover on the healthy primary: 409 pointing to /switchover; with force it promotes the standby and fences the primary", async () => {
  const c = cluster();
  // After the switchover above: node2 is the primary, node3 its standby.
  const plain = await adminApi(proxy(), "POST", "/failover", {}, {});
  expect(plain.status).toBe(409);
  expect(plain.body.message).toContain("POST /switchover");
  expect(await c.psql("node2", "SHOW default_transaction_read_only")).toBe("off");
  const r = await adminApi(proxy(), "POST", "/failover", {}, { force: true });
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ kind: "failover", trigger: "api", from: "node2", to: "node3", result: "done", reason: "forced by the API" });
  expect(r.body.fence).toBe("soft fence: read-only, client backends ended");
  expect(await c.psql("node2", "SHOW default_transaction_read_only")).toBe("on");
  expect(await c.psql("node3", "SELECT pg_is_in_recovery()")).toBe("f");
  const cl = await connect();
  expect((await cl.query("INSERT INTO ledger (id, writer) VALUES (77, 77) RETURNING inet_server_port() AS p")).rows[0].p).toBe(c.node("node3").port);
  await cl.end();
});
