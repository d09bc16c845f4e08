// Query cache through a real proxy: hits byte-identical to PostgreSQL's replies (simple and extended, text and binary, L1 and L2), never stale, never across roles, nothing time-dependent cached.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type pg from "pg";
import { pgClient, pgjs, psycopg } from "../support/clients.ts";
import * as F from "../support/frames.ts";
import { usePgInstance } from "../support/pg-fixture.ts";
import { psql, type RunningProxy } from "../support/proxy.ts";
import { login } from "../support/wire.ts";
import type { BackendMessage } from "../support/frames.ts";

const fx = usePgInstance({}, async (inst) => {
  await inst.psql(
    [
      "CREATE TABLE items (id int PRIMARY KEY, name text, note text, price numeric, data bytea)",
      "INSERT INTO items SELECT i, 'item ' || i, CASE WHEN i % 2 = 0 THEN NULL ELSE repeat('n', i) END, i * 1.5, decode(md5(i::text), 'hex') FROM generate_series(1, 50) i",
      "CREATE TABLE big (id int, payload text)",
      "INSERT INTO big SELECT i, repeat(md5(i::text), 200) FROM generate_series(1, 3) i",
      "CREATE TABLE counters (id int PRIMARY KEY, v int)",
      "INSERT INTO counters SELECT i, 0 FROM generate_series(1, 5) i",
      "CREATE TABLE ddl_t (id int)",
      "INSERT INTO ddl_t VALUES (1), (2)",
      "CREATE SEQUENCE seq",
      "CREATE ROLE alice LOGIN",
      "CREATE ROLE bob LOGIN",
      "CREATE TABLE docs (id int, owner text, body text)",
      "INSERT INTO docs VALUES (1, 'alice', 'a1'), (2, 'alice', 'a2'), (3, 'bob', 'b1')",
      "ALTER TABLE docs ENABLE ROW LEVEL SECURITY",
      "CREATE POLICY own ON docs USING (owner = current_user)",
      "GRANT SELECT ON docs, items TO alice, bob",
    ].join("; "),
  );
});

let proxy: RunningProxy;
let direct: number;

beforeAll(async () => {
  proxy = await fx.proxyWith({ toml: `[auth]\nmethod = "trust"\n[query_cache]\nl1_max_bytes = 1048576\nl2_max_bytes = 0\nmax_result_bytes = 65536\n` });
  direct = fx.inst.port;
});

type Json = Record<string, any>;

/**
 * The cache learns what a table name stands for from the catalog, once, in the background: until
 * then reads of it are not cached. Read each table until an entry of it was stored or served (bounded).
 */
async function primeTables(p: RunningProxy, tables: string[]): Promise<void> {
  const c = await pgClient(p.port, { database: "postgres" });
  try {
    for (const t of tables) {
      const sql = `SELECT count(*) AS n FROM ${t} /* prime */`;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const seen = async () => {
          const st = await cacheState(p);
          return (st.fills as number) + (st.hits as number);
        };
        const before = await seen();
        await c.query(sql);
        if ((await seen()) > before) break;
        if (Date.now() > deadline) throw new Error(`no entry of ${t} was stored within 10 s`);
        await Bun.sleep(20);
      }
    }
  } finally {
    await c.end();
  }
}
const cacheState = async (p: RunningProxy): Promise<Json> => (await fetch(`http://127.0.0.1:${p.adminPort}/cache`)).json() as Promise<Json>;
const invalidate = async (p: RunningProxy, body: Json): Promise<Json> =>
  (await fetch(`http://127.0.0.1:${p.adminPort}/cache/invalidate`, { method: "POST", body: JSON.stringify(body) })).json() as Promise<Json>;

/** Every message as type + hex body: equal strings are equal bytes. */
const wire = (msgs: BackendMessage[]): string[] => msgs.map((m) => m.type + Buffer.from(m.body).toString("hex"));

