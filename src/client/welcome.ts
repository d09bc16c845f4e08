// The burst a client gets after authenticating: AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery.

import { Be } from "../protocol/codes.ts";
import { AuthenticationOk, ReadyIdle } from "../protocol/messages.ts";
import { MessageWriter } from "../protocol/writer.ts";
import type { SessionState } from "./session-state.ts";

/** Parameters PostgreSQL reports to clients (GUC_REPORT) that a client may set at startup. */
const REPORTED = new Map<string, string>([
  ["application_name", "application_name"],
  ["client_encoding", "client_encoding"],
  ["datestyle", "DateStyle"],
  ["intervalstyle", "IntervalStyle"],
  ["timezone", "TimeZone"],
  ["extra_float_digits", ""],
]);

/** PostgreSQL reports encodings by canonical name. */
function canonicalEncoding(v: string): string {
  const u = v.toUpperCase().replace(/[-_]/g, "");
  return u === "UNICODE" ? "UTF8" : u;
}

export function welcome(serverParams: Map<string, string>, state: SessionState, pid: number, secret: Uint8Array): Uint8Array {
  const params = new Map(serverParams);
  for (const [name, value] of state.startupSettings()) {
    const reported = REPORTED.get(name.toLowerCase());
    if (reported) params.set(reported, reported === "client_encoding" ? canonicalEncoding(value) : value);
  }
  if (!params.has("application_name")) params.set("application_name", "");
  const w = new MessageWriter(512);
  w.bytes(AuthenticationOk);
  for (const [k, v] of params) w.msg(Be.ParameterStatus).cstr(k).cstr(v).end();
  w.msg(Be.BackendKeyData).int32(pid).bytes(secret).end();
  w.bytes(ReadyIdle);
  return w.take();
}
