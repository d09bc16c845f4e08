// The query cache's pure parts: statement shapes and hints, parse-tree analysis, request forms, tiers, session keys, the pgoutput decoder, and the bounds of what it remembers.

import { beforeAll, describe, expect, test } from "bun:test";
import { loadParser, parseSql } from "../../src/sql/classify.ts";
import { Analyzer, SessionChange } from "../../src/modules/query-cache/analysis.ts";
import { cacheable, replyFor, requestForm } from "../../src/modules/query-cache/request.ts";
import { SessionKey, settingsEffects } from "../../src/modules/query-cache/sessions.ts";
import { Effect } from "../../src/sql/session-effects.ts";
import { shapeOf } from "../../src/modules/query-cache/shape.ts";
import { CacheStore, GENERATIONS_MAX } from "../../src/modules/query-cache/store.ts";
import { StatementMemo, TEXTS_MAX_BYTES } from "../../src/modules/query-cache/memo.ts";
import { SeenTexts } from "../../src/modules/query-cache/seen.ts";
import { POSITIONS_MAX, WritePositions } from "../../src/modules/query-cache/freshness.ts";
import { STATEMENTS_MAX_BYTES } from "../../src/modules/query-cache/sessions.ts";
import { ChangeDecoder, statusUpdate } from "../../src/modules/query-cache/pgoutput.ts";
import * as F from "../support/frames.ts";

beforeAll(loadParser);

const analyzer = new Analyzer({ denyFunctions: ["slow_fn"], cacheableFunctions: ["my_pure"], dependencies: { report: ["orders"] }, functionWrites: { bump: ["counters"] }, cascades: {} });
const analyze = (sql: string) => analyzer.analyze(parseSql(sql));

describe("shape", () => {
  test("spacing, comments, keyword and identifier case do not count; quoted identifiers and constant kinds do", () => {
    const a = shapeOf("SELECT name FROM items WHERE id = 5");
    expect(shapeOf("select  NAME\nfrom Items -- x\n where id=5").structure).toBe(a.structure);
    expect(shapeOf('SELECT name FROM "Items" WHERE id = 5').structure).not.toBe(a.structure);
    expect(a.slots).toEqual(["n:5"]);
    expect(shapeOf("SELECT 'it''s'").slots).toEqual(["s:it's"]);
    expect(shapeOf("SELECT E'a\\nb'").slots).toEqual(["r:E'a\\nb'"]);
    expect(shapeOf("SELECT B'101'").slots).toEqual(["r:B'101'"]);
    expect(shapeOf("SELECT '101'").slots).toEqual(["s:101"]);
    expect(shapeOf("SELECT $1, $2").slots).toEqual([1, 2]);
    expect(shapeOf("SELECT 'a\\b'").slots).toEqual(["r:'a\\b'"]);
  });

  test("several statements, moving dates and hints", () => {
    expect(shapeOf("SELECT 1; SELECT 2").multi).toBe(true);
    expect(shapeOf("SELECT 1;").multi).toBe(false);
    expect(shapeOf("SELECT x FROM t WHERE d > 'today'").movingDate).toBe(true);
    expect(shapeOf("SELECT 'nowhere'").movingDate).toBe(false);
    expect(shapeOf("/*+ cache ttl=30 */ SELECT 1").hints).toEqual({ cache: true, ttlSecs: 30 });
    expect(shapeOf("SELECT 1 /*+ nocache */").hints).toEqual({ cache: false });
    expect(shapeOf("/*+ route=standby node=cache */ SELECT 1").hints).toBeNull();
    expect(shapeOf("/* cache */ SELECT 1").hints).toBeNull();
  });
});

