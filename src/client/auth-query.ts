// Looking up a user's stored password with the configured auth_query, run with a bound parameter.

import type { ProxyContext } from "../core/context.ts";
import { runOnPool } from "../server/query-runner.ts";

export interface AuthQueryResult {
  /** Stored password (SCRAM verifier or md5 hash), or null: no such user, no password, expired. */
  password: string | null;
  /** Set when the lookup itself failed (the login then fails closed). */
  error?: string;
}

/** Run auth_query for `user` ($1) on the auth pool. Never rejects. */
export async function lookupPassword(ctx: ProxyContext, user: string): Promise<AuthQueryResult> {
  const r = await runOnPool(ctx.authQueryPool(), ctx.config.auth.auth_query, [user]);
  if (r.error) return { password: null, error: r.error.message };
  if (r.rows.length > 1) return { password: null, error: "auth_query returned more than one row" };
  return { password: r.rows[0]?.[1] ?? null };
}
