// Client requests on their way to the server: framing, prepared-statement renaming, session tracking.

import { Fe, MAX_SMALL_MESSAGE, TxStatus } from "../protocol/codes.ts";
import { Errors, errorResponse } from "../protocol/errors.ts";
import { decodeAscii, readInt32, writeInt32 } from "../protocol/framing.ts";
import { queryMessage, readyForQuery } from "../protocol/messages.ts";
import { build } from "../protocol/writer.ts";
import { XID_COLUMN, type ServerConnection } from "../server/connection.ts";
import { Pending } from "../server/response-queue.ts";
import { Effect, scanEffects, soleStatement, type StatementSpan } from "../sql/session-effects.ts";
import { Lexer, Tok } from "../sql/lexer.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import { entryForParse, statementBytes, writeRenamed, type StatementEntry } from "./prepared.ts";
import { RequestCtx, resultOf, txLetter } from "./request-ctx.ts";
import type { QueryHooks } from "../core/module-host.ts";
import type { RouteHint } from "../core/hooks.ts";
import { parseSql } from "../sql/classify.ts";
import { returnServer } from "./reset.ts";
import { bindTextParams, withParams } from "./bound-settings.ts";
import type { Pool } from "../server/pool.ts";
import type { ClientSession } from "./session.ts";
import { startsWithCommit, type Journal } from "../cluster/ha/journal.ts";
import { ADVISORY_LOCKS_JSON_SQL, migrationRelevant } from "../cluster/ha/session-migration.ts";

const decoder = new TextDecoder();
/** Pipelined after writes for read-your-writes: the WAL position once the request has committed. */
const LSN_QUERY = queryMessage("SELECT (pg_current_wal_lsn() - '0/0')::text");
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
/** Pipelined after requests that took or released advisory locks (ha-tr): the locks held, as one JSON value. */
const LOCKS_QUERY = queryMessage(ADVISORY_LOCKS_JSON_SQL);
const ROLLS_BACK = /^\s*(?:rollback|abort)\b(?!\s+to\b)/i;
/** Statements that assign a transaction id when they change something (a read-only SELECT does not; a SELECT calling a writing function is caught at COMMIT). */
const WRITES = /^\s*(?:insert|update|delete|merge|with|copy|create|alter|drop|truncate|lock|call|do|execute|grant|revoke|comment|refresh|reindex|cluster)\b/i;

export class RequestForwarder {
  /** Extended-protocol messages sent since the last Sync: the server must stay. */
  midRequest = false;
  /** Client statement name -> shared server-side statement (pooled modes). */
  readonly statements = new Map<string, StatementEntry>();
  /** Allocated on the first rewrite; most sessions in transaction mode need it, idle ones don't. */
  private stage = new Uint8Array(0);
  private staged = -1; // -1: not staging this round; else bytes staged
  /** SET/RESET texts sent but not yet known to have committed. */
  private pendingSets: string[] = [];
  private pendingErrors = 0;
  private pendingDiscarded = false;
  /**
   * Statement names added or closed by requests PostgreSQL has not finished: entry number of the
   * message on the server queue, the name, and what the name meant before. Undone if skipped.
   */
  private nameChanges: { at: number; name: string; before: StatementEntry | undefined }[] = [];

  /**
   * What answers the request at hand instead of a server (a buffer timeout, a module's Reject or
   * Reply): messages sent before ReadyForQuery. Null normally.
   */
  private answer: Uint8Array | null = null;
  /** The answer is this error, raised through the attached server so it lands in order and fails the transaction. */
  private answerError: { code: string; message: string } | null = null;
  /** Module hooks ran for the request at hand (reset at its end). */
  private decided = false;
  /** The request at hand as modules saw it, and finished ones awaiting their ReadyForQuery (result hooks only). */
  private current: RequestCtx | null = null;
  private readonly inflight: RequestCtx[] = [];
  /** A module's routing wish for the request at hand. */
  routeHint: RouteHint | null = null;
  /** A module's replacement text for the simple Query at hand. */
  private rewrite: string | null = null;
  /** The request at hand already waited for a standby to replay the session's writes. */
  waitedForReplay = false;
  /** The request at hand was judged able to write when it got its server. */
  private requestWrites = false;
  /** A journal entry is open for the request at hand (its Query or Sync has not gone yet). */
  private journalOpen = false;
  /** Statements with session-level effects (LISTEN, PREPARE, DECLARE ... WITH HOLD...) not yet known to have committed. */
  private pendingMigration: string[] = [];
  private migrationErrors = 0;
  private migrationUndone = false;
  /** Advisory locks may have changed: read them after requests until one ends outside a transaction. */
  private readLocks = false;

  constructor(private readonly session: ClientSession) {}

  /**
   * Answer the request that is waiting for a server with this error: its messages are dropped up
   * to its Query or Sync, then the error and ReadyForQuery go to the client. The connection stays.
   */
  refuseRequest(error: Uint8Array): void {
    this.answer = error;
  }

  /** Fail the next request with this error, raised through the attached server so its transaction fails too. */
  failNextRequest(code: string, message: string): void {
    this.answer = errorResponse({ severity: "ERROR", code, message });
    this.answerError = { code, message };
    this.decided = false;
  }

  // ---- feature-module hooks ------------------------------------------------------------------

  /** Run the modules' onQuery hooks on the request starting at b[pos, msgEnd); first Reject/Reply wins. */
  private decide(hooks: QueryHooks, server: ServerConnection | null, type: number, b: Uint8Array, pos: number, msgEnd: number, end: number): void {
    this.decided = true;
    const sess = this.session;
    const q = new RequestCtx(sess.moduleView(), type === Fe.Query || type === Fe.FunctionCall ? "simple" : "extended", txLetter(sess.txStatus), this.requestText(type, b, pos, msgEnd), sess.ctx.shapes, parseSql);
    q.raw = b.subarray(pos, end);
    if (type === Fe.Bind && this.statements.size > 0) q.prepared = this.boundStatement(b, pos, msgEnd)?.parse ?? null;
    this.current = hooks.onResult.length > 0 ? q : null;
    try {
      this.runQueryHooks(hooks, q, server, type);
    } finally {
      if (this.current !== null) this.current.settle();
    }
  }

