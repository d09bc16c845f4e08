// Normalised text, fingerprint, statement kind and workload flags of SQL text: one lexer pass, pg_stat_statements rules.

import { LRUCache } from "lru-cache";
import { Lexer, Tok } from "./lexer.ts";
import { WordTable, wordSet } from "./words.ts";

/** What a statement does, from its first keyword(s); several statements: the most consequential wins. */
export type StatementKind = "read" | "write" | "ddl" | "transaction" | "admin" | "other";

export interface QueryShape {
  /** Literals replaced by `$n` (numbered after the highest `$n` already present), whitespace and comments collapsed. */
  readonly text: string;
  /** 16 hex digits: equal for texts whose normalised forms differ only in whitespace, comments, case of keywords and identifiers. */
  readonly fingerprint: string;
  readonly kind: StatementKind;
  /** Heuristic: GROUP BY, a window (OVER), or an aggregate call in a statement with a JOIN. */
  readonly analytics: boolean;
  /** A pgvector distance operator: <-> <#> <=> <+> <~> <%>. */
  readonly vector: boolean;
  /** How many literals became placeholders. */
  readonly constants: number;
  readonly statements: number;
}

// Kinds, ordered by consequence (the largest wins across statements).
const K_OTHER = 0, K_READ = 1, K_TXN = 2, K_ADMIN = 3, K_WRITE = 4, K_DDL = 5;
const KIND: readonly StatementKind[] = ["other", "read", "transaction", "admin", "write", "ddl"];
// How the rest of the statement refines its kind.
const M_PLAIN = 0, M_QUERY = 8, M_EXPLAIN = 16, M_COPY = 24, M_SET = 32, M_PREPARE = 40;

const FIRST = new WordTable({
  select: K_READ | M_QUERY, values: K_READ | M_QUERY, table: K_READ | M_QUERY, with: K_READ | M_QUERY,
  declare: K_READ | M_QUERY, explain: K_READ | M_EXPLAIN, fetch: K_READ, move: K_READ, close: K_READ,
  insert: K_WRITE, update: K_WRITE, delete: K_WRITE, merge: K_WRITE, call: K_WRITE, do: K_WRITE,
  truncate: K_WRITE, lock: K_WRITE, copy: K_READ | M_COPY,
  create: K_DDL, alter: K_DDL, drop: K_DDL, comment: K_DDL, grant: K_DDL, revoke: K_DDL, security: K_DDL,
  import: K_DDL, refresh: K_DDL, reindex: K_DDL, cluster: K_DDL, reassign: K_DDL,
  begin: K_TXN, start: K_TXN, commit: K_TXN, end: K_TXN, rollback: K_TXN, abort: K_TXN, savepoint: K_TXN,
  release: K_TXN, prepare: K_ADMIN | M_PREPARE, set: K_ADMIN | M_SET,
  reset: K_ADMIN, show: K_ADMIN, discard: K_ADMIN, listen: K_ADMIN, unlisten: K_ADMIN, notify: K_ADMIN,
  vacuum: K_ADMIN, analyze: K_ADMIN, analyse: K_ADMIN, checkpoint: K_ADMIN, load: K_ADMIN, deallocate: K_ADMIN,
});

// Words the pass reacts to. U: a '-' after this word is a sign (folded into a following number).
const U = 64;
const W_GROUP = 1, W_ORDER = 2, W_BY = 3 | U, W_FOR = 4 | U, W_IS = 5, W_NOT = 6 | U, W_LIMIT = 7 | U, W_OVER = 8,
  W_UESCAPE = 9, W_JOIN = 10, W_INTO = 11, W_NULL = 12, W_BOOL = 13, W_ALL = 14 | U, W_UPDATE = 15, W_LOCK = 16,
  W_MODIFY = 17, W_FROM = 18 | U, W_EXPLAIN_OPT = 19, W_QUERY = 20 | U, W_CLAUSE = 21 | U, W_AS = 22, W_SIGN = 23 | U,
  W_TRANSACTION = 24, W_DISTINCT = 25 | U;