/** Run `data` on a fresh raw connection to `port` (as `user`) `times` times; the replies of each run. */
async function runs(port: number, data: Uint8Array, times: number, user = "postgres"): Promise<string[][]> {
  const { conn } = await login(port, { user, database: "postgres" });
  try {
    const out: string[][] = [];
    for (let i = 0; i < times; i++) out.push(wire(await conn.roundTrip(data)));
    return out;
  } finally {
    conn.quit();
  }
}

const extendedRun = (sql: string, params: (string | null)[], resultFormats: number[] = [], describe = true, paramTypes: number[] = []) =>
  F.concat(F.parse("", sql, paramTypes), F.bind("", "", params, { resultFormats }), ...(describe ? [F.describe("P")] : []), F.execute(), F.sync());

test("hits are byte-identical to PostgreSQL's replies: simple and extended, text and binary, NULLs, big rows", async () => {
  const cases: Uint8Array[] = [
    F.query("SELECT id, name, note, price, data FROM items WHERE id <= 12 ORDER BY id"),
    F.query("SELECT * FROM big ORDER BY id"),
    extendedRun("SELECT id, name, note, price, data FROM items WHERE id < $1 ORDER BY id", ["9"]),
    extendedRun("SELECT id, name, note, price, data FROM items WHERE id < $1 ORDER BY id", ["9"], [1]),
    extendedRun("SELECT id, note FROM items WHERE id = $1", ["4"], [0], false),
    extendedRun("SELECT id, note FROM items WHERE id = $1", [null]),
  ];
  await primeTables(proxy, ["items", "big"]);
  for (const data of cases) {
    const before = (await cacheState(proxy)).hits as number;
    const [first, second, third] = await runs(proxy.port, data, 3);
    const [expected] = await runs(direct, data, 1);
    expect(first).toEqual(expected!);
    expect(second).toEqual(expected!);
    expect(third).toEqual(expected!);
    expect((await cacheState(proxy)).hits).toBe(before + 2);
  }
});

test("textual variants share one entry: spacing, case, comments, quoted literal and $n, simple and extended", async () => {
  const fills = (await cacheState(proxy)).fills as number;
  const base = "SELECT name FROM items WHERE name = 'item 7'";
  const [expected] = await runs(direct, F.query(base), 1);
  expect((await runs(proxy.port, F.query(base), 1))[0]).toEqual(expected!);
  const variants = [F.query("select   NAME from ITEMS /* note */ where name='item 7'"), F.query("SELECT name\nFROM items\nWHERE name = 'item 7' -- trailing")];
  for (const v of variants) expect((await runs(proxy.port, v, 1))[0]).toEqual(expected!);
  const ext = await runs(proxy.port, extendedRun("SELECT name FROM items WHERE name = $1", ["item 7"]), 1);
  expect(ext[0]!.slice(2)).toEqual(expected!);
  expect(ext[0]!.slice(0, 2)).toEqual(["1", "2"]);
  expect((await cacheState(proxy)).fills).toBe(fills + 1);
});

test("never stale: a write through any session is seen by the next read of every other session", async () => {
  await primeTables(proxy, ["counters"]);
  const clients: pg.Client[] = [];
  for (let i = 0; i < 5; i++) clients.push(await pgClient(proxy.port, { database: "postgres" }));
  try {
    let stale = 0;
    for (let i = 1; i <= 200; i++) {
      const writer = clients[i % 5]!;
      const reader = clients[(i + 1 + (i % 3)) % 5]!;
      const row = 1 + (i % 5);
      // Warm the entry first, then write through another session, then read.
      await reader.query("SELECT v FROM counters WHERE id = $1", [row]);
      if (i % 2 === 0) await writer.query("UPDATE counters SET v = $1 WHERE id = $2", [i, row]);
      else await writer.query(`BEGIN; UPDATE counters SET v = ${i} WHERE id = ${row}; COMMIT`);
      const r = await reader.query("SELECT v FROM counters WHERE id = $1", [row]);
      if (r.rows[0].v !== i) stale++;
    }
    expect(stale).toBe(0);
    expect((await cacheState(proxy)).hits).toBeGreaterThan(0);
  } finally {
    for (const c of clients) await c.end();
  }
});

