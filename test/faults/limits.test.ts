// Connection limits and pool sizing (RELIABILITY C1-C5): client, database and user limits, pool bounds, wait timeout, server lifetimes.

import { describe, expect, test } from "bun:test";
import type { ProxyOptions } from "../support/proxy.ts";
import { waitFor } from "../support/pg-instance.ts";
import { pgClient } from "../support/clients.ts";
import { usePgInstance } from "../support/pg-fixture.ts";

const fx = usePgInstance({ databases: ["c1", "c2a", "c2b", "c2burst", "c3", "c3min", "c4", "c5"] }, (i) => i.psql("CREATE ROLE u1 LOGIN; CREATE ROLE u2 LOGIN"));
const proxyWith = (o: ProxyOptions) => fx.proxyWith(o);

const client = (port: number, database: string, user = "postgres") => pgClient(port, { database, user });

async function failure(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error("expected a failure");
}

async function backends(db: string): Promise<{ pid: number; state: string }[]> {
  const r = await fx.monitor.query("SELECT pid, state FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", [db]);
  return r.rows;
}

describe("C1 max_client_conn", () => {
  test("client N+1 gets a fast 53300 naming the limit; a freed slot is usable again", async () => {
    const proxy = await proxyWith({ toml: "[limits]\nmax_client_conn = 5" });
    const held = [];
    for (let i = 0; i < 5; i++) held.push(await client(proxy.port, "c1"));
    const t0 = performance.now();
    const e = await failure(client(proxy.port, "c1"));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e.code).toBe("53300");
    expect(e.message).toContain("max_client_conn");
    expect(e.message).toContain("5");
    await held.pop()!.end();
    await Bun.sleep(50);
    const again = await client(proxy.port, "c1");
    expect((await again.query("SELECT 1 AS one")).rows[0].one).toBe(1);
    for (const c of [...held, again]) await c.end();
  });
});

describe("C2 per-database and per-user limits", () => {
  test("53300 at max_db_connections and max_user_connections; failed logins take no slot", async () => {
    const proxy = await proxyWith({ toml: "[limits]\nmax_db_connections = 2\nmax_user_connections = 3" });
    // Failed logins first: a database that does not exist, five times.
    for (let i = 0; i < 5; i++) {
      const e = await failure(client(proxy.port, "c2_missing", "u1"));
      expect(e.code).toBe("3D000");
    }
    const a1 = await client(proxy.port, "c2a", "u1");
    const a2 = await client(proxy.port, "c2a", "u1");
    const dbFull = await failure(client(proxy.port, "c2a", "u2"));
    expect(dbFull.code).toBe("53300");
    expect(dbFull.message).toContain('"c2a"');
    const b1 = await client(proxy.port, "c2b", "u1");
    const userFull = await failure(client(proxy.port, "c2b", "u1"));
    expect(userFull.code).toBe("53300");
    expect(userFull.message).toContain('"u1"');
    const b2 = await client(proxy.port, "c2b", "u2");
    for (const c of [a1, a2, b1, b2]) expect((await c.query("SELECT current_user AS u")).rows[0].u).toMatch(/^u[12]$/);

    // Refusals took no slot either: once everyone leaves, u1 gets its three again.
    for (const c of [a1, a2, b1, b2]) await c.end();
    await Bun.sleep(50);
    const again = [await client(proxy.port, "c2a", "u1"), await client(proxy.port, "c2a", "u1"), await client(proxy.port, "c2b", "u1")];
    expect((await failure(client(proxy.port, "c2b", "u1"))).code).toBe("53300");
    for (const c of again) await c.end();
  }, 20000);
});

describe("C2 login burst", () => {
  test("10 clients logging in at once to a new pool: exactly max_db_connections get in", async () => {
    const proxy = await proxyWith({ toml: "[limits]\nmax_db_connections = 2" });
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        client(proxy.port, "c2burst").then(
          (c) => ({ c, code: "ok" }),
          (e) => ({ c: null, code: (e as { code?: string }).code ?? "conn" }),
        ),
      ),
    );
    for (const r of results) await r.c?.end();
    expect(results.filter((r) => r.code === "ok").length).toBe(2);
    expect(results.filter((r) => r.code === "53300").length).toBe(8);
  }, 30000);
});

