// Test fixture: node views and status probes as the cluster would hold them, for pure routing and failover tests.

import type { NodeStatus, NodeView } from "../../src/cluster/cluster.ts";

/** A status probe's answer: a caught-up standby on timeline 1 unless overridden. */
export function nodeStatus(o: Partial<NodeStatus> = {}): NodeStatus {
  return { inRecovery: true, timeline: 1, systemId: "42", walLsn: 1000, receiveLsn: 1000, replayLsn: 1000, replicas: [], ...o };
}

/** An up standby with no lag and no status unless overridden. */
export function nodeView(name: string, over: Partial<NodeView> = {}): NodeView {
  return {
    name,
    host: "127.0.0.1",
    port: 5432,
    role: "standby",
    sync: false,
    weight: 1,
    health: "up",
    drained: false,
    lagBytes: 0,
    lagSeconds: 0,
    latencyMs: 1,
    lastError: "",
    fenced: false,
    status: null,
    ...over,
  };
}