  private runQueryHooks(hooks: QueryHooks, q: RequestCtx, server: ServerConnection | null, type: number): void {
    for (const hook of hooks.onQuery) {
      const d = hook(q);
      if (!d) continue;
      if (d.kind === "reject") {
        if (server !== null) this.answerError = { code: d.sqlstate, message: d.message };
        this.answer = errorResponse({ severity: "ERROR", code: d.sqlstate, message: d.message });
        this.current = null;
        return;
      }
      if (d.kind === "reply") {
        // Only when nothing is owed: the answer must not overtake replies still coming.
        if (server !== null && server.owed > 0) continue;
        this.answer = d.messages;
        this.current = null;
        return;
      }
      if (d.kind === "route") this.routeHint = this.routeHint === null ? d : mergeHints(this.routeHint, d);
      else if (d.kind === "rewrite" && type === Fe.Query) this.rewrite ??= d.sql;
    }
  }

  /** The named statement the Bind at b[pos, msgEnd) executes, when the proxy keeps it. */
  private boundStatement(b: Uint8Array, pos: number, msgEnd: number): StatementEntry | undefined {
    const nameEnd = b.indexOf(0, pos + 5);
    const stmtEnd = nameEnd < 0 ? -1 : b.indexOf(0, nameEnd + 1);
    if (stmtEnd <= nameEnd + 1 || stmtEnd >= msgEnd) return undefined;
    return this.statements.get(decodeAscii(b, nameEnd + 1, stmtEnd));
  }

  /** The SQL a request starts with, as bytes: a Query's text, a Parse's, or the named statement a Bind uses. */
  private requestText(type: number, b: Uint8Array, pos: number, msgEnd: number): Uint8Array | null {
    if (type === Fe.Query) return b.subarray(pos + 5, msgEnd - 1);
    if (type === Fe.Parse || type === Fe.Bind) {
      const nameEnd = b.indexOf(0, pos + 5);
      if (nameEnd < 0 || nameEnd >= msgEnd) return null;
      if (type === Fe.Parse) {
        const textEnd = b.indexOf(0, nameEnd + 1);
        return textEnd < 0 || textEnd >= msgEnd ? null : b.subarray(nameEnd + 1, textEnd);
      }
      const entry = this.boundStatement(b, pos, msgEnd);
      return entry ? statementBytes(entry) : null;
    }
    return null;
  }

  /** Deliver the answer that replaced the request (its end has arrived). */
  private deliverAnswer(server: ServerConnection | null): void {
    const sess = this.session;
    if (server !== null && this.answerError !== null) {
      // Raised by the server: ordered after what it still owes, and it fails an open transaction as PostgreSQL would.
      const { code, message } = this.answerError;
      const raise = raiseQuery(code, message);
      server.out.write(raise);
      server.expect(Pending.Query);
      const j = sess.journal;
      if (j !== null && !j.replaying) {
        j.begin("").refused = { code, message, inTx: sess.txStatus !== TxStatus.Idle };
        j.add(raise, 0, raise.length);
      }
    } else {
      sess.out.write(this.answer!);
      sess.out.write(readyForQuery(sess.txStatus));
    }
    this.answer = null;
    this.answerError = null;
    this.midRequest = false;
    this.endRequest(false);
  }

  // ---- transaction journal (ha-tr) ---------------------------------------------------------

  /**
   * Journal b[pos, msgEnd) as part of the request at hand; before a COMMIT on the primary, stage
   * the transaction-id read it will be resolved by. Returns the new run start.
   */
  private journalMessage(j: Journal, server: ServerConnection, type: number, b: Uint8Array, pos: number, msgEnd: number, run: number): number {
    if (type === Fe.Terminate || type === Fe.Flush) return run;
    const copy = type === Fe.CopyData || type === Fe.CopyDone || type === Fe.CopyFail;
    if (!this.journalOpen && !copy) {
      this.journalOpen = true;
      const textBytes = this.requestText(type, b, pos, msgEnd);
      const text = textBytes === null ? "" : decoder.decode(textBytes);
      const m = this.session.migration;
      const fx = m === null || text === "" ? null : migrationRelevant(text);
      if (fx !== null) this.noteMigration(server, text, fx.tracked, fx.advisory);
      if (!j.replaying) {
        const sess = this.session;
        const e = j.begin(text);
        if (fx?.cursorMove === true) {
          e.cursorSql = text;
          e.dataCrc = m!.crcSeed(text);
        }
        if (type === Fe.Query && /^\s*copy\b/i.test(text)) j.unsafe ||= "it used COPY";
        if (e.commit && !e.commitLater && server.endpoint.name === sess.ctx.cluster.primary().name) run = this.askXid(j, server, b, run, pos);
      } else if (startsWithCommit(text)) run = this.askXid(j, server, b, run, pos);
      // Inside a transaction the id is read after its first write too, so a COMMIT lost early still has it.
      this.xidAfter = j.xidUnknown && WRITES.test(text) && (this.session.txStatus !== TxStatus.Idle || j.entries.length > 1);
    }
    if (!j.replaying) j.add(b, pos, msgEnd);
    if (type === Fe.Query || type === Fe.Sync || type === Fe.FunctionCall) this.journalOpen = false;
    return run;
  }

  /**
   * Session mode with ha-tr: keep each named Parse to prepare again on a new server. A replay that
   * prepares again what is already there is answered here (returns true: the message is consumed).
   */
  private sessionParse(server: ServerConnection, journal: Journal | null, b: Uint8Array, pos: number, nameEnd: number, msgEnd: number, run: number): boolean {
    const name = decodeAscii(b, pos + 5, nameEnd);
    const prior = this.sessionParses.get(name);
    if (journal?.replaying === true && prior !== undefined && prior.length === msgEnd - pos && Buffer.compare(prior, b.subarray(pos, msgEnd)) === 0) {
      this.spill(b, run, pos);
      this.midRequest = true;
      server.expect(Pending.FakeParseComplete);
      return true;
    }
    this.sessionParses.set(name, b.slice(pos, msgEnd));
    return false;
  }

  /** Session mode with ha-tr: named protocol statements as Parse messages, by name. */
  readonly sessionParses = new Map<string, Uint8Array>();

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

  /** The advisory locks were read outside a transaction. */
  locksRead(): void {
    this.readLocks = false;
  }

  /** Stage the transaction-id read before the message at b[pos] (a COMMIT); returns the new run start. */
  private askXid(j: Journal, server: ServerConnection, b: Uint8Array, run: number, pos: number): number {
    // Known already (read after the transaction's first write): the COMMIT needs no read of its own.
    if (j.xid.kind === "value") return run;
    run = this.spill(b, run, pos);
    this.put(XID_QUERY, 0, XID_QUERY.length);
    server.expect(Pending.InjectedXid);
    j.xidAsked(true, this.session.ctx.cluster.epoch);
    return run;
  }

  /** Read the transaction id after the request at hand (ha-tr: it wrote inside a transaction whose id is not known yet). */
  private xidAfter = false;

