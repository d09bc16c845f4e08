// One session's ha-tr tap: journals its requests, stages the transaction-id and advisory-lock reads, follows session state to migrate, and recovers the session when its server is lost.

import { Fe, TxStatus } from "../../protocol/codes.ts";
import { queryMessage } from "../../protocol/messages.ts";
import { build } from "../../protocol/writer.ts";
import { XID_COLUMN, type ServerConnection, type Sink } from "../../server/connection.ts";
import { Pending } from "../../server/response-queue.ts";
import { errorResponse } from "../../protocol/errors.ts";
import { CONSUMED, type MessageView, type RequestTap, type Stage, type TappedSession } from "../../core/request-tap.ts";
import { Journal, startsWithCommit, volatileMatcherFor } from "../../cluster/ha/journal.ts";
import { ADVISORY_LOCKS_JSON_SQL, SessionMigration, migrationRelevant } from "../../cluster/ha/session-migration.ts";
import type { JournalSource, JournalView, ReplayRegistry } from "../../cluster/ha/replay-registry.ts";
import { SessionRecovery } from "./recovery.ts";

/** Pipelined before a COMMIT when transactions are journaled: the id the commit outcome is looked up by. */
const XID_QUERY = queryMessage("SELECT pg_current_xact_id_if_assigned()::text");
/** Appended to a client's Query that writes inside a transaction: the id comes back with its replies. */
const XID_TAIL = new TextEncoder().encode(`\n;SELECT pg_current_xact_id_if_assigned()::text AS "${XID_COLUMN}"\0`);
/** The proxy's own prepared transaction-id read, run before a writing extended request's Sync (the name no client statement gets). */
const XID_STATEMENT = "hp.xid";
const XID_PARSE = build((w) => w.msg(Fe.Parse).cstr(XID_STATEMENT).cstr("SELECT pg_current_xact_id_if_assigned()::text").int16(0).end());
const XID_RUN = build((w) => {
  w.msg(Fe.Bind).cstr(XID_STATEMENT).cstr(XID_STATEMENT).int16(0).int16(0).int16(0).end();
  w.msg(Fe.Execute).cstr(XID_STATEMENT).int32(0).end();
  w.msg(Fe.Close).byte(80).cstr(XID_STATEMENT).end();
});
/** Pipelined after requests that took or released advisory locks: the locks held, as one JSON value. */
const LOCKS_QUERY = queryMessage(ADVISORY_LOCKS_JSON_SQL);
const ROLLS_BACK = /^\s*(?:rollback|abort)\b(?!\s+to\b)/i;
/** Statements that assign a transaction id when they change something (a read-only SELECT does not; a SELECT calling a writing function is caught at COMMIT). */
const WRITES = /^\s*(?:insert|update|delete|merge|with|copy|create|alter|drop|truncate|lock|call|do|execute|grant|revoke|comment|refresh|reindex|cluster)\b/i;

export class JournalTap implements RequestTap, JournalSource {
  readonly journal: Journal;
  /** Session state a new server must be given besides SETs. */
  readonly migration = new SessionMigration();
  /** Session mode: named protocol statements as Parse messages, by name. */
  readonly sessionParses = new Map<string, Uint8Array>();
  /** Set while the session is being moved to a new server. */
  private recovery: SessionRecovery | null = null;
  /** A journal entry is open for the request at hand (its Query or Sync has not gone yet). */
  private journalOpen = false;
  /** Statements with session-level effects (LISTEN, PREPARE, DECLARE ... WITH HOLD...) not yet known to have committed. */
  private pendingMigration: string[] = [];
  private migrationErrors = 0;
  private migrationUndone = false;
  /** Advisory locks may have changed: read them after requests until one ends outside a transaction. */
  private readLocks = false;
  /** Read the transaction id after the request at hand (it wrote inside a transaction whose id is not known yet). */
  private xidAfter = false;

  constructor(
    private readonly sess: TappedSession,
    readonly registry: ReplayRegistry,
  ) {
    const rs = registry.settings;
    const j = (this.journal = new Journal(sess.out, rs.maxJournalBytes, volatileMatcherFor(rs.volatileFunctions)));
    if (rs.retryConflicts) j.retryConflicts(rs.maxAttempts, () => this.retryConflict());
    const m = this.migration;
    j.onCursorMoved = (e) => {
      const n = /^(?:FETCH|MOVE) (\d+)$/.exec(e.tag);
      if (n) m.cursorMoved(e.cursorSql, Number(n[1]), e.dataCrc, e.dataRows);
    };
    registry.sessions.add(this);
  }

  get replaying(): boolean {
    return this.journal.replaying;
  }

  get recovering(): boolean {
    return this.recovery !== null;
  }

  get replies(): Sink {
    return this.journal;
  }

  // ---- requests ---------------------------------------------------------------------------

