// Clients waiting for a server, and connections being opened, when a standby goes down or is drained: re-routed at once, not left behind.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { adminApi, nodeState, QueryLoop, startClusterProxy, usePgCluster, waitNodeState } from "../support/pg-cluster.ts";

const DB = "app";
const WAIT_TIMEOUT_SECS = 20;

const cluster = usePgCluster({ databases: [DB] });
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startClusterProxy(cluster(), { strategy: "round_robin", pool: `wait_timeout_secs = ${WAIT_TIMEOUT_SECS}` });
});

afterAll(async () => {
  await proxy?.stop();
});

async function timedRead(port: number): Promise<{ port: number | null; ms: number; error: string }> {
  const t0 = performance.now();
  const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: DB, query_timeout: (WAIT_TIMEOUT_SECS + 5) * 1000 });
  c.on("error", () => {});
  try {
    await c.connect();
    const p = (await c.query("SELECT inet_server_port() AS p")).rows[0].p as number;
    return { port: p, ms: performance.now() - t0, error: "" };
  } catch (e) {
    return { port: null, ms: performance.now() - t0, error: (e as Error & { code?: string }).code ?? (e as Error).message };
  } finally {
    await c.end().catch(() => {});
  }
}

test("reads routed to a standby just stopped are re-routed once it is marked down (no wait_timeout stall)", async () => {
  const c = cluster();
  const [s1, s2] = [c.standbys()[0]!, c.standbys()[1]!];
  // Warm both standby pools.
  await Promise.all(Array.from({ length: 4 }, () => timedRead(proxy.port)));
  await c.stopNode(s2.name, "fast");
  // Reads issued before the health checker has noticed: round robin sends about half to s2's pool.
  const reads = await Promise.all(Array.from({ length: 6 }, () => timedRead(proxy.port)));
  expect(await nodeState(proxy, s2.name)).toBe("down");
  for (const r of reads) expect({ port: r.port, error: r.error }).toEqual({ port: s1.port, error: "" });
  // Marked down within failure_threshold x interval + timeout; the reads wait no longer than that.
  for (const r of reads) expect(r.ms).toBeLessThan(4000);
}, (WAIT_TIMEOUT_SECS + 10) * 1000);

test("B6 under load: while a stopped standby is down, every busy client keeps reading from the other standby", async () => {
  const c = cluster();
  await c.startNode("node3");
  const [s1, s2] = [c.standbys()[0]!, c.standbys()[1]!];
  await waitNodeState(proxy, s2.name, "up", 3000);
  const loop = new QueryLoop(proxy.port, { clients: 4, database: DB, queryTimeoutMs: 15000 });
  try {
    await loop.waitFor(s1.port);
    await loop.waitFor(s2.port);
    await c.stopNode(s2.name, "fast");
    await waitNodeState(proxy, s2.name, "down", 3000);
    const from = performance.now();
    await Bun.sleep(1000);
    // 4 clients reading back to back for a second: hundreds of answers, none stuck behind the dead node.
    expect({ answers: (loop.portsSince(from).get(s1.port) ?? 0) > 100, clients: loop.clientsSince(from) }).toEqual({ answers: true, clients: 4 });
  } finally {
    await c.startNode(s2.name);
    await loop.stop();
  }
  expect(loop.errors.length).toBeLessThanOrEqual(5);
}, 30000);

test("drain reports complete once in-flight work ends, also when a connection to the node was being opened at that moment", async () => {
  const c = cluster();
  await c.startNode("node3");
  await waitNodeState(proxy, "node3", "up", 3000);
  // 8 clients on a cold pool: the standby pools keep opening connections while the drains land.
  const incomplete: unknown[] = [];
  for (let i = 0; i < 8 && incomplete.length === 0; i++) {
    const loop = new QueryLoop(proxy.port, { clients: 8, database: DB, pauseMs: 0 });
    try {
      await Bun.sleep(30);
      const r = await adminApi(proxy, "POST", "/nodes/node3/drain?wait=2");
      if (!r.body.complete) incomplete.push({ round: i, in_flight: r.body.in_flight, pools: r.body.node.pools });
    } finally {
      await adminApi(proxy, "POST", "/nodes/node3/undrain");
      await loop.stop();
    }
    await adminApi(proxy, "POST", "/reload");
  }
  expect(incomplete).toEqual([]);
}, 60000);

test("a drained node's pool does not open new connections to keep min_connections", async () => {
  const p = await startClusterProxy(cluster(), { strategy: "round_robin", minConnections: 2 });
  try {
    const loop = new QueryLoop(p.port, { clients: 2, database: DB });
    await loop.waitFor(cluster().node("node3").port);
    await loop.stop();
    expect((await adminApi(p, "POST", "/nodes/node3/drain")).status).toBe(200);
    await Bun.sleep(1500); // several upkeep ticks
    expect((await adminApi(p, "GET", "/nodes/node3")).body.pools.total).toBe(0);
  } finally {
    await p.stop();
  }
});