test("never stale under concurrency: 10,000 write-then-read pairs over 10 connections (pg simple and extended, postgres.js pipelining 4 writers each), every read at least as new as the last acknowledged write", async () => {
  // 25 writers: 5 on pg connections of their own, 20 sharing 5 postgres.js connections (their requests pipelined).
  const WRITERS = 25;
  const PAIRS = 400;
  const HOT = 5;
  // A table per writer: entries are dropped by table, so a hot table's entry lives until its own writer writes again.
  const lanes = Array.from({ length: WRITERS }, (_, w) => `lane_${w}`);
  await fx.inst.psql(lanes.map((t) => `DROP TABLE IF EXISTS ${t}; CREATE TABLE ${t} (id int PRIMARY KEY, v int); INSERT INTO ${t} VALUES (1, 0)`).join("; "));
  await primeTables(proxy, lanes);
  const acked = new Array<number>(WRITERS).fill(0);
  let stale = 0;
  let ownStale = 0;
  let pairs = 0;
  const hitsBefore = (await cacheState(proxy)).hits as number;
  /** A connection's statements, whatever the driver: write a writer's table, read one. */
  type Driver = { write(id: number, v: number): Promise<unknown>; read(id: number): Promise<number>; end(): Promise<unknown> };
  const pgDriver = async (simple: boolean): Promise<Driver> => {
    const c = await pgClient(proxy.port, { database: "postgres" });
    return simple
      ? { write: (id, v) => c.query(`UPDATE lane_${id} SET v = ${v} WHERE id = 1`), read: async (id) => (await c.query(`SELECT v FROM lane_${id} WHERE id = 1`)).rows[0].v, end: () => c.end() }
      : { write: (id, v) => c.query(`UPDATE lane_${id} SET v = $1 WHERE id = $2`, [v, 1]), read: async (id) => (await c.query(`SELECT v FROM lane_${id} WHERE id = $1`, [1])).rows[0].v, end: () => c.end() };
  };
  const jsDriver = (): Driver => {
    const sql = pgjs(proxy.port, { database: "postgres" });
    return { write: (id, v) => sql`UPDATE ${sql(`lane_${id}`)} SET v = ${v} WHERE id = 1`, read: async (id) => (await sql`SELECT v FROM ${sql(`lane_${id}`)} WHERE id = 1`)[0]!.v, end: () => sql.end() };
  };
  const writer = async (d: Driver, me: number) => {
    for (let i = 1; i <= PAIRS; i++) {
      await d.write(me, i);
      acked[me] = i;
      // Then, after the acknowledgement: its own row (read-your-writes) or a hot row another writer keeps writing.
      const other = (me + i) % HOT === me ? (me + 1) % HOT : (me + i) % HOT;
      const floor = acked[other]!;
      const v = await d.read(i % 2 === 0 ? me : other);
      pairs++;
      if (i % 2 === 0 && v !== i) ownStale++;
      else if (i % 2 === 1 && v < floor) stale++;
    }
  };
  const drivers = [await pgDriver(true), await pgDriver(false), await pgDriver(true), await pgDriver(false), await pgDriver(false), ...Array.from({ length: 5 }, jsDriver)];
  await Promise.all(lanes.map((_, w) => writer(drivers[w < 5 ? w : 5 + ((w - 5) % 5)]!, w)));
  for (const d of drivers) await d.end();
  expect(pairs).toBe(10_000);
  expect(ownStale).toBe(0);
  expect(stale).toBe(0);
  // Many of those reads were answered by the cache while the writes went on (about 1,500 on a loaded 2-core machine).
  expect((await cacheState(proxy)).hits).toBeGreaterThan(hitsBefore + 500);
});

