// PostgreSQL SQL tokenizer: one pass over a string, a reusable cursor, no allocation per token.

/**
 * Token kinds. Whitespace is skipped; comments are reported (consumers usually skip them).
 * Follows PostgreSQL's scan.l with standard_conforming_strings = on.
 */
export const enum Tok {
  End = 0,
  /** Keyword or unquoted identifier (`select`, `my_table`, `a$1`); compare with `is()`, fold with `word()`. */
  Word,
  /** `"quoted identifier"` (with `""` inside) or `U&"..."`. */
  QuotedIdent,
  /** `'...'`, `E'...'`, `N'...'`, `U&'...'`, including continuation lines (`'a'\n'b'` is one token). */
  String,
  /** `B'...'` or `X'...'`. */
  BitString,
  /** `$$...$$` or `$tag$...$tag$`. */
  DollarString,
  /**
   * Integer, decimal, exponent; also `0x1F`/`0o17`/`0b101` and `1_000` separators, which PostgreSQL
   * accepts from 16 on (15 rejects them as "trailing junk", so such text never runs on 15 anyway).
   */
  Number,
  /** `$1`, `$2`... */
  Param,
  /** Operator characters `+ - * / < > = ~ ! @ # % ^ & | \` ?`, by PostgreSQL's rules (`<->`, `>=`, `||`...). */
  Operator,
  /** `( ) [ ] , ; : . :: := ..` */
  Punct,
  /** `-- ...` (to end of line, newline excluded) or `/* ... *\/` (nested). */
  Comment,
  /** A block comment that starts with `/*+`: routing hints. */
  Hint,
  /** Any other character (`\`, `{`, a lone `$`, control characters): an error to PostgreSQL. */
  Other,
}

// Character classes for ASCII; every code unit >= 128 counts as an identifier character, as in PostgreSQL.
const SPACE = 1, ID_START = 2, ID_CONT = 4, DIGIT = 8, OP = 16;
const CLS = new Uint8Array(128);
for (const c of " \t\n\r\f\v") CLS[c.charCodeAt(0)] = SPACE;
for (let c = 65; c <= 90; c++) CLS[c] = CLS[c + 32] = ID_START | ID_CONT;
CLS[95] = ID_START | ID_CONT; // _
for (let c = 48; c <= 57; c++) CLS[c] = DIGIT | ID_CONT;
CLS[36] = ID_CONT; // $
for (const c of "~!@#^&|`?+-*/%<>=") CLS[c.charCodeAt(0)] = OP;

const cls = (c: number) => (c < 128 ? CLS[c]! : ID_START | ID_CONT);
const isDigit = (c: number) => c >= 48 && c <= 57;
/** Operator characters that let a multi-character operator end in + or - (PostgreSQL rule). */
const isNonSqlOp = (c: number) =>
  c === 126 || c === 33 || c === 64 || c === 35 || c === 94 || c === 38 || c === 124 || c === 96 || c === 63 || c === 37;

/**
 * A reusable cursor: `reset(sql)`, then `next()` until `Tok.End`; the current token is
 * `kind`, `src.slice(start, end)`. Unterminated strings, identifiers and comments end at the end of
 * input with `unterminated` set; nothing throws and every call advances.
 *
 * Input is a string. For UTF-8 bytes (a Query message), decode them as Latin-1: offsets stay byte
 * offsets and bytes >= 0x80 lex as identifier characters, exactly as PostgreSQL's scanner treats
 * them (hints.ts does this).
 */
export class Lexer {
  src = "";
  /** Where the next token starts scanning. */
  pos = 0;
  kind: Tok = Tok.End;
  start = 0;
  end = 0;
  unterminated = false;
  /** Span of the token seen by the last `peekSignificant()`. */
  peekStart = 0;
  peekEnd = 0;
  private limit = 0;

  /** Lex src[from, to) (defaults: all of it). No default parameter values: they slow JSC down. */
  reset(src: string, from?: number, to?: number): this {
    if (from === undefined) from = 0;
    this.src = src;
    this.pos = from;
    this.limit = to === undefined || to > src.length ? src.length : to;
    this.kind = Tok.End;
    this.start = this.end = from;
    this.unterminated = false;
    return this;
  }

