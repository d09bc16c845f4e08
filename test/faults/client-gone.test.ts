// Clients that vanish (RELIABILITY B8-B10) and proxy shutdown on SIGTERM (B14): servers come back rolled back, or are discarded, never reused busy.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, waitFor, type PgInstance } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { tryLogin } from "../support/wire.ts";
import { pgClient } from "../support/clients.ts";

let inst: PgInstance;
let proxy: RunningProxy;

beforeAll(async () => {
  // client_connection_check_interval lets PostgreSQL notice a discarded connection while a query runs.
  inst = await startPgInstance({ databases: ["b8", "b9", "b10", "b14"], conf: { client_connection_check_interval: "'500ms'" } });
  await inst.psql("CREATE TABLE b8 (id int)", { db: "b8" });
  await inst.psql("CREATE TABLE b14 (id int)", { db: "b14" });
  proxy = await startProxy({ maxConnections: 1, nodes: [{ host: "127.0.0.1", port: inst.port }], poolExtra: "wait_timeout_secs = 10" });
}, 60000);

afterAll(async () => {
  await proxy?.stop();
  await inst?.destroy();
}, 60000);

const client = (port: number, database: string) => pgClient(port, { database });

async function activity(db: string): Promise<{ pid: number; state: string; query: string }[]> {
  const out = await inst.psql(`SELECT pid, state, query FROM pg_stat_activity WHERE datname = '${db}' AND backend_type = 'client backend'`);
  return out === ""
    ? []
    : out.split("\n").map((l) => {
        const [pid, state, ...q] = l.split("|");
        return { pid: Number(pid), state: state!, query: q.join("|") };
      });
}

describe("B8 client gone mid-transaction", () => {
  for (const kind of ["open", "failed"] as const) {
    test(`${kind} transaction: rolled back before the server is reused, no idle-in-transaction left`, async () => {
      const { conn: c, login } = await tryLogin(proxy.port, { user: "postgres", database: "b8" }, null);
      expect(login.ok).toBe(true);
      expect((await c.simpleQuery("BEGIN")).status).toBe("T");
      expect((await c.simpleQuery("INSERT INTO b8 VALUES (1)")).error).toBeNull();
      const pid = Number((await c.simpleQuery("SELECT pg_backend_pid()")).rows[0]![0]);
      if (kind === "failed") expect((await c.simpleQuery("SELECT 1/0")).status).toBe("E");
      c.destroy();

      await waitFor("the abandoned transaction to end", async () => (await activity("b8")).every((a) => !a.state.startsWith("idle in transaction")), 3000);
      const t0 = performance.now();
      const other = await client(proxy.port, "b8");
      const r = await other.query("SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM b8)::int AS n, now() = statement_timestamp() AS fresh_tx");
      // Pool of one: the same server, reused only after ROLLBACK.
      expect(r.rows[0].pid).toBe(pid);
      expect(r.rows[0].n).toBe(0);
      expect(r.rows[0].fresh_tx).toBe(true);
      expect(performance.now() - t0).toBeLessThan(2000);
      await other.end();
      expect(await inst.psql("SELECT count(*) FROM b8", { db: "b8" })).toBe("0");
    }, 20000);
  }
});

describe("B9 Parse without Sync, then the client vanishes", () => {
  test("no backend is left waiting and the pool keeps serving", async () => {
    for (let i = 0; i < 20; i++) {
      const { conn: c, login } = await tryLogin(proxy.port, { user: "postgres", database: "b9" }, null);
      expect(login.ok).toBe(true);
      if (i % 2 === 0) await c.send(F.parse(`s${i}`, "SELECT $1::int"));
      else await c.send(F.concat(F.parse("", "SELECT pg_sleep(30)"), F.bind("", ""), F.execute(), F.flush()));
      await Bun.sleep(30);
      c.destroy();
    }
    await waitFor("no backend busy or waiting", async () => (await activity("b9")).every((a) => a.state === "idle"), 5000);
    expect((await activity("b9")).length).toBeLessThanOrEqual(1);
    const t0 = performance.now();
    const c = await client(proxy.port, "b9");
    expect((await c.query("SELECT 9 AS nine")).rows[0].nine).toBe(9);
    expect(performance.now() - t0).toBeLessThan(2000);
    await c.end();
  }, 30000);
});

describe("B10 client gone during pg_sleep(60)", () => {
  test("the query is cancelled or its connection discarded within seconds; the server is never reused busy", async () => {
    const { conn: c, login } = await tryLogin(proxy.port, { user: "postgres", database: "b10" }, null);
    expect(login.ok).toBe(true);
    await c.send(F.query("SELECT pg_sleep(60) /* b10 */"));
    const sleeper = await waitFor("the sleep to start", async () => (await activity("b10")).find((a) => a.state === "active" && a.query.includes("b10")), 5000);
    c.destroy();

    // Pool of one: the next client must not queue behind (or be handed) the sleeping server.
    const t0 = performance.now();
    const other = await client(proxy.port, "b10");
    const r = await other.query("SELECT pg_backend_pid() AS pid, 10 AS ten");
    expect(r.rows[0].ten).toBe(10);
    expect(performance.now() - t0).toBeLessThan(3000);
    await other.end();
    await waitFor("the sleeping query to go away", async () => !(await activity("b10")).some((a) => a.state === "active" && a.query.includes("b10")), 5000);
    expect(sleeper!.pid).toBeGreaterThan(0);
  }, 30000);
});

describe("B14 SIGTERM", () => {
  test("the in-flight transaction finishes, new connections are refused, the process exits 0", async () => {
    const own = await startProxy({ maxConnections: 2, nodes: [{ host: "127.0.0.1", port: inst.port }], toml: "" });
    const port = own.port;
    const c = await client(port, "b14");
    const idle = await client(port, "b14");
    const idleErr = new Promise<{ code?: string }>((r) => idle.on("error", (e) => r(e as { code?: string })));
    await c.query("BEGIN");
    await c.query("INSERT INTO b14 VALUES (1)");
    const sleep = c.query("SELECT pg_sleep(1) AS slept");
    await Bun.sleep(200);
    own.proc.kill("SIGTERM");
    await Bun.sleep(200);

    // New connections are refused while the transaction is still running.
    const refused = await client(port, "b14").then(
      () => "connected",
      (e) => ((e as { code?: string }).code === "57P01" ? "57P01" : "refused"),
    );
    expect(["refused", "57P01"]).toContain(refused);
    // An idle client is told and closed.
    expect((await idleErr).code).toBe("57P01");

    expect((await sleep).rows[0].slept).toBe("");
    await c.query("INSERT INTO b14 VALUES (2)");
    await c.query("COMMIT");
    await c.end().catch(() => {});
    const code = await Promise.race([own.proc.exited, Bun.sleep(10000).then(() => "still running")]);
    expect(code).toBe(0);
    expect(await inst.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM b14", { db: "b14" })).toBe("1,2");
  }, 30000);
});