describe("C3 pool bounds", () => {
  test("30 concurrent clients never push server connections past max_connections", async () => {
    const proxy = await proxyWith({ maxConnections: 5, poolExtra: "wait_timeout_secs = 20" });
    const warm = await client(proxy.port, "c3");
    await warm.query("SELECT 1");
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await backends("c3")).length);
        await Bun.sleep(20);
      }
    })();
    const clients = await Promise.all(Array.from({ length: 30 }, () => client(proxy.port, "c3")));
    await Promise.all(
      clients.map(async (c, i) => {
        for (let k = 0; k < 8; k++) expect((await c.query("SELECT pg_sleep(0.01), $1::int AS i", [i])).rows[0].i).toBe(i);
      }),
    );
    sampling = false;
    await sampler;
    expect(peak).toBeGreaterThanOrEqual(2);
    expect(peak).toBeLessThanOrEqual(5);
    for (const c of [warm, ...clients]) await c.end();
  }, 30000);

  test("min_connections servers stay open with no client and are replaced when killed", async () => {
    const proxy = await proxyWith({ maxConnections: 5, minConnections: 3 });
    const c = await client(proxy.port, "c3min");
    await c.query("SELECT 1");
    await c.end();
    await waitFor("three idle servers", async () => (await backends("c3min")).filter((b) => b.state === "idle").length === 3, 5000);
    const first = (await backends("c3min")).map((b) => b.pid);
    await fx.monitor.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'c3min'");
    await waitFor("three new idle servers", async () => {
      const now = await backends("c3min");
      return now.length === 3 && now.every((b) => !first.includes(b.pid) && b.state === "idle");
    }, 5000);
    await Bun.sleep(600);
    expect((await backends("c3min")).length).toBe(3);
  }, 20000);
});

describe("C4 wait timeout", () => {
  test("pool of one held in a transaction: the next client fails inside wait_timeout + 1 s", async () => {
    const proxy = await proxyWith({ maxConnections: 1, poolExtra: "wait_timeout_secs = 1" });
    const holder = await client(proxy.port, "c4");
    await holder.query("BEGIN");
    await holder.query("SELECT 1");
    const waiter = await client(proxy.port, "c4");
    const t0 = performance.now();
    const e = await failure(waiter.query("SELECT 2"));
    const took = performance.now() - t0;
    expect(e.code).toMatch(/^08/);
    expect(`${e.message} ${(e as { detail?: string }).detail ?? ""}`).toContain("wait_timeout");
    expect(took).toBeGreaterThan(900);
    expect(took).toBeLessThan(2000);
    await holder.query("COMMIT");
    const next = await client(proxy.port, "c4");
    expect((await next.query("SELECT 3 AS three")).rows[0].three).toBe(3);
    for (const c of [holder, waiter, next]) await c.end().catch(() => {});
  }, 20000);
});

describe("C5 server lifetime and idle timeout", () => {
  test("an idle server is closed after idle_timeout_secs; the next query opens another", async () => {
    const proxy = await proxyWith({ maxConnections: 2, poolExtra: "idle_timeout_secs = 1\nserver_lifetime_secs = 0" });
    const c = await client(proxy.port, "c5");
    const pid = (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    await waitFor("the idle server to close", async () => !(await backends("c5")).some((b) => b.pid === pid), 4000);
    const next = (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
    expect(next).not.toBe(pid);
    await c.end();
  }, 20000);

  test("a busy server is replaced after server_lifetime_secs without client errors", async () => {
    const proxy = await proxyWith({ maxConnections: 1, poolExtra: "idle_timeout_secs = 0\nserver_lifetime_secs = 1" });
    const c = await client(proxy.port, "c5");
    const pids = new Set<number>();
    const t0 = performance.now();
    while (performance.now() - t0 < 3000) {
      pids.add((await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
      await Bun.sleep(50);
    }
    expect(pids.size).toBeGreaterThanOrEqual(2);
    expect(pids.size).toBeLessThanOrEqual(4);
    const first = [...pids][0];
    await waitFor("the first server to be gone", async () => !(await backends("c5")).some((b) => b.pid === first), 2000);
    await c.end();
  }, 20000);
});