  onMessage(m: MessageView, server: ServerConnection, stage: Stage, run: number): number {
    const type = m.type;
    if (type === Fe.Terminate || type === Fe.Flush) return run;
    const j = this.journal;
    const sess = this.sess;
    if (type === Fe.Close && sess.mode === "session" && m.b[m.pos + 5] === 83 && this.sessionParses.size > 0 && m.nameEnd() > 0) this.sessionParses.delete(m.statementName());
    const copy = type === Fe.CopyData || type === Fe.CopyDone || type === Fe.CopyFail;
    if (!this.journalOpen && !copy) {
      this.journalOpen = true;
      const text = m.sql();
      const fx = text === "" ? null : migrationRelevant(text);
      if (fx !== null) this.noteMigration(server, text, fx.tracked, fx.advisory);
      if (!j.replaying) {
        const e = j.begin(text);
        if (fx?.cursorMove === true) {
          e.cursorSql = text;
          e.dataCrc = this.migration.crcSeed(text);
        }
        if (type === Fe.Query && /^\s*copy\b/i.test(text)) j.unsafe ||= "it used COPY";
        if (e.commit && !e.commitLater && server.endpoint.name === sess.ctx.cluster.primary().name) run = this.askXid(server, m, stage, run);
      } else if (startsWithCommit(text)) run = this.askXid(server, m, stage, run);
      // Inside a transaction the id is read after its first write too, so a COMMIT lost early still has it.
      this.xidAfter = j.xidUnknown && WRITES.test(text) && (sess.txStatus !== TxStatus.Idle || j.entries.length > 1);
    }
    if (!j.replaying) j.add(m.b, m.pos, m.end);
    if (type === Fe.Query || type === Fe.Sync || type === Fe.FunctionCall) this.journalOpen = false;
    if (type === Fe.Sync && this.xidAfter) run = this.xidBeforeSync(server, m, stage, run);
    if (type === Fe.Parse && sess.mode === "session" && this.sessionParse(m, server, stage, run)) return CONSUMED;
    return run;
  }

  /** A replay that prepares again what is already there is answered here (true: the message is consumed); each named Parse is kept to prepare again on a new server. */
  private sessionParse(m: MessageView, server: ServerConnection, stage: Stage, run: number): boolean {
    const nameEnd = m.nameEnd();
    if (nameEnd <= m.pos + 5) return false;
    const name = m.statementName();
    const prior = this.sessionParses.get(name);
    const msg = m.b.subarray(m.pos, m.end);
    if (this.journal.replaying && prior !== undefined && prior.length === msg.length && Buffer.compare(prior, msg) === 0) {
      server.stats.clientParseCount++;
      stage.spill(m.b, run, m.pos);
      server.expect(Pending.FakeParseComplete);
      return true;
    }
    this.sessionParses.set(name, msg.slice());
    return false;
  }

  /** A request with session-level effects: they count once its transaction commits. */
  private noteMigration(server: ServerConnection, text: string, tracked: boolean, advisory: boolean): void {
    if (tracked) {
      if (this.pendingMigration.length === 0) {
        this.migrationErrors = server.errors;
        this.migrationUndone = false;
      }
      this.pendingMigration.push(text);
    } else if (this.pendingMigration.length > 0 && ROLLS_BACK.test(text)) this.migrationUndone = true;
    if (advisory) this.readLocks = true;
  }

  /** Stage the transaction-id read before the message at hand (a COMMIT); returns the new run start. */
  private askXid(server: ServerConnection, m: MessageView, stage: Stage, run: number): number {
    const j = this.journal;
    // Known already (read after the transaction's first write): the COMMIT needs no read of its own.
    if (j.xid.kind === "value") return run;
    run = stage.spill(m.b, run, m.pos);
    stage.put(XID_QUERY, 0, XID_QUERY.length);
    server.expect(Pending.InjectedXid);
    j.xidAsked(true, this.sess.ctx.cluster.epoch);
    return run;
  }

  /** Stage the proxy's transaction-id statement (prepared on this server once) ahead of the Sync at hand. */
  private xidBeforeSync(server: ServerConnection, m: MessageView, stage: Stage, run: number): number {
    this.xidAfter = false;
    run = stage.spill(m.b, run, m.pos);
    if (!this.sess.forwarder.knownPrepared(server, XID_STATEMENT)) {
      this.sess.forwarder.evictIfFull(server);
      stage.put(XID_PARSE, 0, XID_PARSE.length);
      server.prepared.set(XID_STATEMENT, true);
      server.expect(Pending.InjectedParse, XID_STATEMENT);
    }
    stage.put(XID_RUN, 0, XID_RUN.length);
    server.expect(Pending.InjectedBind);
    server.expect(Pending.InjectedXidExec);
    server.expect(Pending.InjectedClose);
    this.journal.xidAsked(false, this.sess.ctx.cluster.epoch);
    return run;
  }

