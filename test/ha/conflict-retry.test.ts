// retry_conflicts: a deadlock victim's transaction is rolled back and run again by the proxy, replies checked; without it the client gets 40P01.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { adminApi } from "../support/pg-cluster.ts";
import { PG_PORT, pgClient } from "../support/clients.ts";

let admin: pg.Client;
let retrying: RunningProxy;
let plain: RunningProxy;

beforeAll(async () => {
  admin = await pgClient(PG_PORT);
  await admin.query("DROP TABLE IF EXISTS conflict_t; CREATE TABLE conflict_t (id int PRIMARY KEY, v int)");
  retrying = await startProxy({ mode: "transaction", toml: "[transaction_replay]\nenabled = true\nretry_conflicts = true\n" });
  plain = await startProxy({ mode: "transaction", toml: "[transaction_replay]\nenabled = true\n" });
});

afterAll(async () => {
  await retrying?.stop();
  await plain?.stop();
  await admin.query("DROP TABLE IF EXISTS conflict_t");
  await admin.end();
});

/** Two clients that lock rows 1 and 2 in opposite orders; returns what each got for its second UPDATE and COMMIT. */
async function deadlock(p: RunningProxy): Promise<{ a: string; b: string }> {
  await admin.query("TRUNCATE conflict_t; INSERT INTO conflict_t VALUES (1, 0), (2, 0)");
  const open = async () => {
    const c = await pgClient(p.port);
    await c.query("SET deadlock_timeout = '100ms'");
    await c.query("BEGIN");
    return c;
  };
  const a = await open();
  const b = await open();
  const outcome = async (c: pg.Client, sql: string) => {
    try {
      await c.query(sql);
      await c.query("COMMIT");
      return "committed";
    } catch (e) {
      await c.query("ROLLBACK");
      return (e as { code: string }).code;
    }
  };
  try {
    expect((await a.query("UPDATE conflict_t SET v = v + 1 WHERE id = 1")).rowCount).toBe(1);
    expect((await b.query("UPDATE conflict_t SET v = v + 10 WHERE id = 2")).rowCount).toBe(1);
    const first = outcome(a, "UPDATE conflict_t SET v = v + 1 WHERE id = 2");
    await Bun.sleep(50);
    const second = outcome(b, "UPDATE conflict_t SET v = v + 10 WHERE id = 1");
    return { a: await first, b: await second };
  } finally {
    await a.end();
    await b.end();
  }
}

test("without retry_conflicts the deadlock victim gets 40P01", async () => {
  const r = await deadlock(plain);
  expect([r.a, r.b].sort()).toEqual(["40P01", "committed"]);
});

test("with retry_conflicts both transactions commit, each change applied once", async () => {
  const r = await deadlock(retrying);
  expect(r).toEqual({ a: "committed", b: "committed" });
  const rows = await admin.query("SELECT id, v FROM conflict_t ORDER BY id");
  expect(rows.rows).toEqual([
    { id: 1, v: 11 },
    { id: 2, v: 11 },
  ]);
  const j = await adminApi(retrying, "GET", "/journal");
  expect(j.body.counts.retried).toBe(1);
  expect(j.body.recent[0]).toMatchObject({ outcome: "retried", sqlstate: "", reason: "deadlock or serialization failure" });
});

test("a retry whose replies differ is refused with 40001, never a silent change", async () => {
  await admin.query("TRUNCATE conflict_t; INSERT INTO conflict_t VALUES (1, 0), (2, 0), (3, 0)");
  const a = await pgClient(retrying.port);
  const b = await pgClient(retrying.port);
  try {
    // b is the one to find the deadlock (and be its victim): a waits far longer before checking.
    await a.query("SET deadlock_timeout = '10s'");
    await b.query("SET deadlock_timeout = '100ms'");
    for (const c of [a, b]) await c.query("BEGIN");
    // b saw row 3 before someone else changed it: run again, its first reply would differ.
    expect((await b.query("SELECT v FROM conflict_t WHERE id = 3")).rows[0].v).toBe(0);
    await admin.query("UPDATE conflict_t SET v = 5 WHERE id = 3");
    await a.query("UPDATE conflict_t SET v = v + 1 WHERE id = 1");
    await b.query("UPDATE conflict_t SET v = v + 10 WHERE id = 2");
    const first = a.query("UPDATE conflict_t SET v = v + 1 WHERE id = 2");
    await Bun.sleep(50);
    const e = await b.query("UPDATE conflict_t SET v = v + 10 WHERE id = 1").catch((x: { code: string }) => x.code);
    expect(e).toBe("40001");
    expect(await b.query("SELECT 1").catch((x: { code: string }) => x.code)).toBe("25P02");
    await b.query("ROLLBACK");
    await first;
    await a.query("COMMIT");
    expect((await admin.query("SELECT v FROM conflict_t ORDER BY id")).rows.map((r) => r.v)).toEqual([1, 1, 5]);
    const j = await adminApi(retrying, "GET", "/journal");
    expect(j.body.recent[0]).toMatchObject({ outcome: "refused", sqlstate: "40001" });
  } finally {
    await a.end();
    await b.end();
  }
});
