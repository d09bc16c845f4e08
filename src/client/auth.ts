// Authenticating clients: SCRAM-SHA-256, md5, trust, and passthrough to the server when no users are configured.

import type { ClientAuthMethod } from "../config/types.ts";
import type { ProxyContext } from "../core/context.ts";
import { Errors } from "../protocol/errors.ts";
import { readInt32 } from "../protocol/framing.ts";
import {
  AuthenticationCleartext,
  AuthenticationSaslScram,
  authenticationMd5,
  authenticationSaslContinue,
  authenticationSaslFinal,
} from "../protocol/messages.ts";
import { isMd5Hash, verifyMd5Response } from "../protocol/md5.ts";
import { log } from "../util/log.ts";
import { lookupPassword } from "./auth-query.ts";
import {
  deriveScramVerifier,
  mockScramVerifier,
  parseScramVerifier,
  scramServerFinal,
  scramServerFirst,
  type ScramVerifier,
} from "../protocol/scram.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import { errorResponse } from "../protocol/errors.ts";
import type { Pool } from "../server/pool.ts";

/** The session side of an authentication exchange. */
export interface AuthChannel {
  send(b: Uint8Array): void;
  /** Body of the client's next PasswordMessage-family message, or null if it went away. */
  receive(): Promise<Uint8Array | null>;
}

export type AuthOutcome = { ok: true } | { ok: false; reply: Uint8Array };

const decoder = new TextDecoder();
type Verifier = ScramVerifier;

/** Run the exchange for `user`; on success the pool knows how to log in to the server as that user. */
export async function authenticateClient(ctx: ProxyContext, ch: AuthChannel, user: string, pool: Pool): Promise<AuthOutcome> {
  const fail: AuthOutcome = { ok: false, reply: Errors.authFailed(user) };
  const entry = ctx.userEntry(user);
  const method: ClientAuthMethod = (entry?.auth_method || ctx.config.auth.method) as ClientAuthMethod;
  if (!entry && ctx.config.auth.auth_query) return authQuery(ctx, ch, user, pool, method);
  if (ctx.config.users.length === 0) return passthrough(ctx, ch, user, pool);
  if (!entry) {
    // Unknown user: run the same exchange a real user gets, and fail it.
    if (method === "md5") {
      await md5Exchange(ch, user, null);
    } else if (method === "scram-sha-256") {
      await scramExchange(ch, mockScramVerifier(user, ctx.mockSecret));
    }
    return fail;
  }
  if (method === "trust") return { ok: true };
  if (method === "md5") return (await md5Exchange(ch, user, entry.password)) ? { ok: true } : fail;
  const verifier = parseScramVerifier(entry.password) ?? (await verifierFromPassword(entry.password));
  if (!verifier) return fail;
  return (await scramExchange(ch, verifier)) ? { ok: true } : fail;
}

/**
 * A user not in [[users]]: its stored password comes from auth_query. With a SCRAM verifier the
 * ClientKey recovered from the client's proof logs the proxy in to PostgreSQL too; with an md5
 * hash, the hash does. A failed lookup fails the login (never a fallback user).
 */
async function authQuery(ctx: ProxyContext, ch: AuthChannel, user: string, pool: Pool, method: ClientAuthMethod): Promise<AuthOutcome> {
  const fail: AuthOutcome = { ok: false, reply: Errors.authFailed(user) };
  const found = await lookupPassword(ctx, user);
  if (found.error) log.warn("auth_query failed", { user, error: found.error });
  const stored = found.password;
  const verifier = stored ? parseScramVerifier(stored) : null;
  if (verifier) {
    const clientKey = await scramExchange(ch, verifier);
    if (!clientKey) return fail;
    pool.creds = { user, database: pool.database, password: null, scramKeys: { clientKey, verifier } };
    return { ok: true };
  }
  if (stored && isMd5Hash(stored)) {
    if (!(await md5Exchange(ch, user, stored))) return fail;
    pool.creds = { user, database: pool.database, password: stored };
    return { ok: true };
  }
  // No row, NULL password (expired by the query's VALID UNTIL check) or an unusable one.
  if (method === "md5") await md5Exchange(ch, user, null);
  else await scramExchange(ch, mockScramVerifier(user, ctx.mockSecret));
  return fail;
}

/** Derive SCRAM verifiers for configured plain passwords ahead of time (logins then cost the same for all users). */
export function prewarmVerifiers(ctx: ProxyContext): void {
  for (const u of ctx.config.users) {
    if (u.password && !parseScramVerifier(u.password) && !isMd5Hash(u.password)) void verifierFromPassword(u.password);
  }
}