  /** Stage the Query at b[pos, msgEnd) with the transaction-id read appended to its text. */
  private putWithTail(b: Uint8Array, pos: number, msgEnd: number): void {
    const textLen = msgEnd - pos - 6; // without the type, length and final NUL
    const len = 4 + textLen + XID_TAIL.length;
    this.room(1 + len);
    const st = this.stage;
    st[this.staged] = Fe.Query;
    writeInt32(st, this.staged + 1, len);
    st.set(b.subarray(pos + 5, msgEnd - 1), this.staged + 5);
    st.set(XID_TAIL, this.staged + 5 + textLen);
    this.staged += 1 + len;
  }

  /** Stage the proxy's transaction-id statement (prepared on this server once) ahead of the Sync at b[pos]. */
  private xidBeforeSync(server: ServerConnection, b: Uint8Array, run: number, pos: number): number {
    this.xidAfter = false;
    run = this.spill(b, run, pos);
    if (!this.knownPrepared(server, XID_STATEMENT)) {
      this.evictIfFull(server);
      this.put(XID_PARSE, 0, XID_PARSE.length);
      server.prepared.set(XID_STATEMENT, true);
      server.expect(Pending.InjectedParse, XID_STATEMENT);
    }
    this.put(XID_RUN, 0, XID_RUN.length);
    server.expect(Pending.InjectedBind);
    server.expect(Pending.InjectedXidExec);
    server.expect(Pending.InjectedClose);
    this.session.journal?.xidAsked(false, this.session.ctx.cluster.epoch);
    return run;
  }

  /** The server is gone: forget what was in flight on it (the statements the client named stay). */
  serverGone(): void {
    this.midRequest = false;
    this.staged = -1;
    this.pendingSets = [];
    this.pendingErrors = 0;
    this.pendingDiscarded = false;
    this.nameChanges = [];
    this.savepoints.length = 0;
    this.inflight.length = 0;
    this.current = null;
    this.decided = false;
    this.routeHint = null;
    this.rewrite = null;
    // journalOpen stays: a request cut in the middle is journaled whole when the client sends its rest.
    this.afterDiscard = false;
    this.pendingMigration = [];
    this.xidAfter = false;
  }

  /** The request's last message went out; `answered`: a ReadyForQuery will come for it from the server. */
  private endRequest(answered: boolean): void {
    if (!this.decided) return;
    this.decided = false;
    this.routeHint = null;
    this.rewrite = null;
    this.waitedForReplay = false;
    if (answered && this.current !== null && this.inflight.push(this.current) === 1) this.armCapture();
    this.current = null;
  }

  /** The oldest request awaiting its reply asked to see that reply's bytes: the server keeps them. */
  private armCapture(): void {
    const q = this.inflight[0];
    const t = this.session.server?.tally;
    if (q !== undefined && q.captureMax > 0 && t != null) t.capture(q.captureMax);
  }

  /**
   * A new request arrives while the server of an earlier read (on a standby, outside a transaction)
   * is still attached: a request that may write must not go there. Pinned sessions stay.
   */
  private standbyCannotTake(server: ServerConnection, type: number, b: Uint8Array, pos: number, msgEnd: number): boolean {
    const sess = this.session;
    if (sess.pinned || sess.txStatus !== TxStatus.Idle || server.txStatus !== TxStatus.Idle) return false;
    if (server.endpoint.name === sess.ctx.cluster.primary().name) return false;
    return this.mayWrite(type, b, pos, msgEnd);
  }

  /**
   * Read-your-writes wants the position of each commit: after a request on the primary that may
   * have written (or ended a transaction), pipeline an LSN read. Read-only requests outside a
   * transaction, and standbys, are skipped.
   */
  private wantsLsn(server: ServerConnection): boolean {
    const ctx = this.session.ctx;
    if (ctx.commits === null) return false;
    if (!this.requestWrites && this.session.txStatus === TxStatus.Idle) return false;
    return server.endpoint.name === ctx.cluster.primary().name;
  }

  /**
   * When wanted, stage b[run, msgEnd) (the request's last message) and the reads behind it: the
   * commit LSN (read-your-writes), the advisory locks held (ha-tr). True when it did.
   */
  private lsnAfter(server: ServerConnection, b: Uint8Array, run: number, msgEnd: number): boolean {
    const lsn = this.wantsLsn(server);
    if (!lsn && !this.readLocks && !this.xidAfter) return false;
    this.spill(b, run, msgEnd);
    this.readsAfter(server, lsn);
    return true;
  }

  /** Queue the reads that follow a request (see lsnAfter). */
  private readsAfter(server: ServerConnection, lsn: boolean): void {
    if (this.xidAfter) {
      this.xidAfter = false;
      if (this.staged < 0) this.staged = 0;
      this.put(XID_QUERY, 0, XID_QUERY.length);
      server.expect(Pending.InjectedXid);
      this.session.journal?.xidAsked(false, this.session.ctx.cluster.epoch);
    }
    if (lsn) this.readCommitLsn(server);
    if (this.readLocks) {
      if (this.staged < 0) this.staged = 0;
      this.put(LOCKS_QUERY, 0, LOCKS_QUERY.length);
      server.expect(Pending.InjectedLocks);
    }
  }

  /** Queue the LSN read behind what is staged (its reply is swallowed; the session records the value). */
  private readCommitLsn(server: ServerConnection): void {
    if (this.staged < 0) this.staged = 0;
    this.put(LSN_QUERY, 0, LSN_QUERY.length);
    server.expect(Pending.InjectedLsn);
  }

  /** A client-visible ReadyForQuery: the oldest finished request's result goes to the modules. */
  private reportResult(server: ServerConnection, status: number): void {
    const q = this.inflight.shift()!;
    const hooks = this.session.ctx.hooks;
    const t = server.tally;
    if (hooks !== null && t !== null) {
      const r = resultOf(q, server.endpoint.name, t, status);
      for (const hook of hooks.onResult) hook(r);
    }
    t?.reset();
    if (this.inflight.length > 0) this.armCapture();
  }

