// Latency histogram in log buckets (8 per doubling from 10 µs to ~168 s): one small Uint32Array per query, percentiles within ~4.5%.

/** Buckets per doubling: a bucket spans a factor of 2^(1/8) ≈ 1.09. */
const SUB = 8;
/** Lower edge of the first log bucket (ms); anything at or below lands in bucket 0. */
const MIN_MS = 0.01;
/** Log buckets: 24 doublings above MIN_MS (0.01 ms .. ~167,772 ms). */
const LOG_BUCKETS = 24 * SUB;
/** Bucket 0 (<= MIN_MS), LOG_BUCKETS log buckets, one overflow bucket. */
export const HISTOGRAM_BUCKETS = LOG_BUCKETS + 2;

// Representative value of each bucket: the geometric middle of its edges.
const MIDDLE = new Float64Array(HISTOGRAM_BUCKETS);
MIDDLE[0] = MIN_MS;
for (let i = 1; i <= LOG_BUCKETS; i++) MIDDLE[i] = MIN_MS * 2 ** ((i - 0.5) / SUB);
MIDDLE[LOG_BUCKETS + 1] = Infinity;

export function newHistogram(): Uint32Array {
  return new Uint32Array(HISTOGRAM_BUCKETS);
}

/** The bucket of a duration in milliseconds. */
export function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0; // also NaN
  const i = 1 + Math.floor(Math.log2(ms / MIN_MS) * SUB);
  return i > LOG_BUCKETS ? LOG_BUCKETS + 1 : i;
}

export function record(h: Uint32Array, ms: number): void {
  const i = bucketOf(ms);
  if (h[i]! < 0xffffffff) h[i]!++;
}

/**
 * Quantiles `ps` (ascending, each in (0, 1]) of the `n` durations recorded in `h`, as the middle of
 * the bucket holding each rank, clamped to [min, max]: non-decreasing in p, and never outside the
 * observed range.
 */
export function quantiles(h: Uint32Array, n: number, ps: readonly number[], min: number, max: number): number[] {
  const out: number[] = [];
  if (n <= 0) return ps.map(() => 0);
  let seen = 0;
  let i = 0;
  for (const p of ps) {
    const rank = Math.max(1, Math.ceil(p * n));
    while (i < HISTOGRAM_BUCKETS - 1 && seen + h[i]! < rank) seen += h[i++]!;
    const v = MIDDLE[i]!;
    out.push(v < min ? min : v > max ? max : v);
  }
  return out;
}
