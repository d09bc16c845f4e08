// The routing decision: a pure function of the request's kind and the cluster view.

import type { NodeView } from "../cluster/cluster.ts";
import type { Balancer, LoadInfo } from "./balancers.ts";

export interface RouteRequest {
  /** The request may write (or its kind is unknown): only the primary will do. */
  write: boolean;
}

export interface RouteContext {
  nodes: readonly NodeView[];
  readWriteSplit: boolean;
  balancer: Balancer;
  load: LoadInfo;
}

function usable(n: NodeView): boolean {
  return n.health === "up" && !n.drained;
}

/**
 * Writes go to the primary. Reads go to a usable standby picked by the balancer when the split
 * is on; with no usable standby they fall back to the primary. The primary is returned even when
 * it is down: the pool's wait and errors then speak for it.
 */
export function route(req: RouteRequest, ctx: RouteContext): NodeView {
  const primary = ctx.nodes.find((n) => n.role === "primary") ?? ctx.nodes[0]!;
  if (req.write || !ctx.readWriteSplit) return primary;
  const standbys = ctx.nodes.filter((n) => n.role === "standby" && usable(n));
  if (standbys.length === 0) return primary;
  return ctx.balancer.pick(standbys, ctx.load) ?? primary;
}
