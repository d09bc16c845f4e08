// Query cache memory through a real proxy: what the process keeps after a workload far over the byte budget, or a stream of distinct statements or names, is its warmed-up start plus the tiers and the bookkeeping GET /cache reports, each within its bound.

import { expect, test } from "bun:test";
import * as F from "../support/frames.ts";
import { usePgInstance } from "../support/pg-fixture.ts";
import { freePort, type RunningProxy } from "../support/proxy.ts";
import { login } from "../support/wire.ts";

const fx = usePgInstance({}, async (inst) => {
  await inst.psql(
    [
      "CREATE TABLE big (id int, payload text)",
      "INSERT INTO big SELECT i, repeat(md5(i::text), 200) FROM generate_series(1, 3) i",
      "CREATE TABLE accounts (aid int PRIMARY KEY, abalance int)",
      "INSERT INTO accounts SELECT i, i % 1000 FROM generate_series(1, 100000) i",
    ].join("; "),
  );
});

type Json = Record<string, any>;
const MiB = 1024 * 1024;
/**
 * Resident memory the allocator and the JIT may hold beyond what the cache accounts for, after a
 * full collection on both sides (measured on a shared 2-core machine, 15 runs each: the two tests
 * below grew 1-11 MiB; with a map keeping every one of the 200,000 texts, 140 MiB).
 */
const SLACK = 16 * MiB;

/** A proxy whose runtime inspector listens on a loopback port under a random path: the test asks it for full collections. */
async function proxyWithInspector(toml: string): Promise<{ proxy: RunningProxy; inspector: string }> {
  const inspector = `127.0.0.1:${freePort()}/${crypto.randomUUID()}`;
  const proxy = await fx.proxyWith({ toml, env: { BUN_OPTIONS: `--inspect=${inspector}` } });
  return { proxy, inspector: `ws://${inspector}` };
}

/** A full garbage collection in the proxy, done when the answer comes (the inspector's Heap.gc runs it synchronously). */
async function collect(inspector: string): Promise<void> {
  const ws = new WebSocket(inspector);
  try {
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve);
      ws.addEventListener("error", () => reject(new Error(`no inspector at ${inspector}`)));
    });
    const answer = await new Promise<Json>((resolve) => {
      ws.addEventListener("message", (ev) => resolve(JSON.parse(String(ev.data)) as Json));
      ws.send(JSON.stringify({ id: 1, method: "Heap.gc" }));
    });
    expect(answer).toEqual({ id: 1, result: {} });
  } finally {
    ws.close();
  }
}

const rss = async (p: RunningProxy) => Number((await Bun.file(`/proc/${p.proc.pid}/status`).text()).match(/VmRSS:\s+(\d+)/)![1]) * 1024;

/**
 * The proxy's resident memory holding live objects only: the least of three samples, each after a
 * full collection (garbage not yet collected swings RSS by 100 MB and more under these loads).
 */
async function liveRss(p: RunningProxy, inspector: string): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < 3; i++) {
    await collect(inspector);
    await Bun.sleep(200);
    least = Math.min(least, await rss(p));
  }
  return least;
}

const cacheState = async (p: RunningProxy): Promise<Json> => (await fetch(`http://127.0.0.1:${p.adminPort}/cache`)).json() as Promise<Json>;

/** Bytes the cache accounts for: the tiers' limits and its bookkeeping's estimate. */
const accounted = (s: Json) => s.tiers.l1.max_bytes + s.tiers.l2.max_bytes + s.bookkeeping.texts.bytes + s.bookkeeping.structures.bytes + s.bookkeeping.sessions.statement_bytes;

