// Looking up a user's stored password with the configured auth_query, run with a bound parameter.

import type { ProxyContext } from "../core/context.ts";
import type { ServerConnection } from "../server/connection.ts";
import type { LoginError } from "../server/login.ts";
import type { PoolWaiter } from "../server/pool.ts";
import { runQuery } from "../server/query-runner.ts";

export interface AuthQueryResult {
  /** Stored password (SCRAM verifier or md5 hash), or null: no such user, no password, expired. */
  password: string | null;
  /** Set when the lookup itself failed (the login then fails closed). */
  error?: string;
}

/** Run auth_query for `user` ($1) on the auth pool. Never rejects. */
export function lookupPassword(ctx: ProxyContext, user: string): Promise<AuthQueryResult> {
  const pool = ctx.authQueryPool();
  return new Promise((resolve) => {
    const waiter: PoolWaiter = {
      waitingSince: 0,
      serverLeased(s: ServerConnection) {
        void runQuery(s, ctx.config.auth.auth_query, [user]).then((r) => {
          pool.release(s);
          if (r.error) resolve({ password: null, error: r.error.message });
          else if (r.rows.length > 1) resolve({ password: null, error: "auth_query returned more than one row" });
          else resolve({ password: r.rows[0]?.[1] ?? null });
        });
      },
      serverFailed(e: LoginError) {
        resolve({ password: null, error: `auth_query connection failed: ${e.message}` });
      },
    };
    const s = pool.acquire(waiter);
    if (s !== null) waiter.serverLeased(s);
  });
}
