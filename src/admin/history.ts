// The last hour of request rate, latency percentiles and errors by SQLSTATE, sampled server-side so the dashboard keeps its history across reloads.

import { LATENCY_BUCKETS } from "../util/latency.ts";
import type { ConnectionStats } from "../server/connection.ts";

/** One step of history. */
export interface HistoryPoint {
  /** End of the step, milliseconds since the epoch. */
  readonly t: number;
  /** Requests answered per second over the step. */
  readonly qps: number;
  /** Latency percentiles (ms) of the requests timed in the step; null when none was. */
  readonly p50_ms: number | null;
  readonly p95_ms: number | null;
  readonly p99_ms: number | null;
  /** Requests timed in the step (one in LATENCY_SAMPLE_EVERY is). */
  readonly timed: number;
  /** ErrorResponses relayed to clients in the step, by SQLSTATE. */
  readonly errors: Readonly<Record<string, number>>;
}

/** What a sample reads of one pool. */
interface PoolCounters {
  queryCount: number;
  buckets: number[];
  errors: Map<string, number>;
}

export const HISTORY_STEP_MS = 5000;
export const HISTORY_SPAN_MS = 3_600_000;

/** The q-quantile (0..1) of a bucketed histogram, in ms, interpolated inside its bucket; null when empty. */
export function quantileMs(buckets: readonly number[], q: number): number | null {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let acc = 0;
  for (let i = 0; i < buckets.length; i++) {
    const c = buckets[i]!;
    if (c > 0 && acc + c >= rank) {
      const lo = i === 0 ? 0 : LATENCY_BUCKETS[i - 1]!;
      // Above the last bound: report that bound (the histogram cannot say more).
      if (i >= LATENCY_BUCKETS.length) return lo * 1000;
      const hi = LATENCY_BUCKETS[i]!;
      return (lo + ((hi - lo) * (rank - acc)) / c) * 1000;
    }
    acc += c;
  }
  return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]! * 1000;
}

/** Samples the pools' counters every step and keeps the differences for the last hour. */
export class MetricHistory {
  private readonly points: HistoryPoint[] = [];
  private readonly last = new WeakMap<object, PoolCounters>();
  private lastAt = 0;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly pools: () => Iterable<{ readonly stats: ConnectionStats }>,
    readonly stepMs = HISTORY_STEP_MS,
    private readonly onTick: () => void = () => {},
  ) {}

  start(): void {
    this.sample(Date.now());
    this.timer = setInterval(() => {
      this.sample(Date.now());
      this.onTick();
    }, this.stepMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Points oldest first. */
  list(): readonly HistoryPoint[] {
    return this.points;
  }

  /** Read every pool and record what changed since the last sample (the first sample only sets the baseline). */
  sample(now: number): void {
    const first = this.lastAt === 0;
    let queries = 0;
    const buckets = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
    const errors: Record<string, number> = {};
    for (const p of this.pools()) {
      const s = p.stats;
      const cur: PoolCounters = { queryCount: s.queryCount, buckets: Array.from(s.latency.counts), errors: new Map(s.errors) };
      const prev = this.last.get(p);
      this.last.set(p, cur);
      // A pool seen for the first time counts from zero; a counter that went down was reset (counts from zero too).
      const diff = (value: number, before: number | undefined) => (before === undefined || value < before ? value : value - before);
      queries += diff(cur.queryCount, prev?.queryCount);
      cur.buckets.forEach((c, i) => (buckets[i]! += diff(c, prev?.buckets[i])));
      for (const [code, n] of cur.errors) {
        const d = diff(n, prev?.errors.get(code));
        if (d > 0) errors[code] = (errors[code] ?? 0) + d;
      }
    }
    const elapsed = now - this.lastAt;
    this.lastAt = now;
    if (first || elapsed <= 0) return;
    this.points.push({
      t: now,
      qps: (queries * 1000) / elapsed,
      p50_ms: quantileMs(buckets, 0.5),
      p95_ms: quantileMs(buckets, 0.95),
      p99_ms: quantileMs(buckets, 0.99),
      timed: buckets.reduce((a, b) => a + b, 0),
      errors,
    });
    while (this.points.length > 0 && this.points[0]!.t <= now - HISTORY_SPAN_MS) this.points.shift();
  }
}
