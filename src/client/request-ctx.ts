// The one view of a client request: lazy, memoised facts of the message at hand (text, statement name, session effects, classification) shared by the forwarder, the tap and the modules (QueryCtx, ResultCtx).

import type { ByteSpan, QueryCtx, ResultCtx, SessionCtx } from "../core/hooks.ts";
import type { MessageView } from "../core/request-tap.ts";
import { Be, Fe } from "../protocol/codes.ts";
import { errorFields } from "../protocol/errors.ts";
import { cstringEnd, decodeAscii, readInt32 } from "../protocol/framing.ts";
import { Effect, scanEffects, type StatementSpan } from "../sql/session-effects.ts";
import type { QueryShape, QueryShapeCache } from "../sql/fingerprint.ts";
import type { ResultTally } from "../server/result-tally.ts";
import { statementBytes, type StatementEntry } from "./prepared.ts";

const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);
/** Facts of the message at hand already computed (bits of RequestCtx.known). */
const enum Known {
  Text = 1,
  Sql = 2,
  Name = 4,
  StatementName = 8,
  Entry = 16,
  Effects = 32,
  Write = 64,
}

/** A ReadyForQuery status byte as the letter modules see. */
export function txLetter(status: number): "I" | "T" | "E" {
  return status === 84 ? "T" : status === 69 ? "E" : "I"; // 'T', 'E', else 'I'
}

/** What a view reads its facts with: the session's statements and the proxy's scanners. */
export interface ViewEnv {
  /** Client statement name -> shared server-side statement (pooled modes). */
  readonly statements: ReadonlyMap<string, StatementEntry>;
  readonly shapes: QueryShapeCache;
  readonly parser: (sql: string) => unknown;
  readonly classifier: { isWrite(sql: string): boolean };
  readonly statelessFunctions: ReadonlySet<string>;
}

/**
 * The message at hand and the request it starts. The forwarder keeps one and points it at each
 * message (at()); nothing is decoded until asked, and nothing twice. Modules see it as QueryCtx at
 * a request's first message; one a module keeps for onResult is settled and replaced.
 */
export class RequestCtx implements QueryCtx, MessageView {
  type = 0;
  b: Uint8Array = EMPTY;
  pos = 0;
  end = 0;
  /** Which memoised facts below hold for the message at hand (Known bits): at() clears them all at once. */
  private known = 0;
  private text = "";
  private textFrom = -1;
  private textTo = 0;
  private nameFrom = 0;
  private nameTo = -1;
  private name = "";
  private entry: StatementEntry | undefined = undefined;
  private fx = Effect.None;
  private readonly found: StatementSpan[] = [];
  private write = true;

  // ---- the request, as modules see it (set by begin()) ----
  session!: SessionCtx;
  protocol: "simple" | "extended" = "simple";
  txStatus: "I" | "T" | "E" = "I";
  /** performance.now() when the request's first message was read. */
  startedAt = 0;
  /** performance.now() when the request got a server it did not already hold; 0 if it had one. */
  serverAt = 0;
  /** The request's messages received so far: the receive buffer from the first message's start up to here (during onQuery only; -1: none). */
  private rawEnd = -1;
  private raw: Uint8Array | null = null;
  /** The Parse of the named statement a Bind-first request executes, when known. */
  prepared: Uint8Array | null = null;
  /** Bytes of reply a module asked to see in onResult (0: none asked). */
  captureMax = 0;
  private shape: QueryShape | null = null;
  private tree: unknown = undefined;
  /** Settled: the message views are gone, the text's bytes stay (a module keeps it for onResult). */
  private settled = false;
  /** The text's bytes once settled (a copy: the receive buffer moves on), or null when it had none. */
  private keptText: Uint8Array | null = null;

  constructor(private readonly env: ViewEnv) {}

  /** Point the view at the message b[pos, end) of this type; what was learned of the last one is forgotten. */
  at(type: number, b: Uint8Array, pos: number, end: number): this {
    this.type = type;
    this.b = b;
    this.pos = pos;
    this.end = end;
    this.known = 0;
    return this;
  }

  /** Modules are about to see the request the message at hand starts. */
  begin(session: SessionCtx, txStatus: "I" | "T" | "E", rawEnd: number): void {
    const t = this.type;
    this.session = session;
    this.protocol = t === Fe.Query || t === Fe.FunctionCall ? "simple" : "extended";
    this.txStatus = txStatus;
    this.startedAt = performance.now();
    this.serverAt = 0;
    this.rawEnd = rawEnd;
    this.raw = null;
    this.prepared = t === Fe.Bind && this.env.statements.size > 0 ? (this.statement()?.parse ?? null) : null;
    this.captureMax = 0;
    this.shape = null;
    this.tree = undefined;
  }

  // ---- facts of the message at hand ----

  textBytes(): Uint8Array | null {
    if (this.settled) return this.keptText;
    if ((this.known & Known.Text) === 0) this.findText();
    if (this.textFrom >= 0) return this.b.subarray(this.textFrom, this.textTo);
    if (this.type === Fe.Bind) {
      const e = this.statement();
      return e ? statementBytes(e) : null;
    }
    return null;
  }

