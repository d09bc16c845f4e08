// Client requests on their way to the server: framing, prepared-statement renaming, session tracking.

import { Fe, MAX_SMALL_MESSAGE, TxStatus } from "../protocol/codes.ts";
import { Errors } from "../protocol/errors.ts";
import { decodeAscii, readInt32, writeInt32 } from "../protocol/framing.ts";
import { queryMessage } from "../protocol/messages.ts";
import { build } from "../protocol/writer.ts";
import { clock } from "../core/clock.ts";
import type { ServerConnection } from "../server/connection.ts";
import { Pending } from "../server/response-queue.ts";
import { Effect, scanEffects, type StatementSpan } from "../sql/session-effects.ts";
import { entryForParse, writeRenamed, type StatementEntry } from "./prepared.ts";
import { returnServer } from "./reset.ts";
import type { ClientSession } from "./session.ts";

const decoder = new TextDecoder();

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

  constructor(private readonly session: ClientSession) {}

  /**
   * Forward whole messages from b[start, end) to the session's server (acquiring one as needed).
   * Returns how far it got: the rest waits for a server or for more bytes.
   */
  forward(b: Uint8Array, start: number, end: number): number {
    const sess = this.session;
    const pooled = sess.mode !== "session";
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
      // Judge the type before waiting for a body: garbage must not hold the connection open.
      if (!isFrontendType(type) && type !== Fe.Terminate) {
        this.flush(server, b, run, pos);
        sess.fatal(type === Fe.Password ? Errors.protocolViolation("unexpected password message") : Errors.invalidMessageType(type));
        return end;
      }
      const msgEnd = pos + 1 + len;
      if (msgEnd > end) break;
      if (server === null) {
        if (type === Fe.Terminate) {
          sess.close();
          return end;
        }
        if (!sess.acquireServer(pooled ? this.mayWrite(type, b, pos, msgEnd) : true)) break;
        server = sess.server!;
        run = pos;
      }
      switch (type) {
        case Fe.Query: {
          if (pooled) {
            const fx = scanEffects(b, pos + 5, msgEnd);
            if (fx !== Effect.None && this.queryEffects(server, fx, b, pos, msgEnd, run)) {
              run = pos = msgEnd;
              continue;
            }
          }
          server.expect(Pending.Query);
          this.requestStarted();
          break;
        }
        case Fe.Parse: {
          const nameEnd = b.indexOf(0, pos + 5);
          if (nameEnd < 0 || nameEnd >= msgEnd) {
            server.expect(Pending.Parse);
            break;
          }
          if (nameEnd === pos + 5 || !pooled) {
            if (pooled) {
              const fx = scanEffects(b, nameEnd + 1, msgEnd);
              if (fx !== Effect.None) this.queryEffects(server, fx & ~(Effect.Deallocate | Effect.DiscardAll), b, pos, msgEnd, run);
            }
            server.expect(Pending.Parse);
            this.midRequest = true;
            break;
          }
          const name = decodeAscii(b, pos + 5, nameEnd);
          this.midRequest = true;
          run = this.spill(b, run, pos);
          if (this.statements.has(name)) {
            this.raiseError(server, "42P05", `prepared statement "${name}" already exists`);
          } else {
            const entry = entryForParse(b, nameEnd, msgEnd);
            const fx = scanEffects(b, nameEnd + 1, msgEnd);
            if (fx & Effect.Pin) this.queryEffects(server, Effect.Pin, b, pos, msgEnd, run);
            if (fx & TRACKED) {
              const spans: StatementSpan[] = [];
              scanEffects(b, nameEnd + 1, msgEnd, spans);
              entry.tracked = trackedOf(spans, b);
            }
            if (sess.ctx.splitting) {
              const textEnd = b.indexOf(0, nameEnd + 1);
              entry.write = textEnd < 0 || sess.ctx.classifier.isWrite(decoder.decode(b.subarray(nameEnd + 1, textEnd)));
            }
            this.statements.set(name, entry);
            const g = entry.global;
            if (server.prepared.has(g)) {
              server.prepared.delete(g);
              server.prepared.set(g, true);
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
          server.expect(type === Fe.Close ? Pending.Close : Pending.Describe);
          break;
        }
        case Fe.Execute:
          this.midRequest = true;
          server.expect(Pending.Execute);
          this.requestStarted();
          break;
        case Fe.Sync:
          this.midRequest = false;
          server.expect(Pending.Sync);
          this.requestStarted();
          break;
        case Fe.FunctionCall:
          server.expect(Pending.Query);
          this.requestStarted();
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
    if (!ctx.splitting) return true;
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
    if (this.session.requestStartedAt === 0) this.session.requestStartedAt = clock.now;
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
    if (server.prepared.has(g)) {
      server.prepared.delete(g);
      server.prepared.set(g, true);
      return;
    }
    this.evictIfFull(server);
    this.put(entry.parse, 0, entry.parse.length);
    server.prepared.set(g, true);
    server.expect(Pending.InjectedParse, g);
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
    const tag = `hp${Math.floor(Math.random() * 1e9)}`;
    const body = `DO $${tag}$BEGIN RAISE EXCEPTION USING ERRCODE = '${code}', MESSAGE = '${message.replaceAll("'", "''")}'; END$${tag}$`;
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
    if (fx & Effect.Pin) {
      sess.pinned = true;
      server.dirty = true;
    }
    if (fx & (TRACKED | Effect.Deallocate)) {
      const spans: StatementSpan[] = [];
      scanEffects(b, textStart, msgEnd, spans);
      if (fx & Effect.Deallocate && spans.length === 1 && b[pos] === Fe.Query && this.deallocate(server, b, spans[0]!, run, pos)) {
        return true;
      }
      this.track(server, trackedOf(spans, b));
    }
    if (fx & Effect.Rollback) this.pendingDiscarded = true;
    if (fx & Effect.DiscardAll) {
      this.statements.clear();
      this.pendingSets = [];
      sess.sessionState!.resetAll();
      server.prepared.clear();
      server.dirty = false;
      if (sess.mode !== "session") sess.pinned = false;
      // DISCARD ALL goes back to the startup settings, which on a pooled server we set ourselves.
      this.afterDiscard = true;
    }
    return false;
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

  /** DEALLOCATE of a protocol-level statement: answered here, the shared server copy stays. */
  private deallocate(server: ServerConnection, b: Uint8Array, span: StatementSpan, run: number, pos: number): boolean {
    const text = decoder.decode(b.subarray(span.start, span.end)).trim();
    const m = /^DEALLOCATE\s+(?:PREPARE\s+)?("(?:[^"]|"")+"|[^\s;]+)\s*$/i.exec(text);
    if (!m) return false;
    let name = m[1]!;
    const all = name.toUpperCase() === "ALL";
    if (name.startsWith('"')) name = name.slice(1, -1).replaceAll('""', '"');
    else name = name.toLowerCase();
    if (all) {
      this.statements.clear();
      if (this.session.pinned) return false;
    } else if (!this.statements.delete(name) && !this.statements.delete(m[1]!)) return false;
    this.spill(b, run, pos);
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
    if (this.nameChanges.length > 0) {
      const done = server.queue.shifted;
      this.nameChanges = this.nameChanges.filter((c) => c.at >= done);
    }
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
    if (!this.pendingDiscarded && server.errors === this.pendingErrors) {
      for (const s of this.pendingSets) sess.sessionState!.record(s);
      server.stateKey = sess.sessionState!.key;
    } else {
      // Some statement failed or the transaction rolled back: what the server has is unknown.
      server.stateKey = "\u0000unknown";
    }
    this.pendingSets = [];
    this.pendingDiscarded = false;
  }

  /** Send SQL whose replies the client never sees (session state on a new server). */
  injectQuery(server: ServerConnection, sql: string): void {
    server.out.write(queryMessage(sql));
    server.expect(Pending.InjectedQuery);
  }

  /** The client is gone: give the server back clean, or close it. */
  returnServer(server: ServerConnection, reset: boolean): void {
    returnServer(server, this.midRequest, reset || server.dirty, this.session.ctx.config.pool.reset_query);
  }
}

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

