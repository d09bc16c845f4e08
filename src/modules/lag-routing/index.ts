// Lag routing module: reads only to standbys within a lag threshold, and read-your-writes by commit LSN (off, local, global, fast, wait).

import { HOOKS_API_VERSION, type CommitPositions, type ProxyModule, type QueryCtx, type RouteHint } from "../../core/hooks.ts";
import { moduleConfig } from "../../config/schema.ts";

export type ReadYourWrites = "off" | "local" | "global" | "fast" | "wait";

export interface LagRoutingSettings {
  enabled: boolean;
  /** Standbys further behind than this (ms of replay) take no reads (0 = no limit). */
  max_lag_ms: number;
  /** Standbys further behind than this (bytes of WAL) take no reads (0 = no limit). */
  max_lag_bytes: number;
  read_your_writes: ReadYourWrites;
  /** "wait": how long a read waits for a standby to replay the session's last commit before the primary takes it. */
  wait_timeout_ms: number;
  /** "local" and "global": one quick refresh of the standbys' positions, at most this long, before the primary. */
  refresh_ms: number;
}

const MS_MAX = 3_600_000;

export const config = moduleConfig<LagRoutingSettings>("Reads only to standbys within a lag threshold; read-your-writes by commit position.", {
  max_lag_ms: { kind: "number", default: 0, min: 0, max: MS_MAX, doc: "Standbys further behind than this (ms of replay) take no reads (0 = no limit)." },
  max_lag_bytes: { kind: "number", default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, doc: "Standbys further behind than this (bytes of WAL) take no reads (0 = no limit)." },
  read_your_writes: { kind: "enum", default: "off", values: ["off", "local", "global", "fast", "wait"], doc: "off; local: the session's own commits; global: every session's; fast: no waiting; wait: wait up to wait_timeout_ms." },
  wait_timeout_ms: { kind: "number", default: 500, min: 0, max: MS_MAX, doc: "\"wait\": how long a read waits for a standby to replay the session's last commit before the primary takes it." },
  refresh_ms: { kind: "number", default: 20, min: 0, max: MS_MAX, doc: "\"local\" and \"global\": one quick refresh of the standbys' positions, at most this long, before the primary." },
});

export interface LagRoutingStats {
  /** Reads that carried a commit position (read-your-writes applied). */
  causalReads: number;
  /** Reads that carried lag limits only. */
  limitedReads: number;
}

/**
 * The hint for a read outside a transaction: lag limits, and the commit position it must see —
 * the session's own (local, fast, wait) or the newest of all sessions (global).
 */
export function hintFor(q: QueryCtx, s: LagRoutingSettings, commits: CommitPositions | null, stats: LagRoutingStats): RouteHint | undefined {
  if (q.txStatus !== "I") return undefined;
  const mode = s.read_your_writes;
  const lsn = commits === null || mode === "off" ? 0 : mode === "global" ? commits.latest() : commits.session(q.session.id);
  if (lsn === 0 && s.max_lag_ms === 0 && s.max_lag_bytes === 0) return undefined;
  const hint: { -readonly [K in keyof RouteHint]: RouteHint[K] } = { kind: "route", target: "default" };
  if (s.max_lag_ms > 0) hint.maxLagMs = s.max_lag_ms;
  if (s.max_lag_bytes > 0) hint.maxLagBytes = s.max_lag_bytes;
  if (lsn > 0) {
    stats.causalReads++;
    hint.minLsn = lsn;
    const wait = mode === "wait" ? s.wait_timeout_ms : mode === "fast" ? 0 : s.refresh_ms;
    if (wait > 0) hint.waitMs = wait;
  } else stats.limitedReads++;
  return hint;
}

const lagRouting: ProxyModule<LagRoutingSettings> = {
  name: "lag_routing",
  feature: "lag-routing",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,

  config,

  start(settings, host) {
    const commits = settings.read_your_writes === "off" ? null : host.trackCommits();
    const stats: LagRoutingStats = { causalReads: 0, limitedReads: 0 };
    host.addShow("lag_routing", () => ({
      columns: ["read_your_writes", "max_lag_ms", "max_lag_bytes", "causal_reads", "limited_reads", "latest_commit_lsn"],
      rows: [[settings.read_your_writes, settings.max_lag_ms, settings.max_lag_bytes, stats.causalReads, stats.limitedReads, commits?.latest() ?? 0]],
    }));
    return { onQuery: (q) => hintFor(q, settings, commits, stats) };
  },
};

export default lagRouting;
