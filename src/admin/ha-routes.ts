// Admin API for the primary: POST /failover, POST /switchover, GET /failovers, POST /topology/primary (manual), POST /topology/events (heliosdb).

import type { ProxyContext } from "../core/context.ts";
import { FailoverRefused } from "../cluster/failover.ts";
import { forwardToLeader } from "../cluster/coordination/forward.ts";
import { applyTopologyEvent, parseTopologyEvent, type TopologyEvent } from "../cluster/topology.ts";
import { log } from "../util/log.ts";

type Reply = { status: number; body: unknown };

const MAX_EVENTS = 1000;

/** The request's JSON body; {} when empty; a string when it is not JSON. */
export async function readJsonBody(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return "the body is not valid JSON";
  }
}

const bad = (message: string): Reply => ({ status: 400, body: { error: "bad_request", message } });
const conflict = (message: string, extra: Record<string, unknown> = {}): Reply => ({ status: 409, body: { error: "conflict", message, ...extra } });

/** {"target": "node2"} (optional): which standby to promote; POST /failover also takes {"force": true}. */
function targetOf(body: unknown, ctx: ProxyContext): string | undefined | Reply {
  if (typeof body === "string") return bad(body);
  if (typeof body !== "object" || body === null || Array.isArray(body)) return bad("expected a JSON object such as {\"target\": \"node2\"}");
  const t = (body as Record<string, unknown>).target;
  if (t === undefined || t === null) return undefined;
  if (typeof t !== "string" || ctx.cluster.node(t) === undefined)
    return bad(`target: expected one of ${ctx.cluster.snapshot().map((n) => n.name).join(", ")}, got ${JSON.stringify(t)}`);
  return t;
}

/** POST /failover and POST /switchover: run it (on the fleet leader: passed on there), answer with its record. */
export async function primaryChange(ctx: ProxyContext, kind: "failover" | "switchover", body: unknown, headers: Headers = new Headers()): Promise<Reply> {
  const fc = ctx.failover;
  if (fc === null) return conflict("the failover controller is not running");
  const target = targetOf(body, ctx);
  if (typeof target === "object") return target;
  const force = (body as Record<string, unknown>).force;
  if (force !== undefined && typeof force !== "boolean") return bad(`force: expected true or false, got ${JSON.stringify(force)}`);
  if (force !== undefined && kind === "switchover") return bad("force: only POST /failover takes it (a switchover needs a healthy primary)");
  if (ctx.fleet) {
    const forwarded = await forwardToLeader(ctx.fleet, `/${kind}`, body, headers, ctx.config.failover.promote_timeout_secs + ctx.config.failover.drain_timeout_secs + 10);
    if (forwarded !== null) return forwarded;
  }
  try {
    const record = kind === "failover" ? await fc.failover({ trigger: "api", target, force: force === true }) : await fc.switchover({ target });
    return { status: 200, body: record };
  } catch (e) {
    if (e instanceof FailoverRefused) {
      if (e.status === 400) return bad(e.message);
      return conflict(e.message, e.record ? { record: e.record } : {});
    }
    const last = fc.history().at(-1);
    return { status: 500, body: { error: "failed", message: (e as Error).message, record: last ?? null } };
  }
}

/** GET /failovers: history, what is running, the alarm, the buffer. */
export function failoversView(ctx: ProxyContext): Reply {
  const fc = ctx.failover;
  const b = ctx.buffer;
  return {
    status: 200,
    body: {
      policy: ctx.config.failover.policy,
      provider: ctx.config.topology.provider,
      epoch: ctx.cluster.epoch,
      primary: ctx.cluster.primary().name,
      in_progress: fc?.inProgress ?? null,
      alarm: ctx.fleet?.degraded() || fc?.alarm || null,
      fleet: ctx.fleet ? { leader: ctx.fleet.leader()?.name ?? null, is_leader: ctx.fleet.isLeader, record: ctx.fleet.record() } : null,
      buffer: { holding: b.active, reason: b.why || null, held: b.size, held_for_ms: Math.round(b.heldForMs()), ...b.stats },
      failovers: [...(fc?.history() ?? [])].reverse(),
    },
  };
}

/** POST /topology/primary {"node": "node2"}: the operator says who is primary (provider manual only). */
export async function setPrimary(ctx: ProxyContext, body: unknown): Promise<Reply> {
  if (ctx.config.topology.provider !== "manual")
    return conflict(`topology.provider is "${ctx.config.topology.provider}": the primary is set by the provider (use POST /failover or /switchover to move it)`);
  if (typeof body === "string") return bad(body);
  const node = (body as Record<string, unknown> | null)?.node;
  if (typeof node !== "string" || ctx.cluster.node(node) === undefined)
    return bad(`node: expected one of ${ctx.cluster.snapshot().map((n) => n.name).join(", ")}, got ${JSON.stringify(node)}`);
  ctx.cluster.setPrimary(node, "set by the admin API");
  log.warn(`primary set to ${node} via admin API`);
  const fleet = ctx.fleet ? { fleet: await ctx.fleet.sharePrimary(node) } : {};
  return { status: 200, body: { primary: node, epoch: ctx.cluster.epoch, ...fleet } };
}

/**
 * POST /topology/events (provider heliosdb): one event object or {"events": [...]}, applied in
 * order. The whole batch is validated before any of it applies.
 */
export function pushEvents(ctx: ProxyContext, body: unknown): Reply {
  if (ctx.config.topology.provider !== "heliosdb") return conflict(`topology.provider is "${ctx.config.topology.provider}", not "heliosdb": pushed events are refused`);
  if (typeof body === "string") return bad(body);
  const list = typeof body === "object" && body !== null && !Array.isArray(body) && Array.isArray((body as Record<string, unknown>).events)
    ? ((body as Record<string, unknown>).events as unknown[])
    : [body];
  if (list.length > MAX_EVENTS) return bad(`at most ${MAX_EVENTS} events per request, got ${list.length}`);
  const events: TopologyEvent[] = [];
  for (const [i, raw] of list.entries()) {
    const e = parseTopologyEvent(raw, ctx.cluster);
    if (typeof e === "string") return bad(list.length > 1 ? `events[${i}].${e}` : e);
    events.push(e);
  }
  for (const e of events) applyTopologyEvent(ctx.cluster, e);
  return { status: 200, body: { applied: events.length, primary: ctx.cluster.primary().name, epoch: ctx.cluster.epoch } };
}
