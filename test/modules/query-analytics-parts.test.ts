// Query analytics' pure parts: histogram percentiles against exact ones, rows from command tags, intents, the store's bound, the N+1 window, config validation.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { SessionCtx } from "../../src/core/hooks.ts";
import { ConfigError, moduleSettings } from "../../src/config/load.ts";
import { bucketOf, HISTOGRAM_BUCKETS, newHistogram, quantiles, record } from "../../src/modules/query-analytics/histogram.ts";
import { NPlusOneDetector } from "../../src/modules/query-analytics/n-plus-one.ts";
import { mayHaveLiterals } from "../../src/modules/query-analytics/shapes.ts";
import { sameShape, templateOf } from "../../src/sql/template.ts";
import { intentOf, rowsOf, StatsStore } from "../../src/modules/query-analytics/stats.ts";
import { DEFAULTS } from "../../src/modules/query-analytics/config.ts";
import { analyzeQuery } from "../../src/sql/fingerprint.ts";
import { configureLogging } from "../../src/util/log.ts";

configureLogging("error"); // the detector's warnings would only clutter the output here

/** The exact p-quantile as the histogram defines it: the value at rank ceil(p * n). */
const exact = (sorted: number[], p: number) => sorted[Math.max(1, Math.ceil(p * sorted.length)) - 1]!;

describe("histogram", () => {
  test("p50/p95/p99 are within 4.5% of the exact values, ordered, and inside [min, max]", () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0.011, max: 150_000, noNaN: true }), { minLength: 1, maxLength: 400 }), (xs) => {
        const h = newHistogram();
        for (const x of xs) record(h, x);
        const sorted = [...xs].sort((a, b) => a - b);
        const [p50, p95, p99] = quantiles(h, xs.length, [0.5, 0.95, 0.99], sorted[0]!, sorted.at(-1)!);
        for (const [got, p] of [[p50!, 0.5], [p95!, 0.95], [p99!, 0.99]] as const) {
          const want = exact(sorted, p);
          expect(Math.abs(got - want) / want).toBeLessThanOrEqual(0.045);
        }
        expect(p50! <= p95! && p95! <= p99! && p99! <= sorted.at(-1)! && p50! >= sorted[0]!).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  test("buckets: at or below 10 µs, NaN, and beyond the last edge land in the end buckets", () => {
    expect([bucketOf(0), bucketOf(0.01), bucketOf(Number.NaN), bucketOf(0.0101)]).toEqual([0, 0, 0, 1]);
    expect(bucketOf(1e9)).toBe(HISTOGRAM_BUCKETS - 1);
    expect(newHistogram().byteLength).toBe(HISTOGRAM_BUCKETS * 4);
    expect(quantiles(newHistogram(), 0, [0.5], 0, 0)).toEqual([0]);
  });
});

test("rows: the count in the command tag, else the DataRows sent", () => {
  expect([rowsOf("SELECT 3", 3), rowsOf("INSERT 0 5", 0), rowsOf("UPDATE 12", 0), rowsOf("COPY 7", 0), rowsOf("SHOW", 1), rowsOf("", 4), rowsOf("CREATE TABLE", 0)]).toEqual([3, 5, 12, 7, 1, 4, 0]);
});

test("literal pre-check: a text it passes as literal-free has no numeric or string constants", () => {
  const literal = ["SELECT 1", "SELECT a FROM t WHERE id = 42", "SELECT 'x'", "SELECT $$x$$", "SELECT E'\\n'", "SELECT x'1F'", "SELECT -1.5e3", "SELECT .5"];
  const none = ["SELECT abalance FROM pgbench_accounts WHERE aid = $1;", "SELECT t1.a2 FROM t1", "BEGIN", "SELECT a FROM t WHERE b = $12", 'SELECT "col 1" FROM t', "SELECT é1 FROM t"];
  expect(literal.map(mayHaveLiterals)).toEqual(literal.map(() => true));
  expect(none.map(mayHaveLiterals)).toEqual(none.map(() => false));
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(..."SELECT a1 _x $1 'q' 12 .5 e3 \"c2\" -- /* */ ; é".split(" ").map((t) => t + " ")), maxLength: 30 }), (sql) => {
      if (!mayHaveLiterals(sql)) expect(analyzeQuery(sql).constants).toBe(0);
    }),
    { numRuns: 2000 },
  );
});