const WORDS = new WordTable({
  group: W_GROUP, order: W_ORDER, by: W_BY, for: W_FOR, is: W_IS, not: W_NOT, limit: W_LIMIT, over: W_OVER,
  uescape: W_UESCAPE, join: W_JOIN, into: W_INTO, null: W_NULL, true: W_BOOL, false: W_BOOL, all: W_ALL,
  update: W_UPDATE, share: W_LOCK, no: W_LOCK, key: W_LOCK, insert: W_MODIFY, delete: W_MODIFY, merge: W_MODIFY,
  from: W_FROM, analyze: W_EXPLAIN_OPT, analyse: W_EXPLAIN_OPT, verbose: W_EXPLAIN_OPT,
  select: W_QUERY, values: W_QUERY, with: W_QUERY, as: W_AS, transaction: W_TRANSACTION, constraints: W_TRANSACTION,
  // End an ORDER BY / GROUP BY list.
  offset: W_CLAUSE, fetch: W_CLAUSE, having: W_CLAUSE, window: W_CLAUSE, union: W_CLAUSE, intersect: W_CLAUSE,
  except: W_CLAUSE, returning: W_CLAUSE, where: W_CLAUSE, on: W_CLAUSE,
  // After these a '-' is a sign.
  and: W_SIGN, or: W_SIGN, when: W_SIGN, then: W_SIGN, else: W_SIGN, between: W_SIGN, symmetric: W_SIGN,
  like: W_SIGN, ilike: W_SIGN, to: W_SIGN, in: W_SIGN, return: W_SIGN, using: W_SIGN, escape: W_SIGN,
  distinct: W_DISTINCT, case: W_SIGN,
});

const AGGREGATES = wordSet([
  "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "json_agg", "jsonb_agg", "json_object_agg",
  "jsonb_object_agg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "percentile_cont",
  "percentile_disc", "mode", "corr", "covar_pop", "covar_samp", "regr_slope", "regr_intercept", "regr_count",
  "regr_r2", "bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor", "xmlagg", "range_agg",
]);

const PLACEHOLDER: string[] = Array.from({ length: 128 }, (_, i) => "$" + i);
const placeholder = (n: number) => (n < 128 ? PLACEHOLDER[n]! : "$" + n);

// Hash: two 32-bit lanes (FNV-1a and a Murmur-style multiply) kept in locals of pass(), finalised with fmix32.
const P1 = 0x01000193, P2 = 0x5bd1e995;
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
const hexDigit = (n: number) => (n < 10 ? 48 + n : 87 + n);
function hex16(a: number, b: number): string {
  return String.fromCharCode(
    hexDigit(a >>> 28), hexDigit((a >>> 24) & 15), hexDigit((a >>> 20) & 15), hexDigit((a >>> 16) & 15),
    hexDigit((a >>> 12) & 15), hexDigit((a >>> 8) & 15), hexDigit((a >>> 4) & 15), hexDigit(a & 15),
    hexDigit(b >>> 28), hexDigit((b >>> 24) & 15), hexDigit((b >>> 20) & 15), hexDigit((b >>> 16) & 15),
    hexDigit((b >>> 12) & 15), hexDigit((b >>> 8) & 15), hexDigit((b >>> 4) & 15), hexDigit(b & 15),
  );
}
// Tags mixed before each token's characters (outside the UTF-16 range); H_* say how its characters count.
const T_WORD = 0x10001, T_PARAM = 0x10002, T_OP = 0x10003, T_PUNCT = 0x10004, T_LIT = 0x10005, T_UIDENT = 0x10006,
  T_SEMI = 0x10007, T_OTHER = 0x10008, T_TYPMOD = 0x10009, T_MINUS = 0x1000a;
const H_NONE = 0, H_RAW = 1, H_FOLD = 2, H_QUOTED = 3, H_NUMBER = 4;

function paramNumber(s: string, a: number, b: number): number {
  let v = 0;
  for (let i = a + 1; i < b && v < 1e9; i++) {
    const c = s.charCodeAt(i);
    if (c !== 95) v = v * 10 + (c - 48);
  }
  return v;
}