describe("analysis", () => {
  test("reads that may be cached, with their tables", () => {
    const a = analyze("WITH w AS (SELECT * FROM orders) SELECT * FROM w JOIN s.customers c ON true WHERE lower(c.name) = $1");
    expect(a.cacheable).toBe(true);
    expect([...a.reads].sort()).toEqual(["customers", "orders"]);
    expect(a.writes).toEqual([]);
    expect(analyze("SELECT my_pure(x), report() FROM t").cacheable).toBe(false);
    expect([...analyze("SELECT my_pure(x) FROM t").reads]).toEqual(["t"]);
  });

  test("never cached: time, chance, sequences, locks, catalogs, temp tables, several statements", () => {
    for (const sql of [
      "SELECT now()",
      "SELECT current_timestamp",
      "SELECT current_date",
      "SELECT random()",
      "SELECT nextval('s')",
      "SELECT * FROM t FOR UPDATE",
      "SELECT * FROM t FOR SHARE",
      "SELECT * FROM pg_class",
      "SELECT * FROM pg_catalog.pg_class",
      "SELECT * FROM information_schema.tables",
      "SELECT * FROM pg_temp.x",
      "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
      "SELECT slow_fn()",
      "SELECT 1; SELECT 2",
      "SHOW search_path",
      "EXPLAIN SELECT 1",
    ])
      expect(`${sql}: ${analyze(sql).cacheable}`).toBe(`${sql}: false`);
    expect(analyze("SELECT current_user, session_user").cacheable).toBe(true);
  });

  test("writes: tables, everything, session changes", () => {
    expect(analyze("UPDATE orders SET x = 1").writes).toEqual(["orders"]);
    expect(analyze("WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d").writes).toEqual(["a"]);
    expect([...(analyze("TRUNCATE a, b").writes as string[])].sort()).toEqual(["a", "b"]);
    expect(analyze("COPY t FROM STDIN").writes).toEqual(["t"]);
    expect(analyze("COPY t TO STDOUT").writes).toEqual([]);
    expect(analyze("SELECT bump()").writes).toEqual(["counters"]);
    expect(analyze("SELECT unknown_fn()").writes).toBe("all");
    expect(analyze("SELECT unknown_fn()").change & SessionChange.Unknown).toBeTruthy();
    expect(analyze("ALTER TABLE t ADD COLUMN c int").writes).toBe("all");
    expect(analyze("ALTER TABLE t ADD COLUMN c int").ddl).toBe(true);
    expect(analyze("CREATE TEMP TABLE x (a int)").change & SessionChange.Temp).toBeTruthy();
    expect(analyze("DO $$BEGIN END$$").change & SessionChange.Unknown).toBeTruthy();
    // Settings are the core's session-effects scan's: the parse tree leaves them alone.
    const set = analyze("SET ROLE alice");
    expect([set.change, set.writes, set.ddl]).toEqual([SessionChange.None, [], false]);
    expect(settingsEffects("SET ROLE alice")).toBe(Effect.SetGuc);
    expect(settingsEffects("SET LOCAL search_path = x")).toBe(Effect.None);
    expect(settingsEffects("SELECT set_config('role', 'bob', false)")).toBe(Effect.SetGuc);
    expect(settingsEffects("SELECT set_config('role', 'bob', true)")).toBe(Effect.None);
    expect(analyze("SELECT set_config('role', 'bob', $1)").change & SessionChange.Unknown).toBeTruthy();
    expect(analyze("SELECT set_config('role', current_user, false)").change & SessionChange.Unknown).toBeTruthy();
    expect(analyze("SELECT set_config('role', 'bob', false)").change).toBe(SessionChange.None);
    expect(settingsEffects("DISCARD ALL")).toBe(Effect.DiscardAll);
    expect(settingsEffects("ROLLBACK TO SAVEPOINT a") & Effect.RollbackTo).toBeTruthy();
    expect(analyzer.analyze(null)).toMatchObject({ cacheable: false, writes: [], change: SessionChange.None });
  });
});

