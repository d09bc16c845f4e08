// The [query_analytics] config slice: keys, defaults and validation (errors name the key).

import { ModuleConfigError } from "../../core/hooks.ts";

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

type Check = (key: string, v: unknown) => boolean | number;

const got = (v: unknown) => `, got ${JSON.stringify(v)}`;

function bool(key: string, v: unknown): boolean {
  if (typeof v !== "boolean") throw new ModuleConfigError(key, `expected true or false${got(v)}`);
  return v;
}

function int(min: number, max: number): Check {
  return (key, v) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new ModuleConfigError(key, `expected an integer ${min}..${max}${got(v)}`);
    return v;
  };
}

function num(min: number, max: number): Check {
  return (key, v) => {
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) throw new ModuleConfigError(key, `expected a number ${min}..${max}${got(v)}`);
    return v;
  };
}

const KEYS: Record<keyof QueryAnalyticsSettings, Check> = {
  enabled: bool,
  max_queries: int(1, 1_000_000),
  slow_query_ms: num(0, 86_400_000),
  slow_query_sample: num(0, 1),
  log_parameters: bool,
  max_slow_queries: int(0, 100_000),
  n_plus_one_threshold: (key, v) => {
    const n = int(0, 1_000_000)(key, v) as number;
    if (n === 1) throw new ModuleConfigError(key, "expected 0 (off) or an integer >= 2, got 1");
    return n;
  },
  n_plus_one_window_ms: num(1, 3_600_000),
  max_n_plus_one_reports: int(1, 100_000),
  show_limit: int(1, 10_000),
};

/** Validate a [query_analytics] section; unknown keys are errors. */
export function configure(section: Readonly<Record<string, unknown>>): QueryAnalyticsSettings {
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, value] of Object.entries(section)) {
    const check = Object.hasOwn(KEYS, key) ? KEYS[key as keyof QueryAnalyticsSettings] : undefined;
    if (check === undefined) throw new ModuleConfigError(key, `unknown key (valid: ${Object.keys(KEYS).join(", ")})`);
    out[key] = check(key, value);
  }
  return out as unknown as QueryAnalyticsSettings;
}
