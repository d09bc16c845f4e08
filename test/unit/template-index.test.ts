// TemplateIndex: texts that differ only in literals find what was learned; nothing else ever does (checked against the query cache's lexer).

import { describe, expect, test } from "bun:test";
import { skeletonHash, TemplateIndex, type Learned } from "../../src/sql/template-index.ts";
import { shapeOf } from "../../src/modules/query-cache/shape.ts";

/** Learn a text the way the query cache does: its structure, remembered under its literal spans. */
function learn(index: TemplateIndex<string>, text: string): boolean {
  const s = shapeOf(text);
  return s.spans !== null && s.spans.length > 0 && index.remember(text, s.spans, s.structure) !== null;
}

describe("TemplateIndex", () => {
  test("a text with other literals of the same kinds finds the learned value; the same hash", () => {
    const idx = new TemplateIndex<string>(100);
    const a = "UPDATE pgbench_accounts SET abalance = abalance + -2345 WHERE aid = 12345;";
    expect(learn(idx, a)).toBe(true);
    const b = "UPDATE pgbench_accounts SET abalance = abalance + -7 WHERE aid = 9;";
    const utf8 = new TextEncoder();
    expect(skeletonHash(utf8.encode(b))).toBe(skeletonHash(utf8.encode(a)));
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
    // Each lookup is made after the last one found, as a session makes them: guesses are tried on every text.
    let after: Learned<string> | null = null;
    let found = 0;
    for (let i = 0; i < 20_000; i++) {
      const shape = shapes[rnd(shapes.length)]!;
      const text = shape.replace(/\?/g, () => literals[rnd(literals.length)]!);
      const b = new TextEncoder().encode(text);
      const l = idx.learnedAt(b, 0, b.length, after);
      after = l ?? null;
      const got = l?.value;
      const lexed = shapeOf(text);
      if (got !== undefined) {
        found++;
        expect([text, got]).toEqual([text, lexed.structure]);
      } else if (lexed.spans !== null) idx.remember(text, lexed.spans, lexed.structure);
    }
    expect(found).toBeGreaterThan(5_000);
  });

  test("found by the UTF-8 bytes in place; non-ASCII literals match an ASCII template; non-ASCII texts make none; texts without literals", () => {
    const idx = new TemplateIndex<string>(100);
    const utf8 = new TextEncoder();
    expect(learn(idx, "SELECT v FROM t WHERE name = 'x' AND id = 1")).toBe(true);
    const buf = utf8.encode("QxxxxSELECT v FROM t WHERE name = 'żółw ☃' AND id = 22;\0");
    expect(idx.learnedAt(buf, 5, buf.length - 1, null)?.value).toBe(shapeOf("SELECT v FROM t WHERE name = 'x' AND id = 1").structure);
    // The bytes after `to` are not read: a text cut short does not match.
    expect(idx.learnedAt(buf, 5, buf.length - 6, null)).toBeUndefined();
    const nonAscii = "SELECT v FROM żółw WHERE id = 1";
    expect(idx.remember(nonAscii, shapeOf(nonAscii).spans!, "x")).toBeNull();
    // A text without literals is its own template (as the cache keeps BEGIN, COMMIT and writes); trailing blanks and semicolons may differ.
    expect(idx.remember("BEGIN", [], "begin")).not.toBeNull();
    expect(["BEGIN;", "BEGIN ; ", "BEGIN READ ONLY", "begin"].map((x) => idx.find(x))).toEqual(["begin", "begin", undefined, undefined]);
    const p = "SELECT v FROM t WHERE id = $1";
    expect(idx.remember(p, shapeOf(p).spans!, "p")).not.toBeNull();
    expect(["SELECT v FROM t WHERE id = $1", "SELECT v FROM t WHERE id = $2", "SELECT v FROM t WHERE id = 1"].map((x) => idx.find(x))).toEqual(["p", undefined, undefined]);
  });

  test("the statement that followed last time is tried first; a wrong guess falls back to the hash and is never taken", () => {
    const idx = new TemplateIndex<string>(100);
    const utf8 = new TextEncoder();
    const texts = ["BEGIN", "UPDATE a SET x = x + 5 WHERE id = 1", "SELECT x FROM a WHERE id = 1", "UPDATE b SET y = y + 5 WHERE id = 2", "END"];
    const learned = texts.map((t) => idx.remember(t, shapeOf(t).spans!, t)!);
    const find = (t: string, after: ReturnType<typeof idx.learnedAt> | null) => {
      const b = utf8.encode(t);
      return idx.learnedAt(b, 0, b.length, after ?? null);
    };
    // The first pass links each to the next.
    let after = null;
    for (const t of texts) after = find(t.replace(/\d+/g, "9"), after);
    for (let k = 0; k + 1 < learned.length; k++) expect(learned[k]!.next).toBe(learned[k + 1]!);
    // Another order: the guess (the old successor) does not match, the right one is found and becomes the successor.
    expect(find("UPDATE b SET y = y + 7 WHERE id = 3", learned[1]!)?.value).toBe(texts[3]);
    expect([learned[1]!.next, learned[1]!.nextBefore]).toEqual([learned[3]!, learned[2]!]);
    // The one before is still tried: found without a hash, and it is the latest again.
    expect(find("SELECT x FROM a WHERE id = 4", learned[1]!)?.value).toBe(texts[2]);
    expect([learned[1]!.next, learned[1]!.nextBefore]).toEqual([learned[2]!, learned[3]!]);
    expect(find("UPDATE c SET y = y + 7 WHERE id = 3", learned[2]!)).toBeUndefined();
  });

  test("bounded: at most `max` hashes are kept; a template that left is no longer guessed and links to nothing", () => {
    const idx = new TemplateIndex<string>(50);
    const utf8 = new TextEncoder();
    let after: Learned<string> | null = null;
    const all: Learned<string>[] = [];
    for (let i = 0; i < 500; i++) {
      const t = `SELECT c${i} FROM t WHERE id = ${i}`;
      learn(idx, t);
      // Found right after being learned, after the previous one: each links to the next.
      const b = utf8.encode(t.replace(/= \d+$/, "= 7"));
      const l: Learned<string> | undefined = idx.learnedAt(b, 0, b.length, after);
      all.push(l!);
      after = l ?? null;
    }
    expect(idx.size).toBe(50);
    expect(all.slice(0, 450).every((l) => l.gone && l.next === null && l.nextBefore === null)).toBe(true);
    expect(all.slice(450).every((l) => !l.gone)).toBe(true);
    // A gone template is not found by guess, even from a live one that still names it.
    const b = utf8.encode("SELECT c0 FROM t WHERE id = 9");
    const first = all[0]!;
    all[460]!.next = first;
    expect(idx.learnedAt(b, 0, b.length, all[460]!)).toBeUndefined();
  });
});