describe("request forms and replies", () => {
  const T = F.message("T", F.concat(F.int16(1), F.cstr("a"), F.int32(0), F.int16(0), F.int32(23), F.int16(4), F.int32(-1), F.int16(0)));
  const D = F.message("D", F.concat(F.int16(1), F.int32(1), "7"));
  const C = F.message("C", F.cstr("SELECT 1"));

  test("extended runs the cache can take, and what it cannot", () => {
    const run = F.concat(F.parse("", "SELECT $1", [0]), F.bind("", "", ["x"], { resultFormats: [1] }), F.describe("P"), F.execute(), F.sync());
    expect(requestForm(run, "extended")).toEqual({ protocol: "extended", parse: true, describe: true, formats: "1", params: ["s:x"], canServe: true });
    const typed = F.concat(F.parse("", "SELECT $1", [23]), F.bind("", "", ["5", null]), F.execute(), F.sync());
    expect(requestForm(typed, "extended")?.params).toEqual(["p23/0:5", "null"]);
    expect(requestForm(F.concat(F.parse("s1", "SELECT 1"), F.bind("", "s1"), F.execute(), F.sync()), "extended")?.canServe).toBe(false);
    expect(requestForm(F.concat(F.parse("", "SELECT 1"), F.bind("", ""), F.execute("", 10), F.sync()), "extended")).toBeNull();
    expect(requestForm(F.concat(F.parse("", "SELECT 1"), F.bind("", ""), F.execute()), "extended")).toBeNull();
    expect(requestForm(F.concat(F.bind("", ""), F.execute(), F.sync()), "extended")).toBeNull();
    const prepared = F.parse("s2", "SELECT $1", [25]);
    expect(requestForm(F.concat(F.bind("", "s2", ["y"]), F.execute(), F.sync()), "extended", prepared)?.params).toEqual(["p25/0:y"]);
    expect(requestForm(F.concat(F.parse("", "SELECT 1"), F.describe("S"), F.bind("", ""), F.execute(), F.sync()), "extended")).toBeNull();
  });

  test("a captured reply keeps RowDescription, rows and CommandComplete; anything else is not kept", () => {
    const kept = cacheable(F.concat(F.message("1"), F.message("2"), T, D, C))!;
    expect(kept.data).toEqual(F.concat(T, D, C));
    expect(kept.bodyAt).toBe(T.length);
    expect(cacheable(F.concat(T, F.message("N", F.cstr("")), D, C))).toBeNull();
    expect(cacheable(F.concat(T, D))).toBeNull();
    expect(cacheable(F.concat(T, C))).toBeNull(); // the tag counts a row that is not there
    const entry = { ...kept, tables: [], fingerprint: "", structure: "", expiresAt: Infinity, hits: 0 };
    expect(replyFor(entry, { protocol: "simple", parse: false, describe: false, formats: "t", params: [], canServe: true })).toEqual(F.concat(T, D, C));
    expect(replyFor(entry, { protocol: "extended", parse: true, describe: false, formats: "t", params: [], canServe: true })).toEqual(F.concat(F.message("1"), F.message("2"), D, C));
    const noDesc = { ...entry, data: F.concat(D, C), bodyAt: 0 };
    expect(replyFor(noDesc, { protocol: "simple", parse: false, describe: false, formats: "t", params: [], canServe: true })).toBeNull();
  });
});

describe("store", () => {
  const entry = (tables: string[], bytes: number, expiresAt = Date.now() + 60_000) => ({ data: new Uint8Array(bytes), bodyAt: 0, tables, fingerprint: "f", structure: "select ?", expiresAt, hits: 0 });

  test("a write drops what read its tables, and a fill that started before it is refused", () => {
    const s = new CacheStore(1 << 20, 0, "zstd");
    s.fill("a", entry(["t"], 10), s.snapshot(["t"]));
    s.fill("b", entry(["u"], 10), s.snapshot(["u"]));
    const seen = s.snapshot(["t"]);
    expect(s.written(["t"])).toBe(1);
    expect(s.tiers.get("a", Date.now())).toBeUndefined();
    expect(s.tiers.get("b", Date.now())?.tables).toEqual(["u"]);
    expect(s.fill("c", entry(["t"], 10), seen)).toBe(false);
    expect(s.fill("c", entry(["t"], 10), s.snapshot(["t"]))).toBe(true);
    const all = s.snapshot(["u"]);
    s.written("all");
    expect(s.fill("d", entry(["u"], 10), all)).toBe(false);
  });

  test("L1 evicts into L2 compressed; both stay within their bytes; expired entries are not served", () => {
    const s = new CacheStore(16 * 1024, 8 * 1024, "gzip");
    for (let i = 0; i < 50; i++) s.fill(`k${i}`, entry(["t"], 2000), s.snapshot(["t"]));
    const st = s.tiers.stats();
    expect(st.l1.bytes).toBeLessThanOrEqual(16 * 1024);
    expect(st.l2.bytes).toBeLessThanOrEqual(8 * 1024);
    expect(st.l2.entries).toBeGreaterThan(0);
    expect(s.tiers.get("k45", Date.now())?.data.length).toBe(2000);
    expect(s.written(["t"])).toBe(st.l1.entries + st.l2.entries);
    s.fill("old", entry(["t"], 10, Date.now() - 1), s.snapshot(["t"]));
    expect(s.tiers.get("old", Date.now())).toBeUndefined();
  });
});

