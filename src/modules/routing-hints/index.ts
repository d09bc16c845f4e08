// Routing hints module: /*+ route=primary|standby|any node=<name> max_lag=100ms */ in a statement steer where it runs.

import { HOOKS_API_VERSION, type ProxyModule, type QueryCtx, type RouteHint } from "../../core/hooks.ts";
import { parseHintsBytes } from "../../sql/hints.ts";
import { loadParser } from "../../sql/classify.ts";
import { moduleConfig } from "../../config/schema.ts";

export interface RoutingHintsSettings {
  enabled: boolean;
  /** Whether node=<name> hints are obeyed at all. */
  allow_node_hints: boolean;
  /** Users whose node hints are obeyed (empty: every user). */
  node_hint_users: string[];
}

export const config = moduleConfig<RoutingHintsSettings>("/*+ route=... node=... max_lag=... */ hints in SQL comments.", {
  allow_node_hints: { kind: "bool", default: true, doc: "Whether node=<name> hints are obeyed at all." },
  node_hint_users: { kind: "strings", default: [], doc: "Users whose node hints are obeyed (empty: every user)." },
});

/** Counters the tests and SHOW ROUTING_HINTS read. */
export interface HintStats {
  hinted: number;
  nodeHintsRefused: number;
}

/** The RouteHint for a request's hints, or undefined when it has none (or none this user may give). */
export function routeFor(q: QueryCtx, s: RoutingHintsSettings, stats: HintStats): RouteHint | undefined {
  const b = q.sqlBytes();
  const h = parseHintsBytes(b, 0, b.length);
  if (h === null) return undefined;
  let target: string | undefined = h.route;
  if (h.node !== undefined) {
    if (s.allow_node_hints && (s.node_hint_users.length === 0 || s.node_hint_users.includes(q.session.user))) target = h.node;
    else stats.nodeHintsRefused++;
  }
  if (target === undefined && h.maxLagMs === undefined && h.maxLagBytes === undefined) return undefined;
  stats.hinted++;
  // A lag limit alone asks for a standby within it.
  return { kind: "route", target: target ?? "standby", ...(h.maxLagMs !== undefined ? { maxLagMs: h.maxLagMs } : {}), ...(h.maxLagBytes !== undefined ? { maxLagBytes: h.maxLagBytes } : {}) };
}

const routingHints: ProxyModule<RoutingHintsSettings> = {
  name: "routing_hints",
  feature: "routing-hints",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,

  config,

  async start(settings, host) {
    // Hinted reads are checked for writes by the parser even when the automatic split is off.
    await loadParser();
    const stats: HintStats = { hinted: 0, nodeHintsRefused: 0 };
    host.addShow("routing_hints", () => ({ columns: ["hinted", "node_hints_refused"], rows: [[stats.hinted, stats.nodeHintsRefused]] }));
    return {
      onQuery: (q) => routeFor(q, settings, stats),
    };
  },
};

export default routingHints;