test("row-level security: each role sees only its rows, and SET ROLE changes what is served", async () => {
  await primeTables(proxy, ["docs"]);
  const sql = "SELECT id, owner FROM docs ORDER BY id";
  const ids = async (c: pg.Client) => (await c.query(sql)).rows.map((r: Json) => r.id);
  const alice = await pgClient(proxy.port, { database: "postgres", user: "alice" });
  const bob = await pgClient(proxy.port, { database: "postgres", user: "bob" });
  const admin = await pgClient(proxy.port, { database: "postgres" });
  try {
    for (let i = 0; i < 2; i++) {
      expect(await ids(alice)).toEqual([1, 2]);
      expect(await ids(bob)).toEqual([3]);
    }
    expect(await ids(admin)).toEqual([1, 2, 3]);
    await admin.query("SET ROLE alice");
    expect(await ids(admin)).toEqual([1, 2]);
    await admin.query("SET ROLE bob");
    expect(await ids(admin)).toEqual([3]);
    expect(await ids(admin)).toEqual([3]);
    await admin.query("BEGIN; SET ROLE alice; ROLLBACK");
    expect(await ids(admin)).toEqual([3]);
    await admin.query("RESET ROLE");
    expect(await ids(admin)).toEqual([1, 2, 3]);
  } finally {
    for (const c of [alice, bob, admin]) await c.end();
  }
});

test("now(), random(), nextval() and 'now' are never cached", async () => {
  const c = await pgClient(proxy.port, { database: "postgres" });
  try {
    const fills = (await cacheState(proxy)).fills as number;
    const a = (await c.query("SELECT now()::text AS t, random() AS r")).rows[0];
    await Bun.sleep(5);
    const b = (await c.query("SELECT now()::text AS t, random() AS r")).rows[0];
    expect(a.t).not.toBe(b.t);
    expect(a.r).not.toBe(b.r);
    const n1 = (await c.query("SELECT nextval('seq') AS n")).rows[0].n;
    const n2 = (await c.query("SELECT nextval('seq') AS n")).rows[0].n;
    expect(Number(n2)).toBe(Number(n1) + 1);
    const t1 = (await c.query("SELECT 'now'::timestamptz::text AS t")).rows[0].t;
    await Bun.sleep(5);
    const t2 = (await c.query("SELECT 'now'::timestamptz::text AS t")).rows[0].t;
    expect(t1).not.toBe(t2);
    const t3 = (await c.query("SELECT current_timestamp::text AS t")).rows[0].t;
    await Bun.sleep(5);
    expect((await c.query("SELECT current_timestamp::text AS t")).rows[0].t).not.toBe(t3);
    expect((await cacheState(proxy)).fills).toBe(fills);
  } finally {
    await c.end();
  }
});

test("inside a transaction that wrote, reads come from the server; a rollback leaves the cached value right", async () => {
  const c = await pgClient(proxy.port, { database: "postgres" });
  try {
    const q = "SELECT name FROM items WHERE id = 3";
    expect((await c.query(q)).rows[0].name).toBe("item 3");
    expect((await c.query(q)).rows[0].name).toBe("item 3");
    await c.query("BEGIN");
    await c.query("UPDATE items SET name = 'changed' WHERE id = 3");
    expect((await c.query(q)).rows[0].name).toBe("changed");
    await c.query("ROLLBACK");
    expect((await c.query(q)).rows[0].name).toBe("item 3");
  } finally {
    await c.end();
  }
});

