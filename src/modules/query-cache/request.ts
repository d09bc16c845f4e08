// Reading a request's messages (simple Query, or Parse/Bind/Describe/Execute/Sync) and building the reply a cached entry gives it.

import { cstringEnd, decodeUtf8 } from "../../protocol/framing.ts";
import type { Entry } from "./tiers.ts";

const latin1 = new TextDecoder("latin1");

/** What the cache needs from one request's messages. */
export interface RequestForm {
  readonly protocol: "simple" | "extended";
  /** Extended: ParseComplete first (the request carries an unnamed Parse). */
  readonly parse: boolean;
  /** Extended: RowDescription wanted (Describe of the portal). */
  readonly describe: boolean;
  /** Result formats: "t" (all text) or the Bind's format codes. */
  readonly formats: string;
  /** Parameter n (1-based) -> its key part ("s:..." for untyped text, "p<oid>/<fmt>:..." otherwise; "null"). */
  readonly params: readonly string[];
  /** A hit may answer it (false: a named Parse, which the proxy must see; the reply may still be stored). */
  readonly canServe: boolean;
}

const readInt32 = (b: Uint8Array, at: number) => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
const readInt16 = (b: Uint8Array, at: number) => (b[at]! << 8) | b[at + 1]!;

const SIMPLE: RequestForm = { protocol: "simple", parse: false, describe: false, formats: "t", params: [], canServe: true };

/**
 * The form of a request starting at b[0], or null when the cache cannot take it: only
 * `[Parse] Bind "" [Describe portal ""] Execute "" 0 Sync`, all present in `b`, and simple Queries.
 * A Bind of a named statement needs `prepared` (its Parse) for the parameter types.
 */
export function requestForm(b: Uint8Array, protocol: "simple" | "extended", prepared: Uint8Array | null = null): RequestForm | null {
  if (protocol === "simple") return b.length > 0 && b[0] === 81 ? SIMPLE : null; // 'Q'
  let pos = 0;
  let parse = false, bound = false, describe = false, executed = false, canServe = true;
  let types: number[] = [];
  let formats = "t";
  let params: string[] = [];
  while (pos + 5 <= b.length) {
    const type = b[pos]!;
    const end = pos + 1 + readInt32(b, pos + 1);
    if (end > b.length) return null;
    switch (type) {
      case 80: {
        // 'P': a named one must reach the proxy's statement map, so its reply is stored but never answered from here
        if (parse || bound) return null;
        if (b[pos + 5] !== 0) canServe = false;
        const t = parseTypes(b, pos, end);
        if (t === null) return null;
        types = t;
        parse = true;
        break;
      }
      case 66: {
        // 'B': unnamed portal
        if (bound || b[pos + 5] !== 0) return null;
        const stmtEnd = cstringEnd(b, pos + 6, end);
        if (stmtEnd < 0) return null;
        if (!parse) {
          if (stmtEnd === pos + 6 || prepared === null) return null; // the unnamed statement of an earlier request, or unknown types
          const t = parseTypes(prepared, 0, prepared.length);
          if (t === null) return null;
          types = t;
        }
        const r = readBind(b, stmtEnd + 1, end, types);
        if (r === null) return null;
        formats = r.formats;
        params = r.params;
        bound = true;
        break;
      }
      case 68: // 'D': the portal, after Bind
        if (!bound || executed || describe || b[pos + 5] !== 80 || b[pos + 6] !== 0) return null;
        describe = true;
        break;
      case 69: // 'E': unnamed portal, all rows
        if (!bound || executed || b[pos + 5] !== 0 || readInt32(b, pos + 6) !== 0) return null;
        executed = true;
        break;
      case 83: // 'S'
        return executed ? { protocol, parse, describe, formats, params, canServe } : null;
      default:
        return null;
    }
    pos = end;
  }
  return null;
}

