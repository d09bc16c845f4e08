// Load-balancing strategies: each picks one node among eligible candidates; all share one conformance suite.

import type { LbStrategy } from "../config/types.ts";
import type { NodeView } from "../cluster/cluster.ts";

/** Per-node numbers a strategy may use besides the node view (live pool counts). */
export interface LoadInfo {
  /** Server connections of this node currently leased to clients. */
  active(node: string): number;
}

export interface Balancer {
  readonly name: LbStrategy;
  /** One of `candidates` (non-empty, all eligible), honouring weights; weight 0 nodes are never picked. */
  pick(candidates: readonly NodeView[], load: LoadInfo): NodeView | null;
}

function weighted(candidates: readonly NodeView[]): NodeView[] {
  return candidates.filter((c) => c.weight > 0);
}

/** Smooth weighted round robin (nginx's): even spread, proportional to weight, no bursts. */
export class RoundRobin implements Balancer {
  readonly name = "round_robin" as const;
  private current = new Map<string, number>();

  pick(candidates: readonly NodeView[]): NodeView | null {
    const c = weighted(candidates);
    if (c.length === 0) return null;
    if (c.length === 1) return c[0]!;
    let total = 0;
    let best: NodeView | null = null;
    let bestScore = -Infinity;
    for (const n of c) {
      total += n.weight;
      const score = (this.current.get(n.name) ?? 0) + n.weight;
      this.current.set(n.name, score);
      if (score > bestScore) {
        bestScore = score;
        best = n;
      }
    }
    this.current.set(best!.name, bestScore - total);
    return best;
  }
}

/** Fewest active server connections per unit of weight; ties rotate. */
export class LeastConnections implements Balancer {
  readonly name = "least_connections" as const;
  private rotor = 0;

  pick(candidates: readonly NodeView[], load: LoadInfo): NodeView | null {
    const c = weighted(candidates);
    if (c.length === 0) return null;
    let best: NodeView[] = [];
    let bestScore = Infinity;
    for (const n of c) {
      const score = load.active(n.name) / n.weight;
      if (score < bestScore) {
        bestScore = score;
        best = [n];
      } else if (score === bestScore) best.push(n);
    }
    return best[this.rotor++ % best.length]!;
  }
}

/**
 * Lowest moving-average latency per unit of weight. Nodes within 20% (or 0.1 ms) of the best
 * share the traffic in turn, so equal nodes do not herd onto one; unmeasured nodes are tried first.
 */
export class LatencyBased implements Balancer {
  readonly name = "latency" as const;
  private rotor = 0;

  pick(candidates: readonly NodeView[]): NodeView | null {
    const c = weighted(candidates);
    if (c.length === 0) return null;
    const unmeasured = c.filter((n) => n.latencyMs === null);
    if (unmeasured.length > 0) return unmeasured[this.rotor++ % unmeasured.length]!;
    let best = Infinity;
    for (const n of c) best = Math.min(best, n.latencyMs! / n.weight);
    const limit = Math.max(best * 1.2, best + 0.1);
    const near = c.filter((n) => n.latencyMs! / n.weight <= limit);
    return near[this.rotor++ % near.length]!;
  }
}

export function makeBalancer(strategy: LbStrategy): Balancer {
  switch (strategy) {
    case "round_robin":
      return new RoundRobin();
    case "least_connections":
      return new LeastConnections();
    case "latency":
      return new LatencyBased();
  }
}