test("writes found by their bytes (the same statements with other literals, in a transaction's order, negative numbers, non-ASCII strings) invalidate every time", async () => {
  await primeTables(proxy, ["counters", "items"]);
  const w = await pgClient(proxy.port, { database: "postgres" });
  const r = await pgClient(proxy.port, { database: "postgres" });
  const d = await pgClient(direct, { database: "postgres" });
  try {
    const read = "SELECT v FROM counters WHERE id = 4";
    const readName = "SELECT name FROM items WHERE id = 7";
    const hitsBefore = (await cacheState(proxy)).hits as number;
    for (let i = 1; i <= 60; i++) {
      // Read twice: the second read may be served from the cache.
      for (let k = 0; k < 2; k++) {
        const [v, name] = [(await r.query(read)).rows[0].v, (await r.query(readName)).rows[0].name];
        expect([i, v, name]).toEqual([i, (await d.query(read)).rows[0].v, (await d.query(readName)).rows[0].name]);
      }
      // pg sends texts without parameters as simple Queries: after the first round, each is found by its template.
      const delta = i % 2 === 0 ? i : -i;
      await w.query("BEGIN");
      await w.query(`UPDATE counters SET v = v + ${delta} WHERE id = 4`);
      await w.query("SELECT v FROM counters WHERE id = 4");
      await w.query(`UPDATE items SET name = 'żółw ${i} ☃' WHERE id = 7`);
      await w.query(i % 3 === 0 ? "END;" : "COMMIT");
      // The next read, from another session, is fresh.
      expect([i, (await r.query(read)).rows[0].v, (await r.query(readName)).rows[0].name]).toEqual([i, (await d.query(read)).rows[0].v, `żółw ${i} ☃`]);
    }
    const st = await cacheState(proxy);
    // The reads were served between the writes: the invalidations above were needed.
    expect((st.hits as number) - hitsBefore).toBeGreaterThanOrEqual(60);
  } finally {
    await Promise.all([w.end(), r.end(), d.end()]);
  }
});

test("DDL invalidates: ALTER TABLE, TRUNCATE, DROP", async () => {
  const sql = postgresJs();
  try {
    const read = () => sql.unsafe("SELECT * FROM ddl_t ORDER BY id");
    expect((await read()).length).toBe(2);
    expect((await read()).length).toBe(2);
    await sql.unsafe("ALTER TABLE ddl_t ADD COLUMN c int DEFAULT 7");
    expect(await read()).toEqual([{ id: 1, c: 7 }, { id: 2, c: 7 }] as never);
    await sql.unsafe("TRUNCATE ddl_t");
    expect((await read()).length).toBe(0);
    await sql.unsafe("DROP TABLE ddl_t");
    const err = await read().then(
      () => null,
      (e: { code?: string }) => e.code,
    );
    expect(err).toBe("42P01");
  } finally {
    await sql.end();
  }
});

function postgresJs() {
  return pgjs(proxy.port, { database: "postgres" });
}

test("POST /cache/invalidate drops by table and everything; GET /cache reports tiers", async () => {
  await primeTables(proxy, ["items"]);
  const c = await pgClient(proxy.port, { database: "postgres" });
  try {
    await c.query("SELECT count(*) FROM items");
    await c.query("SELECT count(*) FROM items");
    const r = await invalidate(proxy, { table: "items" });
    expect(r.invalidated).toBeGreaterThan(0);
    expect((await invalidate(proxy, { table: "" })).error).toBe("table must be a non-empty string");
    const all = await invalidate(proxy, {});
    expect(typeof all.invalidated).toBe("number");
    const s = await cacheState(proxy);
    expect(s.tiers.l1.entries).toBe(0);
    expect(s.invalidations.events).toBeGreaterThan(0);
  } finally {
    await c.end();
  }
});

test("a tiny L1 ages entries into L2 (compressed), served byte-identical; both tiers stay within their bytes", async () => {
  const small = await fx.proxyWith({ toml: `[auth]\nmethod = "trust"\n[query_cache]\nl1_max_bytes = 8192\nl2_max_bytes = 65536\nmax_result_bytes = 4096\n` });
  const queries = Array.from({ length: 30 }, (_, i) => F.query(`SELECT id, name, note FROM items WHERE id BETWEEN ${i + 1} AND ${i + 8} ORDER BY id`));
  await primeTables(small, ["items"]);
  const { conn } = await login(small.port, { user: "postgres", database: "postgres" });
  try {
    const firsts: string[][] = [];
    for (const q of queries) firsts.push(wire(await conn.roundTrip(q)));
    const before = (await cacheState(small)).tiers.l2.hits as number;
    const again = wire(await conn.roundTrip(queries[0]!));
    const [expected] = await runs(direct, queries[0]!, 1);
    expect(again).toEqual(expected!);
    expect(firsts[0]).toEqual(expected!);
    const s = await cacheState(small);
    expect(s.tiers.l2.hits).toBe(before + 1);
    expect(s.tiers.l1.bytes).toBeLessThanOrEqual(8192);
    expect(s.tiers.l2.bytes).toBeLessThanOrEqual(65536);
    expect(s.tiers.l1.evictions).toBeGreaterThan(0);
  } finally {
    conn.quit();
  }
});