const lx = new Lexer();
/** Per paren depth: 1 when the group holds a query (its first word is SELECT/VALUES/WITH). */
const MAX_DEPTH = 64;
const queryLevel = new Uint8Array(MAX_DEPTH);

/** The kind of a finished statement. */
function finalKind(stmtKind: number, mode: number, modifies: boolean, copyFrom: boolean, explain: number): number {
  if (explain === 1) return K_READ; // EXPLAIN without ANALYZE runs nothing
  if (mode === M_QUERY && modifies) return K_WRITE;
  if (mode === M_COPY && copyFrom) return K_WRITE;
  return stmtKind;
}

/**
 * One pass: normalised text, fingerprint, kind and flags, placeholders numbered from `firstParam`.
 * Returns null (with `more.maxParam` set) when literals and $n parameters are mixed and the highest
 * $n was not known: the caller runs it again.
 */
function pass(s: string, firstParam: number, more: { maxParam: number }, hashing: boolean): QueryShape | null {
  const L = lx.reset(s, 0, s.length), words = WORDS, levels = queryLevel;
  let h1 = 0x811c9dc5, h2 = 0x9747b28c;
  let out = "", emitted = 0, lastEnd = 0, first = true;
  let nConst = 0, maxParam = 0, statements = 0, kind = K_OTHER;
  let analytics = false, vector = false, join = false, aggregate = false;
  // Statement state. explain: 0 no, 1 EXPLAIN, 2 EXPLAIN ANALYZE.
  let stmtKind = -1, mode = M_PLAIN, verbatim = false, explain = 0, modifies = false, copyFrom = false;
  let secondWord = false;
  let depth = 0, openFirst = false, typeWords = -1, typeMax = 0, typmodDepth = -1, byDepth = -1;
  // Previous significant token.
  let prevKind: Tok = Tok.End, prevStart = 0, prevEnd = 0, prevCode = 0, prevPrevCode = 0, prevConst = false;
  let isCtx = 0; // 1 after IS, 2 after IS NOT
  let semi = -1; // start of the gap before a pending ';'
  let minus = -1; // start of a pending sign '-'
  let minusGlued = false; // that '-' touches a word or stray character before it
  let pre = 0; // a tag to hash before the current token (T_SEMI, T_MINUS)

  for (;;) {
    const tok = L.nextSignificant();
    if (tok === Tok.End) break;
    let ts = L.start;
    const te = L.end;
    const c0 = s.charCodeAt(ts);

    if (tok === Tok.Punct && c0 === 59) {
      // ';' ends a statement; empty statements and trailing semicolons vanish.
      if (prevKind !== Tok.End) {
        if (minus >= 0) {
          h1 = Math.imul(h1 ^ T_MINUS, P1);
          h2 = Math.imul(h2 ^ T_MINUS, P2);
          h2 ^= h2 >>> 15;
          minus = -1;
        }
        if (semi < 0) semi = prevEnd;
        if (stmtKind >= 0) {
          const k = finalKind(stmtKind, mode, modifies, copyFrom, explain);
          if (k > kind) kind = k;
        }
        statements++;
        stmtKind = -1;
        mode = M_PLAIN;
        explain = 0;
        verbatim = modifies = copyFrom = secondWord = false;
        depth = 0;
        typeWords = typmodDepth = byDepth = -1;
        prevKind = Tok.End;
        prevCode = prevPrevCode = isCtx = 0;
      }
      continue;
    }

    // The gap before this token: nothing at the start, "; " after a statement, else one space.
    let glued = false; // no gap before this token
    if (first) {
      emitted = ts;
    } else if (semi >= 0) {
      out += s.slice(emitted, semi) + "; ";
      emitted = ts;
      pre = T_SEMI;
      semi = -1;
    } else if (minus < 0) {
      const gap = ts - prevEnd;
      if (gap > 1 || (gap === 1 && s.charCodeAt(prevEnd) !== 32)) {
        out += s.slice(emitted, prevEnd) + " ";
        emitted = ts;
      } else glued = gap === 0;
    }

    let code = 0;
    if (stmtKind < 0 && tok !== Tok.Word && !(tok === Tok.Punct && c0 === 40)) stmtKind = K_OTHER; // '1 select'
    if (tok === Tok.Word) {
      code = words.code(s, ts, te);
      // The statement's kind from its first word (after EXPLAIN and its options, the next one).
      if (stmtKind < 0 || (mode === M_EXPLAIN && depth === 0 && code !== W_EXPLAIN_OPT)) {
        const f = FIRST.code(s, ts, te);
        stmtKind = f & 7;
        mode = f & 56;
        if (mode === M_EXPLAIN) explain = 1;
        else verbatim = explain === 0 && (stmtKind === K_TXN || stmtKind === K_ADMIN || stmtKind === K_DDL);
        secondWord = true;
        levels[0] = 1;
      } else if (secondWord) {
        secondWord = false;
        if ((mode === M_SET || mode === M_PREPARE) && code === W_TRANSACTION) stmtKind = K_TXN;
      }
      switch (code) {
        case W_EXPLAIN_OPT: // ANALYZE / ANALYSE / VERBOSE, bare or in EXPLAIN's parenthesised options
          if (mode === M_EXPLAIN && (c0 | 0x20) === 97) explain = 2;
          break;
        case W_BY:
          if (prevCode === W_GROUP) analytics = true;
          if ((prevCode === W_GROUP || prevCode === W_ORDER) && (depth >= MAX_DEPTH || levels[depth])) byDepth = depth;
          break;
        case W_JOIN:
          join = true;
          break;
        case W_MODIFY:
        case W_UPDATE:
          // A data-modifying CTE body or main statement: WITH x AS (DELETE ...) / WITH ... ) UPDATE.
          if (prevKind === Tok.Punct && prevEnd - prevStart === 1 && (s.charCodeAt(prevStart) === 40 || s.charCodeAt(prevStart) === 41)) modifies = true;
          else if (code === W_UPDATE && prevCode === W_FOR) modifies = true; // row locks need the primary
          break;
        case W_LOCK: // FOR SHARE / FOR NO KEY UPDATE / FOR KEY SHARE
          if (prevCode === W_FOR || (prevCode === W_LOCK && prevPrevCode === W_FOR)) modifies = true;
          break;
        case W_INTO: // SELECT ... INTO creates a table
          modifies = true;
          break;
        case W_FROM:
          if (mode === M_COPY && depth === 0) copyFrom = true;
          break;
        case W_CLAUSE:
        case W_QUERY:
        case W_LIMIT:
          if (depth === byDepth) byDepth = -1;
          break;
      }
    }
    if (prevCode === W_OVER && (tok === Tok.Word || tok === Tok.QuotedIdent || (tok === Tok.Punct && c0 === 40))) analytics = true;

    // Literals become placeholders unless the statement keeps its text (DDL, SET...), the number is
    // an ORDER/GROUP BY position or a type modifier, or the word is the NULL of IS [NOT] NULL or
    // IS [NOT] DISTINCT FROM NULL (PostgreSQL turns both into a null test).
    let constant = false;
    if (!verbatim) {
      if (tok === Tok.String) constant = prevCode !== W_UESCAPE;
      else if (tok === Tok.BitString || tok === Tok.DollarString) constant = true;
      else if (tok === Tok.Number) constant = depth !== typmodDepth && !(depth === byDepth && isPosition(s, prevKind, prevCode, prevStart) && positionEnds());
      else if (code === W_NULL || code === W_BOOL) constant = isCtx === 0 && !(code === W_NULL && prevCode === W_FROM && prevPrevCode === W_DISTINCT);
    }

    // Glued tokens that would re-lex as one get a space: a placeholder after a word or a stray
    // character (date'2020-01-01' -> date $1, $'x' -> $ $1), a word or number after a placeholder.
    let space = glued && (constant ? prevKind === Tok.Word || prevKind === Tok.Other : prevConst && (tok === Tok.Word || tok === Tok.Number));
    if (minus >= 0) {
      if (constant && tok === Tok.Number && !castFollows()) {
        ts = minus; // the sign belongs to the constant
        space = minusGlued;
      } else {
        pre = T_MINUS;
        const gap = ts - prevEnd;
        if (gap > 1 || (gap === 1 && s.charCodeAt(prevEnd) !== 32)) {
          out += s.slice(emitted, prevEnd) + " ";
          emitted = ts;
        }
      }
      minus = -1;
    }
    first = false;

    // What the token adds to the hash: a tag, then its characters (raw, case-folded, or the name a
    // quoted identifier denotes) or a number.
    let tag = 0, how = H_RAW, num = 0;
    if (constant) {
      num = firstParam + nConst++;
      tag = T_PARAM;
      how = H_NUMBER;
      out += s.slice(emitted, ts) + (space ? " " : "") + placeholder(num);
      emitted = te;
    } else {
      if (space) {
        out += s.slice(emitted, ts) + " ";
        emitted = ts;
      }
      switch (tok) {
        case Tok.Word:
          tag = T_WORD;
          how = H_FOLD;
          break;
        case Tok.QuotedIdent:
          if (c0 === 34) {
            tag = T_WORD; // "users" = users
            how = H_QUOTED;
          } else tag = T_UIDENT;
          break;
        case Tok.Param:
          num = paramNumber(s, ts, te);
          if (num > maxParam) maxParam = num;
          tag = T_PARAM;
          how = H_NUMBER;
          break;
        case Tok.Operator:
          tag = T_OP;
          if (te - ts === 1 && c0 === 45 && signContext(s, prevKind, prevCode, prevStart, prevEnd)) {
            minus = ts; // hashed once we know whether it folds into a number
            minusGlued = glued && (prevKind === Tok.Word || prevKind === Tok.Other);
            tag = 0;
          } else if (te - ts === 2 && ((c0 === 33 && s.charCodeAt(ts + 1) === 61) || (c0 === 60 && s.charCodeAt(ts + 1) === 62))) {
            how = H_NUMBER; // != is <>
            num = 0x3c3e;
          } else if (te - ts === 3 && c0 === 60 && s.charCodeAt(ts + 2) === 62) vector ||= isVectorOp(s.charCodeAt(ts + 1));
          break;
        case Tok.Punct:
          tag = T_PUNCT;
          if (te - ts === 1) {
            if (c0 === 40) {
              if (prevKind === Tok.Word && !prevConst && AGGREGATES.has(s, prevStart, prevEnd)) aggregate = true;
              if (typeWords > 0) typmodDepth = depth + 1;
              depth++;
              if (depth < MAX_DEPTH) levels[depth] = 0;
              openFirst = true;
            } else if (c0 === 41) {
              if (depth === typmodDepth) typmodDepth = -1;
              if (depth === byDepth) byDepth = -1;
              if (depth > 0) depth--;
            }
          }
          break;
        case Tok.Other:
          tag = T_OTHER;
          break;
        default: // a literal kept as written; type modifiers count whatever their value, as in PostgreSQL
          if (tok === Tok.Number && depth === typmodDepth) {
            tag = T_TYPMOD;
            how = H_NONE;
          } else tag = T_LIT;
      }
    }
    if (hashing) {
      if (pre !== 0) {
        h1 = Math.imul(h1 ^ pre, P1);
        h2 = Math.imul(h2 ^ pre, P2);
        h2 ^= h2 >>> 15;
      }
      if (tag !== 0) {
        h1 = Math.imul(h1 ^ tag, P1);
        h2 = Math.imul(h2 ^ tag, P2);
        h2 ^= h2 >>> 15;
        if (how === H_NUMBER) {
          h1 = Math.imul(h1 ^ num, P1);
          h2 = Math.imul(h2 ^ num, P2);
          h2 ^= h2 >>> 15;
        } else if (how !== H_NONE) {
          let a = ts, b = te;
          if (how === H_QUOTED) {
            a++;
            if (!L.unterminated) b--;
          }
          for (let i = a; i < b; i++) {
            let c = s.charCodeAt(i);
            if (how === H_FOLD) {
              if (c >= 65 && c <= 90) c += 32;
            } else if (how === H_QUOTED && c === 34) i++; // "" is one "
            h1 = Math.imul(h1 ^ c, P1);
            h2 = Math.imul(h2 ^ c, P2);
            h2 ^= h2 >>> 15;
          }
        }
      }
    }
    pre = 0;

    // Type names after :: (up to two words: character varying) or AS (one word): a '(' right after
    // them holds type modifiers (varchar(10), numeric(10,2)).
    if (tok === Tok.Punct && te - ts === 2 && c0 === 58 && s.charCodeAt(ts + 1) === 58) {
      typeWords = 0;
      typeMax = 2;
    } else if (code === W_AS) {
      typeWords = 0;
      typeMax = 1;
    } else if (typeWords >= 0 && tok === Tok.Word && code === 0 && typeWords < typeMax) typeWords++;
    else if (!(typeWords > 0 && tok === Tok.Punct && c0 === 46 && te - ts === 1)) typeWords = -1;
    if (openFirst && !(tok === Tok.Punct && c0 === 40)) {
      if (depth < MAX_DEPTH) levels[depth] = code === W_QUERY ? 1 : 0;
      openFirst = false;
    }
    isCtx = code === W_IS ? 1 : code === W_NOT && isCtx === 1 ? 2 : 0;
    prevKind = tok;
    prevStart = ts;
    prevEnd = lastEnd = te;
    prevPrevCode = prevCode;
    prevCode = code;
    prevConst = constant;
  }
  if (minus >= 0) {
    h1 = Math.imul(h1 ^ T_MINUS, P1);
    h2 = Math.imul(h2 ^ T_MINUS, P2);
    h2 ^= h2 >>> 15;
  }
  if (prevKind !== Tok.End) {
    statements++;
    if (stmtKind >= 0) {
      const k = finalKind(stmtKind, mode, modifies, copyFrom, explain);
      if (k > kind) kind = k;
    }
  }

  if (nConst > 0 && maxParam >= firstParam) {
    more.maxParam = maxParam;
    return null;
  }
  const text = emitted === 0 && lastEnd === s.length ? s : out + s.slice(emitted, lastEnd);
  return new Shape(text, fmix(h1 ^ Math.imul(h2, 0x27d4eb2d)), fmix(h2 ^ h1), KIND[kind]!, analytics || (aggregate && join), vector, nConst, statements);
}

