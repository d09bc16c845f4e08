// Transaction replay settings, the live journals of sessions and the record of past recoveries (GET /journal).

/** `[transaction_replay]` as the proxy uses it. */
export interface ReplaySettings {
  /** Bytes of client messages one open transaction may journal; past it the transaction is not replayable. */
  maxJournalBytes: number;
  /** Recovery attempts per lost server connection (a replay that loses its new server tries again; one run again after a deadlock or serialization failure counts one more). */
  maxAttempts: number;
  /** Seconds a recovery may take from the lost connection to the replayed last statement. */
  maxReplaySecs: number;
  /** Functions whose results differ on a second run: a transaction that called one is not replayed. */
  volatileFunctions: readonly string[];
  /** Show parameter values of journaled statements at GET /journal (off: only their count). */
  journalParameters: boolean;
  /** Finished recoveries kept for GET /journal. */
  retain: number;
  /**
   * A transaction that fails with a deadlock (40P01) or a serialization failure (40001) is rolled
   * back and replayed by the proxy (replies checked as after a failover) instead of failing.
   */
  retryConflicts: boolean;
}

export const DEFAULT_VOLATILE_FUNCTIONS: readonly string[] = [
  "nextval",
  "setval",
  "now",
  "current_timestamp",
  "localtimestamp",
  "current_time",
  "localtime",
  "clock_timestamp",
  "statement_timestamp",
  "transaction_timestamp",
  "timeofday",
  "random",
  "gen_random_uuid",
  "uuid_generate_v1",
  "uuid_generate_v4",
  "txid_current",
  "pg_current_xact_id",
  "pg_backend_pid",
  "dblink",
  "dblink_exec",
];

export const DEFAULT_REPLAY_SETTINGS: ReplaySettings = {
  maxJournalBytes: 1 << 20,
  maxAttempts: 5,
  maxReplaySecs: 30,
  volatileFunctions: DEFAULT_VOLATILE_FUNCTIONS,
  journalParameters: false,
  retain: 100,
  retryConflicts: false,
};

/** One journaled request (Query, or Parse/Bind/Execute... up to Sync) as GET /journal shows it. */
export interface JournaledStatement {
  /** SQL text (a Bind shows the text of its statement). */
  sql: string;
  /** Bound parameter values (text; null for SQL NULL, "<binary>" for binary ones), only with journalParameters. */
  params?: (string | null)[];
  /** Parameter count, always shown. */
  param_count: number;
  /** Replies the client has had for it, and whether its ReadyForQuery came. */
  replies: number;
  done: boolean;
}

/** A session's open journal. */
export interface JournalView {
  session: number;
  user: string;
  database: string;
  bytes: number;
  /** Transaction id read before COMMIT ("" none yet, "null" read-only). */
  xid: string;
  replayable: boolean;
  /** Why not replayable ("" when it is). */
  reason: string;
  statements: JournaledStatement[];
}

export type RecoveryOutcome =
  /** The open transaction was replayed on the new server and every reply matched. */
  | "replayed"
  /** The COMMIT in flight had committed: the client got its success, nothing was replayed. */
  | "committed"
  /** A ROLLBACK was in flight: it was answered on the new server (the lost connection had rolled back). */
  | "rolled_back"
  /** Nothing was in flight: the session moved (state re-applied) with no replay. */
  | "migrated"
  /** Replay refused or failed verification: the client got 40001. */
  | "refused"
  /** The outcome of a COMMIT could not be known: the client got 08007. */
  | "unknown"
  /** The session could not continue (no primary in time, state that cannot move): it was closed. */
  | "closed"
  /**
   * A deadlock or serialization failure was hidden: the transaction ran again (again after each
   * conflict in a run, at most max_attempts times) and every reply matched. With the attempts spent,
   * the last run's conflict went to the client: its SQLSTATE is the record's.
   */
  | "retried";

/** One finished recovery of a session after its server connection was lost. */
export interface RecoveryRecord {
  at: string;
  session: number;
  user: string;
  database: string;
  outcome: RecoveryOutcome;
  /** SQLSTATE the client got ("" when none). */
  sqlstate: string;
  reason: string;
  /** Node of the lost server and of the new one. */
  from: string;
  to: string;
  /** Requests replayed, and how many of them the client had not had a full reply to. */
  replayed: number;
  in_flight: number;
  xid: string;
  attempts: number;
  duration_ms: number;
  statements: JournaledStatement[];
  /**
   * SQLSTATE (40P01 or 40001) of each deadlock or serialization failure met while the transaction
   * was run again, in order: each made it run again from its start, the last one went to the client
   * when attempts ran out.
   */
  conflicts: string[];
}

/** A session whose journal can be inspected. */
export interface JournalSource {
  journalView(withParams: boolean): JournalView | null;
}

/** Settings, live sessions with a journal, and the last `retain` recoveries. */
export class ReplayRegistry {
  readonly sessions = new Set<JournalSource>();
  readonly records: RecoveryRecord[] = [];
  readonly counts: Record<RecoveryOutcome, number> = { replayed: 0, committed: 0, rolled_back: 0, migrated: 0, refused: 0, unknown: 0, closed: 0, retried: 0 };

  /** Called with each finished recovery, after it is counted and kept (the module host hands it to the modules' onRecovery). */
  private readonly listeners: ((r: RecoveryRecord) => void)[] = [];

  constructor(public settings: ReplaySettings) {}

  record(r: RecoveryRecord): void {
    this.counts[r.outcome]++;
    this.records.push(r);
    while (this.records.length > this.settings.retain) this.records.shift();
    for (const l of this.listeners) l(r);
  }

  onRecord(listener: (r: RecoveryRecord) => void): void {
    this.listeners.push(listener);
  }

  /** Open journals of live sessions (those with at least one journaled request). */
  open(): JournalView[] {
    const out: JournalView[] = [];
    for (const s of this.sessions) {
      const v = s.journalView(this.settings.journalParameters);
      if (v !== null && v.statements.length > 0) out.push(v);
    }
    return out;
  }
}