describe("template match", () => {
  const tpl = (sql: string) => {
    const s = analyzeQuery(sql);
    return templateOf(sql, s.text, s.constants)!;
  };

  test("same shape, other literals: a match; other shapes, parameters, positions or spacing: no match", () => {
    const t = tpl("SELECT abalance FROM pgbench_accounts WHERE aid = 123;");
    expect(sameShape(t, "SELECT abalance FROM pgbench_accounts WHERE aid = 98765; ")).toBe(true);
    // Only a literal of the same kind (integer, decimal, string) takes the placeholder.
    expect(["SELECT abalance FROM pgbench_accounts WHERE aid = 1.5", "SELECT abalance FROM pgbench_accounts WHERE aid = '5'"].map((x) => sameShape(t, x))).toEqual([false, false]);
    expect(sameShape(tpl("SELECT a FROM t WHERE b = 'x'"), "SELECT a FROM t WHERE b = 'it''s'")).toBe(true);
    expect(
      ["SELECT abalance FROM pgbench_accounts WHERE aid = -5;", "SELECT abalance FROM pgbench_accounts WHERE aid =  5", "SELECT abalance FROM pgbench_accounts WHERE aid = NULL", "SELECT abalance FROM pgbench_accounts WHERE aid = E'5'", "SELECT abalance FROM pgbench_accounts WHERE aid = 5 -- c"].map((x) => sameShape(t, x)),
    ).toEqual([false, false, false, false, false]);
    // The prepared form is that shape too (its text is the normalised one).
    expect(sameShape(t, "SELECT abalance FROM pgbench_accounts WHERE aid = $1")).toBe(true);
    expect(sameShape(tpl("SELECT - 'x'"), "SELECT - 5")).toBe(false); // a number takes the sign, a string does not
    expect(sameShape(tpl("SELECT a FROM t ORDER BY 'x'"), "SELECT a FROM t ORDER BY 1")).toBe(false); // 1 would be a position
    expect(sameShape(tpl("SELECT a FROM t WHERE a IN (1, 2)"), "SELECT a FROM t WHERE a IN (3, 4)")).toBe(true);
    expect(sameShape(tpl("INSERT INTO t VALUES (1, 'a')"), "INSERT INTO t VALUES (2, 'it''s');")).toBe(true);
    expect(sameShape(tpl("INSERT INTO t VALUES (1, 'a')"), "INSERT INTO t VALUES ('2', 'b')")).toBe(false); // another kind of literal
    // Texts that do not match their own normalised form have no template: they are always lexed.
    expect([templateOf("SELECT  1", "SELECT $1", 1), templateOf("SELECT E'x'", "SELECT $1", 1), templateOf("SELECT 1 -- c", "SELECT $1", 1)]).toEqual([null, null, null]);
    expect(sameShape(tpl("SELECT a FROM t WHERE a = $1 AND b = 5"), "SELECT a FROM t WHERE a = $1 AND b = 6")).toBe(true);
    expect(sameShape(tpl("SELECT a FROM t WHERE a = $2 AND b = 5"), "SELECT a FROM t WHERE a = $2 AND b = 6")).toBe(true);
    expect(sameShape(tpl("SELECT a FROM t WHERE a = $1 AND b = 5"), "SELECT a FROM t WHERE a = 4 AND b = 6")).toBe(false);
    expect(sameShape(tpl("SELECT 5, $1"), "SELECT 9, $1")).toBe(true);
    expect(sameShape(tpl("SET statement_timeout = 5000"), "SET statement_timeout = 6000")).toBe(false);
  });

  test("property: a match always has the normalised text and fingerprint the lexer gives", () => {
    const fixed = ["SELECT", "a", "t1", "FROM", "WHERE", "=", "AND", "IN", "(", ")", ",", "ORDER BY", "GROUP BY", "LIMIT", "::int", "-", "+", "$1", "$2",
      "IS", "NOT", "NULL", "DISTINCT FROM", "TRUE", "varchar(10)", '"c 1"', '"x$3"', "/* 7 */", "-- 8\n", "date", "x'1F'", "E'q'", "$$d$$", ";", "SET", "DEFAULT", "OVER", "CASE WHEN", "THEN", "END",
      "OFFSET", "BETWEEN", "*", "/", "||", "ARRAY[", "]", "::numeric(10,2)", "LIKE", "ESCAPE", "UESCAPE", "U&", "FETCH FIRST", "ROWS ONLY", "$10", ".", "e", "INTERVAL", "[", ":", "%", "<->", "varchar(", "numeric(", "int[]", "'", "e1"];
    const lits = ["0", "7", "42", "1.5", ".5", "1e3", "'s'", "'it''s'", "''", "-3"];
    const token = fc.oneof(fc.constantFrom(...fixed).map((t) => ({ t, lit: false })), fc.constantFrom(...lits).map((t) => ({ t, lit: true })));
    let matches = 0;
    fc.assert(
      fc.property(fc.array(fc.tuple(token, fc.constantFrom(...lits), fc.boolean(), fc.constantFrom(" ", " ", " ", "", "  ")), { minLength: 1, maxLength: 14 }), (parts) => {
        const r = parts.map(([tok, , , gap]) => gap + tok.t).join("");
        const x = parts.map(([tok, other, swap, gap]) => gap + (tok.lit && swap ? other : tok.t)).join("");
        const sr = analyzeQuery(r);
        const t = templateOf(r, sr.text, sr.constants);
        if (t === null || !sameShape(t, x)) return;
        matches++;
        const sx = analyzeQuery(x);
        expect([sx.text, sx.fingerprint]).toEqual([sr.text, sr.fingerprint]);
      }),
      { numRuns: Number(process.env.QA_RUNS ?? 30_000) },
    );
    expect(matches).toBeGreaterThan(200);
  });
});

