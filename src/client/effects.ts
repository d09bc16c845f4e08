// Session state a request leaves on its server: SETs and savepoints followed until they commit, DEALLOCATE and DISCARD ALL, and code the proxy cannot see into (the server is reset after).

import { Fe, TxStatus } from "../protocol/codes.ts";
import type { ServerConnection } from "../server/connection.ts";
import { Pending } from "../server/response-queue.ts";
import { Effect, soleStatement, type StatementSpan } from "../sql/session-effects.ts";
import { Lexer, Tok } from "../sql/lexer.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import type { Stage } from "../core/request-tap.ts";
import { bindTextParams, withParams } from "./bound-settings.ts";
import type { StatementEntry } from "./prepared.ts";
import { raiseQuery } from "./raise.ts";
import type { RequestCtx } from "./request-ctx.ts";
import type { ClientSession } from "./session.ts";

const decoder = new TextDecoder();

/** Effects followed statement by statement (SETs and the savepoints that can undo them). */
export const TRACKED = Effect.SetGuc | Effect.Savepoint | Effect.RollbackTo | Effect.Release;

/** A statement with a tracked effect, as text. */
export interface TrackedStatement {
  effect: Effect;
  text: string;
}

export class SessionEffects {
  /** SET/RESET texts sent but not yet known to have committed. */
  private pendingSets: string[] = [];
  private pendingErrors = 0;
  private pendingDiscarded = false;
  /** Open savepoints of the current transaction and how many pending SETs came before each. */
  private savepoints: { name: string; mark: number }[] = [];
  /** A DISCARD ALL went: the startup settings are applied again once the server is idle. */
  private afterDiscard = false;
  /** The unnamed statement's text when it calls set_config with a parameter for the value (else null). */
  private unnamedBoundSetting: string | null = null;

  constructor(
    private readonly session: ClientSession,
    private readonly statements: Map<string, StatementEntry>,
  ) {}