  /**
   * Forward whole messages from b[start, end) to the session's server (acquiring one as needed).
   * Returns how far it got: the rest waits for a server or for more bytes.
   */
  forward(b: Uint8Array, start: number, end: number): number {
    const sess = this.session;
    const pooled = sess.mode !== "session";
    const hooks = sess.ctx.hooks;
    let server = sess.server;
    let pos = start;
    let run = start;
    this.staged = -1;
    while (end - pos >= 5) {
      const type = b[pos]!;
      const len = readInt32(b, pos + 1);
      if (len < 4 || (len > MAX_SMALL_MESSAGE && isSmallType(type))) {
        this.flush(server, b, run, pos);
        sess.fatal(Errors.invalidMessageLength());
        return end;
      }
      // Judged on the declared length, before any of the body is buffered.
      if (len > sess.ctx.config.limits.max_message_bytes) {
        this.flush(server, b, run, pos);
        sess.fatal(Errors.messageTooLong(len, sess.ctx.config.limits.max_message_bytes));
        return end;
      }
      // Judge the type before waiting for a body: garbage must not hold the connection open.
      if (!isFrontendType(type) && type !== Fe.Terminate) {
        this.flush(server, b, run, pos);
        sess.fatal(type === Fe.Password ? Errors.protocolViolation("unexpected password message") : Errors.invalidMessageType(type));
        return end;
      }
      const msgEnd = pos + 1 + len;
      if (msgEnd > end) break;
      if (type === Fe.Terminate && server === null) {
        sess.close();
        return end;
      }
      if (hooks !== null && !this.decided && startsRequest(type)) this.decide(hooks, server, type, b, pos, msgEnd, end);
      if (this.answer !== null) {
        // Refused or answered without the server: drop the request up to its end, answer once, in order.
        if (server !== null) this.flush(server, b, run, pos);
        pos = run = msgEnd;
        if (type === Fe.Query || type === Fe.Sync || type === Fe.FunctionCall) this.deliverAnswer(server);
        continue;
      }
      if (server !== null && pooled && !this.midRequest && startsRequest(type) && this.standbyCannotTake(server, type, b, pos, msgEnd)) {
        // A write pipelined behind a read that went to a standby: wait for that server to go back, then take the primary.
        break;
      }
      if (server === null) {
        this.requestWrites = pooled ? this.mayWrite(type, b, pos, msgEnd) : true;
        if (!sess.acquireServer(this.requestWrites)) break;
        server = sess.server!;
        if (this.current !== null) this.current.serverAt = performance.now();
        run = pos;
      }
      const journal = sess.journal;
      if (journal !== null) run = this.journalMessage(journal, server, type, b, pos, msgEnd, run);
      switch (type) {
        case Fe.Query: {
          if (pooled || journal !== null) {
            const fx = scanEffects(b, pos + 5, msgEnd, undefined, this.session.ctx.statelessFunctions);
            if (fx !== Effect.None && this.queryEffects(server, fx, b, pos, msgEnd, run)) {
              this.endRequest(true);
              run = pos = msgEnd;
              continue;
            }
          }
          if (this.xidAfter && this.rewrite === null) {
            // Inside a transaction, a writing Query whose transaction id is not known yet carries the read itself.
            this.xidAfter = false;
            this.spill(b, run, pos);
            this.putWithTail(b, pos, msgEnd);
            server.expect(Pending.QueryXid);
            journal?.xidAsked(false, sess.ctx.cluster.epoch);
            this.requestStarted();
            this.endRequest(true);
            this.readsAfter(server, this.wantsLsn(server));
            run = pos = msgEnd;
            continue;
          }
          server.expect(Pending.Query);
          this.requestStarted();
          if (this.rewrite !== null) {
            run = this.spill(b, run, pos);
            const q = queryMessage(this.rewrite);
            this.put(q, 0, q.length);
            this.endRequest(true);
            this.readsAfter(server, this.wantsLsn(server));
            run = pos = msgEnd;
            continue;
          }
          this.endRequest(true);
          if (this.lsnAfter(server, b, run, msgEnd)) {
            run = pos = msgEnd;
            continue;
          }
          break;
        }
        case Fe.Parse: {
          server.stats.clientParseCount++;
          const nameEnd = b.indexOf(0, pos + 5);
          if (nameEnd < 0 || nameEnd >= msgEnd) {
            server.expect(Pending.Parse);
            break;
          }
          if (!pooled && nameEnd > pos + 5 && sess.migration !== null && this.sessionParse(server, journal, b, pos, nameEnd, msgEnd, run)) {
            run = pos = msgEnd;
            continue;
          }
          if (nameEnd === pos + 5 || !pooled) {
            if (pooled) {
              const fx = scanEffects(b, nameEnd + 1, msgEnd, undefined, this.session.ctx.statelessFunctions);
              // DEALLOCATE and DISCARD ALL through the extended protocol are not followed: the server is reset after.
              if (fx & (Effect.Deallocate | Effect.DiscardAll)) this.hiddenState(server);
              this.unnamedBoundSetting = fx & Effect.SetGucParam ? statementText(b, nameEnd, msgEnd) : null;
              if (fx !== Effect.None) this.queryEffects(server, fx & ~(Effect.Deallocate | Effect.DiscardAll | Effect.SetGucParam), b, pos, msgEnd, run);
            }
            server.expect(Pending.Parse);
            this.midRequest = true;
            break;
          }
          const name = decodeAscii(b, pos + 5, nameEnd);
          this.midRequest = true;
          run = this.spill(b, run, pos);
          const existing = this.statements.get(name);
          if (existing !== undefined && journal?.replaying === true && existing.global === entryForParse(b, nameEnd, msgEnd).global) {
            // A replayed transaction prepares again what it prepared the first time: the client already has it.
            this.ensurePrepared(server, existing);
            server.expect(Pending.FakeParseComplete);
          } else if (existing !== undefined) {
            this.raiseError(server, "42P05", `prepared statement "${name}" already exists`);
          } else {
            const entry = entryForParse(b, nameEnd, msgEnd);
            const fx = scanEffects(b, nameEnd + 1, msgEnd, undefined, this.session.ctx.statelessFunctions);
            if (fx & Effect.Pin) this.queryEffects(server, Effect.Pin, b, pos, msgEnd, run);
            if (fx & (Effect.Hidden | Effect.Deallocate | Effect.DiscardAll)) entry.hidden = true;
            if (fx & Effect.SetGucParam) entry.boundSetting = statementText(b, nameEnd, msgEnd) ?? undefined;
            if (fx & TRACKED) {
              const spans: StatementSpan[] = [];
              scanEffects(b, nameEnd + 1, msgEnd, spans, this.session.ctx.statelessFunctions);
              entry.tracked = trackedOf(spans, b);
            }
            if (sess.ctx.splitting || sess.ctx.hooks !== null) {
              const textEnd = b.indexOf(0, nameEnd + 1);
              entry.write = textEnd < 0 || sess.ctx.classifier.isWrite(decoder.decode(b.subarray(nameEnd + 1, textEnd)));
            }
            this.statements.set(name, entry);
            const g = entry.global;
            if (this.knownPrepared(server, g)) {
              server.expect(Pending.FakeParseComplete);
            } else {
              this.evictIfFull(server);
              this.put(entry.parse, 0, entry.parse.length);
              server.prepared.set(g, true);
              server.expect(Pending.Parse, g);
            }
            this.nameChanges.push({ at: server.queue.pushed - 1, name, before: undefined });
          }
          run = pos = msgEnd;
          continue;
        }
        case Fe.Bind: {
          server.stats.bindCount++;
          this.midRequest = true;
          if (pooled) {
            const portalEnd = b.indexOf(0, pos + 5);
            const nameStart = portalEnd + 1;
            if (portalEnd > 0 && nameStart < msgEnd && b[nameStart] !== 0) {
              const nameEnd = b.indexOf(0, nameStart);
              if (nameEnd > 0 && nameEnd < msgEnd) {
                const entry = this.statements.get(decodeAscii(b, nameStart, nameEnd));
                if (entry !== undefined) {
                  if (entry.tracked) this.track(server, entry.tracked);
                  if (entry.hidden) this.hiddenState(server);
                  if (entry.boundSetting !== undefined) this.bindSetting(server, entry.boundSetting, b, pos, msgEnd);
                  run = this.spill(b, run, pos);
                  this.ensurePrepared(server, entry);
                  this.putRenamed(b, pos, nameStart, nameEnd, msgEnd, entry.global);
                  server.expect(Pending.Bind);
                  run = pos = msgEnd;
                  continue;
                }
              }
            }
          }
          if (pooled && this.unnamedBoundSetting !== null && b[b.indexOf(0, pos + 5) + 1] === 0) this.bindSetting(server, this.unnamedBoundSetting, b, pos, msgEnd);
          server.expect(Pending.Bind);
          break;
        }
        case Fe.Describe:
        case Fe.Close: {
          this.midRequest = true;
          const isStmt = b[pos + 5] === 83; // 'S'
          if (pooled && isStmt && b[pos + 6] !== 0) {
            const nameEnd = b.indexOf(0, pos + 6);
            if (nameEnd > 0 && nameEnd < msgEnd) {
              const name = decodeAscii(b, pos + 6, nameEnd);
              const entry = this.statements.get(name);
              run = this.spill(b, run, pos);
              if (type === Fe.Close) {
                // The server copy stays cached for others; PostgreSQL answers CloseComplete even for unknown names.
                this.nameChanges.push({ at: server.queue.pushed, name, before: entry });
                this.statements.delete(name);
                server.expect(Pending.FakeCloseComplete);
                run = pos = msgEnd;
                continue;
              }
              if (entry !== undefined) {
                this.ensurePrepared(server, entry);
                this.putRenamed(b, pos, pos + 6, nameEnd, msgEnd, entry.global);
                server.expect(Pending.Describe);
                run = pos = msgEnd;
                continue;
              }
            }
          }
          if (!pooled && isStmt && type === Fe.Close && this.sessionParses.size > 0) {
            const nameEnd = b.indexOf(0, pos + 6);
            if (nameEnd > 0 && nameEnd < msgEnd) this.sessionParses.delete(decodeAscii(b, pos + 6, nameEnd));
          }
          server.expect(type === Fe.Close ? Pending.Close : Pending.Describe);
          break;
        }
        case Fe.Execute:
          this.midRequest = true;
          server.expect(Pending.Execute);
          this.requestStarted();
          break;
        case Fe.Sync:
        case Fe.FunctionCall:
          if (type === Fe.Sync) {
            this.midRequest = false;
            if (this.xidAfter) run = this.xidBeforeSync(server, b, run, pos);
            server.expect(Pending.Sync);
          } else {
            // A function called by its OID: whatever it does is out of sight.
            if (pooled) this.hiddenState(server);
            server.expect(Pending.Query);
          }
          this.requestStarted();
          this.endRequest(true);
          if (this.lsnAfter(server, b, run, msgEnd)) {
            run = pos = msgEnd;
            continue;
          }
          break;
        case Fe.Flush:
        case Fe.CopyData:
        case Fe.CopyDone:
        case Fe.CopyFail:
          break;
        case Fe.Terminate:
          this.flush(server, b, run, pos);
          sess.close();
          return end;
        // Anything else was refused above, before its body arrived.
      }
      pos = msgEnd;
    }
    this.flush(server, b, run, pos);
    return pos;
  }

