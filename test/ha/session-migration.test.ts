// Sessions whose server connection is terminated (ha-tr on): state that moves, state that cannot, and replays the proxy must refuse.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { adminApi } from "../support/pg-cluster.ts";
import { PG_PORT, pgClient } from "../support/clients.ts";

let admin: pg.Client;

beforeAll(async () => {
  admin = await pgClient(PG_PORT);
  await admin.query("DROP TABLE IF EXISTS mig_t; CREATE TABLE mig_t (id int PRIMARY KEY, v int, note text)");
  await admin.query("INSERT INTO mig_t VALUES (1, 10, ''), (2, 20, '')");
});

afterAll(async () => {
  await admin.query("DROP TABLE IF EXISTS mig_t");
  await admin.end();
});

/** Terminate the server connections of clients with this application_name, then give the proxy a moment. */
async function cut(app: string): Promise<void> {
  const r = await admin.query("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1", [app]);
  expect(r.rows[0].n).toBe(1);
  await Bun.sleep(200);
}

async function client(p: RunningProxy, app: string): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "test", application_name: app });
  c.on("error", () => {});
  await c.connect();
  return c;
}

async function lastRecovery(p: RunningProxy): Promise<{ outcome: string; sqlstate: string; reason: string }> {
  const j = await adminApi(p, "GET", "/journal");
  return j.body.recent[0];
}

describe("session pooling", () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startProxy({ mode: "session", toml: "[transaction_replay]\nenabled = true\n" });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  test("a named protocol statement, settings and a WITH HOLD cursor survive a new server; DISCARD ALL is respected", async () => {
    const c = await client(proxy, "mig_session");
    await c.query("SET statement_timeout = '17s'");
    expect((await c.query({ name: "plus", text: "SELECT $1::int + 1 AS v", values: [1] })).rows[0].v).toBe(2);
    await c.query("DECLARE cur CURSOR WITH HOLD FOR SELECT id FROM mig_t ORDER BY id");
    expect((await c.query("FETCH 1 FROM cur")).rows).toEqual([{ id: 1 }]);
    await cut("mig_session");
    // pg reuses its prepared statement by name without a new Parse.
    expect((await c.query({ name: "plus", text: "SELECT $1::int + 1 AS v", values: [41] })).rows[0].v).toBe(42);
    expect((await c.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("17s");
    expect((await c.query("FETCH 1 FROM cur")).rows).toEqual([{ id: 2 }]);
    expect(await lastRecovery(proxy)).toMatchObject({ outcome: "migrated", sqlstate: "" });

    await c.query("DISCARD ALL");
    // DISCARD ALL resets application_name too; the proxy sets the client's again right behind it.
    expect((await c.query("SHOW application_name")).rows[0].application_name).toBe("mig_session");
    await cut("mig_session");
    expect((await c.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("0");
    const gone = await c.query("FETCH 1 FROM cur").catch((e: { code: string }) => e.code);
    expect(gone).toBe("34000");
    await c.end();
  });
});

describe("transaction pooling", () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startProxy({ mode: "transaction", toml: "[transaction_replay]\nenabled = true\nmax_journal_bytes = 1024\n" });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  test("a session holding a temporary table cannot move: a clean FATAL 08006 naming why", async () => {
    const c = await client(proxy, "mig_temp");
    const errors: { code?: string; message: string }[] = [];
    c.on("error", (e) => errors.push(e as { code?: string; message: string }));
    await c.query("CREATE TEMP TABLE scratch (a int)");
    await cut("mig_temp");
    await c.query("SELECT 1").catch((e: { code?: string; message: string }) => errors.push(e));
    // The session is told at once (it was idle), with the reason; then the connection ends.
    expect(errors[0]).toMatchObject({ code: "08006" });
    expect(errors[0]!.message).toContain("temporary tables");
    expect(await lastRecovery(proxy)).toMatchObject({ outcome: "closed", sqlstate: "08006" });
  });

  test("a reply that differs on replay: 40001, the transaction fails as PostgreSQL would, the connection goes on", async () => {
    const c = await client(proxy, "mig_differs");
    await c.query("BEGIN");
    expect((await c.query("SELECT v FROM mig_t WHERE id = 1")).rows[0].v).toBe(10);
    await admin.query("UPDATE mig_t SET v = 11 WHERE id = 1");
    await cut("mig_differs");
    const e = await c.query("UPDATE mig_t SET v = v + 100 WHERE id = 1").catch((x: { code: string }) => x.code);
    expect(e).toBe("40001");
    expect(await c.query("SELECT 1").catch((x: { code: string }) => x.code)).toBe("25P02");
    await c.query("ROLLBACK");
    expect((await c.query("SELECT v FROM mig_t WHERE id = 1")).rows[0].v).toBe(11);
    expect(await lastRecovery(proxy)).toMatchObject({ outcome: "refused", sqlstate: "40001" });
    await c.end();
  });

  test("a transaction over max_journal_bytes is not replayed: 40001 naming the limit", async () => {
    const c = await client(proxy, "mig_big");
    await c.query("BEGIN");
    await c.query("UPDATE mig_t SET note = $1 WHERE id = 2", ["x".repeat(2000)]);
    await cut("mig_big");
    const e = await c.query("SELECT 1").catch((x: { code: string; message: string }) => x);
    expect((e as { code: string }).code).toBe("40001");
    expect((e as { message: string }).message).toContain("max_journal_bytes");
    await c.query("ROLLBACK");
    expect((await admin.query("SELECT note FROM mig_t WHERE id = 2")).rows[0].note).toBe("");
    await c.end();
  });

  test("volatile functions: a transaction that called now() is refused, one that did not is replayed", async () => {
    const c = await client(proxy, "mig_volatile");
    await c.query("BEGIN");
    await c.query("SELECT now()");
    await cut("mig_volatile");
    expect(await c.query("SELECT 1").catch((x: { code: string }) => x.code)).toBe("40001");
    await c.query("ROLLBACK");
    expect((await lastRecovery(proxy)).reason).toContain("now");

    await c.query("BEGIN");
    await c.query("UPDATE mig_t SET v = v + 1 WHERE id = 2");
    await cut("mig_volatile");
    expect((await c.query("SELECT v FROM mig_t WHERE id = 2")).rows[0].v).toBe(21);
    await c.query("COMMIT");
    expect((await admin.query("SELECT v FROM mig_t WHERE id = 2")).rows[0].v).toBe(21);
    expect(await lastRecovery(proxy)).toMatchObject({ outcome: "replayed", sqlstate: "" });
    await c.end();
  });
});
