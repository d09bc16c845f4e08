// Client requests on their way to the server: framing, module hooks, routing, prepared statements and session effects, and the request tap (ha-tr) at its fixed points.

import { Fe, MAX_SMALL_MESSAGE, TxStatus } from "../protocol/codes.ts";
import { Errors, errorResponse } from "../protocol/errors.ts";
import { readInt32 } from "../protocol/framing.ts";
import { queryMessage, readyForQuery } from "../protocol/messages.ts";
import type { ServerConnection } from "../server/connection.ts";
import { Pending } from "../server/response-queue.ts";
import { Effect } from "../sql/session-effects.ts";
import { CONSUMED } from "../core/request-tap.ts";
import { RequestCtx, ResultView, txLetter } from "./request-ctx.ts";
import type { QueryHooks } from "../core/module-host.ts";
import type { RouteHint } from "../core/hooks.ts";
import { parseSql } from "../sql/classify.ts";
import { returnServer } from "./reset.ts";
import type { Pool } from "../server/pool.ts";
import type { ClientSession } from "./session.ts";
import { SessionEffects } from "./effects.ts";
import { StatementTracker } from "./statements.ts";
import { Staging } from "./staging.ts";
import { raiseQuery } from "./raise.ts";

/** Pipelined after writes for read-your-writes: the WAL position once the request has committed. */
const LSN_QUERY = queryMessage("SELECT (pg_current_wal_lsn() - '0/0')::text");

export class RequestForwarder {
  /** Extended-protocol messages sent since the last Sync: the server must stay. */
  midRequest = false;
  private readonly stage = new Staging();
  private readonly prepared: StatementTracker;
  private readonly effects: SessionEffects;
  /** The message at hand (and the request it starts, as modules see it). */
  private view: RequestCtx;

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
  /** What the result hooks see of each finished request (one object, filled per request). */
  private readonly result = new ResultView();
  /** Views whose request the modules are done with (QueryCtx and ResultCtx hold only until onResult returns): handed over to again. */
  private readonly spareViews: RequestCtx[] = [];
  /** A module's routing wish for the request at hand. */
  routeHint: RouteHint | null = null;
  /** A module's replacement text for the simple Query at hand. */
  private rewrite: string | null = null;
  /** The request at hand already waited for a standby to replay the session's writes. */
  waitedForReplay = false;
  /** The request at hand was judged able to write when it got its server. */
  private requestWrites = false;

  /** The request a module's Reply answered, for the result hooks once it is delivered. */
  private answered: { query: RequestCtx; source: string } | null = null;

  constructor(private readonly session: ClientSession) {
    const ctx = session.ctx;
    this.prepared = new StatementTracker(
      this.stage,
      () => ctx.config.pool.prepared_statements_per_server,
      () => ctx.splitting || ctx.hooks !== null,
    );
    this.effects = new SessionEffects(session, this.prepared.statements);
    this.view = new RequestCtx({
      statements: this.prepared.statements,
      shapes: ctx.shapes,
      parser: parseSql,
      classifier: ctx.classifier,
      statelessFunctions: ctx.statelessFunctions,
    });
  }

  /** Client statement name -> shared server-side statement (pooled modes). */
  get statements(): ReadonlyMap<string, unknown> {
    return this.prepared.statements;
  }

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

  /** Run the modules' onQuery hooks on the request the view's message starts (received up to `end`); first Reject/Reply wins. */
  private decide(hooks: QueryHooks, server: ServerConnection | null, end: number): void {
    this.decided = true;
    const sess = this.session;
    const q = this.view;
    q.begin(sess.moduleView(), txLetter(sess.txStatus), end);
    this.current = hooks.onResult.length > 0 ? q : null;
    this.runQueryHooks(hooks, q, server);
    // Kept for onResult: it keeps its text, the forwarder goes on with a fresh view of the same message.
    if (this.current !== null || this.answered?.query === q) this.view = q.handOver(hooks.resultText, this.spareViews.pop());
  }

