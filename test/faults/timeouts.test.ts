// Client-side timeouts (RELIABILITY C6): query timeout, idle-in-transaction timeout, client idle timeout.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, waitFor, type PgInstance } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { tryLogin } from "../support/wire.ts";
import { pgClient } from "../support/clients.ts";

let inst: PgInstance;
let proxy: RunningProxy;

beforeAll(async () => {
  inst = await startPgInstance({ databases: ["c6"] });
  await inst.psql("CREATE TABLE c6 (id int)", { db: "c6" });
  proxy = await startProxy({
    maxConnections: 3,
    nodes: [{ host: "127.0.0.1", port: inst.port }],
    toml: "[timeouts]\nquery_timeout_secs = 1\nidle_in_transaction_timeout_secs = 2.5\nclient_idle_timeout_secs = 2.5",
  });
}, 60000);

afterAll(async () => {
  await proxy?.stop();
  await inst?.destroy();
}, 60000);

const client = () => pgClient(proxy.port, { database: "c6" });

describe("C6 timeouts", () => {
  test("query_timeout cancels a long query with 57014 and the session stays usable", async () => {
    const c = await client();
    const t0 = performance.now();
    const e = await c.query("SELECT pg_sleep(5)").then(
      () => null,
      (err) => err as { code?: string },
    );
    const took = performance.now() - t0;
    expect(e?.code).toBe("57014");
    expect(took).toBeGreaterThan(900);
    expect(took).toBeLessThan(2500);
    expect((await c.query("SELECT 1 AS one")).rows[0].one).toBe(1);
    await c.end();
  });

  test("an idle open transaction is not killed by query_timeout", async () => {
    const c = await client();
    await c.query("BEGIN");
    await c.query("INSERT INTO c6 VALUES (1)");
    await Bun.sleep(1800);
    expect((await c.query("SELECT count(*)::int AS n FROM c6")).rows[0].n).toBe(1);
    await c.query("COMMIT");
    expect(await inst.psql("SELECT count(*) FROM c6", { db: "c6" })).toBe("1");
    await c.end();
  });

  test("idle_in_transaction_timeout closes the client with 25P03 and rolls the transaction back", async () => {
    const { conn: c, login } = await tryLogin(proxy.port, { user: "postgres", database: "c6" }, null);
    expect(login.ok).toBe(true);
    expect((await c.simpleQuery("BEGIN")).status).toBe("T");
    expect((await c.simpleQuery("INSERT INTO c6 VALUES (2)")).error).toBeNull();
    const t0 = performance.now();
    const msgs = await c.drain(6000);
    const took = performance.now() - t0;
    expect(msgs.map((m) => m.type)).toEqual(["E"]);
    const err = F.errorFields(msgs[0]!.body);
    expect(err.code).toBe("25P03");
    expect(err.severity).toBe("FATAL");
    expect(took).toBeGreaterThan(2300);
    expect(took).toBeLessThan(4000);
    expect(c.closed).toBe(true);
    await waitFor("no idle-in-transaction backend", async () => (await inst.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'c6' AND state LIKE 'idle in transaction%'")) === "0", 3000);
    expect(await inst.psql("SELECT count(*) FROM c6 WHERE id = 2", { db: "c6" })).toBe("0");
  }, 15000);

  test("client_idle_timeout closes an idle client with 57P05", async () => {
    const { conn: c, login } = await tryLogin(proxy.port, { user: "postgres", database: "c6" }, null);
    expect(login.ok).toBe(true);
    expect((await c.simpleQuery("SELECT 1")).error).toBeNull();
    const t0 = performance.now();
    const msgs = await c.drain(6000);
    const took = performance.now() - t0;
    expect(msgs.map((m) => m.type)).toEqual(["E"]);
    expect(F.errorFields(msgs[0]!.body).code).toBe("57P05");
    expect(took).toBeGreaterThan(2300);
    expect(took).toBeLessThan(4000);
    expect(c.closed).toBe(true);
  }, 15000);
});