  /**
   * Whether the request starting with this message may write (then only the primary will do).
   * Asks the parser only when reads may go elsewhere; unknown kinds count as writes.
   */
  private mayWrite(type: number, b: Uint8Array, pos: number, msgEnd: number): boolean {
    const ctx = this.session.ctx;
    const hint = this.routeHint;
    if (hint !== null && hint.target === "primary") return true;
    // Without the split only hinted requests are classified (a write never follows a hint to a standby).
    if (!ctx.splitting && (hint === null || (hint.target === "default" && hint.nodes === undefined))) return true;
    if (type === Fe.Query) return ctx.classifier.isWrite(decoder.decode(b.subarray(pos + 5, msgEnd - 1)));
    if (type === Fe.Parse) {
      const nameEnd = b.indexOf(0, pos + 5);
      const textEnd = nameEnd < 0 ? -1 : b.indexOf(0, nameEnd + 1);
      return textEnd < 0 || ctx.classifier.isWrite(decoder.decode(b.subarray(nameEnd + 1, textEnd)));
    }
    if (type === Fe.Bind) {
      const portalEnd = b.indexOf(0, pos + 5);
      const nameEnd = portalEnd < 0 ? -1 : b.indexOf(0, portalEnd + 1);
      if (nameEnd <= portalEnd + 1 || nameEnd >= msgEnd) return true;
      return this.statements.get(decodeAscii(b, portalEnd + 1, nameEnd))?.write ?? true;
    }
    return true;
  }

  private requestStarted(): void {
    if (this.session.requestStartedAt === 0) this.session.requestStartedAt = performance.now();
  }

  // ---- staging: when a message is rewritten, the round's bytes are copied into one buffer ----

  /** Start (or continue) staging: copy b[run, pos) in; returns the new run start. */
  private spill(b: Uint8Array, run: number, pos: number): number {
    if (this.staged < 0) this.staged = 0;
    if (pos > run) this.put(b, run, pos);
    return pos;
  }

  private put(b: Uint8Array, from: number, to: number): void {
    this.room(to - from);
    this.stage.set(b.subarray(from, to), this.staged);
    this.staged += to - from;
  }