/** Send simple Queries `text(from)`..`text(to - 1)` through one connection, `batch` per write (pipelined); every one must succeed, or fail with `sqlstate`. */
async function stream(p: RunningProxy, text: (i: number) => string, from: number, to: number, batch = 500, sqlstate: string | null = null): Promise<void> {
  const { conn } = await login(p.port, { user: "postgres", database: "postgres" });
  conn.reader.keepDataRows = false;
  try {
    for (let i = from; i < to; i += batch) {
      const queries: Uint8Array[] = [];
      for (let j = i; j < Math.min(to, i + batch); j++) queries.push(F.query(text(j)));
      const replies = await conn.roundTrip(F.concat(...queries), queries.length, 60_000);
      const errors = replies.filter((m) => m.type === "E").map((m) => F.errorFields(m.body).code);
      expect(errors).toEqual(sqlstate === null ? [] : queries.map(() => sqlstate));
      expect(replies.filter((m) => m.type === "Z").length).toBe(queries.length);
      // Only the messages of this batch are kept.
      conn.reader.messages.length = 0;
      conn.cursor = 0;
    }
  } finally {
    conn.quit();
  }
}

test("a workload 340 times the byte budget keeps the tiers within it and the process's live memory within its warmed-up start plus what the cache accounts for", async () => {
  const { proxy, inspector } = await proxyWithInspector(`[auth]\nmethod = "trust"\n[query_cache]\nl1_max_bytes = 262144\nl2_max_bytes = 262144\nmax_result_bytes = 65536\n`);
  // About 58 KB per reply, each statement new (k): 1,000 to warm up (JIT, pool, the catalog lookup, both tiers full), then 3,000 more (some 174 MB) through a 512 KB cache.
  const text = (k: number) => `SELECT id, payload || payload || payload AS p, ${k} AS k FROM big`;
  await stream(proxy, text, 0, 1000, 20);
  const before = await cacheState(proxy);
  const start = await liveRss(proxy, inspector);
  await stream(proxy, text, 1000, 4000, 20);
  const after = await cacheState(proxy);
  const end = await liveRss(proxy, inspector);
  console.log(`live RSS: start ${(start / MiB).toFixed(1)} MiB, end ${(end / MiB).toFixed(1)} MiB, grew ${((end - start) / MiB).toFixed(1)} MiB; accounted ${(accounted(after) / MiB).toFixed(1)} MiB + slack ${SLACK / MiB} MiB`);
  // Every reply of the measured run was stored, and pushed out again.
  expect(after.fills - before.fills).toBe(3000);
  expect(after.too_large).toBe(0);
  expect(after.tiers.l1.bytes).toBeLessThanOrEqual(262144);
  expect(after.tiers.l2.bytes).toBeLessThanOrEqual(262144);
  expect(after.tiers.l1.evictions - before.tiers.l1.evictions).toBeGreaterThan(2900);
  expect(after.tiers.l2.evictions - before.tiers.l2.evictions).toBeGreaterThan(2900);
  // Kept, those replies would add 174 MB.
  expect(end - start).toBeLessThan(accounted(after) + SLACK);
});

