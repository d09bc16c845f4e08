// Load-balancing strategies: each picks one node among eligible candidates; all share one conformance suite.

import type { LbStrategy } from "../config/types.ts";
import type { NodeView } from "../cluster/cluster.ts";

/** Per-node numbers a strategy may use besides the node view (live pool counts). */
export interface LoadInfo {
  /** Server connections of this node currently leased to clients. */
  active(node: string): number;
  /** Moving average of sampled request latency through this node, ms (null: none yet). */
  latencyMs?(node: string): number | null;
}

/** A node's latency for balancing: request timings when there are any, else health probes. */
function latencyOf(n: NodeView, load: LoadInfo | undefined): number | null {
  return load?.latencyMs?.(n.name) ?? n.latencyMs;
}

export interface Balancer {
  readonly name: LbStrategy;
  /** One of `candidates` (non-empty, all eligible), honouring weights; weight 0 nodes are never picked. */
  pick(candidates: readonly NodeView[], load: LoadInfo): NodeView | null;
}

/** Candidates with a weight above 0 (the list itself, not a copy, when all have one). */
function weighted(candidates: readonly NodeView[]): readonly NodeView[] {
  for (const c of candidates) if (c.weight <= 0) return candidates.filter((n) => n.weight > 0);
  return candidates;
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
    let bestScore = Infinity;
    let ties = 0;
    for (const n of c) {
      const score = load.active(n.name) / n.weight;
      if (score < bestScore) {
        bestScore = score;
        ties = 1;
      } else if (score === bestScore) ties++;
    }
    let k = this.rotor++ % ties;
    for (const n of c) if (load.active(n.name) / n.weight === bestScore && k-- === 0) return n;
    return c[0]!;
  }
}

/**
 * Lowest moving-average latency (request timings, else probes) per unit of weight. Nodes within 20% (or 0.1 ms) of the best
 * share the traffic in turn, so equal nodes do not herd onto one; unmeasured nodes are tried first.
 */
export class LatencyBased implements Balancer {
  readonly name = "latency" as const;
  private rotor = 0;

  pick(candidates: readonly NodeView[], load?: LoadInfo): NodeView | null {
    const c = weighted(candidates);
    if (c.length === 0) return null;
    let unmeasured = 0;
    let best = Infinity;
    for (const n of c) {
      const ms = latencyOf(n, load);
      if (ms === null) unmeasured++;
      else best = Math.min(best, ms / n.weight);
    }
    // Unmeasured nodes first; else every node within 20% (or 0.1 ms) of the best, in turn.
    const limit = unmeasured > 0 ? -1 : Math.max(best * 1.2, best + 0.1);
    let near = unmeasured;
    if (limit >= 0) for (const n of c) if (latencyOf(n, load)! / n.weight <= limit) near++;
    let k = this.rotor++ % near;
    for (const n of c) {
      const ms = latencyOf(n, load);
      const ok = limit < 0 ? ms === null : ms! / n.weight <= limit;
      if (ok && k-- === 0) return n;
    }
    return c[0]!;
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
