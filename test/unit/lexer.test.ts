// The SQL lexer: every token kind, PostgreSQL's edge rules, unterminated input, and fuzzing.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Lexer, Tok, tokenize } from "../../src/sql/lexer.ts";

const NAME: Record<number, string> = {
  [Tok.Word]: "Word", [Tok.QuotedIdent]: "QuotedIdent", [Tok.String]: "String", [Tok.BitString]: "BitString",
  [Tok.DollarString]: "DollarString", [Tok.Number]: "Number", [Tok.Param]: "Param", [Tok.Operator]: "Operator",
  [Tok.Punct]: "Punct", [Tok.Comment]: "Comment", [Tok.Hint]: "Hint", [Tok.Other]: "Other",
};
const toks = (sql: string) => tokenize(sql).map((t) => `${NAME[t.kind]} ${t.text}`);

describe("one token of each kind, alone and as the whole input", () => {
  const cases: [string, Tok][] = [
    ["select", Tok.Word], ["My_Table$1", Tok.Word], ["_x", Tok.Word], ["ünïcode", Tok.Word], ["e", Tok.Word],
    ['"Quoted ""x"" id"', Tok.QuotedIdent], ['U&"d\\0061t"', Tok.QuotedIdent], ['""', Tok.QuotedIdent],
    ["'it''s'", Tok.String], ["E'a\\'b\\\\'", Tok.String], ["e'\\n'", Tok.String], ["N'national'", Tok.String],
    ["U&'d\\0061t'", Tok.String], ["'a'\n'b'", Tok.String], ["'a' -- c\n  'b'", Tok.String], ["''", Tok.String],
    ["B'1010'", Tok.BitString], ["x'1F'", Tok.BitString],
    ["$$a 'b' $1$$", Tok.DollarString], ["$tag$ $$ $x$ $tag$", Tok.DollarString], ["$_1$x$_1$", Tok.DollarString],
    ["42", Tok.Number], ["3.14", Tok.Number], [".5", Tok.Number], ["1.", Tok.Number], ["1.5e-3", Tok.Number],
    ["2E+10", Tok.Number], ["1.e3", Tok.Number], ["0x1F", Tok.Number], ["0o17", Tok.Number], ["0b1010", Tok.Number],
    ["1_000_000", Tok.Number], ["0x_FF", Tok.Number],
    ["$1", Tok.Param], ["$42", Tok.Param],
    ["+", Tok.Operator], ["<->", Tok.Operator], ["<#>", Tok.Operator], ["<=>", Tok.Operator], ["->>", Tok.Operator],
    ["#>>", Tok.Operator], ["||", Tok.Operator], ["!=", Tok.Operator], ["<>", Tok.Operator], [">=", Tok.Operator],
    ["@@", Tok.Operator], ["~*", Tok.Operator], ["?|", Tok.Operator], ["@-", Tok.Operator],
    ["(", Tok.Punct], [")", Tok.Punct], ["[", Tok.Punct], ["]", Tok.Punct], [",", Tok.Punct], [";", Tok.Punct],
    [":", Tok.Punct], ["::", Tok.Punct], [":=", Tok.Punct], [".", Tok.Punct], ["..", Tok.Punct],
    ["-- line comment", Tok.Comment], ["/* block */", Tok.Comment], ["/* a /* nested */ b */", Tok.Comment],
    ["/**/", Tok.Comment], ["/*+ route=primary */", Tok.Hint], ["/*+*/", Tok.Hint],
    ["\\", Tok.Other], ["{", Tok.Other], ["$", Tok.Other], ["\0", Tok.Other],
  ];
  test.each(cases)("%p", (sql, kind) => {
    const t = tokenize(sql);
    expect(t).toEqual([{ kind, text: sql }]);
    // Surrounded by spaces it is still one token with the same text.
    expect(tokenize(`  ${sql}\n`)).toEqual([{ kind, text: sql }]);
  });
});

