// The semantic shape of a statement: its token stream with constants taken out (structure) and the typed constants, plus cache hints.

import { Lexer, Tok, lowerAscii } from "../../sql/lexer.ts";

/**
 * Two texts with equal structure and equal constants (after parameters are filled in) are the
 * same statement to PostgreSQL: spacing, comments, keyword and unquoted-identifier case do not
 * count. A plain quoted literal `'5'` and an untyped text parameter `$1` = "5" are the same constant
 * (both are resolved by context); numbers, prefixed strings (E'', B'', X'', U&''), dollar quotes
 * and typed or binary parameters keep their own kind, so they never meet a constant of another.
 */
export interface Shape {
  /** Tokens joined by spaces; every constant and `$n` is `?`. */
  readonly structure: string;
  /** Per `?` in order: the constant ("s:abc", "n:5", "r:E'x'") or the parameter it stands for (its number). */
  readonly slots: readonly (string | number)[];
  /** Several statements (a `;` before the end). */
  readonly multi: boolean;
  /** A constant spells a moving date ('now', 'today', 'tomorrow', 'yesterday'). */
  readonly movingDate: boolean;
  readonly hints: CacheHints | null;
  /**
   * Start and end of each constant, when every one is a plain number or '...' string and the text
   * has no comment (it may then make a template: sql/template-index.ts); else null.
   */
  readonly spans: readonly number[] | null;
}

export interface CacheHints {
  /** `nocache`: never; `cache`: cache (even in allow_list mode). */
  readonly cache?: boolean;
  /** `ttl=30` (seconds). */
  readonly ttlSecs?: number;
}

/** Date/time inputs PostgreSQL reads as "the current moment" (or a day relative to it). */
export const MOVING_DATE = /\b(?:now|today|tomorrow|yesterday)\b/i;
const PLAIN_STRING = /^'((?:[^'\\]|'')*)'$/;
const NON_ASCII = /[^\x00-\x7f]/;
const lx = new Lexer();

export function shapeOf(sql: string): Shape {
  lx.reset(sql);
  // ASCII text (nearly all): words are cut from one lower-cased copy instead of being folded one by one.
  const lower = NON_ASCII.test(sql) ? null : sql.toLowerCase();
  const parts: string[] = [];
  const slots: (string | number)[] = [];
  let multi = false;
  let movingDate = false;
  let hints: { cache?: boolean; ttlSecs?: number } | null = null;
  let afterSemi = false;
  let spans: number[] | null = [];
  for (let k = lx.next(); k !== Tok.End; k = lx.next()) {
    if (afterSemi && k !== Tok.Comment && k !== Tok.Hint && !(k === Tok.Punct && lx.isChar(59))) multi = true;
    switch (k) {
      case Tok.Comment:
        spans = null;
        continue;
      case Tok.Hint:
        hints = readHints(lx.text(), hints);
        spans = null;
        continue;
      case Tok.Word:
        parts.push(lower === null ? lowerAscii(lx.text()) : lower.slice(lx.start, lx.end));
        break;
      case Tok.Param:
        parts.push("?");
        slots.push(Number(lx.text().slice(1)));
        break;
      case Tok.Number:
        parts.push("?");
        slots.push("n:" + lx.text());
        spans?.push(lx.start, lx.end);
        break;
      case Tok.String: {
        const t = lx.text();
        const m = PLAIN_STRING.exec(t);
        const value = m ? "s:" + m[1]!.replaceAll("''", "'") : "r:" + t;
        if (MOVING_DATE.test(t)) movingDate = true;
        if (m !== null && !t.includes("\\")) spans?.push(lx.start, lx.end);
        else spans = null;
        parts.push("?");
        slots.push(value);
        break;
      }
      case Tok.BitString:
      case Tok.DollarString: {
        const t = lx.text();
        if (k === Tok.DollarString && MOVING_DATE.test(t)) movingDate = true;
        parts.push("?");
        slots.push("r:" + t);
        spans = null;
        break;
      }
      default:
        if (k === Tok.Punct && lx.isChar(59)) {
          afterSemi = true;
          continue;
        }
        parts.push(lx.text());
    }
  }
  return { structure: parts.join(" "), slots, multi, movingDate, hints, spans };
}

const HINT_ITEM = /([a-z_]+)(?:\s*=\s*([^\s,]+))?/gi;

/** `/*+ cache ttl=30 *\/`, `/*+ nocache *\/`; other keys (routing hints) are left to their readers. */
function readHints(comment: string, acc: { cache?: boolean; ttlSecs?: number } | null): { cache?: boolean; ttlSecs?: number } | null {
  if (comment.length > 1024 || !comment.endsWith("*/")) return acc;
  for (const m of comment.slice(3, -2).matchAll(HINT_ITEM)) {
    const key = m[1]!.toLowerCase();
    if (key === "nocache" && m[2] === undefined) (acc ??= {}).cache = false;
    else if (key === "cache" && m[2] === undefined) {
      acc ??= {};
      acc.cache ??= true;
    } else if (key === "ttl" && m[2] !== undefined && /^[0-9]{1,9}$/.test(m[2])) {
      const n = Number(m[2]);
      if (n >= 1 && n <= 31_536_000) (acc ??= {}).ttlSecs ??= n;
    }
  }
  return acc;
}
