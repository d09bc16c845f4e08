// Lag routing on a primary + two standbys applying WAL 500 ms late: read-your-writes (fast, wait, global) never returns stale rows; lag limits take late standbys out.

import { afterEach, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { adminApi, startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";

const cluster = usePgCluster({ databases: ["app"] });
let proxy: RunningProxy | null = null;
const port = (name: string) => cluster().node(name).port;

beforeAll(async () => {
  const c = cluster();
  await c.setup("CREATE TABLE ryw (id bigint PRIMARY KEY, writer int)", "app");
  for (const n of ["node2", "node3"]) {
    c.dev.node(n).setConf({ recovery_min_apply_delay: "'500ms'" });
    await c.dev.node(n).reload();
  }
}, 60_000);

afterEach(async () => {
  await proxy?.stop();
  proxy = null;
});

async function start(section: string): Promise<RunningProxy> {
  proxy = await startClusterProxy(cluster(), { split: true, maxConnections: 20, health: { interval: 0.25 }, toml: `[lag_routing]\n${section}\n` });
  return proxy;
}

/** Waits (up to `ms`) until the proxy's view of the nodes' replay lag (GET /nodes lag_seconds by node) satisfies `ok`. */
async function waitLag(p: RunningProxy, ok: (lag: Record<string, number | null>) => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  let lag: Record<string, number | null> = {};
  while (Date.now() < end) {
    const nodes = (await adminApi(p, "GET", "/nodes")).body.nodes as { id: string; lag_seconds: number | null }[];
    lag = Object.fromEntries(nodes.map((n) => [n.id, n.lag_seconds]));
    if (ok(lag)) return;
    await Bun.sleep(25);
  }
  throw new Error(`lag_seconds ${JSON.stringify(lag)} after ${ms} ms`);
}

async function connect(p: RunningProxy): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "app" });
  await c.connect();
  return c;
}

test('"fast": 10,000 insert-then-read pairs from 10 clients, 0 stale reads; plain reads of a client that never wrote still use the standbys', async () => {
  const p = await start('read_your_writes = "fast"');
  let stale = 0;
  let pairs = 0;
  const readPorts = new Map<number, number>();
  await Promise.all(
    Array.from({ length: 10 }, async (_, w) => {
      const c = await connect(p);
      for (let i = 0; i < 1000; i++) {
        const id = w * 1_000_000 + i;
        await c.query(`INSERT INTO ryw VALUES (${id}, ${w})`);
        const r = await c.query(`SELECT count(*)::int AS n, inet_server_port() AS p FROM ryw WHERE id = ${id}`);
        if (r.rows[0].n !== 1) stale++;
        readPorts.set(r.rows[0].p, (readPorts.get(r.rows[0].p) ?? 0) + 1);
        pairs++;
      }
      await c.end();
    }),
  );
  expect(pairs).toBe(10_000);
  expect(stale).toBe(0);
  // The standbys are 500 ms behind: reads right after a write went to the primary. A read that a
  // busy machine delayed past the standby's replay of the write may go to that standby (correctly:
  // none was stale), so a few of the 10,000 are allowed there.
  expect(readPorts.get(port("node1"))).toBeGreaterThanOrEqual(9_950);
  const reader = await connect(p);
  const plain = new Set<number>();
  for (let i = 0; i < 10; i++) plain.add((await reader.query("SELECT inet_server_port() AS p")).rows[0].p);
  expect([...plain].sort()).toEqual([port("node2"), port("node3")].sort());
  await reader.end();
}, 60_000);

test('"wait": a read after a write waits for a standby to replay it (up to wait_timeout_ms) and is served there', async () => {
  const p = await start('read_your_writes = "wait"\nwait_timeout_ms = 3000');
  const c = await connect(p);
  for (let i = 0; i < 5; i++) {
    const id = 50_000_000 + i;
    await c.query(`INSERT INTO ryw VALUES (${id}, 50)`);
    const t0 = performance.now();
    const r = await c.query(`SELECT count(*)::int AS n, inet_server_port() AS p FROM ryw WHERE id = ${id}`);
    const waited = performance.now() - t0;
    expect(r.rows[0].n).toBe(1);
    expect([port("node2"), port("node3")]).toContain(r.rows[0].p);
    expect(waited).toBeGreaterThan(300);
  }
  await c.end();
}, 60_000);

test('"global": a client that never wrote still sees every other session\'s commits', async () => {
  const p = await start('read_your_writes = "global"\nrefresh_ms = 5');
  const writer = await connect(p);
  const reader = await connect(p);
  let stale = 0;
  for (let i = 0; i < 200; i++) {
    const id = 60_000_000 + i;
    await writer.query(`INSERT INTO ryw VALUES (${id}, 60)`);
    if ((await reader.query(`SELECT count(*)::int AS n FROM ryw WHERE id = ${id}`)).rows[0].n !== 1) stale++;
  }
  expect(stale).toBe(0);
  await writer.end();
  await reader.end();
}, 60_000);

test("max_lag_ms: a standby whose replay falls behind leaves the read set within a probe interval, and returns", async () => {
  const c = cluster();
  c.dev.node("node2").setConf({ recovery_min_apply_delay: "0" });
  await c.dev.node("node2").reload();
  const p = await start("max_lag_ms = 200");
  const w = await connect(p);
  const r = await connect(p);
  // Steady writes keep node3 (500 ms apply delay) about half a second behind.
  let writing = true;
  const writes = (async () => {
    for (let i = 0; writing; i++) {
      await w.query(`INSERT INTO ryw VALUES (${70_000_000 + i}, 70)`);
      await Bun.sleep(20);
    }
  })();
  await Bun.sleep(1200);
  const seen = new Map<number, number>();
  for (let i = 0; i < 40; i++) {
    const pp = (await r.query("SELECT inet_server_port() AS p")).rows[0].p as number;
    seen.set(pp, (seen.get(pp) ?? 0) + 1);
  }
  writing = false;
  await writes;
  expect(seen.get(port("node3")) ?? 0).toBe(0);
  expect(seen.get(port("node2"))).toBe(40);
  // Writes stopped: node3 catches up (the proxy sees it within the limit again) and takes reads again.
  await waitLag(p, (lag) => lag.node3 !== null && lag.node3 !== undefined && lag.node3 <= 0.2, 10_000);
  const back = new Set<number>();
  for (let i = 0; i < 20; i++) back.add((await r.query("SELECT inet_server_port() AS p")).rows[0].p);
  expect(back.has(port("node3"))).toBe(true);
  await w.end();
  await r.end();
  c.dev.node("node2").setConf({ recovery_min_apply_delay: "'500ms'" });
  await c.dev.node("node2").reload();
}, 60_000);