test("views are read through to their base tables; a view calling now() is never cached; triggers and cascades reach other tables", async () => {
  await fx.inst.psql(
    [
      "CREATE VIEW cheap AS SELECT id, name FROM items WHERE id < 5",
      "CREATE VIEW over_cheap AS SELECT name FROM cheap WHERE id > 1",
      "CREATE VIEW stamped AS SELECT id, now()::text AS at FROM items WHERE id = 1",
      "CREATE TABLE parent (id int PRIMARY KEY)",
      "CREATE TABLE child (id int, parent_id int REFERENCES parent ON DELETE CASCADE)",
      "INSERT INTO parent VALUES (1), (2)",
      "INSERT INTO child VALUES (10, 1), (20, 2)",
      "CREATE TABLE audited (id int)",
      "CREATE TABLE audit_log (n int)",
      "INSERT INTO audit_log VALUES (0)",
      "CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN UPDATE audit_log SET n = n + 1; RETURN NEW; END$$",
      "CREATE TRIGGER log_it AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION log_it()",
    ].join("; "),
  );
  const c = await pgClient(proxy.port, { database: "postgres" });
  const w = await pgClient(proxy.port, { database: "postgres" });
  try {
    await primeTables(proxy, ["over_cheap", "child", "audit_log"]);
    const names = async () => (await c.query("SELECT name FROM over_cheap ORDER BY name")).rows.map((r: Json) => r.name);
    expect(await names()).toEqual(["item 2", "item 3", "item 4"]);
    expect(await names()).toEqual(["item 2", "item 3", "item 4"]);
    await w.query("UPDATE items SET name = 'renamed' WHERE id = 2");
    expect(await names()).toEqual(["item 3", "item 4", "renamed"]);
    await w.query("UPDATE items SET name = 'item 2' WHERE id = 2");

    const s1 = (await c.query("SELECT at FROM stamped")).rows[0].at;
    await Bun.sleep(5);
    expect((await c.query("SELECT at FROM stamped")).rows[0].at).not.toBe(s1);

    const children = async () => (await c.query("SELECT id FROM child ORDER BY id")).rows.map((r: Json) => r.id);
    expect(await children()).toEqual([10, 20]);
    expect(await children()).toEqual([10, 20]);
    await w.query("DELETE FROM parent WHERE id = 1");
    expect(await children()).toEqual([20]);

    const logged = async () => (await c.query("SELECT n FROM audit_log")).rows[0].n;
    expect(await logged()).toBe(0);
    expect(await logged()).toBe(0);
    await w.query("INSERT INTO audited VALUES (1)");
    expect(await logged()).toBe(1);
    await w.query("INSERT INTO audited VALUES (2)");
    expect(await logged()).toBe(2);
    expect((await cacheState(proxy)).hits).toBeGreaterThan(0);
  } finally {
    await c.end();
    await w.end();
  }
});

test("GET /metrics carries the cache's series", async () => {
  const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  expect(text).toMatch(/^heliosproxy_cache_hits_total\{tier="l1"\} [1-9]\d*$/m);
  expect(text).toMatch(/^heliosproxy_cache_bytes\{tier="l1"\} \d+$/m);
  expect(text).toContain("# TYPE heliosproxy_cache_invalidations_total counter");
});

