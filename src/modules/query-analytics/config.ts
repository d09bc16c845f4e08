// The [query_analytics] config section: keys, ranges and defaults, and the one check spanning a key's values.

import { ModuleConfigError } from "../../core/hooks.ts";
import { moduleConfig } from "../../config/schema.ts";

export interface QueryAnalyticsSettings {
  enabled: boolean;
  /** Most (fingerprint, database, user) entries kept; the least used 5% go when it is full. */
  max_queries: number;
  /** Requests at least this long (ms) go to the slow-query log; 0 turns the log off. */
  slow_query_ms: number;
  /** Share (0..1) of slow requests that are logged and kept. */
  slow_query_sample: number;
  /** Log the client's text with its literals instead of the normalised text. */
  log_parameters: boolean;
  /** Slow requests kept for GET /queries/slow. */
  max_slow_queries: number;
  /** Same fingerprint from one session this many times within the window: an N+1 report; 0 turns detection off. */
  n_plus_one_threshold: number;
  n_plus_one_window_ms: number;
  /** N+1 reports kept for GET /queries/n-plus-one. */
  max_n_plus_one_reports: number;
  /** Rows of SHOW QUERIES (top by total time). */
  show_limit: number;
}

export const DEFAULTS: Readonly<QueryAnalyticsSettings> = {
  enabled: true,
  max_queries: 5000,
  slow_query_ms: 1000,
  slow_query_sample: 1,
  log_parameters: false,
  max_slow_queries: 100,
  n_plus_one_threshold: 10,
  n_plus_one_window_ms: 1000,
  max_n_plus_one_reports: 100,
  show_limit: 20,
};

export const config = moduleConfig<QueryAnalyticsSettings>("Per-fingerprint statistics, slow-query log and N+1 detection.", {
  max_queries: { kind: "int", default: DEFAULTS.max_queries, min: 1, max: 1_000_000, doc: "Most (fingerprint, database, user) entries kept; the least used 5% go when it is full." },
  slow_query_ms: { kind: "number", default: DEFAULTS.slow_query_ms, min: 0, max: 86_400_000, doc: "Requests at least this long (ms) go to the slow-query log (0 = log off)." },
  slow_query_sample: { kind: "number", default: DEFAULTS.slow_query_sample, min: 0, max: 1, doc: "Share (0..1) of slow requests that are logged and kept." },
  log_parameters: { kind: "bool", default: DEFAULTS.log_parameters, doc: "Log the client's text with its literals instead of the normalised text." },
  max_slow_queries: { kind: "int", default: DEFAULTS.max_slow_queries, min: 0, max: 100_000, doc: "Slow requests kept for GET /queries/slow." },
  n_plus_one_threshold: { kind: "int", default: DEFAULTS.n_plus_one_threshold, min: 0, max: 1_000_000, doc: "Same fingerprint from one session this many times within the window: an N+1 report (0 = off; else >= 2)." },
  n_plus_one_window_ms: { kind: "number", default: DEFAULTS.n_plus_one_window_ms, min: 1, max: 3_600_000, doc: "Window (ms) of N+1 detection." },
  max_n_plus_one_reports: { kind: "int", default: DEFAULTS.max_n_plus_one_reports, min: 1, max: 100_000, doc: "N+1 reports kept for GET /queries/n-plus-one." },
  show_limit: { kind: "int", default: DEFAULTS.show_limit, min: 1, max: 10_000, doc: "Rows of SHOW QUERIES (top by total time)." },
});

/** Checks beyond each key's own range, on the validated section. */
export function configure(section: Readonly<Record<string, unknown>>): QueryAnalyticsSettings {
  const s = section as unknown as QueryAnalyticsSettings;
  if (s.n_plus_one_threshold === 1) throw new ModuleConfigError("n_plus_one_threshold", "expected 0 (off) or an integer >= 2, got 1");
  return s;
}