  private runQueryHooks(hooks: QueryHooks, q: RequestCtx, server: ServerConnection | null): void {
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
        // The result hooks still hear of it (statistics, traces), once it is delivered.
        if (this.current !== null) this.answered = { query: this.current, source: d.source ?? "module" };
        this.current = null;
        return;
      }
      if (d.kind === "route") this.routeHint = this.routeHint === null ? d : mergeHints(this.routeHint, d);
      else if (d.kind === "rewrite" && q.type === Fe.Query) this.rewrite ??= d.sql;
    }
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
      sess.tap?.onRaised(raise, code, message, sess.txStatus !== TxStatus.Idle);
    } else {
      sess.out.write(this.answer!);
      sess.out.write(readyForQuery(sess.txStatus));
      const a = this.answered;
      const hooks = sess.ctx.hooks;
      if (a !== null && hooks !== null) {
        const r = this.result.answered(a.query, this.answer!, sess.txStatus, a.source);
        for (const hook of hooks.onResult) hook(r);
        r.clear();
        this.recycle(a.query);
      }
    }
    this.answered = null;
    this.answer = null;
    this.answerError = null;
    this.midRequest = false;
    this.endRequest(false);
  }

  /** The result hooks of `q` returned: keep it for a later request (a few; a pipeline's worth is enough). */
  private recycle(q: RequestCtx): void {
    if (this.spareViews.length < 8) {
      q.recycle();
      this.spareViews.push(q);
    }
  }

  /** The server is gone: forget what was in flight on it (the statements the client named stay). */
  serverGone(): void {
    this.midRequest = false;
    this.stage.staged = -1;
    this.effects.serverGone();
    this.prepared.serverGone();
    this.inflight.length = 0;
    this.current = null;
    this.decided = false;
    this.routeHint = null;
    this.rewrite = null;
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
  private standbyCannotTake(server: ServerConnection): boolean {
    const sess = this.session;
    if (sess.pinned || sess.txStatus !== TxStatus.Idle || server.txStatus !== TxStatus.Idle) return false;
    if (server.endpoint.name === sess.ctx.cluster.primary().name) return false;
    return this.mayWrite();
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
   * When wanted, stage b[run, end) (the request's last message) and the reads behind it: the
   * tap's (ha-tr), the commit LSN (read-your-writes). True when it did.
   */
  private readsAfterEnd(server: ServerConnection, b: Uint8Array, run: number, end: number): boolean {
    const lsn = this.wantsLsn(server);
    const tap = this.session.tap;
    if (!lsn && (tap === null || !tap.wantsReadsAfter())) return false;
    this.stage.spill(b, run, end);
    this.readsAfter(server, lsn);
    return true;
  }

  /** Queue the reads that follow a request (see readsAfterEnd). */
  private readsAfter(server: ServerConnection, lsn: boolean): void {
    const tap = this.session.tap;
    if (tap !== null && tap.wantsReadsAfter()) tap.readsAfter(server, this.stage);
    if (lsn) {
      // Its reply is swallowed; the session records the value.
      this.stage.append(LSN_QUERY);
      server.expect(Pending.InjectedLsn);
    }
  }

  /** A client-visible ReadyForQuery: the oldest finished request's result goes to the modules. */
  private reportResult(server: ServerConnection, status: number): void {
    const q = this.inflight.shift()!;
    const hooks = this.session.ctx.hooks;
    const t = server.tally;
    if (hooks !== null && t !== null) {
      const r = this.result.served(q, server.endpoint.name, t, status);
      for (const hook of hooks.onResult) hook(r);
      r.clear();
      this.recycle(q);
    }
    t?.reset();
    if (this.inflight.length > 0) this.armCapture();
  }

  /** A message that is not a protocol message this side may send, judged before its body is buffered; null when fine. */
  private refusal(type: number, len: number): Uint8Array | null {
    if (len < 4 || (len > MAX_SMALL_MESSAGE && isSmallType(type))) return Errors.invalidMessageLength();
    const max = this.session.ctx.config.limits.max_message_bytes;
    if (len > max) return Errors.messageTooLong(len, max);
    // Judge the type before waiting for a body: garbage must not hold the connection open.
    if (!isFrontendType(type) && type !== Fe.Terminate) return type === Fe.Password ? Errors.protocolViolation("unexpected password message") : Errors.invalidMessageType(type);
    return null;
  }

  /**
   * Forward whole messages from b[start, end) to the session's server (acquiring one as needed).
   * Returns how far it got: the rest waits for a server or for more bytes.
   */
  forward(b: Uint8Array, start: number, end: number): number {
    const sess = this.session;
    const pooled = sess.mode !== "session";
    const hooks = sess.ctx.hooks;
    const stage = this.stage;
    let server = sess.server;
    let pos = start;
    let run = start;
    stage.staged = -1;
    while (end - pos >= 5) {
      const type = b[pos]!;
      const len = readInt32(b, pos + 1);
      // The common case (a small message of a known type) passes without the full check.
      if (len < 4 || len > MAX_SMALL_MESSAGE || !isFrontendType(type)) {
        const refused = this.refusal(type, len);
        if (refused !== null) {
          stage.flush(server, b, run, pos);
          sess.fatal(refused);
          return end;
        }
      }
      const msgEnd = pos + 1 + len;
      if (msgEnd > end) break;
      if (type === Fe.Terminate && server === null) {
        sess.close();
        return end;
      }
      this.view.at(type, b, pos, msgEnd);
      if (hooks !== null && !this.decided && startsRequest(type)) this.decide(hooks, server, end);
      if (this.answer !== null) {
        // Refused or answered without the server: drop the request up to its end, answer once, in order.
        if (server !== null) stage.flush(server, b, run, pos);
        pos = run = msgEnd;
        if (type === Fe.Query || type === Fe.Sync || type === Fe.FunctionCall) this.deliverAnswer(server);
        continue;
      }
      if (server !== null && pooled && !this.midRequest && startsRequest(type) && this.standbyCannotTake(server)) {
        // A write pipelined behind a read that went to a standby: wait for that server to go back, then take the primary.
        break;
      }
      if (server === null) {
        this.requestWrites = pooled ? this.mayWrite() : true;
        if (!sess.acquireServer(this.requestWrites)) break;
        server = sess.server!;
        if (this.current !== null) this.current.serverAt = performance.now();
        run = pos;
      }
      const tap = sess.tap;
      if (tap !== null) {
        run = tap.onMessage(this.view, server, stage, run);
        if (run === CONSUMED) {
          this.midRequest = true;
          run = pos = msgEnd;
          continue;
        }
      }
      if (this.message(this.view, server, pooled, run)) {
        run = pos = msgEnd;
        continue;
      }
      if (type === Fe.Terminate) {
        stage.flush(server, b, run, pos);
        sess.close();
        return end;
      }
      if (type === Fe.Query || type === Fe.Sync || type === Fe.FunctionCall) {
        this.requestStarted();
        this.endRequest(true);
        if (this.readsAfterEnd(server, b, run, msgEnd)) {
          run = pos = msgEnd;
          continue;
        }
      } else if (type === Fe.Execute) this.requestStarted();
      pos = msgEnd;
    }
    stage.flush(server, b, run, pos);
    return pos;
  }

  /**
   * The forwarder's own work on one message once it has a server: what the server will owe, and
   * the message staged in another form where it must be. True when it was staged (or answered)
   * here, the request's end included: the caller moves past it.
   */
  private message(v: RequestCtx, server: ServerConnection, pooled: boolean, run: number): boolean {
    const stage = this.stage;
    const tap = this.session.tap;
    const { b, pos } = v;
    switch (v.type) {
      case Fe.Query: {
        if (pooled || tap !== null) {
          const fx = v.effects();
          if (fx !== Effect.None && this.effects.apply(server, fx, v, stage, run)) {
            this.endRequest(true);
            return true;
          }
        }
        if (tap !== null && this.rewrite === null && tap.onQueryEnd(v, server, stage, run)) {
          this.requestStarted();
          this.endRequest(true);
          this.readsAfter(server, this.wantsLsn(server));
          return true;
        }
        if (this.rewrite === null) {
          server.expect(Pending.Query);
          return false;
        }
        server.expect(Pending.Query);
        this.requestStarted();
        stage.spill(b, run, pos);
        const q = queryMessage(this.rewrite);
        stage.put(q, 0, q.length);
        this.endRequest(true);
        this.readsAfter(server, this.wantsLsn(server));
        return true;
      }
      case Fe.Parse: {
        server.stats.clientParseCount++;
        const nameEnd = v.nameEnd();
        if (nameEnd < 0) {
          server.expect(Pending.Parse);
          return false;
        }
        this.midRequest = true;
        if (nameEnd === pos + 5 || !pooled) {
          if (pooled) this.effects.unnamedParse(server, v, stage, run);
          server.expect(Pending.Parse);
          return false;
        }
        this.prepared.parse(server, v, this.effects, stage.spill(b, run, pos), tap !== null && tap.replaying);
        return true;
      }
      case Fe.Bind: {
        server.stats.bindCount++;
        this.midRequest = true;
        if (pooled) {
          const entry = v.statement();
          if (entry !== undefined) {
            this.effects.bindEntry(entry, server, v);
            stage.spill(b, run, pos);
            this.prepared.bind(server, v, entry);
            return true;
          }
          this.effects.unnamedBind(server, v);
        }
        server.expect(Pending.Bind);
        return false;
      }
      case Fe.Describe:
      case Fe.Close: {
        this.midRequest = true;
        if (pooled && b[pos + 5] === 83 && b[pos + 6] !== 0 && v.nameEnd() > 0) {
          // 'S': a named statement
          const name = v.statementName();
          const entry = this.prepared.statements.get(name);
          if (v.type === Fe.Close) {
            stage.spill(b, run, pos);
            this.prepared.close(server, name);
            return true;
          }
          if (entry !== undefined) {
            stage.spill(b, run, pos);
            this.prepared.describe(server, v, entry);
            return true;
          }
        }
        server.expect(v.type === Fe.Close ? Pending.Close : Pending.Describe);
        return false;
      }
      case Fe.Execute:
        this.midRequest = true;
        server.expect(Pending.Execute);
        return false;
      case Fe.Sync:
        this.midRequest = false;
        server.expect(Pending.Sync);
        return false;
      case Fe.FunctionCall:
        // A function called by its OID: whatever it does is out of sight.
        if (pooled) this.effects.hidden(server);
        server.expect(Pending.Query);
        return false;
      default:
        // Flush, COPY data, Terminate: forwarded as they are. Anything else was refused before its body arrived.
        return false;
    }
  }

  /**
   * Whether the request starting with the view's message may write (then only the primary will
   * do). Asks the classifier only when reads may go elsewhere; unknown kinds count as writes.
   */
  private mayWrite(): boolean {
    const hint = this.routeHint;
    if (hint !== null && hint.target === "primary") return true;
    // Without the split only hinted requests are classified (a write never follows a hint to a standby).
    if (!this.session.ctx.splitting && (hint === null || (hint.target === "default" && hint.nodes === undefined))) return true;
    return this.view.isWrite();
  }

  private requestStarted(): void {
    if (this.session.requestStartedAt === 0) this.session.requestStartedAt = performance.now();
  }

  // ---- replies ----------------------------------------------------------------------------

  knownPrepared(server: ServerConnection, name: string): boolean {
    return this.prepared.knownPrepared(server, name);
  }

  evictIfFull(server: ServerConnection): void {
    this.prepared.evictIfFull(server);
  }

  /** A request failed at entry `failed`: name changes from there on never happened. */
  undoFrom(failed: number): void {
    this.prepared.undoFrom(failed);
  }

  /** An error naming a server-side statement ("hp_N") is rewritten to name the client's statement. */
  clientError(b: Uint8Array, from: number, to: number): Uint8Array | null {
    return this.prepared.clientError(b, from, to);
  }

  /** After each ReadyForQuery: results to modules, statement names and session state settle. */
  onReady(server: ServerConnection, status: number): void {
    if (this.inflight.length > 0) this.reportResult(server, status);
    this.prepared.settled(server);
    this.session.tap?.onReady(server, status);
    this.effects.onReady(server, status);
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