test("intent: statement kind, reads split into analytics and vector", () => {
  const cases: [string, string][] = [
    ["SELECT a FROM t WHERE id = 1", "read"],
    ["SELECT a, count(*) FROM t GROUP BY a", "analytics"],
    ["SELECT a, rank() OVER (ORDER BY b) FROM t", "analytics"],
    ["SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5", "vector"],
    ["INSERT INTO t VALUES (1)", "write"],
    ["CREATE INDEX ON t (a)", "ddl"],
    ["BEGIN", "transaction"],
    ["SET work_mem = '64MB'", "admin"],
    ["VACUUM t", "admin"],
  ];
  expect(cases.map(([sql]) => [sql, intentOf(analyzeQuery(sql))])).toEqual(cases);
});

test("store: (fingerprint, database, user) entries; full, it drops the least used 5% (oldest first among equals)", () => {
  const store = new StatsStore(40);
  const hot = analyzeQuery("SELECT 1 AS hot");
  const a = store.entry(hot, "db", "alice", 1);
  expect(store.entry(analyzeQuery("SELECT 99 AS hot"), "db", "alice", 2)).toBe(a);
  const b = store.entry(hot, "db", "bob", 3);
  expect(b).not.toBe(a);
  expect(store.entry(hot, "other", "bob", 4)).not.toBe(b);
  for (const e of [a, b]) for (let i = 0; i < 3; i++) e.add(1, 1, undefined, 5);
  for (let i = 0; i < 100; i++) store.entry(analyzeQuery(`SELECT 1 AS c${i}`), "db", "alice", 10 + i).add(1, 0, undefined, 10 + i);
  // 103 entries into 40 places, 2 (5%) at a time: 32 rounds; the unused (other, bob) entry went first.
  expect([store.size, store.evicted]).toEqual([39, 64]);
  const kept = store.all();
  expect(kept).toContain(a);
  expect(kept).toContain(b);
  // Among the cold ones, the newest stayed.
  expect(kept.filter((e) => e.query.includes(" AS c")).map((e) => Number(e.query.split(" AS c")[1])).sort((x, y) => x - y)).toEqual(
    Array.from({ length: 37 }, (_, i) => 63 + i),
  );
  store.entry(hot, "db", "alice", 200).add(2, 1, "57014", 200);
  expect([a.calls, a.errors, [...a.errorCodes!]]).toEqual([4, 1, [["57014", 1]]]);
  expect(store.reset()).toBe(39);
  expect([store.size, store.all()]).toEqual([0, []]);
});