test("200,000 distinct cacheable statements through one connection keep the per-text bookkeeping within its bounds and the live memory flat; texts that come again are remembered", async () => {
  const { proxy, inspector } = await proxyWithInspector(`[auth]\nmethod = "trust"\n[query_cache]\nl1_max_bytes = 262144\nl2_max_bytes = 262144\nmax_result_bytes = 65536\n`);
  // pgbench's select-only statement with a new literal each time (the first 100,000 find their row, the rest none).
  const text = (aid: number) => `SELECT abalance FROM accounts WHERE aid = ${aid}`;
  await stream(proxy, text, 1, 5001);
  const before = await cacheState(proxy);
  const start = await liveRss(proxy, inspector);
  await stream(proxy, text, 5001, 205_001);
  const after = await cacheState(proxy);
  const end = await liveRss(proxy, inspector);
  const b = after.bookkeeping;
  console.log(`live RSS: start ${(start / MiB).toFixed(1)} MiB, end ${(end / MiB).toFixed(1)} MiB, grew ${((end - start) / MiB).toFixed(1)} MiB; accounted ${(accounted(after) / MiB).toFixed(1)} MiB + slack ${SLACK / MiB} MiB; bookkeeping ${JSON.stringify(b)}`);
  // Each statement missed and was stored.
  expect(after.fills - before.fills).toBe(200_000);
  expect(after.hits - before.hits).toBe(0);
  // A text that came once is not remembered: the per-text memo is as it was (but for a text whose 32-bit hash an
  // earlier one had: about two in 200,000), all within bounds.
  expect(b.texts.entries).toBeLessThan(before.bookkeeping.texts.entries + 16);
  expect(b.texts.bytes).toBeLessThanOrEqual(b.texts.max_bytes);
  expect(b.texts.entries).toBeLessThanOrEqual(b.texts.max_entries);
  // One structure for them all.
  expect(b.structures.entries).toBe(before.bookkeeping.structures.entries);
  expect(b.structures.bytes).toBeLessThanOrEqual(b.structures.max_bytes);
  expect(b.relations.entries).toBe(before.bookkeeping.relations.entries);
  expect(end - start).toBeLessThan(accounted(after) + SLACK);

  // Texts that come again are remembered (and counted), and served from the cache the second time (a round trip later: stored by then).
  await stream(proxy, (i) => text(i % 100), 0, 200, 100);
  const again = await cacheState(proxy);
  expect(again.bookkeeping.texts.entries).toBe(b.texts.entries + 100);
  expect(again.bookkeeping.texts.bytes).toBeGreaterThan(b.texts.bytes);
  expect(again.hits - after.hits).toBe(100);

  // Sessions are forgotten when they close.
  const deadline = Date.now() + 5000;
  while ((await cacheState(proxy)).bookkeeping.sessions.entries > 0 && Date.now() < deadline) await Bun.sleep(50);
  expect((await cacheState(proxy)).bookkeeping.sessions.entries).toBe(0);
}, 240_000);

test("statements naming 60,000 distinct relations to read and as many to write keep what the cache learned of names within its bound; a real table is still cached and invalidated", async () => {
  // Catalog lookups of 1,000 names take more than the health check's default second on a loaded machine: a failed one is not retried until its names come again.
  const proxy = await fx.proxyWith({ toml: `[auth]\nmethod = "trust"\n[health]\ncheck_timeout_secs = 15\n[query_cache]\n` });
  const names = (prefix: string, i: number) => Array.from({ length: 1000 }, (_, k) => `${prefix}_${i}_${k}`).join(", ");
  // None of them exists: PostgreSQL refuses each statement, and the cache looks every name up in the catalog all the same.
  await stream(proxy, (i) => `SELECT 1 FROM ${names("r", i)}`, 0, 60, 10, "42P01");
  await stream(proxy, (i) => `TRUNCATE ${names("w", i)}`, 0, 60, 10, "42P01");
  const bound = (await cacheState(proxy)).bookkeeping.relations.max_entries_per_database_and_kind as number;
  expect(bound).toBeLessThan(60_000);
  // The lookups run in the background: wait until both kinds are full.
  const deadline = Date.now() + 30_000;
  let known = 0;
  while ((known = (await cacheState(proxy)).bookkeeping.relations.entries) < 2 * bound && Date.now() < deadline) await Bun.sleep(100);
  expect(known).toBe(2 * bound);

  const c = await login(proxy.port, { user: "postgres", database: "postgres" });
  try {
    const read = async () => F.firstColumn(await c.conn.query("SELECT abalance FROM accounts WHERE aid = 7"));
    const hits = async () => (await cacheState(proxy)).hits as number;
    // `accounts` is looked up again (the flood pushed it out, or it was never known): read until a reply is served from the cache.
    const until = Date.now() + 10_000;
    let before = await hits();
    while (Date.now() < until) {
      expect(await read()).toEqual(["7"]);
      if ((await hits()) > before) break;
      before = await hits();
      await Bun.sleep(20);
    }
    expect(await hits()).toBeGreaterThan(before);
    await c.conn.query("UPDATE accounts SET abalance = 70 WHERE aid = 7");
    expect(await read()).toEqual(["70"]);
    expect((await cacheState(proxy)).bookkeeping.relations.entries).toBeLessThanOrEqual(2 * bound);
  } finally {
    c.conn.quit();
  }
});
