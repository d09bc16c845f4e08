// POST /failover and /switchover sent to a proxy that is not the fleet leader: passed on to the leader's admin API, or answered with where it is.

import type { Fleet } from "./fleet.ts";

/** Set on a forwarded request: the receiver answers itself and never forwards again. */
export const FORWARDED_HEADER = "x-heliosproxy-forwarded-by";

type Reply = { status: number; body: unknown };

/**
 * The leader's answer to the same request (the caller's token passed along), or 503 saying where
 * the leader is when it cannot be asked. Null when this proxy leads or the request was forwarded to it.
 */
export async function forwardToLeader(fleet: Fleet, path: string, body: unknown, headers: Headers, timeoutSecs: number): Promise<Reply | null> {
  if (fleet.isLeader || headers.get(FORWARDED_HEADER) !== null) return null;
  const leader = fleet.leader();
  const where = { leader: leader?.name ?? null, leader_admin_url: leader?.admin_url ?? null };
  if (leader === null || leader.name === fleet.name)
    return { status: 503, body: { error: "no_leader", message: `the fleet has no acting leader now (${fleet.refusal() ?? "election in progress"}); try again`, ...where } };
  const auth = headers.get("authorization");
  try {
    const res = await fetch(`${leader.admin_url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", [FORWARDED_HEADER]: fleet.name, ...(auth ? { authorization: auth } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutSecs * 1000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: passed on as text
    }
    return { status: res.status, body: typeof parsed === "object" && parsed !== null ? { ...parsed, forwarded_to: leader.name } : { message: parsed, forwarded_to: leader.name } };
  } catch (e) {
    return { status: 503, body: { error: "leader_unreachable", message: `the fleet leader ${leader.name} did not answer at ${leader.admin_url}: ${(e as Error).message}`, ...where } };
  }
}