  /** Advance to the next token (comments included) and return its kind. */
  next(): Tok {
    const s = this.src, n = this.limit;
    let p = this.pos;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (c < 128 && CLS[c] === SPACE) p++;
      else break;
    }
    this.start = p;
    this.unterminated = false;
    if (p >= n) return this.set(Tok.End, n);
    const c = s.charCodeAt(p);
    const c1 = p + 1 < n ? s.charCodeAt(p + 1) : 0;
    switch (c) {
      case 39: // '
        return this.set(Tok.String, this.quoted(p + 1, false, true));
      case 34: // "
        return this.set(Tok.QuotedIdent, this.ident(p + 1));
      case 36: // $
        return this.dollar(p, c1);
      case 40: case 41: case 91: case 93: case 44: case 59: // ( ) [ ] , ;
        return this.set(Tok.Punct, p + 1);
      case 58: // : :: :=
        return this.set(Tok.Punct, c1 === 58 || c1 === 61 ? p + 2 : p + 1);
      case 46: // . .. .5
        if (isDigit(c1)) return this.set(Tok.Number, this.number(p));
        return this.set(Tok.Punct, c1 === 46 ? p + 2 : p + 1);
      case 45: // -
        if (c1 === 45) return this.set(Tok.Comment, this.lineEnd(p + 2));
        break;
      case 47: // /
        if (c1 === 42) {
          const hint = p + 2 < n && s.charCodeAt(p + 2) === 43;
          return this.set(hint ? Tok.Hint : Tok.Comment, this.blockEnd(p + 2));
        }
        break;
    }
    const k = cls(c);
    if (k & OP) return this.set(Tok.Operator, this.operator(p));
    if (k & DIGIT) return this.set(Tok.Number, this.number(p));
    if (k & ID_START) {
      // Prefixed literals: E'' N'' B'' X'' U&'' U&"".
      if (c1 === 39) {
        const f = c | 0x20;
        if (f === 101) return this.set(Tok.String, this.quoted(p + 2, true, true)); // e
        if (f === 110) return this.set(Tok.String, this.quoted(p + 2, false, true)); // n
        if (f === 98 || f === 120) return this.set(Tok.BitString, this.quoted(p + 2, false, false)); // b x
      } else if (c1 === 38 && (c | 0x20) === 117 && p + 2 < n) {
        const q = s.charCodeAt(p + 2);
        if (q === 39) return this.set(Tok.String, this.quoted(p + 3, false, true));
        if (q === 34) return this.set(Tok.QuotedIdent, this.ident(p + 3));
      }
      let e = p + 1;
      while (e < n && cls(s.charCodeAt(e)) & ID_CONT) e++;
      return this.set(Tok.Word, e);
    }
    return this.set(Tok.Other, p + 1);
  }

  /** Advance past comments and hints to the next token that matters to the grammar. */
  nextSignificant(): Tok {
    let k: Tok;
    do k = this.next();
    while (k === Tok.Comment || k === Tok.Hint);
    return k;
  }

  /** Kind of the token after the current one (comments skipped), without moving. */
  peekSignificant(): Tok {
    const { pos, kind, start, end, unterminated } = this;
    const k = this.nextSignificant();
    this.peekStart = this.start;
    this.peekEnd = this.end;
    this.pos = pos;
    this.kind = kind;
    this.start = start;
    this.end = end;
    this.unterminated = unterminated;
    return k;
  }
  /** The current token is a Word equal to `lower` (lower-case ASCII), ignoring case. */
  is(lower: string): boolean {
    return this.kind === Tok.Word && wordEq(this.src, this.start, this.end, lower);
  }

  /** The current token is the one-character Punct/Operator `ch` (a char code). */
  isChar(ch: number): boolean {
    return this.end - this.start === 1 && this.src.charCodeAt(this.start) === ch && (this.kind === Tok.Punct || this.kind === Tok.Operator);
  }

  text(): string {
    return this.src.slice(this.start, this.end);
  }

  /** The name a Word or QuotedIdent denotes: unquoted folded to lower case, quoted exact with `""` undone. */
  word(): string {
    const s = this.src;
    if (this.kind === Tok.QuotedIdent) {
      const open = s.charCodeAt(this.start) === 34 ? this.start + 1 : this.start + 3;
      const close = this.unterminated ? this.end : this.end - 1;
      return s.slice(open, close).replaceAll('""', '"');
    }
    return lowerAscii(s.slice(this.start, this.end));
  }

  private set(kind: Tok, end: number): Tok {
    this.kind = kind;
    this.end = this.pos = end;
    return kind;
  }

  private lineEnd(p: number): number {
    const nl = this.src.indexOf("\n", p);
    return nl < 0 || nl > this.limit ? this.limit : nl;
  }

  /** Past the `*\/` that closes the comment opened just before p (comments nest). */
  private blockEnd(p: number): number {
    const s = this.src, n = this.limit;
    let depth = 1;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (c === 42 && p + 1 < n && s.charCodeAt(p + 1) === 47) {
        p += 2;
        if (--depth === 0) return p;
      } else if (c === 47 && p + 1 < n && s.charCodeAt(p + 1) === 42) {
        depth++;
        p += 2;
      } else p++;
    }
    this.unterminated = true;
    return n;
  }

  /**
   * Past the closing quote of a '' string whose body starts at p. `backslash`: E'' escapes;
   * `doubled`: '' stands for a quote (not in B''/X''). A closing quote followed by whitespace with a
   * newline and another quote continues the string, as in PostgreSQL.
   */
  private quoted(p: number, backslash: boolean, doubled: boolean): number {
    const s = this.src, n = this.limit;
    for (;;) {
      let closed = false;
      while (p < n) {
        const c = s.charCodeAt(p);
        if (c === 39) {
          if (doubled && p + 1 < n && s.charCodeAt(p + 1) === 39) p += 2;
          else {
            p++;
            closed = true;
            break;
          }
        } else if (c === 92 && backslash) p += 2;
        else p++;
      }
      if (!closed) {
        this.unterminated = true;
        return n;
      }
      const q = this.continuation(p);
      if (q < 0) return p;
      p = q + 1;
    }
  }

  /** Index of the quote that continues a string closed just before p, or -1. */
  private continuation(p: number): number {
    const s = this.src, n = this.limit;
    let newline = false;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (c === 10) {
        newline = true;
        p++;
      } else if (c < 128 && CLS[c] === SPACE) p++;
      else if (c === 45 && p + 1 < n && s.charCodeAt(p + 1) === 45) p = this.lineEnd(p + 2);
      else return newline && c === 39 ? p : -1;
    }
    return -1;
  }

  /** Past the closing `"` of a quoted identifier whose body starts at p (`""` inside). */
  private ident(p: number): number {
    const s = this.src, n = this.limit;
    while (p < n) {
      if (s.charCodeAt(p) === 34) {
        if (p + 1 < n && s.charCodeAt(p + 1) === 34) p += 2;
        else return p + 1;
      } else p++;
    }
    this.unterminated = true;
    return n;
  }

  /** `$1` parameter, `$tag$` dollar quote, or a lone `$`. */
  private dollar(p: number, c1: number): Tok {
    const s = this.src, n = this.limit;
    if (isDigit(c1)) return this.set(Tok.Param, this.digits(p + 1));
    let t = p + 1;
    if (c1 !== 36) {
      if (!(p + 1 < n && cls(c1) & ID_START)) return this.set(Tok.Other, p + 1);
      while (t < n) {
        const c = s.charCodeAt(t);
        if (c === 36 || !(cls(c) & ID_CONT)) break;
        t++;
      }
      if (t >= n || s.charCodeAt(t) !== 36) return this.set(Tok.Other, p + 1);
    }
    // The tag is s[p, t]; the body ends at the next copy of it.
    const len = t + 1 - p;
    let q = t + 1;
    for (;;) {
      q = s.indexOf("$", q);
      if (q < 0 || q + len > n) break;
      let i = 1;
      while (i < len && s.charCodeAt(q + i) === s.charCodeAt(p + i)) i++;
      if (i === len) return this.set(Tok.DollarString, q + len);
      q++;
    }
    this.unterminated = true;
    return this.set(Tok.DollarString, n);
  }

  /** Decimal digits from p, a single `_` allowed between digits (PostgreSQL 16+). */
  private digits(p: number): number {
    const s = this.src, n = this.limit;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (isDigit(c)) p++;
      else if (c === 95 && p + 1 < n && isDigit(s.charCodeAt(p + 1))) p += 2;
      else break;
    }
    return p;
  }

  /** Digits below `radix` (2, 8, 16) from p, single `_` separators allowed. */
  private radixDigits(p: number, radix: number): number {
    const s = this.src, n = this.limit;
    while (p < n) {
      const c = s.charCodeAt(p);
      if (hexDigit(c) < radix) p++;
      else if (c === 95 && p + 1 < n && hexDigit(s.charCodeAt(p + 1)) < radix) p += 2;
      else break;
    }
    return p;
  }

  private number(p: number): number {
    const s = this.src, n = this.limit;
    const c1 = p + 1 < n ? s.charCodeAt(p + 1) | 0x20 : 0;
    if (s.charCodeAt(p) === 48 && (c1 === 120 || c1 === 111 || c1 === 98)) {
      const radix = c1 === 120 ? 16 : c1 === 111 ? 8 : 2;
      let q = p + 2;
      if (q < n && s.charCodeAt(q) === 95) q++;
      if (q < n && hexDigit(s.charCodeAt(q)) < radix) return this.radixDigits(q, radix);
      return p + 1; // "0" followed by junk
    }
    let q = s.charCodeAt(p) === 46 ? p : this.digits(p);
    if (q < n && s.charCodeAt(q) === 46) {
      // 1..5 is 1 followed by "..".
      if (q + 1 < n && s.charCodeAt(q + 1) === 46) return q;
      q = this.digits(q + 1);
    }
    if (q < n && (s.charCodeAt(q) | 0x20) === 101) {
      let e = q + 1;
      const sign = e < n ? s.charCodeAt(e) : 0;
      if (sign === 43 || sign === 45) e++;
      if (e < n && isDigit(s.charCodeAt(e))) q = this.digits(e);
    }
    return q;
  }

  /** An operator by PostgreSQL's rules: stops before `--` or `/*`; a trailing + or - only after ~!@#^&|`?%. */
  private operator(p: number): number {
    const s = this.src, n = this.limit;
    let e = p + 1;
    while (e < n) {
      const c = s.charCodeAt(e);
      if (c >= 128 || !(CLS[c]! & OP)) break;
      const d = e + 1 < n ? s.charCodeAt(e + 1) : 0;
      if ((c === 45 && d === 45) || (c === 47 && d === 42)) break;
      e++;
    }
    if (e - p > 1) {
      const last = s.charCodeAt(e - 1);
      if (last === 43 || last === 45) {
        let special = false;
        for (let i = p; i < e - 1 && !special; i++) special = isNonSqlOp(s.charCodeAt(i));
        if (!special) {
          do e--;
          while (e - p > 1 && (s.charCodeAt(e - 1) === 43 || s.charCodeAt(e - 1) === 45));
        }
      }
    }
    return e;
  }
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const f = c | 0x20;
  return f >= 97 && f <= 102 ? f - 87 : 99;
}

/** s[start, end) equals `lower` (lower-case ASCII) with ASCII letters compared case-insensitively. */
export function wordEq(s: string, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = s.charCodeAt(start + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** PostgreSQL folds unquoted identifiers with ASCII-only lower-casing. */
export function lowerAscii(s: string): string {
  let upper = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // Beyond ASCII toLowerCase would fold more than PostgreSQL does.
    if (c > 127) return upper || /[A-Z]/.test(s) ? s.replace(/[A-Z]+/g, (m) => m.toLowerCase()) : s;
    if (c >= 65 && c <= 90) upper = true;
  }
  return upper ? s.toLowerCase() : s;
}

/** All tokens with their text (comments included): for tests and tools, not the hot path. */
export function tokenize(sql: string): { kind: Tok; text: string }[] {
  const lx = new Lexer().reset(sql);
  const out: { kind: Tok; text: string }[] = [];
  while (lx.next() !== Tok.End) out.push({ kind: lx.kind, text: lx.text() });
  return out;
}
