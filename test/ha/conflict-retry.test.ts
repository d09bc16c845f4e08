// retry_conflicts: a deadlock victim's transaction is rolled back and run again by the proxy, replies checked, again while runs meet conflicts (max_attempts); without it the client gets 40P01.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { adminApi } from "../support/pg-cluster.ts";
import { PG_PORT, pgClient } from "../support/clients.ts";

let admin: pg.Client;
let retrying: RunningProxy;
let plain: RunningProxy;
let twoAttempts: RunningProxy;

beforeAll(async () => {
  admin = await pgClient(PG_PORT);
  await admin.query("DROP TABLE IF EXISTS conflict_t; CREATE TABLE conflict_t (id int PRIMARY KEY, v int)");
  retrying = await startProxy({ mode: "transaction", toml: "[transaction_replay]\nenabled = true\nretry_conflicts = true\n" });
  plain = await startProxy({ mode: "transaction", toml: "[transaction_replay]\nenabled = true\n" });
  twoAttempts = await startProxy({ mode: "transaction", toml: "[transaction_replay]\nenabled = true\nretry_conflicts = true\nmax_attempts = 2\n" });
});

afterAll(async () => {
  await retrying?.stop();
  await plain?.stop();
  await twoAttempts?.stop();
  await admin.query("DROP TABLE IF EXISTS conflict_t");
  await admin.end();
});

/** Wait (bounded) until `sql` returns a row. */
async function until(sql: string, params: unknown[] = []): Promise<void> {
  const deadline = Date.now() + 20000;
  while ((await admin.query(sql, params)).rows.length === 0) {
    if (Date.now() > deadline) throw new Error(`not seen within 20 s: ${sql}`);
    await Bun.sleep(5);
  }
}

/**
 * A backend running exactly `query` waits for a lock: pg_locks, not the wait event, which a backend
 * granted its lock but not yet run again still shows.
 */
const waitingIn = (query: string) => until("SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted AND a.query = $1", [query]);

/**
 * Two clients that lock rows 1 and 2 in opposite orders, b last and b the one to find the deadlock
 * (a checks after 10 s), so b is its victim; returns what each got for its second UPDATE and COMMIT.
 */
async function deadlock(p: RunningProxy): Promise<{ a: string; b: string }> {
  await admin.query("TRUNCATE conflict_t; INSERT INTO conflict_t VALUES (1, 0), (2, 0)");
  const open = async (deadlockTimeout: string) => {
    const c = await pgClient(p.port);
    await c.query(`SET deadlock_timeout = '${deadlockTimeout}'`);
    await c.query("BEGIN");
    return c;
  };
  const a = await open("10s");
  const b = await open("100ms");
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
    await waitingIn("UPDATE conflict_t SET v = v + 1 WHERE id = 2");
    const second = outcome(b, "UPDATE conflict_t SET v = v + 10 WHERE id = 1");
    return { a: await first, b: await second };
  } finally {
    await a.end();
    await b.end();
  }
}

test("without retry_conflicts the deadlock victim gets 40P01", async () => {
  const r = await deadlock(plain);
  expect(r).toEqual({ a: "committed", b: "40P01" });
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

const GATE = 4242001;
const GATED = `SELECT pg_advisory_xact_lock(${GATE})`;

/**
 * A REPEATABLE READ transaction through `p` whose UPDATE meets a serialization failure `n` runs in a
 * row: each run waits at an advisory lock (its snapshot taken) while the row is changed and
 * committed; the lock goes, at the run's end, straight to a session already queued behind it, so
 * the run after it waits there too. Returns what the client got for its UPDATE and COMMIT.
 */
async function serializationFailures(p: RunningProxy, n: number): Promise<string> {
  await admin.query("TRUNCATE conflict_t; INSERT INTO conflict_t VALUES (1, 0)");
  const x = await pgClient(p.port);
  const holders: pg.Client[] = [await pgClient(PG_PORT)];
  try {
    await holders[0]!.query("SELECT pg_advisory_lock($1)", [GATE]);
    await x.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    const got = x
      .query(GATED)
      .then(() => x.query("UPDATE conflict_t SET v = v + 1 WHERE id = 1"))
      .then(() => x.query("COMMIT"))
      .then(
        () => "committed",
        async (e: { code: string }) => {
          await x.query("ROLLBACK");
          return e.code;
        },
      );
    for (let i = 0; i < n; i++) {
      await waitingIn(GATED);
      if (i < n - 1) {
        // The next run's gate: queued behind this run, it gets the lock when the run ends.
        const next = await pgClient(PG_PORT);
        holders.push(next);
        void next.query("SELECT pg_advisory_lock($1)", [GATE]);
        await until("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted HAVING count(*) = 2", [GATE]);
      }
      await admin.query("UPDATE conflict_t SET v = v + 100 WHERE id = 1");
      await holders[i]!.query("SELECT pg_advisory_unlock($1)", [GATE]);
    }
    return await got;
  } finally {
    await x.end();
    for (const h of holders) await h.end();
  }
}

test("a run again that meets a conflict again runs once more: three serialization failures in a row, then a commit", async () => {
  expect(await serializationFailures(retrying, 3)).toBe("committed");
  expect((await admin.query("SELECT v FROM conflict_t WHERE id = 1")).rows[0].v).toBe(301);
  const j = await adminApi(retrying, "GET", "/journal");
  expect(j.body.recent[0]).toMatchObject({ outcome: "retried", sqlstate: "", attempts: 3 });
});

test("with max_attempts spent the last run's conflict goes to the client as PostgreSQL gave it, and the record says so", async () => {
  expect(await serializationFailures(twoAttempts, 3)).toBe("40001");
  expect((await admin.query("SELECT v FROM conflict_t WHERE id = 1")).rows[0].v).toBe(300);
  const j = await adminApi(twoAttempts, "GET", "/journal");
  expect(j.body.counts.retried).toBe(1);
  expect(j.body.recent[0]).toMatchObject({ outcome: "retried", sqlstate: "40001", attempts: 2 });
});