  private findText(): void {
    const b = this.b;
    this.known |= Known.Text;
    this.textFrom = -1;
    if (this.type === Fe.Query) {
      this.textFrom = this.pos + 5;
      this.textTo = this.end - 1;
    } else if (this.type === Fe.Parse) {
      const nameEnd = this.nameEnd();
      const textEnd = nameEnd < 0 ? -1 : cstringEnd(b, nameEnd + 1, this.end);
      if (textEnd < 0) return;
      this.textFrom = nameEnd + 1;
      this.textTo = textEnd;
    }
  }

  sql(): string {
    if ((this.known & Known.Sql) === 0) {
      const t = this.textBytes();
      this.text = t === null ? "" : decoder.decode(t);
      this.known |= Known.Sql;
    }
    return this.text;
  }

  nameStart(): number {
    if ((this.known & Known.Name) === 0) this.findName();
    return this.nameFrom;
  }

  nameEnd(): number {
    if ((this.known & Known.Name) === 0) this.findName();
    return this.nameTo;
  }

  private findName(): void {
    const b = this.b;
    const t = this.type;
    let from = this.pos + 5;
    this.known |= Known.Name;
    if (t !== Fe.Parse && t !== Fe.Bind && t !== Fe.Describe && t !== Fe.Close) {
      // No statement name in this message.
      this.nameFrom = from;
      this.nameTo = -1;
      return;
    }
    if (t === Fe.Bind) {
      const portalEnd = cstringEnd(b, from, this.end);
      from = portalEnd < 0 ? this.end : portalEnd + 1;
    } else if (t === Fe.Describe || t === Fe.Close) from = this.pos + 6;
    this.nameFrom = from;
    this.nameTo = from < this.end ? cstringEnd(b, from, this.end) : -1;
  }

  statementName(): string {
    if ((this.known & Known.StatementName) === 0) {
      const to = this.nameEnd();
      this.name = to < 0 ? "" : decodeAscii(this.b, this.nameFrom, to);
      this.known |= Known.StatementName;
    }
    return this.name;
  }

  /** The kept statement a Bind executes (by its name), when the proxy keeps it. */
  statement(): StatementEntry | undefined {
    if ((this.known & Known.Entry) === 0) {
      const name = this.env.statements.size === 0 ? "" : this.statementName();
      this.entry = name === "" ? undefined : this.env.statements.get(name);
      this.known |= Known.Entry;
    }
    return this.entry;
  }

  effects(): Effect {
    if ((this.known & Known.Effects) === 0) {
      if (this.found.length !== 0) this.found.length = 0;
      if ((this.known & Known.Text) === 0) this.findText();
      this.fx = this.textFrom < 0 ? Effect.None : scanEffects(this.b, this.textFrom, this.end, this.found, this.env.statelessFunctions);
      this.known |= Known.Effects;
    }
    return this.fx;
  }

  spans(): readonly StatementSpan[] {
    this.effects();
    return this.found;
  }

  /** Whether its SQL may write (the classifier; a Bind: what its statement was judged; unknown: yes). */
  isWrite(): boolean {
    if ((this.known & Known.Write) === 0) {
      const t = this.type;
      let w = true;
      if (t === Fe.Query || t === Fe.Parse) w = this.textBytes() === null || this.env.classifier.isWrite(this.sql());
      else if (t === Fe.Bind) w = this.statement()?.write ?? true;
      this.write = w;
      this.known |= Known.Write;
    }
    return this.write;
  }

  // ---- QueryCtx ----

  sqlBytes(): Uint8Array {
    return this.textBytes() ?? EMPTY;
  }

  sqlSpan(span: ByteSpan): void {
    if (!this.settled && this.type !== Fe.Bind) {
      if ((this.known & Known.Text) === 0) this.findText();
      if (this.textFrom >= 0) {
        span.bytes = this.b;
        span.from = this.textFrom;
        span.to = this.textTo;
        return;
      }
    }
    const t = this.textBytes() ?? EMPTY;
    span.bytes = t;
    span.from = 0;
    span.to = t.length;
  }

  requestBytes(): Uint8Array {
    if (this.raw === null) this.raw = this.rawEnd < 0 ? EMPTY : this.b.subarray(this.pos, this.rawEnd);
    return this.raw;
  }

  preparedStatement(): Uint8Array | null {
    return this.prepared;
  }

  captureReply(maxBytes: number): void {
    if (maxBytes > this.captureMax) this.captureMax = maxBytes;
  }

  /**
   * The receive buffer moves on: drop the views; with `keepText`, keep a copy of the text's bytes
   * (for result hooks that read it; decoded only if asked). A text already decoded stays either way.
   */
  settle(keepText = true): void {
    const t = keepText ? this.textBytes() : null;
    this.keptText = t === null || t.buffer !== this.b.buffer ? t : t.slice();
    this.settled = true;
    this.b = EMPTY;
    this.raw = null;
    this.rawEnd = -1;
  }

