// Protocol-level prepared statements in pooled modes: client names map to shared server-side names.

import { Fe } from "../protocol/codes.ts";
import { writeInt32 } from "../protocol/framing.ts";

/** What a client's named statement is on the servers. */
export interface StatementEntry {
  /** Server-side name, shared by every client preparing the same text and parameter types. */
  global: string;
  /** A ready Parse message carrying the global name, for servers that do not have it yet. */
  parse: Uint8Array;
  /** The statement may write (set when reads are split off to standbys). */
  write?: boolean;
  /** SET / savepoint statements in its text: they take effect at each execution. */
  tracked?: readonly { effect: number; text: string }[];
  /** Its text runs code the proxy cannot see into (a function call...): each execution may leave session state. */
  hidden?: boolean;
  /** Its text calls set_config with a parameter for the value: each Bind sets what it carries. */
  boundSetting?: string;
}

const latin1 = new TextDecoder("latin1");
/** The SQL text of a named statement as UTF-8 bytes (from its Parse message: 'P', length, name NUL, text NUL, ...). */
export function statementBytes(e: StatementEntry): Uint8Array | null {
  const nameEnd = e.parse.indexOf(0, 5);
  const textEnd = nameEnd < 0 ? -1 : e.parse.indexOf(0, nameEnd + 1);
  return textEnd < 0 ? null : e.parse.subarray(nameEnd + 1, textEnd);
}
const encoder = new TextEncoder();

/** Text+types -> global name, shared by the whole process. Bounded: cleared when it gets large. */
const registry = new Map<string, string>();
let nextGlobal = 1;
const REGISTRY_LIMIT = 100_000;

/**
 * Build the entry for a Parse message at b[pos, msgEnd) whose statement name ends at nameEnd
 * (the NUL). The rest of the message (query, parameter types) is kept byte for byte.
 */
export function entryForParse(b: Uint8Array, nameEnd: number, msgEnd: number): StatementEntry {
  const key = latin1.decode(b.subarray(nameEnd + 1, msgEnd));
  let global = registry.get(key);
  if (global === undefined) {
    if (registry.size >= REGISTRY_LIMIT) registry.clear();
    global = `hp_${(nextGlobal++).toString(36)}`;
    registry.set(key, global);
  }
  return { global, parse: parseNamed(b, nameEnd, msgEnd, global) };
}

/** A Parse message named `name` whose query and parameter types are b[nameEnd, msgEnd) (from the old name's NUL on). */
function parseNamed(b: Uint8Array, nameEnd: number, msgEnd: number, name: string): Uint8Array {
  const nb = encoder.encode(name);
  const rest = b.subarray(nameEnd, msgEnd);
  const out = new Uint8Array(5 + nb.length + rest.length);
  out[0] = Fe.Parse;
  writeInt32(out, 1, out.length - 1);
  out.set(nb, 5);
  out.set(rest, 5 + nb.length);
  return out;
}

/** Write into `dst` at `at` the message b[pos, msgEnd) with the name at [nameStart, nameEnd) replaced. Returns bytes written. */
export function writeRenamed(
  dst: Uint8Array,
  at: number,
  b: Uint8Array,
  pos: number,
  nameStart: number,
  nameEnd: number,
  msgEnd: number,
  name: string,
): number {
  let o = at;
  dst.set(b.subarray(pos, nameStart), o);
  o += nameStart - pos;
  for (let i = 0; i < name.length; i++) dst[o++] = name.charCodeAt(i);
  dst.set(b.subarray(nameEnd, msgEnd), o);
  o += msgEnd - nameEnd;
  writeInt32(dst, at + 1, o - at - 1);
  return o - at;
}

