// Routing hints in comments: the documented keys and values, and hostile or malformed comments ignored safely.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { MAX_HINT_COMMENT, MAX_HINT_COMMENTS, parseHints, parseHintsBytes, type RouteHints } from "../../src/sql/hints.ts";

describe("keys and values", () => {
  test.each<[string, RouteHints | null]>([
    ["/*+ route=primary */ SELECT 1", { route: "primary" }],
    ["/*+ route=standby */ SELECT 1", { route: "standby" }],
    ["/*+ route=any */ SELECT 1", { route: "any" }],
    ["/*+ ROUTE=Standby */ SELECT 1", { route: "standby" }],
    ["/*+ node=pg-2.east_1 */ SELECT 1", { node: "pg-2.east_1" }],
    ["/*+ max_lag=100ms */ SELECT 1", { maxLagMs: 100 }],
    ["/*+ max_lag=2s */ SELECT 1", { maxLagMs: 2000 }],
    ["/*+ max_lag=1.5s */ SELECT 1", { maxLagMs: 1500 }],
    ["/*+ max_lag=1min */ SELECT 1", { maxLagMs: 60_000 }],
    ["/*+ max_lag=250 */ SELECT 1", { maxLagMs: 250 }],
    ["/*+ max_lag=16MB */ SELECT 1", { maxLagBytes: 16 * 1024 * 1024 }],
    ["/*+ max_lag=512kB */ SELECT 1", { maxLagBytes: 512 * 1024 }],
    ["/*+ max_lag=100B */ SELECT 1", { maxLagBytes: 100 }],
    ["/*+ max_lag=1GB */ SELECT 1", { maxLagBytes: 1024 ** 3 }],
    ["/*+ route=standby node=pg2 max_lag=50ms */ SELECT 1", { route: "standby", node: "pg2", maxLagMs: 50 }],
    ["/*+ route=standby,node=pg2 , max_lag=50ms */ SELECT 1", { route: "standby", node: "pg2", maxLagMs: 50 }],
    ["/*+\n\troute = standby\n\tnode= pg2 */ SELECT 1", { route: "standby", node: "pg2" }],
    ["/*+route=primary*/SELECT 1", { route: "primary" }],
    // Anywhere in the text outside literals; first valid value per key wins, across comments.
    ["SELECT /*+ route=standby */ a FROM t /*+ route=primary node=n1 */", { route: "standby", node: "n1" }],
    ["SELECT 1; /*+ node=late */ SELECT 2", { node: "late" }],
    ["/*+ route=master route=primary */ SELECT 1", { route: "primary" }],
    ["/*+ route=standby route=primary */ SELECT 1", { route: "standby" }],
    ["/*+ max_lag=100ms max_lag=1MB */ SELECT 1", { maxLagMs: 100 }],
    // Items of other tools (pg_hint_plan) and unknown keys are skipped, ours still apply.
    ["/*+ SeqScan(t) IndexScan(t idx) route=standby */ SELECT 1", { route: "standby" }],
    ["/*+ future_key=1 route=any */ SELECT 1", { route: "any" }],
    ["SELECT 1", null],
    ["/* route=primary */ SELECT 1", null],
    ["-- /*+ route=primary */\nSELECT 1", null],
    ["/*+ */ SELECT 1", null],
    ["/*+ SeqScan(t) */ SELECT 1", null],
  ])("%p", (sql, expected) => {
    expect(parseHints(sql)).toEqual(expected);
  });

  test("the result is frozen", () => {
    const h = parseHints("/*+ route=primary */ SELECT 1")!;
    expect(Object.isFrozen(h)).toBe(true);
    expect(() => {
      (h as { route?: string }).route = "standby";
    }).toThrow();
  });
});