  /**
   * A Query or Parse with session effects `fx` (of the view's text). Returns true when the message
   * was answered by the proxy and must not be forwarded.
   */
  apply(server: ServerConnection, fx: Effect, v: RequestCtx, stage: Stage, run: number): boolean {
    const sess = this.session;
    if (fx & (TRACKED | Effect.Deallocate)) {
      const spans = v.spans();
      if (fx & Effect.Deallocate && v.type === Fe.Query) {
        const sole = spans.length === 1 && soleStatement(v.b, v.pos + 5, v.end, spans[0]!);
        if (sole && this.deallocate(server, v, spans[0]!, stage, run)) return true;
        if (!sole) this.deallocateAmong(server, v.b, spans);
      }
      this.track(server, trackedOf(spans, v.b));
    }
    if (fx & Effect.Rollback) this.pendingDiscarded = true;
    if (fx & Effect.DiscardAll) {
      this.statements.clear();
      sess.tap?.statementsDropped(null);
      this.pendingSets = [];
      sess.sessionState!.resetAll();
      server.prepared.clear();
      // Should it fail (inside a transaction block) nothing was discarded: the server is reset on release either way.
      this.hidden(server);
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
    if (fx & (Effect.Hidden | Effect.SetGucParam)) this.hidden(server);
    return false;
  }

  /** A Parse of the unnamed statement (pooled modes). */
  unnamedParse(server: ServerConnection, v: RequestCtx, stage: Stage, run: number): void {
    const fx = v.effects();
    // DEALLOCATE and DISCARD ALL through the extended protocol are not followed: the server is reset after.
    if (fx & (Effect.Deallocate | Effect.DiscardAll)) this.hidden(server);
    this.unnamedBoundSetting = fx & Effect.SetGucParam && v.textBytes() !== null ? v.sql() : null;
    if (fx !== Effect.None) this.apply(server, fx & ~(Effect.Deallocate | Effect.DiscardAll | Effect.SetGucParam), v, stage, run);
  }

  /** What each execution of a new named statement does to the session, noted on its entry. */
  describeEntry(entry: StatementEntry, server: ServerConnection, v: RequestCtx, stage: Stage, run: number): void {
    const fx = v.effects();
    if (fx & Effect.Pin) this.apply(server, Effect.Pin, v, stage, run);
    if (fx & (Effect.Hidden | Effect.Deallocate | Effect.DiscardAll)) entry.hidden = true;
    if (fx & Effect.SetGucParam && v.textBytes() !== null) entry.boundSetting = v.sql();
    if (fx & TRACKED) entry.tracked = trackedOf(v.spans(), v.b);
  }

  /** A Bind of a kept named statement: its effects take place again. */
  bindEntry(entry: StatementEntry, server: ServerConnection, v: RequestCtx): void {
    if (entry.tracked) this.track(server, entry.tracked);
    if (entry.hidden) this.hidden(server);
    if (entry.boundSetting !== undefined) this.bindSetting(server, entry.boundSetting, v);
  }

  /** A Bind of the unnamed statement (pooled modes). */
  unnamedBind(server: ServerConnection, v: RequestCtx): void {
    if (this.unnamedBoundSetting !== null && v.b[v.b.indexOf(0, v.pos + 5) + 1] === 0) this.bindSetting(server, this.unnamedBoundSetting, v);
  }

  /** A Bind of a statement that calls set_config('name', $n, false): followed as a SET of the value it carries. */
  private bindSetting(server: ServerConnection, sql: string, v: RequestCtx): void {
    const params = bindTextParams(v.b, v.pos, v.end);
    const text = params === null ? null : withParams(sql, params);
    if (text === null) this.hidden(server);
    else this.track(server, [{ effect: Effect.SetGuc, text }]);
  }

  /** Code ran that the proxy cannot see into: reset the server before anyone else gets it; trust none of its statements till then. */
  hidden(server: ServerConnection): void {
    server.dirty = true;
    server.preparedUncertain = true;
  }

  /**
   * DEALLOCATE among other statements of one Query: it goes to the server with them (nothing is
   * dropped). The client's statements go as PostgreSQL would take them; the server's own copies
   * are uncertain until it is reset.
   */
  private deallocateAmong(server: ServerConnection, b: Uint8Array, spans: readonly StatementSpan[]): void {
    const tap = this.session.tap;
    for (const span of spans) {
      if (!(span.effect & Effect.Deallocate)) continue;
      const d = deallocateName(decoder.decode(b.subarray(span.start, span.end)));
      if (d === null || d.all) this.statements.clear();
      else this.statements.delete(d.name);
      tap?.statementsDropped(d === null || d.all ? null : d.name);
    }
    this.hidden(server);
  }

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
  private deallocate(server: ServerConnection, v: RequestCtx, span: StatementSpan, stage: Stage, run: number): boolean {
    const d = deallocateName(decoder.decode(v.b.subarray(span.start, span.end)));
    if (d === null) return false;
    const { all, name } = d;
    this.session.tap?.statementsDropped(all ? null : name);
    if (this.session.pinned) {
      if (!all && this.statements.delete(name)) {
        stage.spill(v.b, run, v.pos);
        server.expect(Pending.FakeCommand, "DEALLOCATE");
        return true;
      }
      // Goes to the server, and may take the proxy's statements with it.
      if (all) this.statements.clear();
      this.hidden(server);
      return false;
    }
    stage.spill(v.b, run, v.pos);
    if (all) this.statements.clear();
    else if (!this.statements.delete(name)) {
      const q = raiseQuery(SqlState.InvalidSqlStatementName, `prepared statement "${name}" does not exist`);
      stage.put(q, 0, q.length);
      server.expect(Pending.Query);
      return true;
    }
    server.expect(Pending.FakeCommand, all ? "DEALLOCATE ALL" : "DEALLOCATE");
    return true;
  }

  /** After each ReadyForQuery: settle SETs, re-apply startup settings after DISCARD ALL. */
  onReady(server: ServerConnection, status: number): void {
    const sess = this.session;
    if (this.afterDiscard && status === TxStatus.Idle && server.owed === 0) {
      this.afterDiscard = false;
      const sql = sess.sessionState!.applySql(true);
      server.stateKey = sess.sessionState!.key;
      if (sql !== "") sess.forwarder.injectQuery(server, sql);
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

  /** The server is gone: what was pending on it never happened. */
  serverGone(): void {
    this.pendingSets = [];
    this.pendingErrors = 0;
    this.pendingDiscarded = false;
    this.savepoints.length = 0;
    this.afterDiscard = false;
  }
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
