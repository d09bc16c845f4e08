// Transaction replay module: the [transaction_replay] settings, turning on the session journal, GET /journal, SHOW JOURNAL and SHOW RECOVERIES.

import { DEFAULT_REPLAY_SETTINGS, ReplayRegistry, type JournalView, type RecoveryRecord, type ReplaySettings } from "../../cluster/ha/replay-registry.ts";
import { JournalTap } from "./session-tap.ts";
import { HOOKS_API_VERSION, ModuleConfigError, type ProxyModule, type ShowResult } from "../../core/hooks.ts";
import { moduleConfig } from "../../config/schema.ts";

export interface TransactionReplaySettings {
  enabled: boolean;
  replay: ReplaySettings;
}

/** The section under its config names. */
interface ReplaySection {
  enabled: boolean;
  max_journal_bytes: number;
  max_attempts: number;
  max_replay_secs: number;
  volatile_functions: string[];
  journal_parameters: boolean;
  retain: number;
  retry_conflicts: boolean;
}

const D = DEFAULT_REPLAY_SETTINGS;
const FUNCTION_NAME = /^[a-z_][a-z0-9_]*$/;

export const config = moduleConfig<ReplaySection>("Transaction journal, replay on the new primary after a failover, session migration.", {
  max_journal_bytes: { kind: "int", default: D.maxJournalBytes, min: 1024, max: Number.MAX_SAFE_INTEGER, doc: "Bytes of client messages one open transaction may journal; past it the transaction is not replayable." },
  max_attempts: { kind: "int", default: D.maxAttempts, min: 1, max: 100, doc: "Recovery attempts per lost server connection (a replay run again after a deadlock or serialization failure counts one more); with retry_conflicts, runs again per transaction." },
  max_replay_secs: { kind: "number", default: D.maxReplaySecs, min: 0, minExclusive: true, max: 3600, doc: "Seconds a recovery may take from the lost connection to the replayed last statement." },
  volatile_functions: { kind: "strings", default: D.volatileFunctions, doc: "Functions whose results differ on a second run: a transaction that called one is not replayed." },
  journal_parameters: { kind: "bool", default: D.journalParameters, doc: "Show parameter values of journaled statements at GET /journal (off: only their count)." },
  retain: { kind: "int", default: D.retain, min: 0, max: 10_000, doc: "Finished recoveries kept for GET /journal." },
  retry_conflicts: { kind: "bool", default: D.retryConflicts, doc: "Roll back and replay a transaction that fails with a deadlock or serialization failure." },
});

/** Settings from the validated section; function names lower-cased, each a plain identifier (no schema, no quotes). */
export function configure(section: Readonly<Record<string, unknown>>): TransactionReplaySettings {
  const s = section as unknown as ReplaySection;
  const volatileFunctions = s.volatile_functions.map((name, i) => {
    const lower = name.toLowerCase();
    if (!FUNCTION_NAME.test(lower)) throw new ModuleConfigError(`volatile_functions.${i}`, `expected a function name of letters, digits and _, got ${JSON.stringify(name)}`);
    return lower;
  });
  return {
    enabled: s.enabled,
    replay: {
      maxJournalBytes: s.max_journal_bytes,
      maxAttempts: s.max_attempts,
      maxReplaySecs: s.max_replay_secs,
      volatileFunctions,
      journalParameters: s.journal_parameters,
      retain: s.retain,
      retryConflicts: s.retry_conflicts,
    },
  };
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
    columns: ["session", "at", "outcome", "sqlstate", "reason", "from", "to", "replayed", "in_flight", "attempts", "conflicts", "duration_ms"],
    rows: records
      .slice()
      .reverse()
      .map((r) => [r.session, r.at, r.outcome, r.sqlstate, r.reason, r.from, r.to, r.replayed, r.in_flight, r.attempts, r.conflicts.join(","), r.duration_ms]),
  };
}

const noStore = { headers: { "cache-control": "no-store" } };

const transactionReplay: ProxyModule<TransactionReplaySettings> = {
  name: "transaction_replay",
  feature: "ha-tr",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,
  config,
  configure,

  start(settings, host) {
    const registry = new ReplayRegistry(settings.replay);
    host.tapRequests((session) => new JournalTap(session, registry), registry);
    host.addRoute("GET", "/journal", { summary: "Transaction replay: settings, counts, open journaled transactions and recent recoveries", query: { session: "Only this session id" }, returns: "The journal report" }, (_req, url) => {
      const raw = url.searchParams.get("session");
      if (raw !== null && !/^\d{1,15}$/.test(raw))
        return Response.json({ error: "bad_request", message: `session: expected a session id, got ${JSON.stringify(raw)}` }, { status: 400, ...noStore });
      return Response.json(journalReport(registry, raw === null ? null : Number(raw)), noStore);
    });
    host.addShow("journal", () => showJournal(registry.open()));
    host.addShow("recoveries", () => showRecoveries(registry.records));
    // The journal rides on each session's request tap; the module adds no hooks to the query path.
    return {};
  },
};

export default transactionReplay;
