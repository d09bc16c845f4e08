// What the admin API and console show of the analytics: GET /queries (ordered, limited), /queries/slow, /queries/n-plus-one, SHOW QUERIES.

import type { ShowResult } from "../../core/hooks.ts";
import type { NPlusOneReport } from "./n-plus-one.ts";
import { round3, type SlowQuery } from "./slow-log.ts";
import type { QueryStats, StatsStore } from "./stats.ts";

export const ORDERS = ["total", "calls", "mean", "p99"] as const;
export type Order = (typeof ORDERS)[number];

/** performance.now() as milliseconds since the epoch, in ISO form. */
const iso = (perfMs: number): string => new Date(performance.timeOrigin + perfMs).toISOString();

export interface QueryRow {
  query: string;
  fingerprint: string;
  calls: number;
  total_ms: number;
  mean_ms: number;
  min_ms: number;
  max_ms: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  rows: number;
  errors: number;
  error_codes: Record<string, number>;
  intent: string;
  database: string;
  user: string;
  n_plus_one: number;
  /** Calls answered by a module without a server (query cache hits); counted in calls too. */
  answered: number;
  first_seen: string;
  last_seen: string;
}

function row(e: QueryStats, pct: number[] = e.percentiles()): QueryRow {
  return {
    query: e.query,
    fingerprint: e.fingerprint,
    calls: e.calls,
    total_ms: round3(e.totalMs),
    mean_ms: round3(e.calls > 0 ? e.totalMs / e.calls : 0),
    min_ms: round3(e.calls > 0 ? e.minMs : 0),
    max_ms: round3(e.maxMs),
    p50_ms: round3(pct[0]!),
    p95_ms: round3(pct[1]!),
    p99_ms: round3(pct[2]!),
    rows: e.rows,
    errors: e.errors,
    error_codes: e.errorCodes === null ? {} : Object.fromEntries(e.errorCodes),
    intent: e.intent,
    database: e.database,
    user: e.user,
    n_plus_one: e.nPlusOne,
    answered: e.answered,
    first_seen: iso(e.firstSeen),
    last_seen: iso(e.lastSeen),
  };
}

/** The top `limit` entries by `order` (descending; ties by fingerprint, database, user). */
export function topQueries(store: StatsStore, order: Order, limit: number): QueryRow[] {
  const entries = store.all();
  const key =
    order === "calls"
      ? (e: QueryStats) => e.calls
      : order === "mean"
        ? (e: QueryStats) => e.totalMs / e.calls
        : order === "p99"
          ? (e: QueryStats) => e.percentiles()[2]!
          : (e: QueryStats) => e.totalMs;
  const keyed = entries.map((e) => ({ e, k: key(e) }));
  keyed.sort((a, b) => b.k - a.k || cmp(a.e.fingerprint, b.e.fingerprint) || cmp(a.e.database, b.e.database) || cmp(a.e.user, b.e.user));
  return keyed.slice(0, limit).map(({ e }) => row(e));
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export const SHOW_COLUMNS = ["query", "fingerprint", "calls", "total_ms", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "rows", "errors", "intent", "database", "user"] as const;

export function showQueries(store: StatsStore, limit: number): ShowResult {
  return { columns: SHOW_COLUMNS, rows: topQueries(store, "total", limit).map((r) => SHOW_COLUMNS.map((c) => r[c])) };
}

export function slowView(s: SlowQuery) {
  return {
    at: new Date(s.at).toISOString(),
    duration_ms: round3(s.durationMs),
    query: s.query,
    fingerprint: s.fingerprint,
    intent: s.intent,
    rows: s.rows,
    node: s.node,
    session_id: s.sessionId,
    user: s.user,
    database: s.database,
    application_name: s.applicationName,
    error: s.error,
  };
}

export function nPlusOneView(r: NPlusOneReport, windowMs: number) {
  return {
    fingerprint: r.fingerprint,
    query: r.query,
    session_id: r.sessionId,
    application_name: r.applicationName,
    user: r.user,
    database: r.database,
    count: r.count,
    window_ms: windowMs,
    first_at: iso(r.firstAt),
    last_at: iso(r.lastAt),
  };
}

// ---- HTTP -----------------------------------------------------------------------------------

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" };

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", { status, headers: JSON_HEADERS });
}

export const badRequest = (message: string): Response => json(400, { error: "bad_request", message });

/** `?limit=N` (1..max, default `def`): the number, or the error response. */
export function limitParam(url: URL, def: number, max: number): number | Response {
  const raw = url.searchParams.get("limit");
  if (raw === null) return Math.min(def, max);
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1) return badRequest(`limit: expected an integer >= 1, got ${JSON.stringify(raw)}`);
  return Math.min(n, Math.max(max, 1));
}

export function orderParam(url: URL): Order | Response {
  const raw = url.searchParams.get("order") ?? "total";
  return (ORDERS as readonly string[]).includes(raw) ? (raw as Order) : badRequest(`order: expected one of ${ORDERS.join(", ")}, got ${JSON.stringify(raw)}`);
}
