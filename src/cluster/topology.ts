// Primary tracker: the provider that says who is primary ([topology] provider), and the JSON events an orchestrator may push.

import type { Cluster } from "./cluster.ts";

/**
 * A source of topology. It turns what it learns into Cluster calls (setPrimary, setStandby,
 * setHealth, setLag); the rest of the proxy consumes the Cluster's events only.
 */
export interface TopologyProvider {
  readonly name: string;
  start(): void;
  stop(): void;
}

/**
 * One event an orchestrator pushes to POST /topology/events (provider heliosdb), documented in
 * the README. `node` is a configured node name.
 */
export type TopologyEvent =
  | { type: "PrimaryChanged"; node: string }
  | { type: "NodeDown"; node: string; reason?: string }
  | { type: "NodeUp"; node: string }
  | { type: "LagChanged"; node: string; lag_bytes: number | null; lag_seconds?: number | null };

/** Validate one pushed event; a string says what is wrong with it. */
export function parseTopologyEvent(raw: unknown, cluster: Cluster): TopologyEvent | string {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return "expected a JSON object";
  const e = raw as Record<string, unknown>;
  const type = e.type;
  if (typeof e.node !== "string" || cluster.node(e.node) === undefined) {
    return `node: expected one of ${cluster.snapshot().map((n) => n.name).join(", ")}, got ${JSON.stringify(e.node)}`;
  }
  const node = e.node;
  switch (type) {
    case "PrimaryChanged":
    case "NodeUp":
      return { type, node };
    case "NodeDown":
      if (e.reason !== undefined && typeof e.reason !== "string") return "reason: expected a string";
      return { type, node, reason: e.reason as string | undefined };
    case "LagChanged": {
      const okNum = (v: unknown) => v === null || v === undefined || (typeof v === "number" && Number.isFinite(v) && v >= 0);
      if (!okNum(e.lag_bytes) || e.lag_bytes === undefined) return "lag_bytes: expected a number >= 0 or null";
      if (!okNum(e.lag_seconds)) return "lag_seconds: expected a number >= 0 or null";
      return { type, node, lag_bytes: e.lag_bytes as number | null, lag_seconds: (e.lag_seconds as number | null | undefined) ?? null };
    }
    default:
      return `type: expected PrimaryChanged, NodeDown, NodeUp or LagChanged, got ${JSON.stringify(type)}`;
  }
}

/** Apply a validated pushed event to the cluster view. */
export function applyTopologyEvent(cluster: Cluster, e: TopologyEvent): void {
  switch (e.type) {
    case "PrimaryChanged":
      cluster.setPrimary(e.node, "topology event from the orchestrator");
      break;
    case "NodeDown":
      cluster.setHealth(e.node, "down", e.reason ?? "reported down by the orchestrator");
      break;
    case "NodeUp":
      cluster.setHealth(e.node, "up");
      break;
    case "LagChanged":
      cluster.setLag(e.node, e.lag_bytes, e.lag_seconds ?? null);
      break;
  }
}
