// Query cache with invalidation = "wal": writes made directly on PostgreSQL (bypassing the proxy) drop cached replies within a measured bound; a server without wal_level = logical is not cached and says why.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type pg from "pg";
import { pgClient } from "../support/clients.ts";
import { usePgInstance } from "../support/pg-fixture.ts";
import { startPgInstance, waitFor } from "../support/pg-instance.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";

const fx = usePgInstance({ conf: { wal_level: "logical" } }, async (inst) => {
  await inst.psql(
    [
      "CREATE TABLE kv (id int PRIMARY KEY, v int)",
      "INSERT INTO kv SELECT i, 0 FROM generate_series(1, 10) i",
      "CREATE TABLE other (id int PRIMARY KEY, v int)",
      "INSERT INTO other VALUES (1, 0)",
      "CREATE TABLE parent (id int PRIMARY KEY)",
      "CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE)",
      "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)",
    ].join("; "),
  );
});

type Json = Record<string, any>;
const WAL = `[auth]\nmethod = "trust"\n[query_cache]\ninvalidation = "wal"\nttl_secs = 3600\nwal_timeout_secs = 3\n`;
const cacheState = async (p: RunningProxy): Promise<Json> => (await fetch(`http://127.0.0.1:${p.adminPort}/cache`)).json() as Promise<Json>;

let proxy: RunningProxy;
let viaProxy: pg.Client;
let direct: pg.Client;

beforeAll(async () => {
  proxy = await fx.proxyWith({ toml: WAL });
  viaProxy = await pgClient(proxy.port, { database: "postgres" });
  direct = await pgClient(fx.inst.port, { database: "postgres" });
});

afterAll(async () => {
  await viaProxy?.end();
  await direct?.end();
});

/** Read through the proxy until the reply came from the cache (the stream and the catalog answer in the background first). */
async function cached(sql: string, params: unknown[] = []): Promise<unknown[]> {
  return (await waitFor(
    `a cached reply of ${sql}`,
    async () => {
      const before = (await cacheState(proxy)).hits as number;
      const r = await viaProxy.query(sql, params);
      return (await cacheState(proxy)).hits > before ? r.rows : undefined;
    },
    15_000,
    20,
  ))!;
}

const at = (xs: number[], q: number) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

test("a write made directly on PostgreSQL stops being hidden by the cache within the bound (p50/p99 measured)", async () => {
  await cached("SELECT v FROM kv WHERE id = $1", [1]);
  expect((await cacheState(proxy)).wal.databases.postgres.state).toBe("streaming");
  const gaps: number[] = [];
  for (let i = 1; i <= 60; i++) {
    // The entry is in the cache (a hit), then the value changes behind the proxy's back.
    await cached("SELECT v FROM kv WHERE id = $1", [1]);
    await direct.query("UPDATE kv SET v = $1 WHERE id = 1", [i]);
    const t0 = performance.now();
    for (;;) {
      const v = (await viaProxy.query("SELECT v FROM kv WHERE id = $1", [1])).rows[0].v;
      if (v === i) break;
      expect(v).toBe(i - 1);
      if (performance.now() - t0 > 5000) throw new Error(`write ${i} still hidden after 5 s`);
    }
    gaps.push(performance.now() - t0);
  }
  gaps.sort((a, b) => a - b);
  console.log(`direct write -> fresh read through the proxy: p50 ${at(gaps, 0.5).toFixed(2)} ms, p99 ${at(gaps, 0.99).toFixed(2)} ms, max ${gaps.at(-1)!.toFixed(2)} ms (${gaps.length} writes)`);
  // The docs state 1 s; a loaded test machine keeps far below it.
  expect(at(gaps, 0.99)).toBeLessThan(1000);
});