describe("hostile and malformed comments are ignored, never thrown on", () => {
  test.each<[string, string, RouteHints | null]>([
    ["in a string", "SELECT '/*+ route=primary */'", null],
    ["in an E string", "SELECT E'\\' /*+ route=primary */'", null],
    ["in a dollar quote", "SELECT $$ /*+ route=primary */ $$", null],
    ["in a tagged dollar quote", "SELECT $x$ $$ /*+ route=primary */ $x$", null],
    ["in a quoted identifier", 'SELECT 1 AS "/*+ route=primary */"', null],
    ["in a line comment", "SELECT 1 -- /*+ route=primary */", null],
    ["nested in an ordinary comment", "/* x /*+ route=primary */ y */ SELECT 1", null],
    ["with a nested comment inside", "/*+ route=primary /* x */ */ SELECT 1", null],
    ["unterminated", "SELECT 1 /*+ route=primary", null],
    ["with a NUL byte", "/*+ route=primary\0 */ SELECT 1", null],
    ["with a control character", "/*+ route=primary \u001b[31m */ SELECT 1", null],
    ["bad route", "/*+ route=master */ SELECT 1", null],
    ["route with junk", "/*+ route=primary;DROP */ SELECT 1", null],
    ["node with bad characters", "/*+ node=a/b node=../x node=é node=-x */ SELECT 1", null],
    ["node too long", `/*+ node=${"n".repeat(64)} */ SELECT 1`, null],
    ["negative lag", "/*+ max_lag=-5ms */ SELECT 1", null],
    ["lag over a day", "/*+ max_lag=86401s */ SELECT 1", null],
    ["lag in hours", "/*+ max_lag=1h */ SELECT 1", null],
    ["lag with exponent", "/*+ max_lag=1e9 */ SELECT 1", null],
    ["lag not a number", "/*+ max_lag=abc max_lag=NaN max_lag=Infinity max_lag= */ SELECT 1", null],
    ["bytes over 1 TB", "/*+ max_lag=2000GB */ SELECT 1", null],
    ["key without value", "/*+ route route= =primary */ SELECT 1", null],
    ["a string literal then a real hint", "SELECT '/*+ route=primary */' /*+ route=standby */", { route: "standby" }],
    ["a bad comment then a good one", "/*+ route=primary\0 */ /*+ node=ok */ SELECT 1", { node: "ok" }],
  ])("%s", (_name, sql, expected) => {
    expect(parseHints(sql)).toEqual(expected);
  });

  test(`a hint comment longer than ${MAX_HINT_COMMENT} bytes is ignored whole`, () => {
    const pad = " ".repeat(MAX_HINT_COMMENT);
    expect(parseHints(`/*+ route=primary ${pad}*/ SELECT 1`)).toBeNull();
    const fits = " ".repeat(MAX_HINT_COMMENT - "/*+ route=primary */".length);
    expect(parseHints(`/*+ route=primary ${fits.slice(1)}*/ SELECT 1`)).toEqual({ route: "primary" });
  });

  test(`only the first ${MAX_HINT_COMMENTS} hint comments are looked at`, () => {
    const junk = "/*+ x=1 */ ".repeat(MAX_HINT_COMMENTS);
    expect(parseHints(`${junk}/*+ route=primary */ SELECT 1`)).toBeNull();
    expect(parseHints(`${"/*+ x=1 */ ".repeat(MAX_HINT_COMMENTS - 1)}/*+ route=primary */ SELECT 1`)).toEqual({ route: "primary" });
  });

  test("fuzz: random hint bodies never throw and yield only valid fields", () => {
    const piece = fc.constantFrom("route", "node", "max_lag", "=", " ", ",", "primary", "standby", "any", "ms", "s", "MB",
      "1", "0", ".", "-", "/*", "*/", "\0", "'", "$$", "é", "\n", "x", "(", ")");
    const body = fc.oneof(fc.array(piece, { maxLength: 30 }).map((a) => a.join("")), fc.string({ unit: "binary", maxLength: 60 }));
    fc.assert(
      fc.property(body, fc.string({ maxLength: 20 }), (b, rest) => {
        const h = parseHints(`/*+ ${b} */ ${rest}`);
        if (h === null) return;
        expect(Object.isFrozen(h)).toBe(true);
        for (const k of Object.keys(h)) expect(["route", "node", "maxLagMs", "maxLagBytes"]).toContain(k);
        if (h.route !== undefined) expect(["primary", "standby", "any"]).toContain(h.route);
        if (h.node !== undefined) expect(h.node).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/);
        if (h.maxLagMs !== undefined) expect(h.maxLagMs >= 0 && h.maxLagMs <= 86_400_000).toBe(true);
        if (h.maxLagBytes !== undefined) expect(h.maxLagBytes >= 0 && h.maxLagBytes <= 2 ** 40).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  test("a huge text with many comments is parsed in bounded time", () => {
    const sql = "/*+ route=standby */ " + "/* c */ SELECT 1; ".repeat(100_000) + "/*+ node=x */ ".repeat(10_000);
    const t0 = performance.now();
    expect(parseHints(sql)).toEqual({ route: "standby", node: "x" });
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe("from UTF-8 bytes", () => {
  const enc = new TextEncoder();

  test("finds hints after multi-byte characters, within the given range only", () => {
    const b = enc.encode("SELECT 'héllo wörld' /*+ route=standby node=pg2 */, 'ü'");
    expect(parseHintsBytes(b, 0, b.length)).toEqual({ route: "standby", node: "pg2" });
    // A message inside a larger buffer: bytes before and after the range do not count.
    const frame = new Uint8Array([...enc.encode("/*+ route=primary */"), ...enc.encode("Q SELECT 1"), ...enc.encode("/*+ node=x */")]);
    expect(parseHintsBytes(frame, 20, 30)).toBeNull();
    expect(parseHintsBytes(frame, 0, 30)).toEqual({ route: "primary" });
  });

  test("a hint inside a string is still ignored, and no marker means no decoding", () => {
    const b = enc.encode("SELECT '/*+ route=primary */'");
    expect(parseHintsBytes(b, 0, b.length)).toBeNull();
    expect(parseHintsBytes(enc.encode("SELECT 1"), 0, 8)).toBeNull();
  });

  test("random bytes never throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const withMarker = new Uint8Array([47, 42, 43, ...b, 42, 47]);
        parseHintsBytes(withMarker, 0, withMarker.length);
        parseHintsBytes(b, 0, b.length);
      }),
      { numRuns: 3000 },
    );
  });
});
