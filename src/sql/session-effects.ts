// Byte-level scan of SQL text for statements that change session state (SET, PREPARE, LISTEN...).

import { BUILTIN_READ_SAFE } from "./classify.ts";

/** Bit flags: what the statements in one Query/Parse do to the session. */
export const enum Effect {
  None = 0,
  /** SET / RESET of a session parameter (not LOCAL, not TRANSACTION). */
  SetGuc = 1,
  /** Needs the same server for the rest of the session (PREPARE, LISTEN, temp table, WITH HOLD, advisory lock). */
  Pin = 2,
  DiscardAll = 4,
  Deallocate = 8,
  /** ROLLBACK / ABORT: session SETs of the transaction are undone. */
  Rollback = 16,
  /** SAVEPOINT x / ROLLBACK TO x / RELEASE x: SETs after a savepoint can be undone on their own. */
  Savepoint = 32,
  RollbackTo = 64,
  Release = 128,
  /**
   * Runs code the proxy cannot see into (DO, CALL, a function call, DDL): it may have changed
   * session state in ways no text shows, so the server is reset before anyone else gets it.
   */
  Hidden = 256,
  /** set_config('name', $n, false): a setting whose value the Bind message carries. */
  SetGucParam = 512,
}

/** One statement's span and its effects (only statements with an effect are reported). */
export interface StatementSpan {
  start: number;
  end: number;
  effect: Effect;
}

const isSpace = (c: number) => c === 32 || (c >= 9 && c <= 13);
const isIdentStart = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 128;
const isIdent = (c: number) => isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;

/** Compare the identifier at b[s, e) with an upper-case ASCII keyword. */
function wordIs(b: Uint8Array, s: number, e: number, kw: string): boolean {
  if (e - s !== kw.length) return false;
  for (let i = 0; i < kw.length; i++) if ((b[s + i]! & 0xdf) !== kw.charCodeAt(i)) return false;
  return true;
}

function wordIsLower(b: Uint8Array, s: number, e: number, name: string): boolean {
  if (e - s !== name.length) return false;
  for (let i = 0; i < name.length; i++) {
    let c = b[s + i]!;
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== name.charCodeAt(i)) return false;
  }
  return true;
}

const ADVISORY = ["pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared"];

/**
 * Words that may stand before "(" without calling anything that keeps state: keywords, type names
 * with a type modifier, and built-in functions that change nothing (transaction-level advisory locks
 * end with their transaction). Any other name before "(" is a call the proxy cannot see into.
 */
const STATELESS_BEFORE_PAREN = new Set([
  ...BUILTIN_READ_SAFE,
  "all", "and", "any", "array", "as", "between", "by", "case", "cast", "check", "collate", "cube", "default", "distinct",
  "else", "except", "exists", "extract", "fetch", "filter", "for", "from", "group", "grouping", "groups", "having", "ilike",
  "in", "intersect", "is", "join", "lateral", "like", "limit", "not", "nullif", "offset", "on", "only", "or", "order", "over",
  "overlay", "partition", "position", "range", "returning", "rollup", "row", "rows", "select", "set", "sets", "similar",
  "some", "then", "trim", "union", "using", "values", "when", "where", "window", "within", "with", "bit", "char",
  "character", "varchar", "varying", "decimal", "dec", "numeric", "float", "precision", "time", "timestamp", "interval",
  "nchar", "zone", "current_setting", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
  "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock_all", "pg_advisory_unlock", "pg_advisory_unlock_shared",
  "pg_my_temp_schema", "pg_listening_channels", "conflict",
]);
/**
 * After these words a name followed by "(" is a relation or alias and its column list (INSERT INTO
 * t (a, b), WITH x (a) AS ..., ... AS v (a)); a type modifier after AS (numeric(10, 2)) is no call either.
 */
function relationFollows(b: Uint8Array, s: number, e: number): boolean {
  return wordIs(b, s, e, "INTO") || wordIs(b, s, e, "WITH") || wordIs(b, s, e, "RECURSIVE") || wordIs(b, s, e, "COPY") || wordIs(b, s, e, "AS");
}

/**
 * Scan b[start, end) (SQL text, possibly NUL-terminated) and return the effects of all statements,
 * OR-ed; `spans` (if given) receives the statements that have an effect. Quotes, dollar quotes,
 * E'' strings and comments are skipped so words inside them never count. `stateless`: more
 * function names (lower case) whose calls keep no session state.
 */
