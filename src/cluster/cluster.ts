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
}

export type ClusterEvent =
  | { type: "NodeDown"; node: string; reason: string }
  | { type: "NodeUp"; node: string }
  | { type: "NodeDrained"; node: string; drained: boolean }
  | { type: "LagChanged"; node: string; lagBytes: number | null; lagSeconds: number | null }
  | { type: "PrimaryChanged"; from: string; to: string };

type Listener = (e: ClusterEvent) => void;

const EWMA_ALPHA = 0.2;

export class Cluster {
  private views: NodeView[];
  private byName = new Map<string, number>();
  private readonly listeners: Listener[] = [];
  /** Bumped on every change: cheap staleness check for cached routing decisions. */
  version = 0;

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
    return this.views.find((v) => v.role === "primary") ?? this.views[0]!;
  }

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

  /** A probe found `name` is the primary (or a standby): roles follow what the servers say. */
  setRole(name: string, role: NodeRole): void {
    const cur = this.node(name);
    if (!cur || cur.role === role) return;
    const old = this.primary();
    this.update(name, { role });
    if (role === "primary" && old.name !== name) this.emit({ type: "PrimaryChanged", from: old.name, to: name });
  }
}
