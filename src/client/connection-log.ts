// Login, refused-login and disconnect lines at info level, behind [proxy] log_connections / log_disconnections.

import type { ProxyContext } from "../core/context.ts";
import { errorFields } from "../protocol/errors.ts";
import { log } from "../util/log.ts";

/** What a log line says about a client connection. */
export interface ConnectionFacts {
  readonly ctx: ProxyContext;
  readonly user: string;
  readonly database: string;
  /** host:port of the client. */
  readonly client: string;
  readonly tls: boolean;
}

export function logLogin(c: ConnectionFacts, pid: number): void {
  if (!c.ctx.config.proxy.log_connections) return;
  log.info("login", { user: c.user, database: c.database, client: c.client, tls: c.tls, session_id: pid });
}

/** A login ended with this ErrorResponse (wrong password, limits, server unreachable...). */
export function logRefused(c: ConnectionFacts, reply: Uint8Array): void {
  if (!c.ctx.config.proxy.log_connections) return;
  const e = errorFields(reply, 5, reply.length);
  log.info("login refused", { user: c.user, database: c.database, client: c.client, tls: c.tls, sqlstate: e.code, error: e.message });
}

export function logDisconnect(c: ConnectionFacts, pid: number, secondsConnected: number, reason: string): void {
  if (!c.ctx.config.proxy.log_disconnections) return;
  log.info("disconnect", { user: c.user, database: c.database, client: c.client, session_id: pid, duration_s: Math.round(secondsConnected * 1000) / 1000, reason });
}
