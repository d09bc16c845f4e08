// The routing decision: a pure function of the request's kind and the cluster view.

import type { NodeView } from "../cluster/cluster.ts";
import type { Balancer, LoadInfo } from "./balancers.ts";

export interface RouteRequest {
  /** The request may write (or its kind is unknown): only the primary will do. */
  write: boolean;
}

export interface RouteContext {
  primary: NodeView;
  /** Standbys that may take reads now: up, not drained, weight above 0. */
  standbys: readonly NodeView[];
  readWriteSplit: boolean;
  balancer: Balancer;
  load: LoadInfo;
}

/** The routing view of a set of nodes (built once per cluster change, not per request). */
export function routeView(nodes: readonly NodeView[]): { primary: NodeView; standbys: NodeView[] } {
  const primary = nodes.find((n) => n.role === "primary") ?? nodes[0]!;
  const standbys = nodes.filter((n) => n.role === "standby" && n.health === "up" && !n.drained && n.weight > 0);
  return { primary, standbys };
}

/**
 * Writes go to the primary. Reads go to a usable standby picked by the balancer when the split
 * is on; with no usable standby they fall back to the primary. The primary is returned even when
 * it is down: the pool's wait and errors then speak for it.
 */
export function route(req: RouteRequest, ctx: RouteContext): NodeView {
  if (req.write || !ctx.readWriteSplit || ctx.standbys.length === 0) return ctx.primary;
  return ctx.balancer.pick(ctx.standbys, ctx.load) ?? ctx.primary;
}
