// The cluster's alarms, derived from its state when asked: no primary, etcd unreachable, no safe failover candidate, a synchronous layout that would hang, nodes down, paused.

import type { AlarmInput } from "../util/alarms.ts";
import type { ProxyContext } from "../core/context.ts";
import { isPaused } from "../core/pause.ts";
import { rankCandidates } from "../cluster/candidates.ts";
import type { NodeView } from "../cluster/cluster.ts";

/** Keys of derived alarms start with this; alarms pushed by other parts use their own. */
export const CLUSTER_ALARM_PREFIX = "cluster:";


export function clusterAlarms(ctx: ProxyContext): AlarmInput[] {
  const out: AlarmInput[] = [];
  const add = (key: string, severity: AlarmInput["severity"], title: string, detail: string) => out.push({ key: CLUSTER_ALARM_PREFIX + key, severity, title, detail });
  const nodes = ctx.cluster.snapshot();
  const primary = nodes.find((n) => n.role === "primary");
  if (primary === undefined) add("no_primary", "critical", "No primary", "No node is primary: requests that need one are refused or held.");
  else if (primary.health === "down") add("primary_down", "critical", `Primary ${primary.name} is down`, primary.lastError || "It does not answer health checks.");
  if (ctx.failover?.alarm) add("failover", "critical", "Failover needs an operator", ctx.failover.alarm);
  const degraded = ctx.fleet?.degraded() ?? null;
  if (degraded !== null) add("etcd", "critical", "etcd unreachable", `${degraded}.`);
  for (const n of nodes) if (n !== primary && n.health === "down") add(`down:${n.name}`, "warning", `Standby ${n.name} is down`, `${n.lastError || "It does not answer health checks"}; it takes no reads and its lag and latency are stale.`);
  if (primary !== undefined && primary.health === "up" && nodes.length > 1 && ctx.config.failover.policy !== "off") candidateAlarms(ctx, nodes, primary, add);
  // synchronous_standby_names against the topology, as the failover controller watches it.
  const sync = ctx.failover?.sync.report();
  if (sync !== undefined && sync.alarm !== "") add("sync_waiting", "critical", "Commits wait for synchronous replication", sync.alarm);
  if (sync !== undefined && sync.problems.length > 0) add("sync_hang", "warning", "Synchronous replication would hang after a failover", sync.problems.join("; "));
  if (isPaused(ctx)) add("paused", "warning", "Proxy paused", "PAUSE is in effect: requests wait until RESUME (POST /resume).");
  return out;
}

/** If the primary failed now: would a standby be safe to promote? */
function candidateAlarms(ctx: ProxyContext, nodes: readonly NodeView[], primary: NodeView, add: (key: string, severity: AlarmInput["severity"], title: string, detail: string) => void): void {
  const f = ctx.config.failover;
  // The commit floor moves with every write; a streaming standby reaches it at promotion time. At a glance, what counts is who could be promoted at all.
  const ranking = rankCandidates(nodes, primary, { preferSync: f.prefer_sync, maxLagBytes: f.max_lag_bytes }, { ackFloor: null, lastSync: ctx.cluster.syncMemory.lastSync });
  const best = ranking.candidates.find((c) => c.eligible);
  if (best === undefined) {
    const why = ranking.candidates.map((c) => `${c.name}: ${c.reason}`).join("; ");
    add("no_candidate", "critical", "No safe failover candidate", `If ${primary.name} failed now no standby could take over (${why}).`);
  }
}
