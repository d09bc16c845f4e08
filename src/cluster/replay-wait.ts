// Waiting for a standby to replay up to a commit position (read-your-writes "local", "global" and "wait" modes): re-probe until one has or time runs out.

import type { NodeView } from "./cluster.ts";

/** What a wait reads: the usable standbys now, a node's latest view, and probes to refresh them. */
export interface ReplayWaitDeps {
  readonly health: { probeNow(node: string): Promise<unknown> } | null;
  routeContext(): { readonly standbys: readonly NodeView[] };
  readonly cluster: { node(name: string): NodeView | undefined };
}

/** How often the standbys are probed again while a read waits. */
const PROBE_EVERY_MS = 5;

/**
 * Resolve once some usable standby reports a replay position >= `lsn`, or after `waitMs`. The
 * probes share the health checker's connections; concurrent waits share its probes.
 */
export async function waitForReplay(ctx: ReplayWaitDeps, lsn: number, waitMs: number): Promise<boolean> {
  const health = ctx.health;
  if (health === null) return false;
  const deadline = performance.now() + waitMs;
  for (;;) {
    const standbys = ctx.routeContext().standbys;
    if (standbys.some((n) => (n.status?.replayLsn ?? -1) >= lsn)) return true;
    if (performance.now() >= deadline || standbys.length === 0) return false;
    await Promise.all(standbys.map((n) => health.probeNow(n.name)));
    if (standbys.some((n) => (ctx.cluster.node(n.name)?.status?.replayLsn ?? -1) >= lsn)) return true;
    await Bun.sleep(Math.min(PROBE_EVERY_MS, Math.max(0, deadline - performance.now())));
  }
}