describe("bounds of what is remembered", () => {
  const entry = (tables: string[]) => ({ data: new Uint8Array(10), bodyAt: 0, tables, fingerprint: "f", structure: "select ?", expiresAt: Date.now() + 60_000, hits: 0 });

  test("a text is remembered the second time it comes, within the memo's bytes; one over a sixteenth of them never", () => {
    const seen = new SeenTexts();
    expect([seen.again("SELECT 1"), seen.again("SELECT 2"), seen.again("SELECT 1")]).toEqual([false, false, true]);
    const memo = new StatementMemo(analyzer);
    // As a cacheable read is handled: its shape, lexed when it was found by template.
    const read = (text: string) => {
      const k = memo.known(text, null);
      return { k, shape: k.shape ?? memo.lexed(text, k) };
    };
    const text = "SELECT name FROM items WHERE id = 1";
    expect(read(text).shape.slots).toEqual(["n:1"]);
    expect(memo.stats().texts.entries).toBe(0);
    expect(memo.stats().templates.entries).toBe(1);
    // Another literal: found by template, not lexed until needed, not kept.
    expect(memo.known("SELECT name FROM items WHERE id = 2", null).shape).toBeNull();
    expect(read(text).k.shape).toBeNull();
    expect(memo.stats().texts.entries).toBe(1);
    const kept = memo.known(text, null);
    expect(kept.shape?.slots).toEqual(["n:1"]);
    expect(memo.known(text, null)).toBe(kept);
    // Long IN lists (no template: over 1,024 characters), each twice: about 100 KB each by the estimate, so far fewer than 20,000 fit.
    const inList = (i: number) => `SELECT name FROM items WHERE id IN (${Array.from({ length: 1000 }, (_, k) => i * 1000 + k).join(", ")})`;
    for (let i = 0; i < 400; i++) for (let twice = 0; twice < 2; twice++) read(inList(i));
    const st = memo.stats();
    expect(st.texts.bytes).toBeLessThanOrEqual(TEXTS_MAX_BYTES);
    expect(st.texts.bytes).toBeGreaterThan(TEXTS_MAX_BYTES / 2);
    expect(st.texts.entries).toBeLessThan(200);
    expect(st.structures.entries).toBe(2);
    expect(st.templates.entries).toBe(1);
    const huge = `SELECT name FROM items WHERE id IN (${Array.from({ length: 20_000 }, (_, k) => k).join(", ")})`;
    for (let i = 0; i < 3; i++) read(huge);
    expect(memo.known(huge, null)).not.toBe(memo.known(huge, null));
  });

  test("table generations keep their bound; a fill that saw a forgotten table's generation is refused", () => {
    const s = new CacheStore(1 << 20, 0, "zstd");
    const seen = s.snapshot(["t0"]);
    s.written(["t0"]);
    const after = s.snapshot(["t0"]);
    for (let i = 1; i <= GENERATIONS_MAX; i++) s.written([`t${i}`]);
    expect(s.generations).toBe(GENERATIONS_MAX);
    // t0's generation is forgotten (it would read 0 again): neither snapshot may match any more.
    expect(s.snapshot(["t0"]).tables).toEqual([0]);
    expect(s.fill("a", entry(["t0"]), seen)).toBe(false);
    expect(s.fill("a", entry(["t0"]), after)).toBe(false);
    expect(s.fill("a", entry(["t0"]), s.snapshot(["t0"]))).toBe(true);
  });

  test("write positions keep their bound; a forgotten table's position still bounds every read", () => {
    const w = new WritePositions();
    w.wrote(["t0"], 500);
    for (let i = 1; i <= POSITIONS_MAX; i++) w.wrote([`t${i}`], 100);
    expect(w.size).toBe(POSITIONS_MAX);
    expect(w.needed(["t0"], 0)).toBe(500);
    expect(w.needed(["other"], 0)).toBe(500);
  });

  test("a session's prepared statements keep their bytes, least recently used forgotten; one too large to remember still serves its Bind in the same run", () => {
    const k = new SessionKey({ id: 1, user: "u", database: "d", applicationName: "", remoteAddress: "", tls: false, startedAt: 0, params: new Map() });
    const padding = "x".repeat(1000);
    const prepare = (name: string) => k.runTexts(F.concat(F.parse(name, `SELECT '${padding}' AS ${name}`), F.sync()));
    const execute = (name: string) => k.runTexts(F.concat(F.bind("", name), F.execute(), F.sync())).texts[0];
    for (let i = 0; i < 5000; i++) prepare(`s${i}`);
    expect(execute("s0")).toBeUndefined();
    expect(execute("s4999")).toContain("AS s4999");
    const st = k.statementStats();
    expect(st.bytes).toBeLessThanOrEqual(STATEMENTS_MAX_BYTES);
    expect(st.entries).toBeGreaterThan(1000);
    expect(st.entries).toBeLessThan(5000);
    const big = `SELECT '${"y".repeat(STATEMENTS_MAX_BYTES / 4)}'`;
    const run = k.runTexts(F.concat(F.parse("big", big), F.bind("", "big"), F.execute(), F.sync()));
    expect(run.texts).toEqual([big, big]);
    expect(execute("big")).toBeUndefined();
  });
});

