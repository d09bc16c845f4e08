// The one truth about nodes: role, health, lag, drain; everyone else reads snapshots and subscribes to events.

import type { NodeEntry, NodeRole } from "../config/types.ts";

export type NodeHealth = "up" | "down";

/** What the rest of the proxy may know about a node. Replaced, never mutated in place, on change. */
export interface NodeView {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly role: NodeRole;
  readonly sync: boolean;
  readonly weight: number;
  readonly health: NodeHealth;
  readonly drained: boolean;
  /** Bytes the node's replay is behind the primary (0 on the primary; null unknown). */
  readonly lagBytes: number | null;
  readonly lagSeconds: number | null;
  /** Moving average of probe and query latency, ms (null before the first probe). */
  readonly latencyMs: number | null;
  readonly lastError: string;
  /**
   * An old primary replaced by failover or switchover that has not come back as a standby: it
   * takes no traffic at all (its data stopped at the old timeline).
   */
  readonly fenced: boolean;
  /** What the last status probe said (null until one answered; topology providers may not say). */
  readonly status: NodeStatus | null;
}

/** What a node reported about itself in its last status probe. */
export interface NodeStatus {
  readonly inRecovery: boolean;
  /** Timeline: of the WAL being written (primary) or received (standby); null if unknown. */
  readonly timeline: number | null;
  readonly systemId: string | null;
  /** Primary: current WAL insert position; standby: max(receive, replay). As a number (fits 2^53). */
  readonly walLsn: number | null;
  readonly receiveLsn: number | null;
  readonly replayLsn: number | null;
  /** On a primary: its standbys as pg_stat_replication lists them. */
  readonly replicas: readonly ReplicaStatus[];
  /** Its synchronous_standby_names (null: not probed). */
  readonly syncNames?: string | null;
  /** The application_name it streams under as a standby (from primary_conninfo; null: not readable). */
  readonly applicationName?: string | null;
  /** On a primary: backends waiting for a synchronous standby to confirm a commit. */
  readonly syncWaiters?: readonly { pid: number; secs: number }[];
}

export interface ReplicaStatus {
  readonly applicationName: string;
  readonly syncState: string;
  readonly flushLsn: number | null;
  readonly replayLsn: number | null;
}

export type ClusterEvent =
  | { type: "NodeDown"; node: string; reason: string }
  | { type: "NodeUp"; node: string }
  | { type: "NodeDrained"; node: string; drained: boolean }
  | { type: "LagChanged"; node: string; lagBytes: number | null; lagSeconds: number | null }
  | { type: "PrimaryChanged"; from: string; to: string; epoch: number; reason: string }
  /** The primary reports it is in recovery (being demoted, or not promoted yet): writes would fail there. */
  | { type: "PrimaryNotWritable"; node: string };

type Listener = (e: ClusterEvent) => void;

const EWMA_ALPHA = 0.2;

export class Cluster {
  private views: NodeView[];
  private byName = new Map<string, number>();
  private readonly listeners: Listener[] = [];
  /** Bumped on every change: cheap staleness check for cached routing decisions. */
  version = 0;
  /**
   * Failover epoch: bumped whenever the primary changes. Servers and pools remember the epoch
   * they were made in; work of an older epoch never goes to the primary again.
   */
  epoch = 0;
  /** Highest timeline any node has reported: a primary on a lower one is a fenced or split-off old primary. */
  maxTimeline = 0;
  /**
   * What the primary of this epoch reported about synchronous replication, kept across probes (a
   * sync standby that disconnects vanishes from pg_stat_replication but not from history): the
   * furthest flush position of a sync standby (commits up to it may have been acknowledged) and
   * the standbys last seen as sync.
   */
  syncMemory: { ackFloor: number | null; lastSync: ReadonlySet<string> } = { ackFloor: null, lastSync: new Set() };

  constructor(nodes: readonly NodeEntry[]) {
    this.views = nodes.map((n) => ({
      name: n.name,
      host: n.host,
      port: n.port,
      role: n.role,
      sync: n.sync,
      weight: n.weight,
      health: "up" as NodeHealth,
      drained: false,
      lagBytes: n.role === "primary" ? 0 : null,
      lagSeconds: n.role === "primary" ? 0 : null,
      latencyMs: null,
      lastError: "",
      fenced: false,
      status: null,
    }));
    this.views.forEach((v, i) => this.byName.set(v.name, i));
  }

  /** The current nodes (an immutable array; a new one after each change). */
  snapshot(): readonly NodeView[] {
    return this.views;
  }

  node(name: string): NodeView | undefined {
    const i = this.byName.get(name);
    return i === undefined ? undefined : this.views[i];
  }

  primary(): NodeView {
    return (this.primaryView ??= this.views.find((v) => v.role === "primary") ?? this.views[0]!);
  }

  private primaryView: NodeView | null = null;

