// RELIABILITY B6 and B7 on a real cluster: a stopped standby is marked down in time and comes back; all standbys down -> primary; a slow primary is cancelled, reads go on.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { adminApi, QueryLoop, readPorts, startClusterProxy, usePgCluster, waitNodeState } from "../support/pg-cluster.ts";

const DB = "app";
const INTERVAL = 0.5;
const THRESHOLD = 2;
const TIMEOUT = 1;
/** failure_threshold x interval + timeout, plus a second for pg_ctl and scheduling on a busy machine. */
const DOWN_WITHIN_MS = (THRESHOLD * INTERVAL + TIMEOUT) * 1000 + 1000;
/** recovery_threshold (1) x interval + timeout, plus the same second. */
const UP_WITHIN_MS = (INTERVAL + TIMEOUT) * 1000 + 1000;
/** Reads that may fail (queries cut by the standby's shutdown) under 4 busy clients. */
const MAX_ERRORS = 5;

const cluster = usePgCluster({ databases: [DB] });
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startClusterProxy(cluster(), {
    strategy: "round_robin",
    health: { interval: INTERVAL, failureThreshold: THRESHOLD, timeout: TIMEOUT, recoveryThreshold: 1 },
  });
});

afterAll(async () => {
  await proxy?.stop();
});

test("B6: a standby stopped under read load is marked down in time, reads go on with few errors, and it is back in rotation after restart", async () => {
  const c = cluster();
  const [s1, s2] = [c.standbys()[0]!, c.standbys()[1]!];
  const loop = new QueryLoop(proxy.port, { clients: 4, database: DB });
  try {
    await loop.waitFor(s1.port);
    await loop.waitFor(s2.port);

    const stoppedAt = performance.now();
    await c.stopNode(s2, "fast");
    await waitNodeState(proxy, s2.name, "down", DOWN_WITHIN_MS);
    expect(performance.now() - stoppedAt).toBeLessThanOrEqual(DOWN_WITHIN_MS);
    const nodes = (await adminApi(proxy, "GET", "/nodes")).body.nodes as { id: string; state: string; last_error: string | null }[];
    expect(nodes.map((n) => [n.id, n.state])).toEqual([
      ["node1", "up"],
      [s1.name, "up"],
      [s2.name, "down"],
    ]);
    expect(nodes[2]!.last_error).toBeTruthy();
    expect((await adminApi(proxy, "GET", "/health")).status).toBe(200);

    // While it is down, reads are served by the other standby only.
    expect(await readPorts(proxy.port, DB, 3, 10)).toEqual({ ports: [s1.port], reads: 30, errors: [] });

    await c.startNode(s2);
    await waitNodeState(proxy, s2.name, "up", UP_WITHIN_MS);
    await loop.waitFor(s2.port);
    const back = performance.now();
    await Bun.sleep(300);
    expect(loop.portsSince(back).get(c.primary().port)).toBeUndefined();
  } finally {
    await loop.stop();
  }
  expect(loop.errors.length).toBeLessThanOrEqual(MAX_ERRORS);
  expect(loop.reads.length).toBeGreaterThan(100);
  await c.waitStreaming();
});

test("B6: all standbys down sends reads to the primary; they return to the standbys afterwards", async () => {
  const c = cluster();
  const primary = c.primary();
  const standbys = c.standbys();
  await Promise.all(standbys.map((s) => c.stopNode(s, "fast")));
  for (const s of standbys) await waitNodeState(proxy, s.name, "down", DOWN_WITHIN_MS);
  expect((await adminApi(proxy, "GET", "/health")).body).toMatchObject({ status: "ok", nodes: { up: 1, down: 2 } });
  expect(await readPorts(proxy.port, DB, 3, 10)).toEqual({ ports: [primary.port], reads: 30, errors: [] });

  await Promise.all(standbys.map((s) => c.startNode(s)));
  for (const s of standbys) await waitNodeState(proxy, s.name, "up", UP_WITHIN_MS);
  const ports = standbys.map((s) => s.port).sort((a, b) => a - b);
  expect(await readPorts(proxy.port, DB, 3, 10)).toEqual({ ports, reads: 30, errors: [] });
  await c.waitStreaming();
});

test("B7: a slow primary: query_timeout cancels its slow statements (57014), the sessions stay usable, reads on the standbys carry on", async () => {
  const c = cluster();
  const p = await startClusterProxy(c, { strategy: "round_robin", toml: "[timeouts]\nquery_timeout_secs = 1" });
  const loop = new QueryLoop(p.port, { clients: 3, database: DB });
  const slow = await Promise.all(
    Array.from({ length: 3 }, async () => {
      const cl = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: DB });
      await cl.connect();
      return cl;
    }),
  );
  try {
    await loop.waitFor(c.standbys()[0]!.port);
    const from = performance.now();
    // Statements that may write run on the primary; these take 5 s there.
    const outcomes = await Promise.all(
      slow.map(async (cl) => {
        const t0 = performance.now();
        const code = await cl.query("SELECT pg_sleep(5), txid_current()").then(
          () => "finished",
          (e: Error & { code?: string }) => e.code ?? e.message,
        );
        const after = (await cl.query("SELECT txid_current() AS x, inet_server_port() AS p")).rows[0].p as number;
        return { code, cancelledWithinMs: performance.now() - t0 < 3000, after };
      }),
    );
    expect(outcomes).toEqual(slow.map(() => ({ code: "57014", cancelledWithinMs: true, after: c.primary().port })));
    const during = loop.reads.filter((r) => r.at >= from);
    expect(during.length).toBeGreaterThan(50);
    expect(during.every((r) => r.port !== c.primary().port)).toBe(true);
  } finally {
    await Promise.all(slow.map((cl) => cl.end()));
    await loop.stop();
    await p.stop();
  }
  expect(loop.errors).toEqual([]);
});