export function scanEffects(b: Uint8Array, start: number, end: number, spans?: StatementSpan[], stateless?: ReadonlySet<string>): Effect {
  let all = Effect.None;
  let p = start;
  while (p < end && b[p] !== 0) {
    // Statement start: skip blanks, comments and stray semicolons.
    p = skipBlank(b, p, end);
    if (p >= end || b[p] === 0) break;
    if (b[p] === 59) {
      p++;
      continue;
    }
    const stmtStart = p;
    let words = 0;
    let first = -1;
    let effect = Effect.None;
    let w1s = 0, w1e = 0;
    let sawHold = false;
    /** The name being read is a relation (after INTO, WITH...), through its qualifying dots. */
    let relation = false;
    let afterInto = false;
    let prevS = 0, prevE = 0;
    // Walk the statement to its terminating semicolon.
    while (p < end) {
      const c = b[p]!;
      if (c === 0 || c === 59) break;
      if (c === 39) p = skipQuoted(b, p + 1, end, 39, b[p - 1] === 69 || b[p - 1] === 101);
      else if (c === 34) {
        // A quoted name: a call through it is never recognised by spelling, so it counts as hidden.
        const qs = p;
        p = skipQuoted(b, p + 1, end, 34, false);
        const next = b[skipBlank(b, p, end)];
        if (next === 40 && !relation) {
          effect |= Effect.Hidden;
          for (const name of ADVISORY) if (wordIsLower(b, qs + 1, p - 1, name)) effect |= Effect.Pin;
        }
        relation = relation && next === 46;
        afterInto = false;
      } else if (c === 45 && b[p + 1] === 45) p = skipLineComment(b, p, end);
      else if (c === 47 && b[p + 1] === 42) p = skipBlockComment(b, p, end);
      else if (c === 36 && !(p > stmtStart && isIdent(b[p - 1]!))) p = skipDollar(b, p, end);
      else if (isIdentStart(c)) {
        const ws = p;
        while (p < end && isIdent(b[p]!)) p++;
        words++;
        if (words === 1) {
          first = classifyFirst(b, ws, p);
        } else if (words === 2) {
          w1s = ws;
          w1e = p;
          effect |= classifySecond(first, b, ws, p);
        } else if (first === K_DECLARE && wordIs(b, ws, p, "HOLD")) sawHold = true;
        else if (first === K_CREATE && words === 3 && (wordIs(b, w1s, w1e, "LOCAL") || wordIs(b, w1s, w1e, "GLOBAL")) &&
          (wordIs(b, ws, p, "TEMP") || wordIs(b, ws, p, "TEMPORARY"))) effect |= Effect.Pin;
        if (p - ws >= 16 && (b[ws] === 112 || b[ws] === 80)) {
          for (const name of ADVISORY) if (wordIsLower(b, ws, p, name)) effect |= Effect.Pin;
        }
        // SELECT ... INTO TEMP t, CREATE TABLE pg_temp.t: a temporary table by another spelling.
        if (afterInto && (wordIs(b, ws, p, "TEMP") || wordIs(b, ws, p, "TEMPORARY"))) effect |= Effect.Pin;
        const nextAt = skipBlank(b, p, end);
        const next = b[nextAt];
        if (next === 46 && wordIsLower(b, ws, p, "pg_temp") && (first === K_CREATE || afterInto)) effect |= Effect.Pin;
        if (next === 40 && !relation) effect |= callEffect(b, ws, p, nextAt + 1, end, prevS, prevE, stateless);
        afterInto = wordIs(b, ws, p, "INTO");
        relation = (relation && next === 46) || relationFollows(b, ws, p);
        prevS = ws;
        prevE = p;
        continue;
      } else {
        // Right after ")" a name with "(" is an alias and its columns: generate_series(1, 3) g(i).
        if (c !== 46 && !isSpace(c)) {
          relation = c === 41;
          afterInto = false;
        }
        p++;
      }
    }
    if (words === 1) effect |= classifySecond(first, b, 0, 0);
    if (sawHold) effect |= Effect.Pin;
    if (effect !== Effect.None) {
      all |= effect;
      spans?.push({ start: stmtStart, end: p, effect });
    }
    if (p < end && b[p] === 59) p++;
  }
  return all;
}

