// The cache's admin surface: GET /cache, POST /cache/invalidate (table, fingerprint, pattern or all) and SHOW CACHE.

import type { ModuleHost } from "../../core/hooks.ts";
import type { MemoStats } from "./memo.ts";
import { globTest, type CacheStore } from "./store.ts";
import type { WalInvalidation } from "./wal.ts";

export interface CacheCounters {
  /** Requests that could have been cached but the session could not use the cache (transaction, unknown settings...). */
  bypassed: number;
  /** Requests whose statement may not be cached. */
  uncacheable: number;
  /** Replies over max_result_bytes (streamed through). */
  tooLarge: number;
  /** Replies a standby gave: not stored (it may not have replayed a commit the cache already saw). */
  fromStandby: number;
  fills: number;
  /** Fills of replies a standby gave (it had replayed the newest known commit that wrote their tables). */
  standbyFills: number;
  /** Microseconds from the request's decision start to its reply built, of recent hits (ring). */
  readonly hitMicros: Float64Array;
  hitCount: number;
}

/** What the module keeps besides the tiers, each within a fixed bound: entries now, bytes where estimated, and the bounds. */
export interface Bookkeeping extends MemoStats {
  sessions: { entries: number; statements: number; statement_bytes: number; max_statement_bytes_per_session: number };
  relations: { entries: number; max_entries_per_database_and_kind: number };
  table_generations: { entries: number; max_entries: number };
  write_positions: { entries: number; max_entries: number };
}

/** p50 and p99 of the recent hit times (µs). */
function hitPercentiles(c: CacheCounters): { p50: number; p99: number; samples: number } {
  const n = Math.min(c.hitCount, c.hitMicros.length);
  if (n === 0) return { p50: 0, p99: 0, samples: 0 };
  const xs = Array.from(c.hitMicros.subarray(0, n)).sort((a, b) => a - b);
  const at = (q: number) => xs[Math.min(n - 1, Math.floor(q * n))]!;
  return { p50: at(0.5), p99: at(0.99), samples: n };
}

export function cacheReport(store: CacheStore, counters: CacheCounters, limits: { l1: number; l2: number }, top = 10, wal: WalInvalidation | null = null, bookkeeping: (() => Bookkeeping) | null = null) {
  const t = store.tiers;
  const s = t.stats();
  const c = t.counters;
  const hits = c.hitsL1 + c.hitsL2;
  const lookups = hits + c.misses;
  return {
    tiers: {
      l1: { entries: s.l1.entries, bytes: s.l1.bytes, max_bytes: limits.l1, hits: c.hitsL1, evictions: c.evictionsL1 },
      l2: { entries: s.l2.entries, bytes: s.l2.bytes, max_bytes: limits.l2, hits: c.hitsL2, evictions: c.evictionsL2 },
    },
    hits,
    misses: c.misses,
    hit_ratio: lookups === 0 ? 0 : hits / lookups,
    expired: c.expired,
    fills: counters.fills,
    standby_fills: counters.standbyFills,
    hit_us: hitPercentiles(counters),
    bypassed: counters.bypassed,
    uncacheable: counters.uncacheable,
    too_large: counters.tooLarge,
    from_standby: counters.fromStandby,
    invalidations: { events: store.invalidations.events, entries: store.invalidations.entries, raced_fills: store.invalidations.racedFills },
    invalidation: wal === null ? "proxy" : "wal",
    // Per database: its stream's state; a database whose stream does not run is not cached, and `problem` says why.
    ...(wal === null ? {} : { wal: { problem: wal.problem(), transactions: wal.invalidations, databases: wal.report() } }),
    ...(bookkeeping === null ? {} : { bookkeeping: bookkeeping() }),
    top: t.top(top).map((x) => ({ tier: x.tier, fingerprint: x.entry.fingerprint, query: x.entry.structure, tables: x.entry.tables, hits: x.entry.hits, bytes: x.bytes })),
  };
}

/** Drop what a POST /cache/invalidate body names: {"table"}, {"fingerprint"}, {"pattern"} or {} for everything. */
export function invalidate(store: CacheStore, body: Record<string, unknown>): { invalidated: number } | { error: string } {
  const keys = Object.keys(body);
  if (keys.length > 1 || keys.some((k) => k !== "table" && k !== "fingerprint" && k !== "pattern")) return { error: 'expected one of {"table": ...}, {"fingerprint": ...}, {"pattern": ...} or {}' };
  const v = body[keys[0] ?? ""];
  if (keys.length === 1 && (typeof v !== "string" || v === "")) return { error: `${keys[0]} must be a non-empty string` };
  if (keys.length === 0) return { invalidated: store.written("all") };
  if (body.table !== undefined) return { invalidated: store.written([(v as string).slice((v as string).lastIndexOf(".") + 1)]) };
  if (body.fingerprint !== undefined) {
    const fp = (v as string).toLowerCase();
    return { invalidated: store.dropMatching((e) => e.fingerprint === fp) };
  }
  const test = globTest(v as string);
  return { invalidated: store.dropMatching((e) => test(e.structure)) };
}