describe("PostgreSQL's rules", () => {
  test.each([
    // Operators stop before comment starts; a trailing + or - only stays after ~!@#^&|`?%.
    ["a<-1", ["Word a", "Operator <", "Operator -", "Number 1"]],
    ["x=-1", ["Word x", "Operator =", "Operator -", "Number 1"]],
    ["x@-1", ["Word x", "Operator @-", "Number 1"]],
    ["a+-+b", ["Word a", "Operator +", "Operator -", "Operator +", "Word b"]],
    ["*/*c*/x", ["Operator *", "Comment /*c*/", "Word x"]],
    ["1--c\n2", ["Number 1", "Comment --c", "Number 2"]],
    ["a<->b", ["Word a", "Operator <->", "Word b"]],
    // Numbers.
    ["1..10", ["Number 1", "Punct ..", "Number 10"]],
    ["1e", ["Number 1", "Word e"]],
    ["1e+", ["Number 1", "Word e", "Operator +"]],
    ["1__0", ["Number 1", "Word __0"]],
    ["0x", ["Number 0", "Word x"]],
    ["a.b.c", ["Word a", "Punct .", "Word b", "Punct .", "Word c"]],
    ["t.1", ["Word t", "Number .1"]],
    // Prefixes only at a token start; a string continues only across a newline.
    ["ax'1'", ["Word ax", "String '1'"]],
    ["'a' 'b'", ["String 'a'", "String 'b'"]],
    ["'a' /* c */\n'b'", ["String 'a'", "Comment /* c */", "String 'b'"]],
    ["B'1''0'", ["BitString B'1'", "String '0'"]],
    ["U&'x' UESCAPE '!'", ["String U&'x'", "Word UESCAPE", "String '!'"]],
    ["u&x", ["Word u", "Operator &", "Word x"]],
    // Dollars: parameters, quotes, identifiers containing $, and a lone $.
    ["$1$2", ["Param $1", "Param $2"]],
    ["a$1 $a$x$a$", ["Word a$1", "DollarString $a$x$a$"]],
    ["$a$ $b$ $a$", ["DollarString $a$ $b$ $a$"]],
    ["$a $1a", ["Other $", "Word a", "Param $1", "Word a"]],
    ["$1abc", ["Param $1", "Word abc"]],
    // E'' escapes: the escaped quote does not close; '' is a quote in both kinds.
    ["E'\\''x", ["String E'\\''", "Word x"]],
    ["'\\' x", ["String '\\'", "Word x"]],
    ["'\\''x", ["String '\\''x"]],
    ["::int[]", ["Punct ::", "Word int", "Punct [", "Punct ]"]],
  ])("%p", (sql, expected) => {
    expect(toks(sql)).toEqual(expected);
  });
});

describe("unterminated input ends at the end, flagged, without throwing", () => {
  test.each([
    ["'abc", Tok.String], ["E'abc\\", Tok.String], ["E'abc\\'", Tok.String], ["'a'\n'b", Tok.String],
    ['"abc', Tok.QuotedIdent], ['U&"x', Tok.QuotedIdent], ["/* abc", Tok.Comment], ["/* /* */", Tok.Comment],
    ["/*+ route=primary", Tok.Hint], ["$$abc", Tok.DollarString], ["$t$abc$t", Tok.DollarString], ["B'01", Tok.BitString],
  ])("%p", (sql, kind) => {
    const lx = new Lexer().reset(`select ${sql}`);
    lx.next();
    expect(lx.next()).toBe(kind);
    expect(lx.unterminated).toBe(true);
    expect(lx.end).toBe(sql.length + 7);
    expect(lx.next()).toBe(Tok.End);
    expect(lx.next()).toBe(Tok.End);
  });

  test("a line comment without a newline is complete, not unterminated", () => {
    const lx = new Lexer().reset("-- x");
    expect(lx.next()).toBe(Tok.Comment);
    expect(lx.unterminated).toBe(false);
  });
});

describe("the cursor", () => {
  test("word() folds unquoted names and undoes quoting; is() ignores case", () => {
    const lx = new Lexer().reset('SeLeCt "My ""T"" able" U&"x"');
    lx.next();
    expect(lx.is("select")).toBe(true);
    expect(lx.is("selec")).toBe(false);
    expect(lx.word()).toBe("select");
    lx.next();
    expect(lx.word()).toBe('My "T" able');
    lx.next();
    expect(lx.kind).toBe(Tok.QuotedIdent);
  });

  test("nextSignificant skips comments and hints; peekSignificant does not move", () => {
    const lx = new Lexer().reset("a /* c */ -- d\n /*+ h */ b c");
    expect(lx.nextSignificant()).toBe(Tok.Word);
    expect(lx.peekSignificant()).toBe(Tok.Word);
    expect(lx.src.slice(lx.peekStart, lx.peekEnd)).toBe("b");
    expect(lx.text()).toBe("a");
    lx.nextSignificant();
    expect(lx.text()).toBe("b");
  });

  test("reset(src, from, to) lexes only that range", () => {
    const sql = "xx select 1 yy";
    const lx = new Lexer().reset(sql, 3, 11);
    const seen: string[] = [];
    while (lx.next() !== Tok.End) seen.push(lx.text());
    expect(seen).toEqual(["select", "1"]);
    // A quote that would close after the range stays unterminated.
    const q = new Lexer().reset("'abc' tail", 0, 3);
    expect(q.next()).toBe(Tok.String);
    expect(q.unterminated).toBe(true);
    expect(q.end).toBe(3);
  });
});

