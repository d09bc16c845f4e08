// Transaction replay module: the [transaction_replay] settings, turning on the session journal, GET /journal, SHOW JOURNAL and SHOW RECOVERIES.

import { DEFAULT_REPLAY_SETTINGS, type JournalView, type RecoveryRecord, type ReplayRegistry, type ReplaySettings } from "../../cluster/ha/replay-registry.ts";
import { HOOKS_API_VERSION, ModuleConfigError, type ProxyModule, type ShowResult } from "../../core/hooks.ts";
import { boolKey, stringsKey, unknownKey } from "../config-keys.ts";

export interface TransactionReplaySettings {
  enabled: boolean;
  replay: ReplaySettings;
}

const KEYS = ["enabled", "max_journal_bytes", "max_attempts", "max_replay_secs", "volatile_functions", "journal_parameters", "retain", "retry_conflicts"];
const FUNCTION_NAME = /^[a-z_][a-z0-9_]*$/;

function intKey(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
    throw new ModuleConfigError(key, `expected an integer ${range}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function secondsKey(key: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > 3600) throw new ModuleConfigError(key, `expected a number of seconds > 0 and <= 3600, got ${JSON.stringify(v)}`);
  return v;
}

/** Function names, lower-cased; each a plain identifier (no schema, no quotes). */
function functionsKey(key: string, v: unknown): string[] {
  return stringsKey(key, v, "function names").map((name, i) => {
    const lower = name.toLowerCase();
    if (!FUNCTION_NAME.test(lower)) throw new ModuleConfigError(`${key}.${i}`, `expected a function name of letters, digits and _, got ${JSON.stringify(name)}`);
    return lower;
  });
}

/** Validate a [transaction_replay] section; unknown keys are errors. */
export function configure(section: Readonly<Record<string, unknown>>): TransactionReplaySettings {
  const r: ReplaySettings = { ...DEFAULT_REPLAY_SETTINGS };
  let enabled = true;
  for (const [key, v] of Object.entries(section)) {
    if (key === "enabled") enabled = boolKey(key, v);
    else if (key === "max_journal_bytes") r.maxJournalBytes = intKey(key, v, 1024, Number.MAX_SAFE_INTEGER);
    else if (key === "max_attempts") r.maxAttempts = intKey(key, v, 1, 100);
    else if (key === "max_replay_secs") r.maxReplaySecs = secondsKey(key, v);
    else if (key === "volatile_functions") r.volatileFunctions = functionsKey(key, v);
    else if (key === "journal_parameters") r.journalParameters = boolKey(key, v);
    else if (key === "retain") r.retain = intKey(key, v, 0, 10_000);
    else if (key === "retry_conflicts") r.retryConflicts = boolKey(key, v);
    else throw unknownKey(key, KEYS);
  }
  return { enabled, replay: r };
}

/** The settings under their config names. */
export function settingsView(s: ReplaySettings) {
  return {
    max_journal_bytes: s.maxJournalBytes,
    max_attempts: s.maxAttempts,
    max_replay_secs: s.maxReplaySecs,
    volatile_functions: s.volatileFunctions,
    journal_parameters: s.journalParameters,
    retain: s.retain,
    retry_conflicts: s.retryConflicts,
  };
}

/** GET /journal: settings, outcome counts, open journals and recent recoveries (newest first), optionally of one session. */
export function journalReport(registry: ReplayRegistry, session: number | null) {
  const mine = (x: { session: number }) => session === null || x.session === session;
  return {
    settings: settingsView(registry.settings),
    counts: registry.counts,
    open: registry.open().filter(mine),
    recent: registry.records.filter(mine).reverse(),
  };
}

export function showJournal(open: readonly JournalView[]): ShowResult {
  return {
    columns: ["session", "user", "database", "statements", "bytes", "xid", "replayable", "reason"],
    rows: open.map((j) => [j.session, j.user, j.database, j.statements.length, j.bytes, j.xid, j.replayable ? "yes" : "no", j.reason]),
  };
}

export function showRecoveries(records: readonly RecoveryRecord[]): ShowResult {
  return {
    columns: ["session", "at", "outcome", "sqlstate", "reason", "from", "to", "replayed", "in_flight", "duration_ms"],
    rows: records
      .slice()
      .reverse()
      .map((r) => [r.session, r.at, r.outcome, r.sqlstate, r.reason, r.from, r.to, r.replayed, r.in_flight, r.duration_ms]),
  };
}

const noStore = { headers: { "cache-control": "no-store" } };

const transactionReplay: ProxyModule<TransactionReplaySettings> = {
  name: "transaction_replay",
  feature: "ha-tr",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,
  configure,

  start(settings, host) {
    const registry = host.journalTransactions(settings.replay);
    host.addRoute("GET", "/journal", (_req, url) => {
      const raw = url.searchParams.get("session");
      if (raw !== null && !/^\d{1,15}$/.test(raw))
        return Response.json({ error: "bad_request", message: `session: expected a session id, got ${JSON.stringify(raw)}` }, { status: 400, ...noStore });
      return Response.json(journalReport(registry, raw === null ? null : Number(raw)), noStore);
    });
    host.addShow("journal", () => showJournal(registry.open()));
    host.addShow("recoveries", () => showRecoveries(registry.records));
    // The journal lives in the sessions; the module adds no hooks to the query path.
    return {};
  },
};

export default transactionReplay;
