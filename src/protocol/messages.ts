// Fixed messages built once at load, and builders for the variable ones the proxy sends.

import { AuthCode, Be, Fe, PROTOCOL_3_0, SSL_REQUEST_CODE, CANCEL_REQUEST_CODE } from "./codes.ts";
import { build } from "./writer.ts";

export const AuthenticationOk = build((w) => w.msg(Be.Authentication).int32(AuthCode.Ok).end());
export const AuthenticationCleartext = build((w) => w.msg(Be.Authentication).int32(AuthCode.CleartextPassword).end());
export const AuthenticationSaslScram = build((w) =>
  w.msg(Be.Authentication).int32(AuthCode.SASL).cstr("SCRAM-SHA-256").byte(0).end(),
);
export const ReadyIdle = build((w) => w.msg(Be.ReadyForQuery).byte(73).end()); // Z I
export const ParseComplete = build((w) => w.msg(Be.ParseComplete).end()); // 1
export const BindComplete = build((w) => w.msg(Be.BindComplete).end()); // 2
export const CloseComplete = build((w) => w.msg(Be.CloseComplete).end()); // 3
export const SyncMessage = build((w) => w.msg(Fe.Sync).end()); // S
export const TerminateMessage = build((w) => w.msg(Fe.Terminate).end()); // X
export const SslRequestPacket = build((w) => w.msg(0).int32(SSL_REQUEST_CODE).end());
export const SslNo = new Uint8Array([78]); // N
export const SslYes = new Uint8Array([83]); // S

export function authenticationMd5(salt: Uint8Array): Uint8Array {
  return build((w) => w.msg(Be.Authentication).int32(AuthCode.MD5Password).bytes(salt).end());
}

export function authenticationSaslContinue(data: string): Uint8Array {
  return build((w) => w.msg(Be.Authentication).int32(AuthCode.SASLContinue).str(data).end());
}

export function authenticationSaslFinal(data: string): Uint8Array {
  return build((w) => w.msg(Be.Authentication).int32(AuthCode.SASLFinal).str(data).end());
}

export function parameterStatus(name: string, value: string): Uint8Array {
  return build((w) => w.msg(Be.ParameterStatus).cstr(name).cstr(value).end());
}

export function backendKeyData(pid: number, secret: number): Uint8Array {
  return build((w) => w.msg(Be.BackendKeyData).int32(pid).int32(secret).end());
}

const buildReady = (status: number) => build((w) => w.msg(Be.ReadyForQuery).byte(status).end());
/** Built once: 'I', 'T', 'E'. Shared; never to be written into. */
const READY_I = buildReady(73), READY_T = buildReady(84), READY_E = buildReady(69);

export function readyForQuery(status: number): Uint8Array {
  return status === 73 ? READY_I : status === 84 ? READY_T : status === 69 ? READY_E : buildReady(status);
}

export function commandComplete(tag: string): Uint8Array {
  return build((w) => w.msg(Be.CommandComplete).cstr(tag).end());
}

export function negotiateProtocolVersion(newestMinor: number, unsupported: string[]): Uint8Array {
  return build((w) => {
    w.msg(Be.NegotiateProtocolVersion).int32(newestMinor).int32(unsupported.length);
    for (const o of unsupported) w.cstr(o);
    w.end();
  });
}

/** A simple-protocol Query message. */
export function queryMessage(sql: string): Uint8Array {
  return build((w) => w.msg(Fe.Query).cstr(sql).end());
}

export function passwordMessage(password: string): Uint8Array {
  return build((w) => w.msg(Fe.Password).cstr(password).end());
}

export function saslInitialResponse(mechanism: string, data: string): Uint8Array {
  const body = new TextEncoder().encode(data);
  return build((w) => w.msg(Fe.Password).cstr(mechanism).int32(body.length).bytes(body).end());
}

export function saslResponse(data: string): Uint8Array {
  return build((w) => w.msg(Fe.Password).str(data).end());
}

/** StartupMessage for protocol 3.0 with the given parameters. */
export function startupMessage(params: Record<string, string>): Uint8Array {
  return build((w) => {
    w.msg(0).int32(PROTOCOL_3_0);
    for (const k in params) w.cstr(k).cstr(params[k]!);
    w.byte(0).end();
  });
}

export function cancelRequestPacket(pid: number, secret: Uint8Array): Uint8Array {
  return build((w) => w.msg(0).int32(CANCEL_REQUEST_CODE).int32(pid).bytes(secret).end());
}