  private room(n: number): void {
    if (this.staged + n <= this.stage.length) return;
    let cap = Math.max(this.stage.length * 2, 4096);
    while (cap < this.staged + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.stage.subarray(0, this.staged));
    this.stage = next;
  }

  private putRenamed(b: Uint8Array, pos: number, nameStart: number, nameEnd: number, msgEnd: number, name: string): void {
    this.room(msgEnd - pos + name.length);
    this.staged += writeRenamed(this.stage, this.staged, b, pos, nameStart, nameEnd, msgEnd, name);
  }

  /** Write what this round produced: the staged copy, or the untouched run straight from the input. */
  private flush(server: ServerConnection | null, b: Uint8Array, run: number, pos: number): void {
    if (server === null) return;
    if (this.staged >= 0) {
      if (pos > run) this.put(b, run, pos);
      server.stats.bytesIn += this.staged;
      if (this.staged > 0) server.out.write(this.stage, 0, this.staged);
      this.staged = -1;
      if (this.stage.length > 1 << 20) this.stage = new Uint8Array(0);
    } else if (pos > run) {
      server.stats.bytesIn += pos - run;
      server.out.write(b, run, pos);
    }
  }

  // ---- prepared statements ----------------------------------------------------------------

  /** Make sure the server knows the statement: inject its Parse (reply swallowed) if not. */
  private ensurePrepared(server: ServerConnection, entry: StatementEntry): void {
    const g = entry.global;
    if (this.knownPrepared(server, g)) return;
    this.evictIfFull(server);
    this.put(entry.parse, 0, entry.parse.length);
    server.prepared.set(g, true);
    server.expect(Pending.InjectedParse, g);
  }

  /**
   * The server has statement `g` (marked most recently used). On a server whose statements are
   * uncertain the answer is no, after staging a Close of `g` (a Close of a missing statement
   * succeeds), so the Parse that follows can neither collide nor be missing.
   */
  private knownPrepared(server: ServerConnection, g: string): boolean {
    if (server.preparedUncertain) {
      server.prepared.delete(g);
      const close = build((w) => w.msg(Fe.Close).byte(83).cstr(g).end());
      this.put(close, 0, close.length);
      server.expect(Pending.InjectedClose, g);
      return false;
    }
    if (!server.prepared.has(g)) return false;
    server.prepared.delete(g);
    server.prepared.set(g, true);
    return true;
  }

  /** Keep the per-server statement cache bounded: close the least recently used one. */
  private evictIfFull(server: ServerConnection): void {
    const limit = this.session.ctx.config.pool.prepared_statements_per_server;
    while (server.prepared.size >= limit) {
      const oldest = server.prepared.keys().next().value as string;
      server.prepared.delete(oldest);
      const close = build((w) => w.msg(Fe.Close).byte(83).cstr(oldest).end());
      this.put(close, 0, close.length);
      // Named: if an error skips the Close, the server still has the statement (see skipToSync).
      server.expect(Pending.InjectedClose, oldest);
    }
  }

  /** Make the server report an error with our SQLSTATE at this point of an extended-protocol request. */
  private raiseError(server: ServerConnection, code: string, message: string): void {
    const body = raiseSql(code, message);
    const msgs = build((w) => {
      w.msg(Fe.Parse).cstr("").cstr(body).int16(0).end();
      w.msg(Fe.Bind).cstr("").cstr("").int16(0).int16(0).int16(0).end();
      w.msg(Fe.Execute).cstr("").int32(0).end();
    });
    this.put(msgs, 0, msgs.length);
    server.expect(Pending.InjectedParse);
    server.expect(Pending.InjectedBind);
    server.expect(Pending.Execute);
  }

  // ---- session state --------------------------------------------------------------------

  /**
   * A Query or Parse with session effects. Returns true when the message was answered by the
   * proxy and must not be forwarded.
   */
  private queryEffects(server: ServerConnection, fx: Effect, b: Uint8Array, pos: number, msgEnd: number, run: number): boolean {
    const sess = this.session;
    const textStart = b[pos] === Fe.Query ? pos + 5 : b.indexOf(0, pos + 5) + 1;
    if (fx & (TRACKED | Effect.Deallocate)) {
      const spans: StatementSpan[] = [];
      scanEffects(b, textStart, msgEnd, spans, this.session.ctx.statelessFunctions);
      if (fx & Effect.Deallocate && b[pos] === Fe.Query) {
        const sole = spans.length === 1 && soleStatement(b, textStart, msgEnd, spans[0]!);
        if (sole && this.deallocate(server, b, spans[0]!, run, pos)) return true;
        if (!sole) this.deallocateAmong(server, b, spans);
      }
      this.track(server, trackedOf(spans, b));
    }
    if (fx & Effect.Rollback) this.pendingDiscarded = true;
    if (fx & Effect.DiscardAll) {
      this.statements.clear();
      this.sessionParses.clear();
      this.pendingSets = [];
      sess.sessionState!.resetAll();
      server.prepared.clear();
      // Should it fail (inside a transaction block) nothing was discarded: the server is reset on release either way.
      this.hiddenState(server);
      if (sess.mode !== "session") sess.pinned = false;
      // DISCARD ALL goes back to the startup settings, which on a pooled server we set ourselves.
      this.afterDiscard = true;
    }
    // After a DISCARD ALL in the same text, these may still come after it: they count.
    if (fx & Effect.Pin) {
      sess.pinned = true;
      server.dirty = true;
    }
    // A $n outside the extended protocol is a syntax error; whatever it is, it is not followed.
    if (fx & (Effect.Hidden | Effect.SetGucParam)) this.hiddenState(server);
    return false;
  }

  /** The unnamed statement's text when it calls set_config with a parameter for the value (else null). */
  private unnamedBoundSetting: string | null = null;

  /** A Bind of a statement that calls set_config('name', $n, false): followed as a SET of the value it carries. */
  private bindSetting(server: ServerConnection, sql: string, b: Uint8Array, pos: number, msgEnd: number): void {
    const params = bindTextParams(b, pos, msgEnd);
    const text = params === null ? null : withParams(sql, params);
    if (text === null) this.hiddenState(server);
    else this.track(server, [{ effect: Effect.SetGuc, text }]);
  }

  /** Code ran that the proxy cannot see into: reset the server before anyone else gets it; trust none of its statements till then. */
  private hiddenState(server: ServerConnection): void {
    server.dirty = true;
    server.preparedUncertain = true;
  }