const verifierCache = new Map<string, Verifier>();
async function verifierFromPassword(password: string): Promise<Verifier | null> {
  if (password === "") return null;
  let v = verifierCache.get(password);
  if (v === undefined) {
    v = await deriveScramVerifier(password);
    verifierCache.set(password, v);
  }
  return v;
}

async function md5Exchange(ch: AuthChannel, user: string, stored: string | null): Promise<boolean> {
  const salt = crypto.getRandomValues(new Uint8Array(4));
  ch.send(authenticationMd5(salt));
  const body = await ch.receive();
  if (body === null || stored === null || stored === "") return false;
  const response = decoder.decode(body.subarray(0, Math.max(0, body.indexOf(0))));
  return verifyMd5Response(stored, user, salt, response);
}

/** Server side of SCRAM-SHA-256 against a verifier; returns the client's recovered ClientKey, or null. */
async function scramExchange(ch: AuthChannel, verifier: Verifier): Promise<Uint8Array | null> {
  ch.send(AuthenticationSaslScram);
  const init = await ch.receive();
  if (init === null) return null;
  const z = init.indexOf(0);
  if (z < 0 || decoder.decode(init.subarray(0, z)) !== "SCRAM-SHA-256" || init.length < z + 5) return null;
  const len = readInt32(init, z + 1);
  if (len < 0 || z + 5 + len > init.length) return null;
  const clientFirst = decoder.decode(init.subarray(z + 5, z + 5 + len));
  const first = scramServerFirst(clientFirst, verifier);
  if (!first.ok) return null;
  ch.send(authenticationSaslContinue(first.serverFirst));
  const fin = await ch.receive();
  if (fin === null) return null;
  const res = scramServerFinal(first.state, decoder.decode(fin));
  if (!res.ok) return null;
  ch.send(authenticationSaslFinal(res.serverFinal));
  return res.clientKey;
}

/**
 * No users configured: PostgreSQL decides. The first login of a (database, user) proves itself to
 * the server (trust, or the cleartext password the client hands over); later logins are checked
 * by the proxy against what the server accepted (SCRAM against a verifier derived from it).
 */
async function passthrough(ctx: ProxyContext, ch: AuthChannel, user: string, pool: Pool): Promise<AuthOutcome> {
  const fail: AuthOutcome = { ok: false, reply: Errors.authFailed(user) };
  const sh = pool.shared;
  if (sh.passthrough === "trust") return { ok: true };
  if (sh.passthrough === "password" && pool.creds.password !== null) {
    const v = await verifierFromPassword(pool.creds.password);
    return v && (await scramExchange(ch, v)) ? { ok: true } : fail;
  }
  // Unknown: ask the server, first without a password (trust), then with the client's.
  const deadline = performance.now() + ctx.config.pool.wait_timeout_secs * 1000;
  const noPassword = { ...pool.creds, password: null, scramKeys: undefined };
  sh.trustProbe ??= pool.tryLogin(deadline, noPassword).finally(() => (sh.trustProbe = null));
  const probe = await sh.trustProbe;
  if (probe === null) {
    pool.creds = noPassword;
    sh.passthrough = "trust";
    return { ok: true };
  }
  if (!probe.needsPassword) return loginFailure(ctx, user, probe.code, probe.message);
  ch.send(AuthenticationCleartext);
  const body = await ch.receive();
  if (body === null) return fail;
  const z = body.indexOf(0);
  const password = decoder.decode(body.subarray(0, z < 0 ? body.length : z));
  if (password === "") return fail;
  const withPassword = { ...pool.creds, password, scramKeys: undefined };
  const e = await pool.tryLogin(deadline, withPassword);
  if (e !== null) return loginFailure(ctx, user, e.code, e.message);
  pool.creds = withPassword;
  sh.passthrough = "password";
  return { ok: true };
}

/**
 * Auth failures all read as a wrong password; a database that does not exist is said so (3D000),
 * as PostgreSQL does once the client has authenticated; transport trouble says so, without naming
 * servers or addresses (the detail goes to the log).
 */
export function loginFailure(_ctx: ProxyContext, user: string, code: string, message: string): AuthOutcome {
  if (code.startsWith("28")) return { ok: false, reply: Errors.authFailed(user) };
  if (code === "3D000") return { ok: false, reply: errorResponse({ severity: "FATAL", code, message }) };
  log.warn("server login failed", { user, code, error: message });
  if (code === "53300" || code === "57P03") {
    return { ok: false, reply: errorResponse({ severity: "FATAL", code, message: code === "53300" ? "too many connections on the server" : "the server is starting up" }) };
  }
  return { ok: false, reply: errorResponse({ severity: "FATAL", code: SqlState.SqlClientUnableToEstablish, message: "could not connect to the PostgreSQL server" }) };
}