test("psql and psycopg (text, binary, server-side parameters) get PostgreSQL's values, and their own writes at once", async () => {
  await primeTables(proxy, ["items"]);
  const sql = "SELECT id, name, note, price, encode(data, 'hex') FROM items WHERE id <= 7 ORDER BY id";
  const viaProxy = [await psql(proxy.port, ["-A", "-c", sql], { db: "postgres" }), await psql(proxy.port, ["-A", "-c", sql], { db: "postgres" })];
  const direct = await psql(fx.inst.port, ["-A", "-c", sql], { db: "postgres" });
  expect(direct.code).toBe(0);
  for (const r of viaProxy) expect(r.stdout).toBe(direct.stdout);
  const hits = (await cacheState(proxy)).hits as number;
  const py = await psycopg("cache", proxy.port, "postgres");
  const pyDirect = await psycopg("cache", fx.inst.port, "postgres");
  expect(py).toEqual(pyDirect);
  expect(py.after_write).toBe("psycopg");
  expect((await cacheState(proxy)).hits).toBeGreaterThan(hits);
});

test("a pipeline of extended requests mixing hits and misses gets every reply in order", async () => {
  await primeTables(proxy, ["items"]);
  const req = (id: number) => extendedRun("SELECT id, name FROM items WHERE id = $1", [String(id)]);
  const warm = F.concat(req(21), req(22));
  await runs(proxy.port, warm, 1);
  // 21 and 22 are cached; 23 and 24 are not: hit, miss, hit, miss in one write.
  const pipeline = F.concat(req(21), req(23), req(22), req(24));
  const { conn } = await login(proxy.port, { user: "postgres", database: "postgres" });
  const { conn: d } = await login(direct, { user: "postgres", database: "postgres" });
  try {
    const got = wire(await conn.roundTrip(pipeline, 4));
    const expected = wire(await d.roundTrip(pipeline, 4));
    expect(got).toEqual(expected);
  } finally {
    conn.quit();
    d.quit();
  }
});

test("allow_list mode, rules by table and user, hints, and TTL as the bound for writes that bypass the proxy; SHOW CACHE", async () => {
  const toml = [
    `[auth]\nmethod = "trust"\nadmin_users = ["postgres"]`,
    `[query_cache]\nmode = "allow_list"\nttl_secs = 3600`,
    `[[query_cache.rules]]\nuser = "bob"\ncache = false`,
    `[[query_cache.rules]]\ntable = "items"\nttl_secs = 1`,
  ].join("\n");
  const p = await fx.proxyWith({ toml: toml + "\n" });
  await primeTables(p, ["items"]);
  const c = await pgClient(p.port, { database: "postgres" });
  const bob = await pgClient(p.port, { database: "postgres", user: "bob" });
  try {
    const fills = async () => (await cacheState(p)).fills as number;
    // Not named by a rule: not cached in allow_list mode, unless hinted.
    let f = await fills();
    await c.query("SELECT v FROM counters WHERE id = 1");
    expect(await fills()).toBe(f);
    // (The first reads of counters go to the server while the catalog lookup runs.)
    const deadline = Date.now() + 10_000;
    while ((await fills()) === f && Date.now() < deadline) await c.query("/*+ cache ttl=60 */ SELECT v FROM counters WHERE id = 1");
    expect(await fills()).toBe(f + 1);
    // Named by the table rule; bob's rule says never; nocache wins over the rule.
    f = await fills();
    await bob.query("SELECT name FROM items WHERE id = 9");
    await c.query("SELECT name FROM items WHERE id = 9 /*+ nocache */");
    expect(await fills()).toBe(f);
    const read = async () => (await c.query("SELECT name FROM items WHERE id = 9")).rows[0].name as string;
    expect(await read()).toBe("item 9");
    expect(await fills()).toBe(f + 1);
    // A write straight to PostgreSQL: the cache may serve the old value until the rule's TTL (1 s), not after.
    await fx.inst.psql("UPDATE items SET name = 'behind the proxy' WHERE id = 9");
    const wroteAt = Date.now();
    let fresh = await read();
    while (fresh !== "behind the proxy" && Date.now() - wroteAt < 5000) {
      await Bun.sleep(50);
      fresh = await read();
    }
    expect(fresh).toBe("behind the proxy");
    expect(Date.now() - wroteAt).toBeLessThan(1000 + 1500);
    await fx.inst.psql("UPDATE items SET name = 'item 9' WHERE id = 9");
    const show = await psql(p.port, ["-A", "-F", "|", "-c", "SHOW CACHE"], { db: "heliosproxy" });
    expect(show.code).toBe(0);
    expect(show.stdout.split("\n")[0]).toBe("tier|entries|bytes|max_bytes|hits|misses|evictions|invalidations");
    expect(show.stdout).toMatch(/^l1\|\d+\|\d+\|67108864\|/m);
  } finally {
    await c.end();
    await bob.end();
  }
});

