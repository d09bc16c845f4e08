// Query analytics module: per-fingerprint calls, latency percentiles, rows and errors; slow-query log; N+1 detection; GET /queries and SHOW QUERIES.

import { HOOKS_API_VERSION, type Hooks, type ProxyModule, type QueryCtx, type ResultCtx, type SessionCtx } from "../../core/hooks.ts";
import { config, configure, type QueryAnalyticsSettings } from "./config.ts";
import { NPlusOneDetector } from "./n-plus-one.ts";
import { MAX_TEXT, RecentShapes } from "./recent.ts";
import type { QueryShape } from "../../sql/fingerprint.ts";
import { templateOf } from "../../sql/template.ts";
import { TemplateIndex } from "../../sql/template-index.ts";
import { shapeOf } from "./shapes.ts";
import { SlowLog } from "./slow-log.ts";
import { rowsOf, StatsStore, type QueryStats } from "./stats.ts";
import { json, limitParam, nPlusOneView, orderParam, showQueries, slowView, topQueries } from "./views.ts";

export type { QueryAnalyticsSettings } from "./config.ts";

/** Default page of GET /queries and GET /queries/slow. */
const DEFAULT_LIMIT = 100;

/** The module's state and hooks: one instance per start. */
export class QueryAnalytics implements Hooks {
  readonly store: StatsStore;
  readonly slow: SlowLog;
  readonly nPlusOne: NPlusOneDetector | null;
  /** Per session id, the shapes it ran lately. */
  private readonly recent = new Map<number, RecentShapes>();
  /** Shapes by template, across sessions: a text with new literals is not lexed again (a session's recent few are looked at first). */
  private readonly templates = new TemplateIndex<QueryShape>(10_000);

  constructor(readonly settings: QueryAnalyticsSettings) {
    this.store = new StatsStore(settings.max_queries);
    this.slow = new SlowLog(settings.slow_query_ms, settings.slow_query_sample, settings.max_slow_queries, settings.log_parameters);
    this.nPlusOne = settings.n_plus_one_threshold > 0 ? new NPlusOneDetector(settings.n_plus_one_threshold, settings.n_plus_one_window_ms, settings.max_n_plus_one_reports) : null;
  }

  onResult(r: ResultCtx): void {
    // Nothing ran (a Parse/Describe-only request, an empty query): pg_stat_statements does not count it either.
    if (r.commandTag === "" && r.rows === 0 && r.error === undefined) return;
    const q = r.query;
    const s = q.session;
    const now = performance.now();
    const e = this.entryOf(q, s, now);
    const rows = rowsOf(r.commandTag, r.rows);
    e.add(r.durationMs, rows, r.error?.code, now);
    if (r.answeredBy !== undefined) e.answered++;
    if (this.nPlusOne !== null && e.repeatable && this.nPlusOne.see(s, e, now)) e.nPlusOne++;
    if (this.slow.wants(r.durationMs)) this.slow.add(r, e, rows);
  }

  /** The statistics entry of the request: from the session's recent shapes when it repeats one, else by its shape. */
  private entryOf(q: QueryCtx, s: SessionCtx, now: number): QueryStats {
    const text = q.sql();
    let recent = this.recent.get(s.id);
    if (recent === undefined) this.recent.set(s.id, (recent = new RecentShapes()));
    const bytes = q.sqlBytes();
    const hit = recent.find(text, bytes);
    if (hit !== null) {
      if (!hit.entry.live) hit.entry = this.store.entry(hit.shape, s.database, s.user, now);
      return hit.entry;
    }
    const learned = text.length <= MAX_TEXT ? this.templates.learnedAt(bytes, 0, bytes.length, null) : undefined;
    let shape: QueryShape;
    let template = null;
    if (learned !== undefined) {
      shape = learned.value;
      template = learned.template;
    } else {
      shape = shapeOf(q);
      if (shape.constants > 0 && text.length <= MAX_TEXT) template = templateOf(text, shape.text, shape.constants);
      if (template !== null) this.templates.add(text, template, shape);
    }
    const e = this.store.entry(shape, s.database, s.user, now);
    recent.remember(text, template, shape, e);
    return e;
  }

  onClose(s: SessionCtx): void {
    this.recent.delete(s.id);
    this.nPlusOne?.close(s);
  }

  reset(): number {
    this.slow.reset();
    this.nPlusOne?.reset();
    return this.store.reset();
  }
}

const queryAnalytics: ProxyModule<QueryAnalyticsSettings> = {
  name: "query_analytics",
  feature: "query-analytics",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,
  config,
  configure,

  start(settings, host) {
    const qa = new QueryAnalytics(settings);
    const { store, slow } = qa;
    host.addRoute("GET", "/queries", { summary: "Statements by fingerprint with calls, times, rows and errors", query: { order: "total (default), mean, calls, rows or errors", limit: "How many (>= 1)" }, returns: "The top statements" }, (_req, url) => {
      const order = orderParam(url);
      if (order instanceof Response) return order;
      const limit = limitParam(url, DEFAULT_LIMIT, store.max);
      if (limit instanceof Response) return limit;
      return json(200, {
        queries: topQueries(store, order, limit),
        order,
        tracked: store.size,
        max_queries: store.max,
        evicted: store.evicted,
        since: new Date(performance.timeOrigin + store.since).toISOString(),
      });
    });
    host.addRoute("GET", "/queries/slow", { summary: "The slow-query log (statements over slow_query_ms)", query: { limit: "How many (>= 1)" }, returns: "Threshold, sampling and the slow statements, newest first" }, (_req, url) => {
      const limit = limitParam(url, DEFAULT_LIMIT, settings.max_slow_queries);
      if (limit instanceof Response) return limit;
      return json(200, {
        slow_query_ms: slow.thresholdMs,
        slow_query_sample: slow.sample,
        logged: slow.logged,
        queries: slow.list().slice(0, limit).map(slowView),
      });
    });
    host.addRoute("GET", "/queries/n-plus-one", { summary: "N+1 query patterns detected per session", returns: "Detector settings and its reports" }, () => {
      const d = qa.nPlusOne;
      return json(200, {
        enabled: d !== null,
        threshold: settings.n_plus_one_threshold,
        window_ms: settings.n_plus_one_window_ms,
        detected: d?.detected ?? 0,
        tracked_sessions: d?.trackedSessions ?? 0,
        reports: d === null ? [] : d.list().map((r) => nPlusOneView(r, settings.n_plus_one_window_ms)),
      });
    });
    host.addRoute("POST", "/queries/reset", { summary: "Forget the statistics gathered so far", returns: "{status: reset, queries: how many were dropped}" }, () => json(200, { status: "reset", queries: qa.reset() }));
    host.addShow("queries", () => showQueries(store, settings.show_limit));
    return qa;
  },
};

export default queryAnalytics;