/** The cache's series for GET /metrics. */
export function metricsText(store: CacheStore, counters: CacheCounters, limits: { l1: number; l2: number }, wal: WalInvalidation | null = null): string {
  const t = store.tiers;
  const s = t.stats();
  const c = t.counters;
  const lines: string[] = [];
  const series = (name: string, type: "counter" | "gauge", help: string, samples: [string, number][]) => {
    lines.push(`# HELP heliosproxy_cache_${name} ${help}`, `# TYPE heliosproxy_cache_${name} ${type}`);
    for (const [labels, v] of samples) lines.push(`heliosproxy_cache_${name}${labels} ${v}`);
  };
  series("hits_total", "counter", "Requests answered from the cache, by tier.", [['{tier="l1"}', c.hitsL1], ['{tier="l2"}', c.hitsL2]]);
  series("misses_total", "counter", "Cacheable requests the cache could not answer.", [["", c.misses]]);
  series("evictions_total", "counter", "Entries pushed out of a tier by its byte limit.", [['{tier="l1"}', c.evictionsL1], ['{tier="l2"}', c.evictionsL2]]);
  series("invalidations_total", "counter", "Writes, failovers and admin calls that dropped entries.", [["", store.invalidations.events]]);
  series("invalidated_entries_total", "counter", "Entries dropped by invalidations.", [["", store.invalidations.entries]]);
  series("fills_total", "counter", "Replies stored.", [["", counters.fills]]);
  series("bypassed_total", "counter", "Cacheable requests of sessions that could not use the cache (transaction, unknown settings).", [["", counters.bypassed]]);
  series("uncacheable_total", "counter", "Requests whose statement may not be cached.", [["", counters.uncacheable]]);
  series("too_large_total", "counter", "Replies over max_result_bytes, streamed through.", [["", counters.tooLarge]]);
  series("entries", "gauge", "Entries held, by tier.", [['{tier="l1"}', s.l1.entries], ['{tier="l2"}', s.l2.entries]]);
  series("bytes", "gauge", "Bytes held, by tier.", [['{tier="l1"}', s.l1.bytes], ['{tier="l2"}', s.l2.bytes]]);
  series("max_bytes", "gauge", "Byte limit, by tier.", [['{tier="l1"}', limits.l1], ['{tier="l2"}', limits.l2]]);
  if (wal !== null) {
    const dbs = Object.entries(wal.report());
    series("wal_streaming", "gauge", "1 while the database's replication stream runs (its reads are cached only then).", dbs.map(([db, r]) => [`{database="${db.replace(/["\\\n]/g, "_")}"}`, r.state === "streaming" ? 1 : 0]));
    series("wal_transactions_total", "counter", "Committed transactions from the replication streams that dropped entries.", [["", wal.invalidations]]);
  }
  return lines.join("\n") + "\n";
}

export function registerAdmin(host: ModuleHost, store: CacheStore, counters: CacheCounters, limits: { l1: number; l2: number }, wal: WalInvalidation | null = null, bookkeeping: (() => Bookkeeping) | null = null): void {
  host.addRoute("GET", "/cache", { summary: "Query cache: tiers, bytes, entries, hit ratio, invalidations, WAL streams, bookkeeping, top entries", query: { top: "How many top entries to list (1..1000, default 10)" }, returns: "The cache report" }, (_req, url) => {
    const top = Math.min(Math.max(Number(url.searchParams.get("top") ?? 10) || 10, 1), 1000);
    return Response.json(cacheReport(store, counters, limits, top, wal, bookkeeping));
  });
  host.addRoute(
    "POST",
    "/cache/invalidate",
    {
      summary: "Drop cache entries: all (empty body), or those reading a table, of a fingerprint, or whose statement matches a glob pattern",
      body: { type: "object", maxProperties: 1, properties: { table: { type: "string" }, fingerprint: { type: "string" }, pattern: { type: "string" } } },
      returns: "{invalidated: number of entries dropped}",
    },
    async (req) => {
    let body: unknown = {};
    const text = await req.text();
    if (text.trim() !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        return Response.json({ error: "the body is not JSON" }, { status: 400 });
      }
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) return Response.json({ error: "expected a JSON object" }, { status: 400 });
    const r = invalidate(store, body as Record<string, unknown>);
    return Response.json(r, { status: "error" in r ? 400 : 200 });
    },
  );
  host.addMetrics?.(() => metricsText(store, counters, limits, wal));
  host.addShow("cache", () => {
    const r = cacheReport(store, counters, limits, 0);
    return {
      columns: ["tier", "entries", "bytes", "max_bytes", "hits", "misses", "evictions", "invalidations"],
      rows: [
        ["l1", r.tiers.l1.entries, r.tiers.l1.bytes, r.tiers.l1.max_bytes, r.tiers.l1.hits, r.misses, r.tiers.l1.evictions, r.invalidations.entries],
        ["l2", r.tiers.l2.entries, r.tiers.l2.bytes, r.tiers.l2.max_bytes, r.tiers.l2.hits, null, r.tiers.l2.evictions, null],
      ],
    };
  });
}
