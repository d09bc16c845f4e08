// Query cache with read/write split on a primary + a standby applying WAL late: standby replies are cached under the reading session's key, and a write through the proxy is never hidden by the cache or the late standby.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import { startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";
import { waitFor } from "../support/pg-instance.ts";
import type { RunningProxy } from "../support/proxy.ts";

const cluster = usePgCluster({ standbys: ["async"], databases: ["app"] });
let proxy: RunningProxy;
type Json = Record<string, any>;

beforeAll(async () => {
  const c = cluster();
  await c.setup("CREATE TABLE kv (id int PRIMARY KEY, v int, f float8); INSERT INTO kv SELECT i, 0, i / 3.0 FROM generate_series(1, 10) i", "app");
  // The standby applies each commit 300 ms late: a read it answers right after a write is visibly old.
  c.dev.node("node2").setConf({ recovery_min_apply_delay: "'300ms'" });
  await c.dev.node("node2").reload();
  proxy = await startClusterProxy(c, { split: true, health: { interval: 0.25 }, toml: `[query_cache]\nttl_secs = 3600\n` });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
});

const cacheState = async (): Promise<Json> => (await fetch(`http://127.0.0.1:${proxy.adminPort}/cache`)).json() as Promise<Json>;
async function connect(port: number, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "app", ...extra });
  await c.connect();
  return c;
}

/** Read through the proxy until a read was answered by the cache; the rows it gave. */
async function untilHit(c: pg.Client, sql: string): Promise<unknown[]> {
  return (await waitFor(
    `a cache hit of ${sql}`,
    async () => {
      const before = (await cacheState()).hits as number;
      const r = await c.query(sql);
      return (await cacheState()).hits > before ? r.rows : undefined;
    },
    15_000,
    20,
  ))!;
}

test("a standby's reply is stored and served under the reading session's settings: another extra_float_digits gets its own bytes", async () => {
  const primaryPort = cluster().primary().port;
  const plain = await connect(proxy.port);
  const short = await connect(proxy.port, { options: "-c extra_float_digits=-3" } as Partial<pg.ClientConfig>);
  const directPlain = await connect(primaryPort);
  const directShort = await connect(primaryPort, { options: "-c extra_float_digits=-3" } as Partial<pg.ClientConfig>);
  try {
    const sql = "SELECT f::text AS t FROM kv WHERE id = 1";
    const standbyFills = (await cacheState()).standby_fills as number;
    expect(await untilHit(plain, sql)).toEqual((await directPlain.query(sql)).rows);
    expect(await untilHit(short, sql)).toEqual((await directShort.query(sql)).rows);
    expect((await directPlain.query(sql)).rows).not.toEqual((await directShort.query(sql)).rows);
    // The entries were filled by the standby (reads go there with the split on).
    expect((await cacheState()).standby_fills).toBeGreaterThan(standbyFills);
    // SET in the session changes the key at once.
    await plain.query("SET extra_float_digits = -3");
    expect((await plain.query(sql)).rows).toEqual((await directShort.query(sql)).rows);
  } finally {
    for (const c of [plain, short, directPlain, directShort]) await c.end();
  }
});

test("a write through the proxy is seen by the next read of another session, though the standby applies it 300 ms late (50 writes, 0 stale)", async () => {
  const writer = await connect(proxy.port);
  const reader = await connect(proxy.port);
  try {
    const sql = "SELECT v FROM kv WHERE id = 2";
    let stale = 0;
    for (let i = 1; i <= 50; i++) {
      if (i % 10 === 1) await untilHit(reader, sql);
      await writer.query("UPDATE kv SET v = $1 WHERE id = 2", [i]);
      const v = (await reader.query(sql)).rows[0].v;
      if (v !== i) stale++;
    }
    expect(stale).toBe(0);
    // Once the standby has replayed the last write (and the proxy has seen it do so), a miss goes there again and its reply is stored.
    const fills = (await cacheState()).standby_fills as number;
    await waitFor("a standby fill after the writes", async () => {
      await fetch(`http://127.0.0.1:${proxy.adminPort}/cache/invalidate`, { method: "POST", body: JSON.stringify({ table: "kv" }) });
      expect((await reader.query(sql)).rows[0].v).toBe(50);
      return (await cacheState()).standby_fills > fills ? true : undefined;
    }, 10_000, 50);
    expect((await untilHit(reader, sql))[0]).toEqual({ v: 50 });
  } finally {
    await writer.end();
    await reader.end();
  }
});