/** Tokens tile the input: in order, non-empty, only whitespace between them, End at the end. */
function checkTiling(sql: string): void {
  const lx = new Lexer().reset(sql);
  let last = 0;
  for (let i = 0; ; i++) {
    const k = lx.next();
    if (k === Tok.End) {
      expect(sql.slice(last).trim()).toBe("");
      expect(lx.end).toBe(sql.length);
      return;
    }
    expect(lx.start).toBeGreaterThanOrEqual(last);
    expect(lx.end).toBeGreaterThan(lx.start);
    expect(lx.end).toBeLessThanOrEqual(sql.length);
    expect(/^[ \t\n\r\f\v]*$/.test(sql.slice(last, lx.start))).toBe(true);
    last = lx.end;
    expect(i).toBeLessThan(sql.length + 1);
  }
}

const sqlPiece = fc.constantFrom(
  ..."'\"$-/*+eEbBxXuUnN&01 9._\n\t;(),:=<>!@#a\\\0",
  "select ", "from ", "$1", "$$", "$t$", "--", "/*", "*/", "/*+ ", "E'\\\\'", "U&", "0x", "1e", "..", "::", "é",
);
const sqlish = fc.array(sqlPiece, { maxLength: 60 }).map((a) => a.join(""));

describe("fuzz", () => {
  test("random SQL-like text: tokens tile the input, nothing throws, every call advances", () => {
    fc.assert(fc.property(sqlish, (sql) => checkTiling(sql)), { numRuns: 3000 });
  });

  test("random Unicode and random bytes (as Latin-1): same", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), (sql) => checkTiling(sql)), { numRuns: 2000 });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => checkTiling(Buffer.from(b).toString("latin1"))),
      { numRuns: 2000 },
    );
  });

  test("joining tokens with single spaces gives the same tokens back (comments aside)", () => {
    fc.assert(
      fc.property(sqlish, (sql) => {
        const t = tokenize(sql).filter((x) => x.kind !== Tok.Comment && x.kind !== Tok.Hint);
        // Only complete tokens re-lex the same; string continuations need their newline.
        if (t.some((x) => x.text.includes("\n"))) return;
        const lx = new Lexer().reset(sql);
        let incomplete = false;
        while (lx.next() !== Tok.End) incomplete ||= lx.unterminated;
        if (incomplete) return;
        const again = tokenize(t.map((x) => x.text).join(" ")).filter((x) => x.kind !== Tok.Comment && x.kind !== Tok.Hint);
        // Two tokens that only split because they touched (1e, 0x, a$ $1...) may merge differently: compare texts.
        expect(again.map((x) => x.text).join(" ")).toBe(t.map((x) => x.text).join(" "));
      }),
      { numRuns: 2000 },
    );
  });

  test("a long input is linear: 1 MB of mixed SQL lexes in well under a second", () => {
    const chunk = "SELECT a, 'x''y', $$z$$, \"q\" FROM t /* c */ WHERE b = -1.5e3 AND c <-> $1; -- end\n";
    const sql = chunk.repeat(Math.ceil(1_000_000 / chunk.length));
    const lx = new Lexer().reset(sql);
    const t0 = performance.now();
    let n = 0;
    while (lx.next() !== Tok.End) n++;
    expect(n).toBeGreaterThan(200_000);
    expect(performance.now() - t0).toBeLessThan(1000);
    // Unterminated openers over a long tail do not go quadratic either.
    for (const opener of ["'", '"', "/*", "$x$", "E'"]) {
      const big = opener + "a".repeat(1_000_000);
      const t1 = performance.now();
      const l = new Lexer().reset(big);
      l.next();
      expect(l.end).toBe(big.length);
      expect(performance.now() - t1).toBeLessThan(500);
    }
  });
});