const K_OTHER = 0, K_SET = 1, K_RESET = 2, K_PREPARE = 3, K_LISTEN = 4, K_DECLARE = 5, K_CREATE = 6,
  K_DISCARD = 7, K_DEALLOCATE = 8, K_ROLLBACK = 9, K_SAVEPOINT = 10, K_RELEASE = 11, K_HIDDEN = 12;

/**
 * The effect of calling the function named b[s, e) (arguments from `args`); the name before it
 * (prevS, prevE) is its schema when they are joined by a dot. set_config with constant arguments
 * is a SET (is_local false) or nothing (true); a name qualified by a schema other than pg_catalog,
 * or not known to be stateless, is hidden.
 */
function callEffect(b: Uint8Array, s: number, e: number, args: number, end: number, prevS: number, prevE: number, stateless?: ReadonlySet<string>): Effect {
  let d = s - 1;
  while (d > 0 && isSpace(b[d]!)) d--;
  const qualified = d >= 0 && b[d] === 46;
  if (qualified && !wordIsLower(b, prevS, prevE, "pg_catalog")) return Effect.Hidden;
  if (wordIsLower(b, s, e, "set_config")) return setConfigEffect(b, args, end);
  let name = "";
  for (let i = s; i < e && i - s < 64; i++) name += String.fromCharCode(b[i]! >= 65 && b[i]! <= 90 ? b[i]! | 0x20 : b[i]!);
  return STATELESS_BEFORE_PAREN.has(name) || stateless?.has(name) === true ? Effect.None : Effect.Hidden;
}

/**
 * set_config('name', 'value', true|false) written with constants: SetGuc or None; with the value a
 * parameter ($n): SetGucParam or None; anything else Hidden.
 */
function setConfigEffect(b: Uint8Array, p: number, end: number): Effect {
  let param = false;
  for (let arg = 0; arg < 2; arg++) {
    p = skipBlank(b, p, end);
    if (arg === 1 && b[p] === 36 && b[p + 1]! >= 48 && b[p + 1]! <= 57) {
      param = true;
      p += 2;
      while (b[p]! >= 48 && b[p]! <= 57) p++;
    } else if (b[p] === 39) p = skipQuoted(b, p + 1, end, 39, false);
    else return Effect.Hidden;
    p = skipBlank(b, p, end);
    if (b[p] !== 44) return Effect.Hidden;
    p++;
  }
  p = skipBlank(b, p, end);
  const ws = p;
  while (p < end && isIdent(b[p]!)) p++;
  const local = wordIs(b, ws, p, "TRUE") ? true : wordIs(b, ws, p, "FALSE") ? false : null;
  if (local === null || b[skipBlank(b, p, end)] !== 41) return Effect.Hidden;
  return local ? Effect.None : param ? Effect.SetGucParam : Effect.SetGuc;
}

function classifyFirst(b: Uint8Array, s: number, e: number): number {
  switch (e - s) {
    case 2:
      return wordIs(b, s, e, "DO") ? K_HIDDEN : K_OTHER;
    case 3:
      return wordIs(b, s, e, "SET") ? K_SET : K_OTHER;
    case 4:
      return wordIs(b, s, e, "CALL") || wordIs(b, s, e, "LOAD") || wordIs(b, s, e, "DROP") ? K_HIDDEN : K_OTHER;
    case 5:
      return wordIs(b, s, e, "RESET") ? K_RESET : wordIs(b, s, e, "ABORT") ? K_ROLLBACK : wordIs(b, s, e, "ALTER") ? K_HIDDEN : K_OTHER;
    case 6:
      return wordIs(b, s, e, "LISTEN") ? K_LISTEN : wordIs(b, s, e, "CREATE") ? K_CREATE : K_OTHER;
    case 7:
      return wordIs(b, s, e, "PREPARE") ? K_PREPARE : wordIs(b, s, e, "DECLARE") ? K_DECLARE
        : wordIs(b, s, e, "DISCARD") ? K_DISCARD : wordIs(b, s, e, "RELEASE") ? K_RELEASE
        : wordIs(b, s, e, "EXECUTE") ? K_HIDDEN : K_OTHER;
    case 8:
      return wordIs(b, s, e, "ROLLBACK") ? K_ROLLBACK : K_OTHER;
    case 9:
      return wordIs(b, s, e, "SAVEPOINT") ? K_SAVEPOINT : K_OTHER;
    case 10:
      return wordIs(b, s, e, "DEALLOCATE") ? K_DEALLOCATE : K_OTHER;
    default:
      return K_OTHER;
  }
}

