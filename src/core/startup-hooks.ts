// Runs the modules' onStartup hooks for one client before authentication: refusal, user/database rewrite, tenant.

import { log } from "../util/log.ts";
import type { Reject, SessionCtx, StartupCtx, StartupDecision } from "./hooks.ts";

export type StartupHook = (s: StartupCtx) => void | StartupDecision;

/** Where a client logs in after the hooks ran; `reject` set when one refused it. */
export interface StartupOutcome {
  user: string;
  database: string;
  tenant: string;
  reject: Reject | null;
}

const BROKEN: Reject = { kind: "reject", sqlstate: "XX000", message: "a module failed while admitting this connection" };

/**
 * The hooks in module order. Each sees the user, database and parameters as rewritten by those
 * before it (`params` is updated in place, so what the server is sent follows the rewrite); a later
 * tenant replaces an earlier one; the first Reject ends the run. A hook that throws refuses the
 * client with XX000 and is logged.
 */
export function runStartupHooks(hooks: readonly StartupHook[], session: SessionCtx, params: Map<string, string>, serverName: string): StartupOutcome {
  const out: StartupOutcome = { user: session.user, database: session.database, tenant: "", reject: null };
  for (const hook of hooks) {
    let d: void | StartupDecision;
    try {
      d = hook({ session: { ...session, user: out.user, database: out.database }, params, serverName });
    } catch (e) {
      log.error("an onStartup hook threw; the client is refused", { error: e });
      out.reject = BROKEN;
      return out;
    }
    if (!d) continue;
    if (d.kind === "reject") {
      out.reject = d;
      return out;
    }
    if (d.user !== undefined) params.set("user", (out.user = d.user));
    if (d.database !== undefined) params.set("database", (out.database = d.database));
    if (d.tenant !== undefined) out.tenant = d.tenant;
  }
  return out;
}