/** A QueryShape whose hex fingerprint is formatted on first use. */
class Shape implements QueryShape {
  private hex = "";
  constructor(
    readonly text: string,
    private readonly h1: number,
    private readonly h2: number,
    readonly kind: StatementKind,
    readonly analytics: boolean,
    readonly vector: boolean,
    readonly constants: number,
    readonly statements: number,
  ) {}

  get fingerprint(): string {
    if (this.hex === "") this.hex = hex16(this.h1, this.h2);
    return this.hex;
  }
}

/** pgvector distance operators: <-> L2, <#> inner product, <=> cosine, <+> L1, <~> Hamming, <%> Jaccard. */
const isVectorOp = (mid: number) => mid === 45 || mid === 35 || mid === 61 || mid === 43 || mid === 126 || mid === 37;

/** Is a '-' after this token a sign (so `-5` is one constant, as PostgreSQL's grammar folds it)? */
function signContext(s: string, kind: Tok, code: number, start: number, end: number): boolean {
  switch (kind) {
    case Tok.End:
    case Tok.Operator:
      return true;
    case Tok.Punct: {
      if (end - start === 2) return s.charCodeAt(start + 1) === 61; // :=
      const c = s.charCodeAt(start);
      return c === 40 || c === 44 || c === 91 || c === 58; // ( , [ :
    }
    case Tok.Word:
      return (code & U) !== 0;
    default:
      return false;
  }
}