describe("N+1 window", () => {
  const session = (id: number): SessionCtx => ({ id, user: "u", database: "d", applicationName: `app${id}`, remoteAddress: "unix", tls: false, startedAt: 0 });
  const entry = new StatsStore(10).entry(analyzeQuery("SELECT * FROM users WHERE id = 1"), "d", "u", 0);

  test("K calls within the window start one episode; later calls in it only count", () => {
    const d = new NPlusOneDetector(10, 1000, 5);
    const s = session(7);
    const hits = Array.from({ length: 25 }, (_, i) => d.see(s, entry, i * 50));
    expect(hits.map((h, i) => (h ? i : -1)).filter((i) => i >= 0)).toEqual([9]);
    expect(d.list().map((r) => [r.sessionId, r.applicationName, r.count, r.firstAt, r.lastAt])).toEqual([[7, "app7", 25, 0, 1200]]);
    // A pause longer than the window ends the episode; the next burst is a new one.
    for (let i = 0; i < 10; i++) d.see(s, entry, 5000 + i);
    expect(d.detected).toBe(2);
  });

  test("a sliding window: 9 calls, a gap, then one more inside the last second of them is the 10th", () => {
    const d = new NPlusOneDetector(10, 1000, 5);
    const s = session(8);
    const times = [0, 100, 900, 950, 960, 970, 980, 990, 995, 1050, 1060];
    // 10 calls within 1000 ms first happen at t=1060 (from t=100): at t=1050 the window from t=0 is 1050 ms.
    expect(times.map((t) => d.see(s, entry, t))).toEqual([false, false, false, false, false, false, false, false, false, false, true]);
  });

  test("calls spaced wider than window/K never trip it; sessions are apart; close forgets the session", () => {
    const d = new NPlusOneDetector(10, 1000, 5);
    for (let i = 0; i < 100; i++) expect(d.see(session(1), entry, i * 112)).toBe(false);
    for (let i = 0; i < 9; i++) d.see(session(2), entry, i);
    for (let i = 0; i < 9; i++) d.see(session(3), entry, i);
    expect([d.detected, d.trackedSessions]).toEqual([0, 3]);
    d.close(session(2));
    expect(d.trackedSessions).toBe(2);
  });

  test("reports are bounded, newest first", () => {
    const d = new NPlusOneDetector(2, 1000, 3);
    for (let id = 1; id <= 5; id++) for (let i = 0; i < 2; i++) d.see(session(id), entry, id * 10_000 + i);
    expect([d.detected, d.list().map((r) => r.sessionId)]).toEqual([5, [5, 4, 3]]);
  });
});

