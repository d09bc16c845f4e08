// Alarms an operator must see: any part of the proxy raises and clears them by key; the dashboard and GET /alarms list them.

export type AlarmSeverity = "critical" | "warning";

export interface Alarm {
  /** Stable identity ("primary_down", "patroni_unreachable", "breaker_open:node2"). */
  readonly key: string;
  readonly severity: AlarmSeverity;
  /** One short line ("No safe failover candidate"). */
  readonly title: string;
  /** What is wrong and what to do, in a sentence or two. */
  readonly detail: string;
  /** Milliseconds since the epoch when it was first raised (kept while it stays raised). */
  readonly since: number;
}

export interface AlarmInput {
  readonly key: string;
  readonly severity: AlarmSeverity;
  readonly title: string;
  readonly detail: string;
}

/** The raised alarms, by key. Raising a raised key updates its text and keeps its start. */
export class AlarmBoard {
  private readonly raised = new Map<string, Alarm>();

  raise(a: AlarmInput, now = Date.now()): void {
    const before = this.raised.get(a.key);
    this.raised.set(a.key, { ...a, since: before?.since ?? now });
  }

  clear(key: string): void {
    this.raised.delete(key);
  }

  /** Make the alarms whose key starts with `prefix` exactly `current`: raise the new, keep the old, clear the gone. */
  reconcile(prefix: string, current: readonly AlarmInput[], now = Date.now()): void {
    const keep = new Set(current.map((a) => a.key));
    for (const key of [...this.raised.keys()]) if (key.startsWith(prefix) && !keep.has(key)) this.raised.delete(key);
    for (const a of current) this.raise(a, now);
  }

  /** Critical first, then the oldest first. */
  list(): Alarm[] {
    return [...this.raised.values()].sort((a, b) => (a.severity === b.severity ? a.since - b.since : a.severity === "critical" ? -1 : 1));
  }
}