  subscribe(l: Listener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  private emit(e: ClusterEvent): void {
    for (const l of this.listeners) l(e);
  }

  private update(name: string, patch: Partial<Record<keyof NodeView, unknown>>): NodeView | undefined {
    const i = this.byName.get(name);
    if (i === undefined) return undefined;
    const next = { ...this.views[i]!, ...patch } as NodeView;
    const views = this.views.slice();
    views[i] = next;
    this.views = views;
    this.primaryView = null;
    this.version++;
    return next;
  }

  setHealth(name: string, health: NodeHealth, reason = ""): void {
    const cur = this.node(name);
    if (!cur || cur.health === health) {
      if (cur && reason && cur.lastError !== reason) this.update(name, { lastError: reason });
      return;
    }
    this.update(name, { health, lastError: health === "down" ? reason : "" });
    this.emit(health === "down" ? { type: "NodeDown", node: name, reason } : { type: "NodeUp", node: name });
  }

  /** A problem the health checker has with a node that does not make it down (shown as lastError; "" clears it). */
  noteProbeProblem(name: string, problem: string): void {
    const cur = this.node(name);
    if (cur && cur.health === "up" && cur.lastError !== problem) this.update(name, { lastError: problem });
  }

  setDrained(name: string, drained: boolean): boolean {
    const cur = this.node(name);
    if (!cur) return false;
    if (cur.drained !== drained) {
      this.update(name, { drained });
      this.emit({ type: "NodeDrained", node: name, drained });
    }
    return true;
  }

  /** Fold a latency sample (ms) into the node's moving average. */
  sampleLatency(name: string, ms: number): void {
    const cur = this.node(name);
    if (!cur) return;
    const next = cur.latencyMs === null ? ms : cur.latencyMs + EWMA_ALPHA * (ms - cur.latencyMs);
    this.update(name, { latencyMs: next });
  }

  setLag(name: string, lagBytes: number | null, lagSeconds: number | null): void {
    const cur = this.node(name);
    if (!cur || (cur.lagBytes === lagBytes && cur.lagSeconds === lagSeconds)) return;
    this.update(name, { lagBytes, lagSeconds });
    this.emit({ type: "LagChanged", node: name, lagBytes, lagSeconds });
  }

  /** Record a status probe's answer (no role decision: see observeRole). */
  setStatus(name: string, status: NodeStatus): void {
    const cur = this.node(name);
    if (!cur) return;
    if (status.timeline !== null && status.timeline > this.maxTimeline) this.maxTimeline = status.timeline;
    if (cur.role === "primary" && !status.inRecovery) this.rememberSync(status);
    // A fenced old primary that came back in recovery has rejoined as a standby.
    this.update(name, cur.fenced && status.inRecovery ? { status, fenced: false } : { status });
    if (status.inRecovery && cur.role === "primary" && this.primary().name === name && cur.status?.inRecovery !== true) {
      this.emit({ type: "PrimaryNotWritable", node: name });
    }
  }

  private rememberSync(status: NodeStatus): void {
    let floor = this.syncMemory.ackFloor;
    const names = new Set<string>();
    for (const r of status.replicas) {
      if (r.syncState !== "sync" && r.syncState !== "quorum") continue;
      names.add(r.applicationName);
      if (r.flushLsn !== null && (floor === null || r.flushLsn > floor)) floor = r.flushLsn;
    }
    this.syncMemory = { ackFloor: floor, lastSync: names.size > 0 ? names : this.syncMemory.lastSync };
  }

  /**
   * A probe found `name` in recovery or not: roles follow what the servers say, except that a
   * node claiming to be primary counts only on the highest timeline seen (after a split both the
   * old and the new primary say they are not in recovery) and only when it is not the primary
   * already. Returns false when a claim to be primary was refused.
   */
  observeRole(name: string, inRecovery: boolean, timeline: number | null): boolean {
    const cur = this.node(name);
    if (!cur) return true;
    if (inRecovery) {
      if (cur.role !== "standby") this.update(name, { role: "standby" });
      return true;
    }
    if (cur.role === "primary") return true;
    const current = this.primary();
    const currentTl = current.status?.timeline ?? null;
    const outranked = timeline === null || timeline < this.maxTimeline || (currentTl !== null && timeline <= currentTl && current.role === "primary" && current.health === "up");
    if (outranked) return false;
    this.setPrimary(name, "node reports it is the primary on the newest timeline");
    return true;
  }

  /**
   * Make `name` the primary (failover, switchover, a topology provider, the admin API): every
   * other node becomes a standby, the epoch moves on (to `minEpoch` at least: the fleet's epoch
   * under coordination). Returns false for an unknown node.
   */
  setPrimary(name: string, reason: string, minEpoch = 0): boolean {
    const cur = this.node(name);
    if (!cur) return false;
    const old = this.primary();
    if (cur.role === "primary" && old.name === name) return true;
    for (const v of this.views) if (v.name !== name && v.role === "primary") this.update(v.name, { role: "standby", fenced: true });
    this.update(name, { role: "primary", lagBytes: 0, lagSeconds: 0, fenced: false });
    this.epoch = Math.max(this.epoch + 1, minEpoch);
    this.syncMemory = { ackFloor: null, lastSync: new Set() };
    this.emit({ type: "PrimaryChanged", from: old.name, to: name, epoch: this.epoch, reason });
    return true;
  }

  /** A standby's role as a provider reports it (no primary change: that is setPrimary). */
  setStandby(name: string): void {
    const cur = this.node(name);
    if (cur && cur.role !== "standby") this.update(name, { role: "standby" });
  }
}
