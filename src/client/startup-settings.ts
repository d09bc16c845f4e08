// Startup parameters refused as PostgreSQL refuses them: unknown settings (42704), replication connections.

import { errorResponse } from "../protocol/errors.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import type { Pool, PoolShared } from "../server/pool.ts";
import { runOnPool } from "../server/query-runner.ts";
import { log } from "../util/log.ts";
import { consumedByProxy, parseOptions } from "../sql/session-state.ts";

/** Settings every supported PostgreSQL has: a login naming only these needs no look-up. */
const ALWAYS_KNOWN = new Set([
  "application_name", "client_encoding", "datestyle", "timezone", "intervalstyle", "extra_float_digits",
  "search_path", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
  "default_transaction_isolation", "default_transaction_read_only", "default_transaction_deferrable",
  "standard_conforming_strings", "bytea_output", "client_min_messages", "work_mem", "maintenance_work_mem",
  "geqo", "jit", "role", "synchronous_commit", "timezone_abbreviations", "lc_messages", "lc_monetary",
  "lc_numeric", "lc_time", "default_text_search_config", "enable_seqscan", "random_page_cost",
]);

/** The server's setting names (lower case), read once per (database, user) from pg_settings; null when the read failed. */
const knownByGroup = new WeakMap<PoolShared, Promise<Set<string> | null>>();

function serverSettings(pool: Pool): Promise<Set<string> | null> {
  let p = knownByGroup.get(pool.shared);
  if (p === undefined) {
    p = runOnPool(pool, "SELECT lower(name) FROM pg_settings").then((r) => {
      if (r.error) {
        log.warn("could not read pg_settings to check startup parameters", { code: r.error.code, error: r.error.message });
        knownByGroup.delete(pool.shared);
        return null;
      }
      return new Set(r.rows.map((row) => row[0] ?? ""));
    });
    knownByGroup.set(pool.shared, p);
  }
  return p;
}

/**
 * `replication=true|database|...`: the proxy relays no replication protocol, so such a login is
 * refused at once (PostgreSQL answers 42501 to a role that may not replicate). Null when fine.
 */
export function replicationRefusal(params: ReadonlyMap<string, string>): Uint8Array | null {
  const v = params.get("replication");
  if (v === undefined) return null;
  const lower = v.toLowerCase();
  if (["false", "off", "no", "0"].includes(lower)) return null;
  if (!["true", "on", "yes", "1", "database"].includes(lower)) {
    return errorResponse({ severity: "FATAL", code: SqlState.InvalidParameterValue, message: `invalid value for parameter "replication": "${v}"` });
  }
  return errorResponse({
    severity: "FATAL",
    code: SqlState.InsufficientPrivilege,
    message: "replication connections are not supported through HeliosProxy",
    hint: "Connect to PostgreSQL directly for streaming or logical replication.",
  });
}

/**
 * The startup settings (parameters and `options` -c/--) PostgreSQL would refuse as unknown:
 * FATAL 42704 for the first one, as PostgreSQL says it; null when all are known. Custom
 * `prefix.name` settings are accepted, as PostgreSQL accepts them at startup.
 */
export async function unknownSettingRefusal(pool: Pool, params: ReadonlyMap<string, string>): Promise<Uint8Array | null> {
  const names: string[] = [];
  for (const [k, v] of params) {
    if (k === "options") {
      for (const [n] of parseOptions(v)) if (!consumedByProxy(n)) names.push(n);
    } else if (!consumedByProxy(k)) names.push(k);
  }
  const doubtful = names.filter((n) => !n.includes(".") && !ALWAYS_KNOWN.has(n.toLowerCase()));
  if (doubtful.length === 0) return null;
  const known = await serverSettings(pool);
  if (known === null) return null;
  const unknown = doubtful.find((n) => !known.has(n.toLowerCase()));
  if (unknown === undefined) return null;
  return errorResponse({ severity: "FATAL", code: SqlState.UndefinedObject, message: `unrecognized configuration parameter "${unknown}"` });
}
