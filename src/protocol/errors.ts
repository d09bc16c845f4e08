// ErrorResponse / NoticeResponse builders and the named errors the proxy reports to clients.

import { Be } from "./codes.ts";
import { SqlState } from "./sqlstate.ts";
import { build } from "./writer.ts";

export type Severity = "ERROR" | "FATAL" | "PANIC" | "WARNING" | "NOTICE" | "LOG";

export interface PgErrorFields {
  severity: Severity;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

export function errorResponse(f: PgErrorFields): Uint8Array {
  return fieldsMessage(Be.ErrorResponse, f);
}

export function noticeResponse(f: PgErrorFields): Uint8Array {
  return fieldsMessage(Be.NoticeResponse, f);
}

function fieldsMessage(type: number, f: PgErrorFields): Uint8Array {
  return build((w) => {
    w.msg(type).byte(83).cstr(f.severity).byte(86).cstr(f.severity).byte(67).cstr(f.code).byte(77).cstr(f.message);
    if (f.detail) w.byte(68).cstr(f.detail);
    if (f.hint) w.byte(72).cstr(f.hint);
    w.byte(0).end();
  });
}

const fatal = (code: string, message: string, detail?: string) => errorResponse({ severity: "FATAL", code, message, detail });
const error = (code: string, message: string, detail?: string) => errorResponse({ severity: "ERROR", code, message, detail });

/** Named constructors: every client-facing error comes from here. */
export const Errors = {
  protocolViolation: (message: string) => fatal(SqlState.ProtocolViolation, message),
  unsupportedProtocol: (major: number, minor: number) =>
    fatal(
      SqlState.FeatureNotSupported,
      `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.2`,
    ),
  noUser: () => fatal(SqlState.InvalidAuthorizationSpecification, "no PostgreSQL user name specified in startup packet"),
  authFailed: (user: string) => fatal(SqlState.InvalidPassword, `password authentication failed for user "${user}"`),
  clientCertificate: (why: string) =>
    fatal(SqlState.InvalidAuthorizationSpecification, `client certificate verification failed (${why})`),
  notConsoleUser: (user: string) =>
    fatal(SqlState.InsufficientPrivilege, `user "${user}" is not allowed to use the admin console`),
  consoleUnavailable: () => fatal(SqlState.FeatureNotSupported, "the admin console is not available in this process"),
  consoleSimpleOnly: () => error(SqlState.FeatureNotSupported, "the admin console accepts simple queries only"),
  tlsRequired: () => fatal(SqlState.InvalidAuthorizationSpecification, "SSL connection is required by this proxy"),
  unencryptedAfterSsl: () => fatal(SqlState.ProtocolViolation, "received unencrypted data after SSL request"),
  tooManyClients: (limit: number) =>
    fatal(SqlState.TooManyConnections, `sorry, too many clients already (max_client_conn = ${limit})`),
  tooManyForDatabase: (db: string, limit: number) =>
    fatal(SqlState.TooManyConnections, `too many connections for database "${db}" (limit ${limit})`),
  tooManyForUser: (user: string, limit: number) =>
    fatal(SqlState.TooManyConnections, `too many connections for role "${user}" (limit ${limit})`),
  /** A feature module's onStartup hook refused the client. */
  refusedByModule: (code: string, message: string) => fatal(code, message),
  serverLost: () => fatal(SqlState.ConnectionFailure, "server connection lost while serving this client"),
  shuttingDown: () => fatal(SqlState.AdminShutdown, "terminating connection due to proxy shutdown"),
  loginTimeout: () => fatal(SqlState.ProtocolViolation, "login timeout: startup not completed in time"),
  clientIdleTimeout: () => fatal(SqlState.IdleSessionTimeout, "terminating connection due to idle-session timeout"),
  idleInTransactionTimeout: () =>
    fatal(SqlState.IdleInTransactionSessionTimeout, "terminating connection due to idle-in-transaction timeout"),
  invalidMessageType: (t: number) =>
    fatal(SqlState.ProtocolViolation, `invalid frontend message type ${t}`),
  invalidMessageLength: () => fatal(SqlState.ProtocolViolation, "invalid message length"),
  invalidStartupLength: () => fatal(SqlState.ProtocolViolation, "invalid length of startup packet"),
  messageTooLong: (len: number, limit: number) =>
    fatal(SqlState.ProtocolViolation, `invalid message length: ${len} bytes is over the limit of ${limit} (limits.max_message_bytes)`),
  statementModeTransaction: () =>
    error(SqlState.FeatureNotSupported, "transaction blocks are not allowed in statement pooling mode"),
} as const;

/** Pull the SQLSTATE ('C' field) and message ('M') out of an ErrorResponse body. */
export function errorFields(b: Uint8Array, bodyStart: number, end: number): { code: string; message: string; severity: string } {
  let code = "";
  let message = "";
  let severity = "";
  let p = bodyStart;
  const dec = new TextDecoder();
  while (p < end && b[p] !== 0) {
    const f = b[p]!;
    const z = b.indexOf(0, p + 1);
    if (z < 0 || z >= end) break;
    const v = dec.decode(b.subarray(p + 1, z));
    if (f === 67) code = v;
    else if (f === 77) message = v;
    else if (f === 86 || (f === 83 && severity === "")) severity = v;
    p = z + 1;
  }
  return { code, message, severity };
}