/** A number right after BY or a ',' in an ORDER/GROUP BY list may be a column position. */
function isPosition(s: string, kind: Tok, code: number, start: number): boolean {
  return code === W_BY || (kind === Tok.Punct && s.charCodeAt(start) === 44);
}

/** The current number is a whole list item (nothing but a separator or a keyword follows): a position. */
function positionEnds(): boolean {
  if (lx.src.charCodeAt(lx.start) === 46) return false;
  for (let i = lx.start; i < lx.end; i++) {
    const c = lx.src.charCodeAt(i);
    if (c === 46 || c === 101 || c === 69) return false; // only integers are positions
  }
  const k = lx.peekSignificant();
  if (k === Tok.End) return true;
  if (k === Tok.Word) {
    const w = WORDS.code(lx.src, lx.peekStart, lx.peekEnd);
    return w !== W_NULL && w !== W_BOOL;
  }
  if (k !== Tok.Punct) return false;
  const c = lx.src.charCodeAt(lx.peekStart);
  return lx.peekEnd - lx.peekStart === 1 && (c === 44 || c === 41 || c === 59);
}

/** `-1::int` is minus applied to a cast constant, not a negative constant. */
function castFollows(): boolean {
  return lx.peekSignificant() === Tok.Punct && lx.peekEnd - lx.peekStart === 2 && lx.src.charCodeAt(lx.peekStart) === 58 &&
    lx.src.charCodeAt(lx.peekStart + 1) === 58;
}