/** Parameter type OIDs of the Parse message at b[pos, end). */
function parseTypes(b: Uint8Array, pos: number, end: number): number[] | null {
  const nameEnd = cstringEnd(b, pos + 5, end);
  const textEnd = nameEnd < 0 ? -1 : cstringEnd(b, nameEnd + 1, end);
  if (textEnd < 0 || textEnd + 3 > end) return null;
  const n = readInt16(b, textEnd + 1);
  if (textEnd + 3 + 4 * n > end) return null;
  const types: number[] = [];
  for (let i = 0; i < n; i++) types.push(readInt32(b, textEnd + 3 + 4 * i));
  return types;
}

function readBind(b: Uint8Array, at: number, end: number, types: readonly number[]): { formats: string; params: string[] } | null {
  const nf = readInt16(b, at);
  at += 2;
  const pf: number[] = [];
  for (let i = 0; i < nf; i++, at += 2) pf.push(readInt16(b, at));
  const np = readInt16(b, at);
  at += 2;
  if (nf > 1 && nf !== np) return null;
  const params: string[] = [];
  for (let i = 0; i < np; i++) {
    if (at + 4 > end) return null;
    const len = readInt32(b, at) | 0;
    at += 4;
    if (len === -1) {
      params.push("null");
      continue;
    }
    if (len < 0 || at + len > end) return null;
    const fmt = nf === 0 ? 0 : nf === 1 ? pf[0]! : pf[i]!;
    const oid = types[i] ?? 0;
    params.push(fmt === 0 && oid === 0 ? "s:" + decodeUtf8(b, at, at + len) : `p${oid}/${fmt}:` + latin1.decode(b.subarray(at, at + len)));
    at += len;
  }
  const nr = readInt16(b, at);
  at += 2;
  let formats = "t";
  const rf: number[] = [];
  for (let i = 0; i < nr; i++, at += 2) rf.push(readInt16(b, at));
  if (rf.some((f) => f !== 0)) formats = rf.join(",");
  return at <= end ? { formats, params } : null;
}

const PARSE_COMPLETE = new Uint8Array([49, 0, 0, 0, 4]);
const BIND_COMPLETE = new Uint8Array([50, 0, 0, 0, 4]);

/** The reply an entry gives a request of this form, or null when the entry lacks what it needs. */
export function replyFor(e: Entry, f: RequestForm): Uint8Array | null {
  if (f.protocol === "simple") return e.bodyAt > 0 ? e.data : null;
  const withDesc = f.describe;
  if (withDesc && e.bodyAt === 0) return null;
  const body = withDesc ? e.data : e.data.subarray(e.bodyAt);
  const out = new Uint8Array((f.parse ? 5 : 0) + 5 + body.length);
  let at = 0;
  if (f.parse) {
    out.set(PARSE_COMPLETE, 0);
    at = 5;
  }
  out.set(BIND_COMPLETE, at);
  out.set(body, at + 5);
  return out;
}

/**
 * The part of a captured reply worth keeping: [RowDescription] DataRow... CommandComplete, after
 * ParseComplete/BindComplete. Null when anything else came (a notice, an error, a parameter change,
 * a suspended portal): such a reply is not cached.
 */
export function cacheable(reply: Uint8Array): { data: Uint8Array; bodyAt: number } | null {
  let pos = 0;
  while (pos < reply.length && (reply[pos] === 49 || reply[pos] === 50)) pos += 1 + readInt32(reply, pos + 1);
  const start = pos;
  let bodyAt = 0;
  if (pos < reply.length && reply[pos] === 84) {
    // 'T'
    pos += 1 + readInt32(reply, pos + 1);
    bodyAt = pos - start;
  }
  let rows = 0;
  while (pos + 5 <= reply.length && reply[pos] === 68) {
    pos += 1 + readInt32(reply, pos + 1); // 'D'
    rows++;
  }
  if (pos + 5 > reply.length || reply[pos] !== 67) return null; // 'C'
  const end = pos + 1 + readInt32(reply, pos + 1);
  if (end !== reply.length) return null;
  // Every row the tag counts is here (none streamed past the copy).
  const tag = latin1.decode(reply.subarray(pos + 5, end - 1));
  if (tag !== `SELECT ${rows}`) return null;
  // The reply is the module's own copy already: kept as is when nothing precedes the RowDescription.
  return { data: start === 0 ? reply : reply.slice(start, end), bodyAt };
}
