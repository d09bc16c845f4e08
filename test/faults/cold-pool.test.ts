// First logins of a pool (RELIABILITY B2, C3): a backend that is briefly down, a login burst against max_connections.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pg from "pg";
import { startProxy, type ProxyOptions, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, type PgInstance } from "../support/pg-instance.ts";
import { pgClient } from "../support/clients.ts";

let inst: PgInstance;
let monitor: pg.Client;
const proxies: RunningProxy[] = [];

beforeAll(async () => {
  inst = await startPgInstance({ databases: ["cold_b2", "cold_c3"] });
  monitor = await pgClient(inst.port, { database: "postgres" });
}, 60000);

afterAll(async () => {
  await monitor?.end().catch(() => {});
  for (const p of proxies) await p.stop();
  await inst?.destroy();
}, 60000);

async function proxyWith(o: ProxyOptions): Promise<RunningProxy> {
  const p = await startProxy({ nodes: [{ host: "127.0.0.1", port: inst.port }], ...o });
  proxies.push(p);
  return p;
}

const client = (port: number, database: string) => pgClient(port, { database, connectionTimeoutMillis: 15000 });

async function backendCount(db: string): Promise<number> {
  const r = await monitor.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", [db]);
  return r.rows[0].n;
}

describe("B2 backend down at the first login of a pool", () => {
  test("the first client waits for a backend that comes back within 1 s and succeeds inside wait_timeout", async () => {
    const proxy = await proxyWith({ maxConnections: 5, poolExtra: "wait_timeout_secs = 10\nconnect_timeout_secs = 2" });
    await monitor.end();
    await inst.stop("fast");
    const back = Bun.sleep(600).then(() => inst.start());
    const t0 = performance.now();
    let result: unknown;
    try {
      const c = await client(proxy.port, "cold_b2");
      result = (await c.query("SELECT 'cold' AS v")).rows[0].v;
      await c.end();
    } catch (e) {
      result = `${(e as { code?: string }).code}: ${(e as Error).message}`;
    }
    await back;
    monitor = await pgClient(inst.port, { database: "postgres" });
    expect(result).toBe("cold");
    expect(performance.now() - t0).toBeLessThan(10000);
  }, 30000);
});

describe("C3 login burst on a new pool", () => {
  test("30 clients logging in at once never open more than max_connections servers", async () => {
    const proxy = await proxyWith({ maxConnections: 5, poolExtra: "wait_timeout_secs = 20" });
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await backendCount("cold_c3"));
        await Bun.sleep(10);
      }
    })();
    const clients = await Promise.all(Array.from({ length: 30 }, () => client(proxy.port, "cold_c3")));
    await Promise.all(clients.map((c) => c.query("SELECT pg_sleep(0.05)")));
    sampling = false;
    await sampler;
    peak = Math.max(peak, await backendCount("cold_c3"));
    for (const c of clients) await c.end();
    expect(peak).toBeLessThanOrEqual(5);
  }, 30000);
});