  /**
   * DEALLOCATE among other statements of one Query: it goes to the server with them (nothing is
   * dropped). The client's statements go as PostgreSQL would take them; the server's own copies
   * are uncertain until it is reset.
   */
  private deallocateAmong(server: ServerConnection, b: Uint8Array, spans: readonly StatementSpan[]): void {
    for (const span of spans) {
      if (!(span.effect & Effect.Deallocate)) continue;
      const d = deallocateName(decoder.decode(b.subarray(span.start, span.end)));
      if (d === null || d.all) {
        this.statements.clear();
        this.sessionParses.clear();
      } else {
        this.statements.delete(d.name);
        this.sessionParses.delete(d.name);
      }
    }
    this.hiddenState(server);
  }

  private afterDiscard = false;
  /** Open savepoints of the current transaction and how many pending SETs came before each. */
  private savepoints: { name: string; mark: number }[] = [];

  /**
   * Follow SETs and savepoints in the order the server will run them: a SET counts once its
   * transaction commits, unless a ROLLBACK TO an earlier savepoint undid it.
   */
  private track(server: ServerConnection, items: readonly TrackedStatement[]): void {
    for (const it of items) {
      if (it.effect & Effect.SetGuc) {
        if (this.pendingSets.length === 0) this.pendingErrors = server.errors;
        this.pendingSets.push(it.text);
      } else if (it.effect & Effect.Savepoint) {
        this.savepoints.push({ name: savepointName(it.text), mark: this.pendingSets.length });
      } else if (it.effect & (Effect.RollbackTo | Effect.Release)) {
        const name = savepointName(it.text);
        let i = this.savepoints.length - 1;
        while (i >= 0 && this.savepoints[i]!.name !== name) i--;
        if (i < 0) continue;
        if (it.effect & Effect.RollbackTo) {
          // The transaction goes on from the savepoint: later SETs and errors never happened.
          this.pendingSets.length = this.savepoints[i]!.mark;
          this.savepoints.length = i + 1;
          this.pendingDiscarded = false;
          this.pendingErrors = server.errors;
        } else this.savepoints.length = i;
      }
    }
  }

  /**
   * A Query that is one DEALLOCATE. The client's own protocol-level statement: answered here, the
   * shared server copy stays. A name it never made (the proxy's own hp_N): 26000, as PostgreSQL
   * would answer this client, without touching the server's statement others use. Pinned clients
   * have the server to themselves: theirs goes to it.
   */
  private deallocate(server: ServerConnection, b: Uint8Array, span: StatementSpan, run: number, pos: number): boolean {
    const d = deallocateName(decoder.decode(b.subarray(span.start, span.end)));
    if (d === null) return false;
    const { all, name } = d;
    if (all) this.sessionParses.clear();
    else this.sessionParses.delete(name);
    if (this.session.pinned) {
      if (!all && this.statements.delete(name)) {
        this.spill(b, run, pos);
        server.expect(Pending.FakeCommand, "DEALLOCATE");
        return true;
      }
      // Goes to the server, and may take the proxy's statements with it.
      if (all) this.statements.clear();
      this.hiddenState(server);
      return false;
    }
    this.spill(b, run, pos);
    if (all) this.statements.clear();
    else if (!this.statements.delete(name)) {
      const q = raiseQuery(SqlState.InvalidSqlStatementName, `prepared statement "${name}" does not exist`);
      this.put(q, 0, q.length);
      server.expect(Pending.Query);
      return true;
    }
    server.expect(Pending.FakeCommand, all ? "DEALLOCATE ALL" : "DEALLOCATE");
    return true;
  }

  /** A request failed at entry `failed`: name changes from there on never happened. */
  undoFrom(failed: number): void {
    const changes = this.nameChanges;
    for (let i = changes.length - 1; i >= 0 && changes[i]!.at >= failed; i--) {
      const c = changes.pop()!;
      const undone = this.statements.get(c.name);
      if (undone) this.forgotten.set(undone.global, c.name);
      if (c.before === undefined) this.statements.delete(c.name);
      else this.statements.set(c.name, c.before);
    }
  }

  /** Server-side names of statements whose creation was undone, for error messages (bounded). */
  private forgotten = new Map<string, string>();

  /** An error naming a server-side statement ("hp_N") is rewritten to name the client's statement. */
  clientError(b: Uint8Array, from: number, to: number): Uint8Array | null {
    const text = decoder.decode(b.subarray(from + 5, to));
    const m = /"(hp_[0-9a-z]+)"/.exec(text);
    if (!m) return null;
    const global = m[1]!;
    let name = this.forgotten.get(global);
    if (name === undefined) for (const [n, e] of this.statements) if (e.global === global) name = n;
    if (name === undefined) return null;
    if (this.forgotten.size > 64) this.forgotten.clear();
    const fields = text.split("\0").map((f) => (f.length > 1 ? f[0] + f.slice(1).replaceAll(`"${global}"`, `"${name}"`) : f));
    const body = new TextEncoder().encode(fields.join("\0"));
    const out = new Uint8Array(body.length + 5);
    out[0] = b[from]!;
    writeInt32(out, 1, body.length + 4);
    out.set(body, 5);
    return out;
  }

  /** After each ReadyForQuery: settle SETs, re-apply startup settings after DISCARD ALL. */
  onReady(server: ServerConnection, status: number): void {
    const sess = this.session;
    if (this.inflight.length > 0) this.reportResult(server, status);
    if (this.nameChanges.length > 0) {
      const done = server.queue.shifted;
      this.nameChanges = this.nameChanges.filter((c) => c.at >= done);
    }
    if (this.pendingMigration.length > 0) this.settleMigration(server, status);
    if (this.afterDiscard && status === TxStatus.Idle && server.owed === 0) {
      this.afterDiscard = false;
      const sql = sess.sessionState!.applySql(true);
      server.stateKey = sess.sessionState!.key;
      if (sql !== "") this.injectQuery(server, sql);
      return;
    }
    if (status === TxStatus.Idle && server.owed === 0) this.savepoints.length = 0;
    if (this.pendingSets.length === 0) return;
    if (status === TxStatus.Failed) this.pendingDiscarded = true;
    if (status !== TxStatus.Idle || server.owed !== 0) return;
    let understood = true;
    if (!this.pendingDiscarded && server.errors === this.pendingErrors) {
      for (const s of this.pendingSets) understood = sess.sessionState!.record(s) && understood;
    }
    if (!this.pendingDiscarded && server.errors === this.pendingErrors && understood) {
      server.stateKey = sess.sessionState!.key;
    } else {
      // Some statement failed or the transaction rolled back: what the server has is unknown.
      server.stateKey = "\u0000unknown";
    }
    this.pendingSets = [];
    this.pendingDiscarded = false;
  }

