// Parsing of the untyped first packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.

import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_PACKET,
  SSL_REQUEST_CODE,
} from "./codes.ts";
import { Errors } from "./errors.ts";
import { readInt32 } from "./framing.ts";

export type StartupPacket =
  | { kind: "incomplete" }
  | { kind: "ssl"; length: number }
  | { kind: "gssenc"; length: number }
  | { kind: "cancel"; length: number; pid: number; secret: Uint8Array }
  | {
      kind: "startup";
      length: number;
      minor: number;
      params: Map<string, string>;
      /** `_pq_.` protocol options we do not support (reported in NegotiateProtocolVersion). */
      unsupportedOptions: string[];
    }
  /** `reply` null means close silently, as PostgreSQL does for lengths too short to be a packet. */
  | { kind: "reject"; reply: Uint8Array | null };

/** Newest protocol minor version the proxy speaks to clients (3.2: longer cancel keys). */
export const NEWEST_MINOR = 2;

const decoder = new TextDecoder();

/**
 * Look at the front of `b[start, end)`. Never waits for, or allocates, a declared size that is out
 * of range: lengths below 8 are dropped silently, lengths over MAX_STARTUP_PACKET get 08P01, both at once.
 */
export function parseStartupPacket(b: Uint8Array, start: number, end: number): StartupPacket {
  const avail = end - start;
  if (avail < 4) return { kind: "incomplete" };
  const len = readInt32(b, start);
  if (len < 8) return { kind: "reject", reply: null };
  if (len > MAX_STARTUP_PACKET) return { kind: "reject", reply: Errors.invalidStartupLength() };
  if (avail < 8) return { kind: "incomplete" };
  const code = readInt32(b, start + 4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (len !== 8) return { kind: "reject", reply: null };
    return { kind: code === SSL_REQUEST_CODE ? "ssl" : "gssenc", length: 8 };
  }
  if (code === CANCEL_REQUEST_CODE) {
    // 3.0 keys are 4 bytes; 3.2 allows up to 256.
    if (len < 16 || len > 12 + 256) return { kind: "reject", reply: null };
    if (avail < len) return { kind: "incomplete" };
    return {
      kind: "cancel",
      length: len,
      pid: readInt32(b, start + 8),
      secret: b.slice(start + 12, start + len),
    };
  }
  if (avail < len) return { kind: "incomplete" };
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) return { kind: "reject", reply: Errors.unsupportedProtocol(major, minor) };
  const stop = start + len;
  // PostgreSQL's own loop: an empty name ends the list, which must then end exactly at the last byte.
  const params = new Map<string, string>();
  const unsupportedOptions: string[] = [];
  let p = start + 8;
  while (p < stop) {
    if (b[p] === 0) break;
    let nameEnd = b.indexOf(0, p);
    if (nameEnd < 0 || nameEnd > stop) nameEnd = stop;
    const valStart = nameEnd + 1;
    if (valStart >= stop) break;
    let valEnd = b.indexOf(0, valStart);
    if (valEnd < 0 || valEnd > stop) valEnd = stop;
    const key = decoder.decode(b.subarray(p, nameEnd));
    const value = decoder.decode(b.subarray(valStart, valEnd));
    if (key.startsWith("_pq_.")) unsupportedOptions.push(key);
    else params.set(key, value);
    p = valEnd + 1;
  }
  if (p !== stop - 1) {
    return { kind: "reject", reply: Errors.protocolViolation("invalid startup packet layout: expected terminator as last byte") };
  }
  if (!params.get("user")) return { kind: "reject", reply: Errors.noUser() };
  return { kind: "startup", length: len, minor, params, unsupportedOptions };
}
