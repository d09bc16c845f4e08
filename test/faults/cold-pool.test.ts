// First logins of a pool (RELIABILITY B2, C3): a backend that is briefly down, a login burst against max_connections.

import { describe, expect, test } from "bun:test";
import type { ProxyOptions } from "../support/proxy.ts";
import { pgClient } from "../support/clients.ts";
import { usePgInstance } from "../support/pg-fixture.ts";

const fx = usePgInstance({ databases: ["cold_b2", "cold_c3"] });
const proxyWith = (o: ProxyOptions) => fx.proxyWith(o);

const client = (port: number, database: string) => pgClient(port, { database, connectionTimeoutMillis: 15000 });

async function backendCount(db: string): Promise<number> {
  const r = await fx.monitor.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", [db]);
  return r.rows[0].n;
}

describe("B2 backend down at the first login of a pool", () => {
  test("the first client waits for a backend that comes back within 1 s and succeeds inside wait_timeout", async () => {
    const proxy = await proxyWith({ maxConnections: 5, poolExtra: "wait_timeout_secs = 10\nconnect_timeout_secs = 2" });
    await fx.monitor.end();
    await fx.inst.stop("fast");
    const back = Bun.sleep(600).then(() => fx.inst.start());
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
    await fx.reconnectMonitor();
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
