// The routing decision: a pure function of the request's kind and the cluster view.

import type { NodeView } from "../cluster/cluster.ts";
import type { Balancer, LoadInfo } from "./balancers.ts";
import type { RouteHint } from "../core/hooks.ts";

export interface RouteRequest {
  /** The request may write (or its kind is unknown): only the primary will do. */
  write: boolean;
  /** A module's wish (routing hints, schema routing): obeyed for reads only. */
  hint?: RouteHint | null;
}

export interface RouteContext {
  primary: NodeView;
  /** Standbys that may take reads now: up, not drained, not a fenced old primary, weight above 0. */
  standbys: readonly NodeView[];
  readWriteSplit: boolean;
  balancer: Balancer;
  load: LoadInfo;
}

/** The routing view of a set of nodes (built once per cluster change, not per request). */
export function routeView(nodes: readonly NodeView[]): { primary: NodeView; standbys: NodeView[] } {
  const primary = nodes.find((n) => n.role === "primary") ?? nodes[0]!;
  const standbys = nodes.filter((n) => n.role === "standby" && n.health === "up" && !n.drained && !n.fenced && n.weight > 0);
  return { primary, standbys };
}

/**
 * Writes go to the primary. Reads go to a usable standby picked by the balancer when the split
 * is on; with no usable standby they fall back to the primary. The primary is returned even when
 * it is down: the pool's wait and errors then speak for it.
 */
export function route(req: RouteRequest, ctx: RouteContext): NodeView {
  if (req.write) return ctx.primary;
  if (req.hint) return hinted(req.hint, ctx);
  if (!ctx.readWriteSplit || ctx.standbys.length === 0) return ctx.primary;
  return ctx.balancer.pick(ctx.standbys, ctx.load) ?? ctx.primary;
}

/** Within the hint's lag limits (unknown lag does not qualify when a limit is set). */
function fresh(n: NodeView, h: RouteHint): boolean {
  if (n.role === "primary") return true;
  if (h.minLsn !== undefined && h.minLsn > 0 && (n.status === null || n.status.replayLsn === null || n.status.replayLsn < h.minLsn)) return false;
  if (h.maxLagBytes !== undefined && (n.lagBytes === null || n.lagBytes > h.maxLagBytes)) return false;
  if (h.maxLagMs !== undefined && (n.lagSeconds === null || n.lagSeconds * 1000 > h.maxLagMs)) return false;
  return true;
}

/**
 * A read with a hint: "primary"; "standby" (a usable standby within the lag limits, else the
 * primary); "any" (the primary counts as a candidate too); or a node name (that node when it is
 * usable and within limits, else as without the node hint).
 */
function hinted(h: RouteHint, ctx: RouteContext): NodeView {
  if (h.nodes !== undefined) {
    const group = h.nodes;
    if (group.includes(ctx.primary.name) && group.length === 1) return ctx.primary;
    const pool = ctx.standbys.filter((n) => group.includes(n.name) && fresh(n, h));
    if (group.includes(ctx.primary.name) && ctx.primary.health === "up") pool.push(ctx.primary);
    return ctx.balancer.pick(pool, ctx.load) ?? ctx.primary;
  }
  const t = h.target;
  if (t === "primary") return ctx.primary;
  if (t === "default" && !ctx.readWriteSplit) return ctx.primary;
  if (t !== "standby" && t !== "any" && t !== "default") {
    if (t === ctx.primary.name) return ctx.primary;
    const n = ctx.standbys.find((s) => s.name === t);
    if (n !== undefined && fresh(n, h)) return n;
    return hinted({ ...h, target: "standby" }, ctx);
  }
  const pool = ctx.standbys.filter((n) => fresh(n, h));
  if (t === "any" && ctx.primary.health === "up") pool.push(ctx.primary);
  return ctx.balancer.pick(pool, ctx.load) ?? ctx.primary;
}
