// TemplateIndex: texts that differ only in literals find what was learned; nothing else ever does (checked against the query cache's lexer).

import { describe, expect, test } from "bun:test";
import { skeletonHash, TemplateIndex } from "../../src/sql/template-index.ts";
import { shapeOf } from "../../src/modules/query-cache/shape.ts";

/** Learn a text the way the query cache does: its structure, remembered under its literal spans. */
function learn(index: TemplateIndex<string>, text: string): boolean {
  const s = shapeOf(text);
  return s.spans !== null && index.remember(text, s.spans, s.structure);
}

describe("TemplateIndex", () => {
  test("a text with other literals of the same kinds finds the learned value; the same hash", () => {
    const idx = new TemplateIndex<string>(100);
    const a = "UPDATE pgbench_accounts SET abalance = abalance + -2345 WHERE aid = 12345;";
    expect(learn(idx, a)).toBe(true);
    const b = "UPDATE pgbench_accounts SET abalance = abalance + -7 WHERE aid = 9;";
    expect(skeletonHash(b)).toBe(skeletonHash(a));
    expect(idx.find(b)).toBe(shapeOf(a).structure);
    expect(idx.find("SELECT name FROM t WHERE id = 1")).toBeUndefined();
    const s = "SELECT name FROM users WHERE email = 'a@b.c' AND age > 30";
    expect(learn(idx, s)).toBe(true);
    expect(idx.find("SELECT name FROM users WHERE email = 'it''s' AND age > 7")).toBe(shapeOf(s).structure);
    // A parameter where a literal was hashes apart: lexed and learned on its own.
    expect(idx.find("SELECT name FROM users WHERE email = $1 AND age > $2")).toBeUndefined();
  });

  test("never found: other words, other literal kinds, prefixed or escaped strings, a second statement, comments", () => {
    const idx = new TemplateIndex<string>(100);
    expect(learn(idx, "SELECT v FROM t WHERE id = 5 AND name = 'x'")).toBe(true);
    const misses = [
      "SELECT v FROM t WHERE id = 5.5 AND name = 'x'", // decimal for integer
      "SELECT v FROM t WHERE id = 5 AND name = E'x'", // escape string
      "SELECT v FROM t WHERE id = 5 AND name = 'x\\'", // backslash: another string under standard_conforming_strings = off
      "SELECT v FROM t WHERE id = 5 AND name = 'x'; DELETE FROM t",
      "SELECT v FROM t WHERE id = 5 AND name = 'x' -- c",
      "SELECT v FROM u WHERE id = 5 AND name = 'x'",
      "select v from t where id = 5 and name = 'x'", // case: lexed (safe, only slower)
      "SELECT v FROM t WHERE id = 5e3 AND name = 'x'",
      "SELECT v FROM t WHERE id = 5x AND name = 'x'",
      "SELECT v FROM t WHERE id = 0x1F AND name = 'x'",
      "SELECT v FROM t WHERE id = $$5$$ AND name = 'x'",
      "SELECT v FROM t WHERE id = 5 AND name = 'x' || 'y'",
      "SELECT v FROM t WHERE id = 5 AND name = U&'x'",
    ];
    for (const m of misses) expect([m, idx.find(m)]).toEqual([m, undefined]);
    // Texts with comments, dollar quotes or escape strings make no template.
    for (const t of ["SELECT 1 /* c */", "SELECT $$x$$, 1", "SELECT E'x', 1", "SELECT 'a\\b', 1"]) expect([t, learn(idx, t)]).toEqual([t, false]);
  });

  test("property: whatever a generated text finds has the structure the lexer gives it", () => {
    const shapes = [
      "SELECT a FROM t WHERE id = ? AND b = ?",
      "SELECT a FROM t WHERE id IN (?, ?, ?)",
      "UPDATE t SET x = x + ? WHERE id = ?",
      "INSERT INTO h (a, b, c) VALUES (?, ?, ?)",
      "SELECT ?::date + ? FROM t",
      "SELECT a FROM t ORDER BY ? LIMIT ?",
      "SELECT f(?, ?) FROM t WHERE id = $1",
    ];
    const literals = ["1", "42", "-3", "1.5", "1e3", "'x'", "'it''s'", "''", "'a;b'", "'--x'", "'/*'", "E'x'", "'a\\'", "$$q$$", "5x", ".5", "0x1", "'now'", "NULL", "$1", "$2", "'\"'", "''''"];
    let seed = 7;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    const idx = new TemplateIndex<string>(1000);
    let found = 0;
    for (let i = 0; i < 20_000; i++) {
      const shape = shapes[rnd(shapes.length)]!;
      const text = shape.replace(/\?/g, () => literals[rnd(literals.length)]!);
      const got = idx.find(text);
      const lexed = shapeOf(text);
      if (got !== undefined) {
        found++;
        expect([text, got]).toEqual([text, lexed.structure]);
      } else if (lexed.spans !== null) idx.remember(text, lexed.spans, lexed.structure);
    }
    expect(found).toBeGreaterThan(5_000);
  });

  test("bounded: at most `max` hashes are kept", () => {
    const idx = new TemplateIndex<string>(50);
    for (let i = 0; i < 500; i++) learn(idx, `SELECT c${i} FROM t WHERE id = ${i}`);
    expect(idx.size).toBe(50);
  });
});