test("config: defaults, every key checked by the core checker with its name in the error, unknown keys refused", () => {
  const configure = (section: Record<string, unknown>) => moduleSettings("query_analytics", section);
  expect(configure({})).toEqual({ ...DEFAULTS });
  expect(configure({ enabled: false, slow_query_ms: 0, slow_query_sample: 0.25, n_plus_one_threshold: 0 })).toMatchObject({ enabled: false, slow_query_ms: 0, slow_query_sample: 0.25, n_plus_one_threshold: 0 });
  const err = (section: Record<string, unknown>) => {
    try {
      configure(section);
    } catch (e) {
      return e instanceof ConfigError ? `${e.key}: ${e.issues[0]!.detail}` : `not a ConfigError: ${String(e)}`;
    }
    return "accepted";
  };
  expect(err({ enabled: "yes" })).toBe('query_analytics.enabled: expected true or false, got "yes"');
  expect(err({ max_queries: 0 })).toBe("query_analytics.max_queries: expected an integer in 1..1000000, got 0");
  expect(err({ max_queries: 2.5 })).toBe("query_analytics.max_queries: expected an integer in 1..1000000, got 2.5");
  expect(err({ slow_query_sample: 1.5 })).toBe("query_analytics.slow_query_sample: expected a number in 0..1, got 1.5");
  expect(err({ slow_query_ms: -1 })).toBe("query_analytics.slow_query_ms: expected a number in 0..86400000, got -1");
  expect(err({ n_plus_one_threshold: 1 })).toBe("query_analytics.n_plus_one_threshold: expected 0 (off) or an integer >= 2, got 1");
  expect(err({ n_plus_one_window_ms: 0 })).toBe("query_analytics.n_plus_one_window_ms: expected a number in 1..3600000, got 0");
  expect(err({ log_parameters: 1 })).toBe("query_analytics.log_parameters: expected true or false, got 1");
  expect(err({ slow_ms: 5 })).toBe("query_analytics.slow_ms: unknown key (valid: enabled, max_queries, slow_query_ms, slow_query_sample, log_parameters, max_slow_queries, n_plus_one_threshold, n_plus_one_window_ms, max_n_plus_one_reports, show_limit)");
  expect(err({ show_limt: 5 })).toBe("query_analytics.show_limt: unknown key (did you mean show_limit?)");
});

test("shapes by template across sessions: more shapes than a session's recent few, new literals each time; every call lands on the lexer's fingerprint", async () => {
  const { QueryAnalytics } = await import("../../src/modules/query-analytics/index.ts");
  const { queryCtx } = await import("../../src/client/request-ctx.ts");
  const { QueryShapeCache } = await import("../../src/sql/fingerprint.ts");
  const qa = new QueryAnalytics(moduleSettings("query_analytics", {}) as never);
  const shapes = new QueryShapeCache();
  const enc = new TextEncoder();
  // pgbench tpcb's seven statements and one more: more than the recent slots a session keeps.
  const texts = (i: number) => [
    "BEGIN;",
    `UPDATE pgbench_accounts SET abalance = abalance + ${i - 2500} WHERE aid = ${i * 7};`,
    `SELECT abalance FROM pgbench_accounts WHERE aid = ${i * 7};`,
    `UPDATE pgbench_tellers SET tbalance = tbalance + ${i - 2500} WHERE tid = ${i % 10};`,
    `UPDATE pgbench_branches SET bbalance = bbalance + ${i - 2500} WHERE bid = ${i % 3};`,
    `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${i % 10}, ${i % 3}, ${i * 7}, ${i - 2500}, CURRENT_TIMESTAMP);`,
    `SELECT name FROM users WHERE email = 'u${i}@x.org' AND age > ${i % 90}`,
    "END;",
  ];
  const expected = new Map<string, number>();
  for (let i = 1; i <= 60; i++)
    for (let id = 1; id <= 3; id++) {
      const session = { id, user: "u", database: "d", applicationName: "", remoteAddress: "", tls: false, startedAt: 0 } as SessionCtx;
      for (const t of texts(i * 3 + id)) {
        const fp = analyzeQuery(t).fingerprint;
        expected.set(fp, (expected.get(fp) ?? 0) + 1);
        const q = queryCtx(session, "I", enc.encode(t), shapes, () => null);
        qa.onResult({ query: q, node: "n", commandTag: "SELECT 1", rows: 1, durationMs: 0.1, txStatus: "I" });
      }
    }
  const got = new Map(qa.store.all().map((e) => [e.fingerprint, e.calls]));
  expect(got).toEqual(expected);
  expect(expected.size).toBe(8);
});