  /** Session-level effects count once their transaction ended without an error or a rollback. */
  private settleMigration(server: ServerConnection, status: number): void {
    if (status === TxStatus.Failed) this.migrationUndone = true;
    if (status !== TxStatus.Idle || server.owed !== 0) return;
    if (!this.migrationUndone && server.errors === this.migrationErrors) for (const text of this.pendingMigration) this.session.migration?.applied(text);
    this.pendingMigration = [];
  }

  /** Send SQL whose replies the client never sees (session state on a new server). */
  injectQuery(server: ServerConnection, sql: string): void {
    server.out.write(queryMessage(sql));
    server.expect(Pending.InjectedQuery);
  }

  /** The client is gone: give the server back clean, or close it. */
  returnServer(server: ServerConnection, reset: boolean): void {
    const query = server.dirty && this.session.mode !== "session" ? DISCARD_ALL : this.session.ctx.config.pool.reset_query;
    returnServer(server, this.midRequest, reset || server.dirty, query);
  }

  /** Give the server back between transactions; one that may hold session state the proxy cannot replay is reset first. */
  release(server: ServerConnection): void {
    const pool = this.session.ctx.config.pool;
    if (server.dirty) returnServer(server, false, true, DISCARD_ALL);
    else if (pool.reset_query_always) returnServer(server, false, true, pool.reset_query);
    else (server.owner as Pool).release(server);
  }
}

/** Takes a server back to its login state: settings, role, statements, temp tables, LISTEN, advisory locks, cursors. */
const DISCARD_ALL = "DISCARD ALL";

/** Effects followed statement by statement (SETs and the savepoints that can undo them). */
const TRACKED = Effect.SetGuc | Effect.Savepoint | Effect.RollbackTo | Effect.Release;

/** A statement with a tracked effect, as text. */
export interface TrackedStatement {
  effect: Effect;
  text: string;
}

function trackedOf(spans: readonly StatementSpan[], b: Uint8Array): TrackedStatement[] {
  const out: TrackedStatement[] = [];
  for (const s of spans) if (s.effect & TRACKED) out.push({ effect: s.effect, text: decoder.decode(b.subarray(s.start, s.end)) });
  return out;
}

/** The savepoint a SAVEPOINT / ROLLBACK TO / RELEASE statement names (folded unless quoted). */
function savepointName(text: string): string {
  const m = /("(?:[^"]|"")+"|[^\s;"]+)\s*;?\s*$/.exec(text.trim());
  const n = m ? m[1]! : "";
  return n.startsWith('"') ? n.slice(1, -1).replaceAll('""', '"') : n.toLowerCase();
}

/** The SQL text of the Parse message whose statement name ends at b[nameEnd] (null when malformed). */
function statementText(b: Uint8Array, nameEnd: number, msgEnd: number): string | null {
  const textEnd = b.indexOf(0, nameEnd + 1);
  return textEnd < 0 || textEnd >= msgEnd ? null : decoder.decode(b.subarray(nameEnd + 1, textEnd));
}

/** The statement a DEALLOCATE names (folded unless quoted), or ALL; null when the text is not one DEALLOCATE. */
function deallocateName(text: string): { all: boolean; name: string } | null {
  const lx = new Lexer().reset(text);
  if (lx.nextSignificant() !== Tok.Word || !lx.is("deallocate")) return null;
  let k = lx.nextSignificant();
  if (lx.is("prepare")) k = lx.nextSignificant();
  if (k !== Tok.Word && k !== Tok.QuotedIdent) return null;
  const all = k === Tok.Word && lx.is("all");
  const name = lx.word();
  const rest = lx.nextSignificant();
  return rest === Tok.End || (rest === Tok.Punct && lx.isChar(59)) ? { all, name } : null;
}

/** A Query that makes the server raise this error: it lands in order and fails an open transaction as PostgreSQL's own would. */
function raiseQuery(code: string, message: string): Uint8Array {
  return queryMessage(raiseSql(code, message));
}

/** A DO block that raises this error. */
function raiseSql(code: string, message: string): string {
  const tag = `hp${Math.floor(Math.random() * 1e9)}`;
  return `DO $${tag}$BEGIN RAISE EXCEPTION USING ERRCODE = '${code}', MESSAGE = '${message.replaceAll("'", "''")}'; END$${tag}$`;
}

/** Types whose messages are never large (PostgreSQL bounds them too). */
function isSmallType(t: number): boolean {
  return t === Fe.Sync || t === Fe.Flush || t === Fe.Terminate || t === Fe.Execute || t === Fe.Describe || t === Fe.Close || t === Fe.CopyDone;
}

function isFrontendType(t: number): boolean {
  switch (t) {
    case Fe.Query:
    case Fe.Parse:
    case Fe.Bind:
    case Fe.Describe:
    case Fe.Execute:
    case Fe.Close:
    case Fe.Sync:
    case Fe.Flush:
    case Fe.FunctionCall:
    case Fe.CopyData:
    case Fe.CopyDone:
    case Fe.CopyFail:
      return true;
    default:
      return false;
  }
}

/** Messages that may open a request (not Sync, Flush, Terminate or COPY data). */
function startsRequest(t: number): boolean {
  return t === Fe.Query || t === Fe.Parse || t === Fe.Bind || t === Fe.Describe || t === Fe.Execute || t === Fe.Close || t === Fe.FunctionCall;
}

/** Two modules' hints for one request: the first target, the strictest limits, the furthest commit position. */
function mergeHints(a: RouteHint, b: RouteHint): RouteHint {
  const min = (x?: number, y?: number) => (x === undefined ? y : y === undefined ? x : Math.min(x, y));
  const max = (x?: number, y?: number) => (x === undefined ? y : y === undefined ? x : Math.max(x, y));
  const out: { -readonly [K in keyof RouteHint]: RouteHint[K] } = { kind: "route", target: a.target === "default" ? b.target : a.target };
  const nodes = a.nodes ?? b.nodes;
  if (nodes !== undefined) out.nodes = nodes;
  const lagMs = min(a.maxLagMs, b.maxLagMs);
  if (lagMs !== undefined) out.maxLagMs = lagMs;
  const lagBytes = min(a.maxLagBytes, b.maxLagBytes);
  if (lagBytes !== undefined) out.maxLagBytes = lagBytes;
  const minLsn = max(a.minLsn, b.minLsn);
  if (minLsn !== undefined) out.minLsn = minLsn;
  const waitMs = max(a.waitMs, b.waitMs);
  if (waitMs !== undefined) out.waitMs = waitMs;
  return out;
}
