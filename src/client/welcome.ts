// The burst a client gets after authenticating: AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery.

import { Be } from "../protocol/codes.ts";
import { AuthenticationOk, ReadyIdle } from "../protocol/messages.ts";
import { MessageWriter } from "../protocol/writer.ts";
import type { Pool } from "../server/pool.ts";
import type { SessionState } from "../sql/session-state.ts";

/** Parameters PostgreSQL reports to clients (GUC_REPORT) that a client may set at startup. */
const REPORTED = new Map<string, string>([
  ["application_name", "application_name"],
  ["client_encoding", "client_encoding"],
  ["datestyle", "DateStyle"],
  ["intervalstyle", "IntervalStyle"],
  ["timezone", "TimeZone"],
]);

/** What a client is told before it has a server: known when no server was ever reached (admin console). */
const FALLBACK = new Map([
  ["server_version", "15"],
  ["client_encoding", "UTF8"],
  ["standard_conforming_strings", "on"],
]);

/** PostgreSQL reports encodings by canonical name. */
function canonicalEncoding(v: string): string {
  const u = v.toUpperCase().replace(/[-_]/g, "");
  return u === "UNICODE" ? "UTF8" : u;
}

/** AuthenticationOk + ParameterStatus messages, cached per pool and session-state key. */
const cache = new WeakMap<Pool, Map<string, Uint8Array>>();

function greeting(pool: Pool, state: SessionState): Uint8Array {
  let perPool = cache.get(pool);
  if (perPool === undefined) cache.set(pool, (perPool = new Map()));
  const key = state.key;
  let bytes = perPool.get(key);
  if (bytes !== undefined) return bytes;
  const params = new Map(pool.serverParams ?? FALLBACK);
  for (const [name, value] of state.startupSettings()) {
    const reported = REPORTED.get(name.toLowerCase());
    if (reported) params.set(reported, reported === "client_encoding" ? canonicalEncoding(value) : value);
  }
  if (!params.has("application_name")) params.set("application_name", "");
  const w = new MessageWriter(512);
  w.bytes(AuthenticationOk);
  for (const [k, v] of params) w.msg(Be.ParameterStatus).cstr(k).cstr(v).end();
  bytes = w.take();
  if (pool.serverParams !== null) {
    if (perPool.size >= 256) perPool.clear();
    perPool.set(key, bytes);
  }
  return bytes;
}

export function welcome(pool: Pool, state: SessionState, pid: number, secret: Uint8Array): Uint8Array {
  const head = greeting(pool, state);
  const w = new MessageWriter(head.length + 64);
  w.bytes(head);
  w.msg(Be.BackendKeyData).int32(pid).bytes(secret).end();
  w.bytes(ReadyIdle);
  return w.take();
}
