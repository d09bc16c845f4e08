// Routing hints in SQL comments (/*+ route=standby node=pg2 max_lag=100ms */), parsed defensively.

import { Lexer, Tok } from "./lexer.ts";

export type HintRoute = "primary" | "standby" | "any";

/** The hints found; only keys that were given (and valid) are present. Frozen. */
export interface RouteHints {
  readonly route?: HintRoute;
  /** A node name as written: letters, digits, `_`, `.`, `-`; at most 63 characters. */
  readonly node?: string;
  /** `max_lag=100ms`, `=2s`, `=1.5s`, `=1min`, or a bare number of milliseconds; at most one day. */
  readonly maxLagMs?: number;
  /** `max_lag=16MB` (B, kB, MB, GB; 1024-based, any case): replication lag in bytes, at most 1 TB. */
  readonly maxLagBytes?: number;
}

/** A hint comment longer than this (from `/*+` to `*\/`) is ignored whole. */
export const MAX_HINT_COMMENT = 1024;
/** Hint comments looked at per query text; later ones are ignored. */
export const MAX_HINT_COMMENTS = 8;

const MAX_LAG_MS = 86_400_000;
const MAX_LAG_BYTES = 2 ** 40;
const NODE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const LAG = /^(\d{1,15})(?:\.(\d{1,3}))?(ms|s|min|b|kb|mb|gb)?$/i;
const UNIT: Record<string, number> = { ms: 1, s: 1000, min: 60_000, b: -1, kb: -1024, mb: -(1024 ** 2), gb: -(1024 ** 3) };

const lx = new Lexer();

/**
 * Hints from the `/*+ ... *\/` comments of a query text, or null when there are none.
 * - Hint comments count anywhere in the text outside literals and quoted identifiers (the lexer
 *   decides, so a hint inside a string or a dollar quote is text, not a hint); a hint comment nested
 *   inside an ordinary comment is part of that comment.
 * - One comment holds items `key=value` separated by spaces or commas (`key = value` works too);
 *   keys are `route`, `node`, `max_lag`, any case. For each key the first valid value wins, across
 *   comments in text order.
 * - Unknown keys and bad values are skipped; a comment that is unterminated, longer than
 *   MAX_HINT_COMMENT, contains a nested comment or a control character (NUL included) is ignored
 *   whole. Never throws.
 */
export function parseHints(sql: string): RouteHints | null {
  if (sql.indexOf("/*+") < 0) return null;
  const acc: Acc = {};
  let seen = 0;
  lx.reset(sql);
  for (let k = lx.next(); k !== Tok.End && seen < MAX_HINT_COMMENTS; k = lx.next()) {
    if (k !== Tok.Hint) continue;
    seen++;
    if (lx.unterminated || lx.end - lx.start > MAX_HINT_COMMENT) continue;
    parseBody(sql, lx.start + 3, lx.end - 2, acc);
  }
  return acc.route === undefined && acc.node === undefined && acc.maxLagMs === undefined && acc.maxLagBytes === undefined
    ? null
    : Object.freeze(acc);
}

/**
 * `parseHints` over UTF-8 bytes b[start, end) (a Query or Parse message's text, without its NUL).
 * Costs a byte search when there is no `/*+`; only then is the text decoded.
 */
export function parseHintsBytes(b: Uint8Array, start: number, end: number): RouteHints | null {
  if (!hasHintMarker(b, start, end)) return null;
  // Latin-1 keeps byte offsets; bytes >= 0x80 lex as identifier characters either way.
  return parseHints(Buffer.from(b.buffer, b.byteOffset + start, end - start).toString("latin1"));
}

/** Whether b[start, end) contains the bytes of `/*+`: the native indexOf scans for '/' (tens of bytes per ns). */
function hasHintMarker(b: Uint8Array, start: number, end: number): boolean {
  for (let i = b.indexOf(47, start); i >= 0 && i + 2 < end; i = b.indexOf(47, i + 1)) {
    if (b[i + 1] === 42 && b[i + 2] === 43) return true;
  }
  return false;
}

type Acc = { -readonly [K in keyof RouteHints]: RouteHints[K] };

/** Items of one comment body s[a, b) into acc (first valid value per key wins). */
function parseBody(s: string, a: number, b: number, acc: Acc): void {
  for (let i = a; i < b; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13) || c === 127) return;
    if ((c === 47 && s.charCodeAt(i + 1) === 42) || (c === 42 && s.charCodeAt(i + 1) === 47 && i + 1 < b)) return;
  }
  let i = a;
  while (i < b) {
    while (i < b && isSep(s.charCodeAt(i))) i++;
    const ks = i;
    while (i < b && isKeyChar(s.charCodeAt(i))) i++;
    const ke = i;
    while (i < b && isBlank(s.charCodeAt(i))) i++;
    if (ke === ks || s.charCodeAt(i) !== 61 || i >= b) {
      while (i < b && !isSep(s.charCodeAt(i))) i++; // not key=value: skip the item
      continue;
    }
    i++;
    while (i < b && isBlank(s.charCodeAt(i))) i++;
    const vs = i;
    while (i < b && !isSep(s.charCodeAt(i))) i++;
    if (i === vs || i - vs > 64 || ke - ks > 16) continue;
    applyItem(s.slice(ks, ke).toLowerCase(), s.slice(vs, i), acc);
  }
}

function applyItem(key: string, value: string, acc: Acc): void {
  switch (key) {
    case "route": {
      const v = value.toLowerCase();
      if (acc.route === undefined && (v === "primary" || v === "standby" || v === "any")) acc.route = v;
      return;
    }
    case "node":
      if (acc.node === undefined && NODE.test(value)) acc.node = value;
      return;
    case "max_lag": {
      if (acc.maxLagMs !== undefined || acc.maxLagBytes !== undefined) return;
      const m = LAG.exec(value);
      if (m === null) return;
      const n = Number(m[1]) + (m[2] ? Number(m[2]) / 10 ** m[2].length : 0);
      const unit = UNIT[(m[3] ?? "ms").toLowerCase()]!;
      if (unit > 0) {
        const ms = Math.round(n * unit);
        if (ms <= MAX_LAG_MS) acc.maxLagMs = ms;
      } else {
        const bytes = Math.round(n * -unit);
        if (bytes <= MAX_LAG_BYTES) acc.maxLagBytes = bytes;
      }
      return;
    }
  }
}

const isBlank = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;
const isSep = (c: number) => isBlank(c) || c === 44;
const isKeyChar = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