  onQueryEnd(m: MessageView, server: ServerConnection, stage: Stage, run: number): boolean {
    if (!this.xidAfter) return false;
    // Inside a transaction, a writing Query whose transaction id is not known yet carries the read itself.
    this.xidAfter = false;
    stage.spill(m.b, run, m.pos);
    stage.putQueryWithTail(m.b, m.pos, m.end, XID_TAIL);
    server.expect(Pending.QueryXid);
    this.journal.xidAsked(false, this.sess.ctx.cluster.epoch);
    return true;
  }

  wantsReadsAfter(): boolean {
    return this.xidAfter || this.readLocks;
  }

  readsAfter(server: ServerConnection, stage: Stage): void {
    if (this.xidAfter) {
      this.xidAfter = false;
      stage.spill(XID_QUERY, 0, XID_QUERY.length);
      server.expect(Pending.InjectedXid);
      this.journal.xidAsked(false, this.sess.ctx.cluster.epoch);
    }
    if (this.readLocks) {
      stage.spill(LOCKS_QUERY, 0, LOCKS_QUERY.length);
      server.expect(Pending.InjectedLocks);
    }
  }

  onRaised(raise: Uint8Array, code: string, message: string, inTx: boolean): void {
    const j = this.journal;
    if (j.replaying) return;
    j.begin("").refused = { code, message, inTx };
    j.add(raise, 0, raise.length);
  }

  statementsDropped(name: string | null): void {
    if (name === null) this.sessionParses.clear();
    else this.sessionParses.delete(name);
  }

  // ---- replies ----------------------------------------------------------------------------

  onReady(server: ServerConnection, status: number): void {
    if (this.pendingMigration.length === 0) return;
    // Session-level effects count once their transaction ended without an error or a rollback.
    if (status === TxStatus.Failed) this.migrationUndone = true;
    if (status !== TxStatus.Idle || server.owed !== 0) return;
    if (!this.migrationUndone && server.errors === this.migrationErrors) for (const text of this.pendingMigration) this.migration.applied(text);
    this.pendingMigration = [];
  }

  valueRead(kind: Pending, value: string | null, status: number): void {
    if (kind === Pending.InjectedXid) {
      this.journal.xidRead(value, status !== TxStatus.Idle, this.sess.ctx.cluster.epoch);
    } else if (kind === Pending.InjectedLocks && value !== null && value !== "" && status === TxStatus.Idle) {
      // Outside a transaction only session-level locks remain.
      this.migration.setAdvisoryLocks(JSON.parse(value) as (string | null)[][]);
      this.readLocks = false;
    }
  }

  commitInFlight(): boolean {
    return this.journal.inFlight().some((e) => e.commit);
  }

  // ---- recovery ---------------------------------------------------------------------------

  /** What was in flight on the lost server never happened (the journal keeps the requests). */
  serverGone(): void {
    this.sess.forwarder.serverGone();
    // journalOpen stays: a request cut in the middle is journaled whole when the client sends its rest.
    this.pendingMigration = [];
    this.xidAfter = false;
  }

  onServerLost(server: ServerConnection, reason: string): boolean {
    if (this.recovery !== null) {
      this.recovery.lost();
      return true;
    }
    if (!this.sess.forwarding) return false;
    // Move to the primary of now, settling or replaying what was open.
    this.serverGone();
    this.journal.serverGone();
    this.sess.beginRecovery();
    this.recovery = new SessionRecovery(this.sess, this, server.endpoint.name, server.pid, reason);
    void this.recovery.run();
    return true;
  }

  /** A deadlock or serialization failure was kept from the client (retry_conflicts): run the transaction again. */
  private retryConflict(): void {
    const sess = this.sess;
    const s = sess.server;
    if (s === null || this.recovery !== null) {
      sess.fatal(errorResponse({ severity: "FATAL", code: "40001", message: "the transaction failed with a conflict and could not be run again" }));
      return;
    }
    sess.beginRecovery();
    const r = (this.recovery = new SessionRecovery(sess, this, s.endpoint.name, 0, "deadlock or serialization failure"));
    queueMicrotask(() => void r.retry(s));
  }

  /** The recovery is over: requests that waited go on. */
  recovered(): void {
    this.recovery = null;
    this.sess.endRecovery();
  }

  journalView(withParams: boolean): JournalView | null {
    const j = this.journal;
    const sess = this.sess;
    return {
      session: sess.pid,
      user: sess.user,
      database: sess.database,
      bytes: j.bytes,
      xid: j.xid.kind === "value" ? j.xid.xid : j.xid.kind === "null" ? "null" : "",
      replayable: j.unsafe === "",
      reason: j.unsafe,
      statements: j.statements(withParams),
    };
  }

  close(): void {
    this.registry.sessions.delete(this);
  }
}