/**
 * Normalise and fingerprint SQL text in one pass (two when literals and `$n` parameters are mixed).
 * Rules, after pg_stat_statements (PostgreSQL 15), as far as a lexer can follow them:
 * - literals ('', E'', U&'', $$ $$, B'', X'', numbers, TRUE/FALSE, NULL except in IS [NOT] NULL
 *   and IS [NOT] DISTINCT FROM NULL) become `$n`, numbered in order after the highest `$n` already in the text; a minus
 *   sign the grammar folds into a number goes with it (`= -1` -> `= $1`, but `-1::int` -> `-$1::int`);
 * - kept as written: ORDER BY / GROUP BY column positions, type modifiers (`varchar(10)`,
 *   `numeric(10,2)`; their values do not change the fingerprint, as in PostgreSQL), `LIMIT ALL`, and every literal of DDL, SET/SHOW and other utility statements and of
 *   transaction control (PostgreSQL 15 leaves utility statements unnormalised);
 * - IN lists are not collapsed (`IN ($1, $2, $3)`);
 * - runs of whitespace and comments (hints included) become one space, `;` between statements
 *   becomes "; ", and leading/trailing blanks and semicolons go.
 * The fingerprint hashes that token stream with keywords and unquoted identifiers case-folded and
 * quoted identifiers by the name they denote (`"users"` = `users`), `!=` as `<>`. Unlike PostgreSQL's
 * queryid it sees text, not meaning: aliases, qualification (`t.a` vs `a`), cast syntax and constant
 * types count or not as written, and `SELECT 1` groups with `SELECT $1`.
 */
export function analyzeQuery(sql: string): QueryShape {
  return pass(sql, 1, more, true) ?? pass(sql, more.maxParam + 1, more, true)!;
}
const more = { maxParam: 0 };

/** The normalised text alone (the hash is skipped): `analyzeQuery(sql).text`. */
export function normalize(sql: string): string {
  return (pass(sql, 1, more, false) ?? pass(sql, more.maxParam + 1, more, false)!).text;
}

export function fingerprint(sql: string): string {
  return analyzeQuery(sql).fingerprint;
}

export function statementKind(sql: string): StatementKind {
  return analyzeQuery(sql).kind;
}

/** `analyzeQuery` behind an LRU keyed by the exact text: for callers that see the same texts again. */
export class QueryShapeCache {
  private readonly lru: LRUCache<string, QueryShape>;
  hits = 0;
  misses = 0;

  constructor(max = 10_000) {
    this.lru = new LRUCache({ max });
  }

  get(sql: string): QueryShape {
    let shape = this.lru.get(sql);
    if (shape !== undefined) {
      this.hits++;
      return shape;
    }
    this.misses++;
    shape = analyzeQuery(sql);
    this.lru.set(sql, shape);
    return shape;
  }
}
