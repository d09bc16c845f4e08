// The shape (normalised text, fingerprint, kind) of a request: short texts with literals are analysed directly, the rest come from the shared cache.

import type { QueryCtx } from "../../core/hooks.ts";
import { analyzeQuery, type QueryShape } from "../../sql/fingerprint.ts";

/**
 * Texts up to this long that carry literals skip the shared cache. Such a text is usually new each
 * time ("... WHERE id = 42"): caching it only churns the cache (each entry lives long enough to be
 * promoted, then dies: measured ~2 µs a request on pgbench -S simple, against ~1 µs to analyse a
 * short text). Longer texts go through the cache, where a repeat saves more than the churn costs.
 */
const DIRECT_MAX = 256;

/**
 * Whether `sql` may hold a literal: a quote, a `$` not starting a `$n` parameter, a digit not
 * inside a name (quoted or not) or parameter. Over-approximates (a digit in a comment counts); only
 * the path taken depends on it, not the shape.
 */
export function mayHaveLiterals(sql: string): boolean {
  let prev = 32; // ' '
  for (let i = 0; i < sql.length; i++) {
    const c = sql.charCodeAt(i);
    if (c === 39) return true; // '\''
    if (c === 34) {
      // '"': a quoted name, skipped whole
      const end = sql.indexOf('"', i + 1);
      if (end < 0) return true;
      i = end;
      prev = 34;
      continue;
    }
    if (c === 36) {
      // '$': a parameter when a digit follows, else a dollar quote (or a name with '$', which is rare)
      const n = sql.charCodeAt(i + 1);
      if (!(n >= 48 && n <= 57)) return true;
    } else if (c >= 48 && c <= 57 && !(prev === 36 || isNamePart(prev))) return true;
    prev = c;
  }
  return false;
}

/** Letters, digits, '_' and anything non-ASCII continue a name (or a number or parameter). */
function isNamePart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c >= 128;
}

/** The shape of a request's text. */
export function shapeOf(q: QueryCtx): QueryShape {
  const text = q.sql();
  return text.length <= DIRECT_MAX && mayHaveLiterals(text) ? analyzeQuery(text) : q.facts();
}