/** Effect from the first keyword and the second word (s === e when there is none). */
function classifySecond(first: number, b: Uint8Array, s: number, e: number): Effect {
  switch (first) {
    case K_SET:
      return wordIs(b, s, e, "LOCAL") || wordIs(b, s, e, "TRANSACTION") || wordIs(b, s, e, "CONSTRAINTS")
        ? Effect.None : Effect.SetGuc;
    case K_RESET:
      return Effect.SetGuc;
    case K_PREPARE:
      return wordIs(b, s, e, "TRANSACTION") ? Effect.None : Effect.Pin;
    case K_LISTEN:
      return Effect.Pin;
    case K_CREATE:
      // Other DDL may fire event triggers or create objects in pg_temp through search_path.
      return wordIs(b, s, e, "TEMP") || wordIs(b, s, e, "TEMPORARY") ? Effect.Pin : Effect.Hidden;
    case K_HIDDEN:
      return Effect.Hidden;
    case K_DISCARD:
      return wordIs(b, s, e, "ALL") ? Effect.DiscardAll : wordIs(b, s, e, "TEMP") || wordIs(b, s, e, "TEMPORARY") ? Effect.None : Effect.None;
    case K_DEALLOCATE:
      return Effect.Deallocate;
    case K_ROLLBACK:
      // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] x keeps the transaction; the TO may come third.
      return wordIs(b, s, e, "TO") ? Effect.RollbackTo : wordIs(b, s, e, "WORK") || wordIs(b, s, e, "TRANSACTION") ? Effect.Rollback | Effect.RollbackTo : Effect.Rollback;
    case K_SAVEPOINT:
      return Effect.Savepoint;
    case K_RELEASE:
      return Effect.Release;
    default:
      return Effect.None;
  }
}

function skipBlank(b: Uint8Array, p: number, end: number): number {
  while (p < end) {
    const c = b[p]!;
    if (isSpace(c)) p++;
    else if (c === 45 && b[p + 1] === 45) p = skipLineComment(b, p, end);
    else if (c === 47 && b[p + 1] === 42) p = skipBlockComment(b, p, end);
    else break;
  }
  return p;
}

function skipLineComment(b: Uint8Array, p: number, end: number): number {
  while (p < end && b[p] !== 10) p++;
  return p;
}

/** Block comments nest in PostgreSQL. */
function skipBlockComment(b: Uint8Array, p: number, end: number): number {
  let depth = 0;
  while (p < end) {
    if (b[p] === 47 && b[p + 1] === 42) {
      depth++;
      p += 2;
    } else if (b[p] === 42 && b[p + 1] === 47) {
      depth--;
      p += 2;
      if (depth === 0) return p;
    } else p++;
  }
  return end;
}

/** Past the closing quote; doubled quotes continue; `escapes`: backslash escapes (E'...'). */
function skipQuoted(b: Uint8Array, p: number, end: number, q: number, escapes: boolean): number {
  while (p < end) {
    const c = b[p]!;
    if (escapes && c === 92) p += 2;
    else if (c === q) {
      if (b[p + 1] === q) p += 2;
      else return p + 1;
    } else p++;
  }
  return end;
}

/** $tag$ ... $tag$ ; a lone $ (positional parameter $1) is just skipped. */
function skipDollar(b: Uint8Array, p: number, end: number): number {
  let t = p + 1;
  while (t < end && b[t] !== 36 && isIdent(b[t]!) && !(b[t]! >= 48 && b[t]! <= 57 && t === p + 1)) t++;
  if (t >= end || b[t] !== 36) return p + 1;
  const tagLen = t - p + 1;
  let q = t + 1;
  while (q < end) {
    if (b[q] === 36) {
      let ok = q + tagLen <= end;
      for (let i = 0; ok && i < tagLen; i++) if (b[q + i] !== b[p + i]) ok = false;
      if (ok) return q + tagLen;
    }
    q++;
  }
  return end;
}

/** True when b[start, end) holds nothing but the statement `span` (blanks, comments and semicolons aside). */
export function soleStatement(b: Uint8Array, start: number, end: number, span: StatementSpan): boolean {
  const blank = (from: number, to: number) => {
    for (let p = skipBlank(b, from, to); p < to; p = skipBlank(b, p + 1, to)) if (b[p] !== 59 && b[p] !== 0) return false;
    return true;
  };
  return blank(start, span.start) && blank(span.end, end);
}
