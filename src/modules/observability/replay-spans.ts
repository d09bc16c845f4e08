// Replay spans: each finished session recovery (ha-tr) as a span in the trace of that session's requests, covering the replayed requests' spans.

import type { RecoveryRecord } from "../../cluster/ha/replay-registry.ts";
import type { TraceParent } from "./traceparent.ts";
import type { RequestTracer, Work } from "./tracer.ts";

/**
 * Recovery spans for one proxy. The replay's own requests reach the result hooks as they run (each
 * with its request span), and the record of the recovery comes after the last of them: so the replay
 * span cannot be their parent, and takes the parent of the session's latest request instead.
 */
export class RecoverySpans {
  /** Per live session, the trace parent of its latest request (null: none given, a root span). */
  private readonly parents = new Map<number, TraceParent | null>();

  constructor(private readonly tracer: RequestTracer) {}

  /** A request of the session finished under `parent` (onResult). */
  note(session: number, parent: TraceParent | null): void {
    this.parents.set(session, parent);
  }

  /** A recovery just finished (onRecovery). */
  add(r: RecoveryRecord): void {
    this.tracer.recordWork(replayWork(r, performance.timeOrigin + performance.now()), this.parents.get(r.session) ?? null);
  }

  /** The session ended (onClose). */
  close(session: number): void {
    this.parents.delete(session);
  }
}

/** The span of one recovery that finished at `end` (epoch ms). */
export function replayWork(r: RecoveryRecord, end: number): Work {
  return {
    name: "replay",
    start: end - r.duration_ms,
    end,
    attributes: {
      "db.namespace": r.database,
      "db.user": r.user,
      "heliosproxy.session": r.session,
      "heliosproxy.replay.outcome": r.outcome,
      "heliosproxy.replay.reason": r.reason,
      "heliosproxy.replay.from_node": r.from,
      "heliosproxy.replay.to_node": r.to,
      "heliosproxy.replay.requests": r.replayed,
      "heliosproxy.replay.in_flight": r.in_flight,
      "heliosproxy.replay.attempts": r.attempts,
    },
    ...(r.sqlstate !== "" ? { sqlstate: r.sqlstate } : {}),
  };
}