test("several tables in one direct transaction, TRUNCATE and ON DELETE CASCADE all invalidate; an unrelated table keeps its entry", async () => {
  await cached("SELECT v FROM kv WHERE id = 2");
  await cached("SELECT v FROM other WHERE id = 1");
  await cached("SELECT count(*)::int AS n FROM child");
  await direct.query("BEGIN; UPDATE kv SET v = 500 WHERE id = 2; UPDATE other SET v = 7 WHERE id = 1; COMMIT");
  await waitFor("both tables fresh", async () => {
    const a = (await viaProxy.query("SELECT v FROM kv WHERE id = 2")).rows[0].v;
    const b = (await viaProxy.query("SELECT v FROM other WHERE id = 1")).rows[0].v;
    return a === 500 && b === 7 ? true : undefined;
  }, 5000, 5);
  // child is written only by the cascade PostgreSQL runs: the stream names it.
  await direct.query("DELETE FROM parent WHERE id = 1");
  await waitFor("the cascade seen", async () => ((await viaProxy.query("SELECT count(*)::int AS n FROM child")).rows[0].n === 0 ? true : undefined), 5000, 5);
  await cached("SELECT v FROM kv WHERE id = 3");
  await direct.query("TRUNCATE other");
  await waitFor("truncate seen", async () => ((await viaProxy.query("SELECT v FROM other WHERE id = 1")).rows.length === 0 ? true : undefined), 5000, 5);
  // kv's entry survived the writes to other tables: the next read of it is a hit.
  const hits = (await cacheState(proxy)).hits as number;
  await viaProxy.query("SELECT v FROM kv WHERE id = 3");
  expect((await cacheState(proxy)).hits).toBe(hits + 1);
});

test("a lost stream flushes the cache and bypasses it until a new slot streams again", async () => {
  await cached("SELECT v FROM kv WHERE id = 4");
  const before = (await cacheState(proxy)).wal.databases.postgres;
  await direct.query("SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'heliosproxy-cache'");
  await waitFor("the stream lost", async () => ((await cacheState(proxy)).wal.databases.postgres.slot !== before.slot ? true : undefined), 10_000, 20);
  // While the stream is down the entry is gone: a direct write is seen at once.
  await direct.query("UPDATE kv SET v = 44 WHERE id = 4");
  expect((await viaProxy.query("SELECT v FROM kv WHERE id = 4")).rows[0].v).toBe(44);
  await waitFor("streaming again", async () => ((await cacheState(proxy)).wal.databases.postgres.state === "streaming" ? true : undefined), 15_000, 50);
  expect((await cached("SELECT v FROM kv WHERE id = 4"))[0]).toEqual({ v: 44 });
  // The temporary slot of the lost stream went with its connection.
  const slots = (await direct.query("SELECT slot_name FROM pg_replication_slots")).rows.map((r) => r.slot_name);
  expect(slots).toEqual([(await cacheState(proxy)).wal.databases.postgres.slot]);
});

test("on a server with wal_level = replica the cache is not used and GET /cache says why", async () => {
  const replica = await startPgInstance();
  try {
    await replica.psql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1)");
    const p = await startProxy({ nodes: [{ host: "127.0.0.1", port: replica.port }], toml: WAL });
    try {
      const c = await pgClient(p.port, { database: "postgres" });
      try {
        for (let i = 0; i < 5; i++) expect((await c.query("SELECT v FROM t WHERE id = 1")).rows[0].v).toBe(1);
        const st = (await waitFor("the failure reported", async () => {
          const s = await cacheState(p);
          return s.wal?.databases?.postgres?.state === "failed" ? s : undefined;
        }, 10_000, 20))!;
        expect(st.wal.databases.postgres.reason).toContain('wal_level is "replica"');
        expect(st.wal.problem).toContain("wal_level = logical");
        await c.query("SELECT v FROM t WHERE id = 1");
        const after = await cacheState(p);
        expect(after.hits).toBe(0);
        expect(after.fills).toBe(0);
        expect(after.bypassed).toBeGreaterThan(0);
        expect(p.output()).toContain("wal_level");
      } finally {
        await c.end();
      }
    } finally {
      await p.stop();
    }
  } finally {
    await replica.destroy();
  }
});