describe("session key", () => {
  const session = (params: [string, string][] = []) => ({ id: 1, user: "u", database: "d", applicationName: "", remoteAddress: "", tls: false, startedAt: 0, params: new Map(params) });
  const step = (k: SessionKey, sql: string, status: "I" | "T" | "E" = "I", tag = "SET", failed = false) => {
    const a = analyze(sql);
    const fx = settingsEffects(sql);
    k.sent(a, fx);
    k.answered(a, fx, fx & (Effect.SetGuc | Effect.DiscardAll) ? [sql] : [], status, tag, failed);
  };

  test("startup settings and committed SETs change the key; rolled back and failed ones do not", () => {
    const base = new SessionKey(session([["DateStyle", "ISO"]])).key;
    expect(new SessionKey(session([["DateStyle", "German"]])).key).not.toBe(base);
    expect(new SessionKey(session([["DateStyle", "ISO"], ["application_name", "x"]])).key).toBe(base);
    const k = new SessionKey(session([["DateStyle", "ISO"]]));
    step(k, "SET ROLE alice");
    const alice = k.key;
    expect(alice).not.toBe(base);
    step(k, "BEGIN", "T", "BEGIN");
    step(k, "SET ROLE bob", "T");
    expect(k.usable()).toBe(false);
    step(k, "ROLLBACK", "I", "ROLLBACK");
    expect(k.key).toBe(alice);
    step(k, "SET ROLE bob", "I", "", true);
    expect(k.key).toBe(alice);
    expect(k.usable()).toBe(true);
    step(k, "SET SESSION AUTHORIZATION x");
    expect(k.key).not.toContain("alice");
  });

  test("RESET ALL keeps the role and SET SESSION AUTHORIZATION drops it, as in PostgreSQL; a SET committed inside a transaction counts at COMMIT", () => {
    const k = new SessionKey(session());
    step(k, "SET ROLE alice");
    const alice = k.key;
    step(k, "SET search_path = x");
    step(k, "RESET ALL");
    expect([k.usable(), k.key]).toEqual([true, alice]);
    step(k, "BEGIN", "T", "BEGIN");
    step(k, "SET TIME ZONE 'UTC'", "T");
    expect(k.usable()).toBe(false);
    step(k, "COMMIT", "I", "COMMIT");
    expect(k.usable()).toBe(true);
    expect(k.key).not.toBe(alice);
    step(k, "SELECT set_config('timezone', 'UTC', false) /* same setting, other spelling */");
    expect(k.key).toContain("timezone");
  });

  test("what the proxy cannot follow makes the key unknown", () => {
    const k = new SessionKey(session());
    step(k, "SELECT set_config('role', $1, false)");
    expect(k.usable()).toBe(false);
    const j = new SessionKey(session());
    step(j, "BEGIN", "T", "BEGIN");
    step(j, "SET search_path = x", "T");
    step(j, "ROLLBACK TO SAVEPOINT a", "T", "ROLLBACK");
    expect(j.unknown).toBe(true);
    step(j, "DISCARD ALL", "I", "DISCARD ALL");
    expect(j.unknown).toBe(false);
  });
});

