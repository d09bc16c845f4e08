// Per-query statistics keyed by (fingerprint, database, user), as pg_stat_statements keys them; bounded, least used evicted.

import type { QueryShape } from "../../sql/fingerprint.ts";
import { redactSecrets } from "../../protocol/secrets.ts";
import { newHistogram, quantiles, record } from "./histogram.ts";

/** What a statement is for: the statement kind, with reads split into analytics and vector searches. */
export type Intent = "read" | "write" | "ddl" | "transaction" | "admin" | "analytics" | "vector" | "other";

export function intentOf(shape: QueryShape): Intent {
  if (shape.kind === "read") return shape.vector ? "vector" : shape.analytics ? "analytics" : "read";
  return shape.kind;
}

/** Longest normalised text kept per entry (memory stays bounded with huge statements). */
export const MAX_QUERY_TEXT = 65536;

/** Rows of a request: the count in its command tag ("SELECT 3", "INSERT 0 5", "COPY 7"), else the DataRows sent. */
export function rowsOf(tag: string, dataRows: number): number {
  const end = tag.length;
  let i = end;
  let n = 0;
  let scale = 1;
  while (i > 0) {
    const c = tag.charCodeAt(i - 1);
    if (c < 48 || c > 57) break; // not '0'..'9'
    n += (c - 48) * scale;
    scale *= 10;
    i--;
  }
  return i < end && i > 0 && tag.charCodeAt(i - 1) === 32 ? n : dataRows; // ' ' before the count
}

export class QueryStats {
  calls = 0;
  totalMs = 0;
  minMs = Infinity;
  maxMs = 0;
  rows = 0;
  errors = 0;
  /** SQLSTATE -> count, made on the first error. */
  errorCodes: Map<string, number> | null = null;
  /** Calls a module answered without a server (query cache hits). */
  answered = 0;
  /** N+1 episodes seen for this query. */
  nPlusOne = 0;
  /** Repetition of this intent can be an N+1 pattern (BEGIN, SET, DDL repeat for other reasons). */
  readonly repeatable: boolean;
  lastSeen: number;
  readonly hist = newHistogram();
  /** The next entry with the same fingerprint (another database or user). */
  next: QueryStats | null = null;
  /** False once evicted or reset: holders of the object look it up again. */
  live = true;

  constructor(
    readonly fingerprint: string,
    readonly query: string,
    readonly database: string,
    readonly user: string,
    readonly intent: Intent,
    /** performance.now() of the first call. */
    readonly firstSeen: number,
  ) {
    this.lastSeen = firstSeen;
    this.repeatable = intent === "read" || intent === "write" || intent === "analytics" || intent === "vector";
  }

  add(ms: number, rows: number, errorCode: string | undefined, now: number): void {
    this.calls++;
    this.totalMs += ms;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
    this.rows += rows;
    this.lastSeen = now;
    record(this.hist, ms);
    if (errorCode !== undefined) {
      this.errors++;
      const codes = (this.errorCodes ??= new Map());
      codes.set(errorCode, (codes.get(errorCode) ?? 0) + 1);
    }
  }

  /** p50, p95, p99 in ms. */
  percentiles(): number[] {
    return quantiles(this.hist, this.calls, PS, this.minMs, this.maxMs);
  }
}

const PS = [0.5, 0.95, 0.99];

export class StatsStore {
  /** fingerprint -> first entry of its chain (one per database and user). */
  private readonly byFingerprint = new Map<string, QueryStats>();
  size = 0;
  /** Entries dropped to make room since the last reset. */
  evicted = 0;
  /** performance.now() of the last reset (or start). */
  since = performance.now();

  constructor(readonly max: number) {}

  /** The entry of this shape for (database, user), made (evicting if full) on first sight. */
  entry(shape: QueryShape, database: string, user: string, now: number): QueryStats {
    const head = this.byFingerprint.get(shape.fingerprint);
    for (let e: QueryStats | null = head ?? null; e !== null; e = e.next) if (e.database === database && e.user === user) return e;
    if (this.size >= this.max) return this.evictThenAdd(shape, database, user, now);
    // Utility statements keep their literals when normalised: passwords in them are masked here, once per entry.
    const text = redactSecrets(shape.text.length > MAX_QUERY_TEXT ? shape.text.slice(0, MAX_QUERY_TEXT) : shape.text);
    const e = new QueryStats(shape.fingerprint, text, database, user, intentOf(shape), now);
    e.next = head ?? null;
    this.byFingerprint.set(shape.fingerprint, e);
    this.size++;
    return e;
  }

  private evictThenAdd(shape: QueryShape, database: string, user: string, now: number): QueryStats {
    // As pg_stat_statements does: drop the least used 5% at once, so a full store does not sort per new query.
    const victims = this.all().sort((a, b) => a.calls - b.calls || a.lastSeen - b.lastSeen);
    const n = Math.max(1, Math.floor(this.max * 0.05));
    for (let i = 0; i < n && i < victims.length; i++) this.remove(victims[i]!);
    this.evicted += Math.min(n, victims.length);
    return this.entry(shape, database, user, now);
  }

  private remove(e: QueryStats): void {
    const head = this.byFingerprint.get(e.fingerprint);
    if (head === e) {
      if (e.next === null) this.byFingerprint.delete(e.fingerprint);
      else this.byFingerprint.set(e.fingerprint, e.next);
    } else {
      let p = head ?? null;
      while (p !== null && p.next !== e) p = p.next;
      if (p === null) return;
      p.next = e.next;
    }
    e.next = null;
    e.live = false;
    this.size--;
  }

  all(): QueryStats[] {
    const out: QueryStats[] = [];
    for (const head of this.byFingerprint.values()) for (let e: QueryStats | null = head; e !== null; e = e.next) out.push(e);
    return out;
  }

  reset(): number {
    const n = this.size;
    for (const e of this.all()) e.live = false;
    this.byFingerprint.clear();
    this.size = 0;
    this.evicted = 0;
    this.since = performance.now();
    return n;
  }
}