  /**
   * A fresh view at the same message (`next`: a recycled one, or a new one), with what this one
   * learned of its text and effects; this one is settled for a module to keep (`keepText`: with a
   * copy of its text's bytes).
   */
  handOver(keepText = true, next: RequestCtx = new RequestCtx(this.env)): RequestCtx {
    next.at(this.type, this.b, this.pos, this.end);
    if ((this.known & Known.Effects) !== 0) {
      // The forwarder asks again for the same message: no second scan.
      next.fx = this.fx;
      for (const s of this.found) next.found.push(s);
      next.known |= Known.Effects | (this.known & Known.Text);
      next.textFrom = this.textFrom;
      next.textTo = this.textTo;
    }
    if ((this.known & Known.Sql) !== 0) {
      next.text = this.text;
      next.known |= Known.Sql;
    }
    this.settle(keepText);
    return next;
  }

  /**
   * The modules are done with this request (its result hooks returned): forget it, to be handed
   * over to again (a request's view, its text and memoised facts, allocated once per forwarder
   * rather than once per request).
   */
  recycle(): void {
    this.settled = false;
    this.keptText = null;
    this.text = "";
    this.known = 0;
    this.b = EMPTY;
    this.found.length = 0;
    this.raw = null;
    this.rawEnd = -1;
    this.prepared = null;
    this.entry = undefined;
    this.shape = null;
    this.tree = undefined;
    this.captureMax = 0;
  }

  /** Normalised text, fingerprint, kind: one lexer pass, cached by text across requests. */
  facts(): QueryShape {
    return (this.shape ??= this.env.shapes.get(this.sql()));
  }

  fingerprint(): string {
    return this.facts().fingerprint;
  }

  parse(): unknown {
    if (this.tree === undefined) this.tree = this.env.parser(this.sql());
    return this.tree;
  }
}

/** A simple Query's view for `sql` (UTF-8) as modules see it, outside a session (tests, benchmarks). */
export function queryCtx(session: SessionCtx, txStatus: "I" | "T" | "E", sql: Uint8Array, shapes: QueryShapeCache, parser: (sql: string) => unknown): RequestCtx {
  const msg = new Uint8Array(sql.length + 6);
  msg[0] = Fe.Query;
  new DataView(msg.buffer).setInt32(1, sql.length + 5);
  msg.set(sql, 5);
  const q = new RequestCtx({ statements: new Map(), shapes, parser, classifier: { isWrite: () => true }, statelessFunctions: new Set() }).at(Fe.Query, msg, 0, msg.length);
  q.begin(session, txStatus, msg.length);
  return q;
}

/** The result of a finished request as modules see it: one per forwarder, filled for each request (it holds until the result hooks return). */
export class ResultView implements ResultCtx {
  query!: RequestCtx;
  node = "";
  commandTag = "";
  rows = 0;
  durationMs = 0;
  waitMs: number | undefined = undefined;
  txStatus: "I" | "T" | "E" = "I";
  error: { code: string; message: string } | undefined = undefined;
  reply: Uint8Array | undefined = undefined;
  answeredBy: string | undefined = undefined;

  /** A request a server answered, from what its server tallied. */
  served(query: RequestCtx, node: string, t: ResultTally, status: number): this {
    this.query = query;
    this.node = node;
    this.commandTag = t.tag;
    this.rows = t.rows;
    this.durationMs = performance.now() - query.startedAt;
    this.waitMs = query.serverAt > 0 ? query.serverAt - query.startedAt : undefined;
    this.txStatus = txLetter(status);
    this.error = t.errorCode !== "" ? { code: t.errorCode, message: t.errorMessage } : undefined;
    this.reply = query.captureMax > 0 ? t.reply() : undefined;
    this.answeredBy = undefined;
    return this;
  }

  /** A request a module answered with `messages` (no server): rows, tag and error read from them. */
  answered(query: RequestCtx, messages: Uint8Array, status: number, source: string): this {
    let rows = 0;
    let tag = "";
    let error: { code: string; message: string } | undefined;
    for (let p = 0; p + 5 <= messages.length; ) {
      const type = messages[p]!;
      const end = p + 1 + readInt32(messages, p + 1);
      if (type === Be.DataRow) rows++;
      else if (type === Be.CommandComplete) tag = decodeAscii(messages, p + 5, end - 1);
      else if (type === Be.ErrorResponse && error === undefined) {
        const f = errorFields(messages, p + 5, end);
        error = { code: f.code, message: f.message };
      }
      p = end;
    }
    this.query = query;
    this.node = "";
    this.commandTag = tag;
    this.rows = rows;
    this.durationMs = performance.now() - query.startedAt;
    this.waitMs = undefined;
    this.txStatus = txLetter(status);
    this.error = error;
    this.reply = undefined;
    this.answeredBy = source;
    return this;
  }

  /** The hooks returned: nothing of the request stays referenced. */
  clear(): void {
    this.error = undefined;
    this.reply = undefined;
  }
}
