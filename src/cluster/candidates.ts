// Failover candidates: which standbys may become primary, ranked by WAL position with a sync tie-break (pure).

import type { NodeView } from "./cluster.ts";

export interface Candidate {
  readonly name: string;
  /** Received-or-replayed WAL position in bytes (null unknown). */
  readonly position: number | null;
  /** The old primary last reported it as a synchronous standby (or the config says sync). */
  readonly sync: boolean;
  readonly eligible: boolean;
  /** Why it is not eligible ("" when it is). */
  readonly reason: string;
}

export interface RankOptions {
  preferSync: boolean;
  /** 0 = no limit. */
  maxLagBytes: number;
}

export interface Ranking {
  /** Eligible candidates best first, then the ineligible ones with their reasons. */
  readonly candidates: readonly Candidate[];
  /**
   * WAL position every acknowledged commit is known to be below: the furthest flush position the
   * old primary last reported for a synchronous standby (null when there was none). A candidate
   * behind it would lose acknowledged commits.
   */
  readonly ackFloor: number | null;
}

const SYNC_STATES = new Set(["sync", "quorum"]);

/** Sync facts from the old primary's last status alone. */
function syncOf(old: NodeView): SyncMemory {
  let ackFloor: number | null = null;
  const lastSync = new Set<string>();
  for (const r of old.status?.replicas ?? []) {
    if (!SYNC_STATES.has(r.syncState)) continue;
    lastSync.add(r.applicationName);
    if (r.flushLsn !== null && (ackFloor === null || r.flushLsn > ackFloor)) ackFloor = r.flushLsn;
  }
  return { ackFloor, lastSync };
}

/** What the old primary said about synchronous replication over its life (Cluster.syncMemory). */
export interface SyncMemory {
  readonly ackFloor: number | null;
  readonly lastSync: ReadonlySet<string>;
}

/**
 * Rank every node but the old primary. `memory` is what the old primary reported over time;
 * without it, only its last status counts.
 */
export function rankCandidates(nodes: readonly NodeView[], old: NodeView, o: RankOptions, memory: SyncMemory = syncOf(old)): Ranking {
  const { ackFloor, lastSync } = memory;
  const oldLsn = old.status?.walLsn ?? null;
  const systemId = old.status?.systemId ?? null;
  const out: (Candidate & { order: number; weight: number })[] = [];
  nodes.forEach((n, order) => {
    if (n.name === old.name) return;
    const sync = lastSync.size > 0 ? lastSync.has(n.name) : n.sync;
    const st = n.status;
    const position = st?.walLsn ?? null;
    const no = (reason: string) => out.push({ name: n.name, position, sync, eligible: false, reason, order, weight: n.weight });
    if (n.health !== "up") return no(`down: ${n.lastError || "not answering"}`);
    if (n.drained) return no("drained");
    if (n.fenced) return no("a fenced old primary");
    if (st === null) return no("no status probe has answered yet");
    if (!st.inRecovery) return no("not in recovery (not a standby)");
    if (systemId !== null && st.systemId !== null && st.systemId !== systemId) return no(`another cluster (system identifier ${st.systemId}, primary's ${systemId})`);
    if (position === null) return no("WAL position unknown");
    if (ackFloor !== null && position < ackFloor) return no(`behind the last acknowledged commit (at ${position}, commits acknowledged up to ${ackFloor})`);
    if (o.maxLagBytes > 0 && oldLsn !== null && oldLsn - position > o.maxLagBytes) return no(`${oldLsn - position} bytes behind the old primary (failover.max_lag_bytes ${o.maxLagBytes})`);
    out.push({ name: n.name, position, sync, eligible: true, reason: "", order, weight: n.weight });
  });
  out.sort((a, b) => {
    if (a.eligible !== b.eligible) return a.eligible ? -1 : 1;
    if (!a.eligible) return a.order - b.order;
    if (a.position !== b.position) return b.position! - a.position!;
    if (o.preferSync && a.sync !== b.sync) return a.sync ? -1 : 1;
    return a.order - b.order;
  });
  return { candidates: out.map(({ name, position, sync, eligible, reason }) => ({ name, position, sync, eligible, reason })), ackFloor };
}