describe("pgoutput decoder", () => {
  const be = (n: number, bytes: number) => Array.from({ length: bytes }, (_, i) => Math.floor(n / 256 ** (bytes - 1 - i)) % 256);
  const cstr = (t: string) => [...new TextEncoder().encode(t), 0];
  /** XLogData ('w') carrying one pgoutput message. */
  const xlog = (msg: number[]) => new Uint8Array([119, ...be(0, 24), ...msg]);
  const relation = (oid: number, ns: string, name: string) => xlog([82, ...be(oid, 4), ...cstr(ns), ...cstr(name), 100, 0, 0]);
  const change = (kind: string, oid: number) => xlog([kind.charCodeAt(0), ...be(oid, 4), 78, 0, 0]);
  const commit = (endLsn: number) => xlog([67, 0, ...be(endLsn - 8, 8), ...be(endLsn, 8), ...be(0, 8)]);
  const begin = xlog([66, ...be(0, 20)]);

  test("a committed transaction names the tables it changed; relations not announced mean everything", () => {
    const d = new ChangeDecoder();
    expect(d.step(begin)).toBeNull();
    d.step(relation(16384, "public", "kv"));
    d.step(relation(16390, "app", "orders"));
    d.step(change("I", 16384));
    d.step(change("U", 16390));
    d.step(change("D", 16384));
    expect(d.step(commit(0x1_0000_0100))!.committed).toEqual(new Set(["kv", "orders"]));
    expect(d.processed).toBe(0x1_0000_0100);
    d.step(begin);
    d.step(xlog([84, ...be(2, 4), 0, ...be(16384, 4), ...be(16390, 4)])); // TRUNCATE kv, orders
    expect(d.step(commit(0x1_0000_0200))!.committed).toEqual(new Set(["kv", "orders"]));
    d.step(begin);
    d.step(change("I", 99));
    expect(d.step(commit(0x1_0000_0300))!.committed).toBe("all");
    // A transaction that changed nothing published asks for nothing.
    d.step(begin);
    expect(d.step(commit(0x1_0000_0400))).toBeNull();
    expect(d.commits).toBe(4);
  });

  test("keepalives: an answer when asked, and progress outside a transaction only", () => {
    const d = new ChangeDecoder();
    const keepalive = (walEnd: number, reply: number) => new Uint8Array([107, ...be(walEnd, 8), ...be(0, 8), reply]);
    expect(d.step(keepalive(500, 1))).toEqual({ replyNow: true });
    expect(d.processed).toBe(500);
    d.step(begin);
    expect(d.step(keepalive(900, 0))).toBeNull();
    expect(d.processed).toBe(500);
    const r = statusUpdate(0x2_0000_0010, true);
    expect(r.length).toBe(34);
    expect(r[0]).toBe(114);
    expect(Array.from(r.subarray(1, 9))).toEqual(be(0x2_0000_0010, 8));
    expect(r[33]).toBe(1);
  });
});