test("a reply over max_result_bytes streams through uncached; postgres.js prepared statements are served from the cache", async () => {
  await primeTables(proxy, ["items"]);
  const c = await pgClient(proxy.port, { database: "postgres" });
  const sql = pgjs(proxy.port, { database: "postgres" });
  try {
    const before = await cacheState(proxy);
    for (let i = 0; i < 2; i++) {
      const r = await c.query("SELECT repeat('x', 100000) AS big FROM items WHERE id = 1");
      expect(r.rows[0].big.length).toBe(100000);
    }
    const after = await cacheState(proxy);
    expect(after.too_large).toBe(before.too_large + 2);
    expect(after.fills).toBe(before.fills);
    const hits = after.hits as number;
    for (let i = 0; i < 3; i++) expect(await sql`SELECT name FROM items WHERE id = ${11}`).toEqual([{ name: "item 11" }] as never);
    expect((await cacheState(proxy)).hits).toBeGreaterThanOrEqual(hits + 1);
  } finally {
    await c.end();
    await sql.end();
  }
});

test("session mode: writes through named prepared statements executed again (Bind only) still invalidate", async () => {
  const p = await fx.proxyWith({ mode: "session", toml: `[auth]\nmethod = "trust"\n[query_cache]\n` });
  await primeTables(p, ["counters"]);
  const reader = await pgClient(p.port, { database: "postgres" });
  const sql = pgjs(p.port, { database: "postgres" });
  try {
    const read = async () => (await reader.query("SELECT v FROM counters WHERE id = 3")).rows[0].v as number;
    for (let i = 1000; i < 1005; i++) {
      await read();
      await read();
      await sql`UPDATE counters SET v = ${i} WHERE id = 3`;
      expect(await read()).toBe(i);
    }
    expect((await cacheState(p)).hits).toBeGreaterThan(0);
  } finally {
    await reader.end();
    await sql.end();
  }
});

test("every statement of an extended run counts: a write after a read in one Sync, or in bytes that arrive later, invalidates", async () => {
  await primeTables(proxy, ["counters"]);
  const reader = await pgClient(proxy.port, { database: "postgres" });
  const { conn } = await login(proxy.port, { user: "postgres", database: "postgres" });
  try {
    const read = async () => (await reader.query("SELECT v FROM counters WHERE id = 4")).rows[0].v as number;
    await read();
    await read();
    const both = F.concat(F.parse("", "SELECT 1"), F.bind("", ""), F.execute(), F.parse("", "UPDATE counters SET v = 777 WHERE id = 4"), F.bind("", ""), F.execute(), F.sync());
    await conn.roundTrip(both);
    expect(await read()).toBe(777);
    expect(await read()).toBe(777);
    // The same write sent in two pieces: the proxy sees the first before the rest arrives.
    const write = F.concat(F.parse("", "UPDATE counters SET v = 778 WHERE id = 4"), F.bind("", ""), F.execute(), F.sync());
    await conn.send(write, { splitAt: [write.length - 12], delayMs: 50 });
    await conn.untilReady();
    expect(await read()).toBe(778);
  } finally {
    await reader.end();
    conn.quit();
  }
});

afterAll(() => {});
