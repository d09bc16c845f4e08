// What each client session's cached replies depend on: login, startup settings and the SETs that took effect, followed as they commit (read by the core's session-effects scan and SessionState).

import type { Learned } from "../../sql/template-index.ts";
import type { Known } from "./memo.ts";
import { LRUCache } from "lru-cache";
import { cstringEnd } from "../../protocol/framing.ts";
import type { SessionCtx } from "../../core/hooks.ts";
import { SessionState } from "../../sql/session-state.ts";
import { Effect, scanEffects, type StatementSpan } from "../../sql/session-effects.ts";
import { SessionChange, type Analysis } from "./analysis.ts";

/** Startup parameters that do not change a reply's bytes (or are in the key already). */
const NOT_OUTPUT = new Set(["user", "database", "application_name", "fallback_application_name", "replication", "traceparent", "tracestate"]);

const utf8 = new TextDecoder();
/**
 * Protocol statements remembered per session, by estimated bytes (name and text as two-byte
 * strings, and the entry): the least recently prepared or executed is forgotten first, and a Bind
 * of a forgotten one counts as unknown (it may write anything or change the session).
 */
export const STATEMENTS_MAX_BYTES = 4 * 1024 * 1024;
const statementBytes = (text: string, name: string) => 2 * (name.length + text.length) + 128;

/** Effects that change the session's settings: followed until they commit. */
export const SETTINGS = Effect.SetGuc | Effect.DiscardAll;
/** Effects the cache cannot follow: the value of set_config comes in a Bind. */
const UNFOLLOWED = Effect.SetGucParam;

const utf8Encoder = new TextEncoder();

/** The session effects of a statement text (the core's scan), and the statements that have them. */
export function settingsEffects(text: string, spans?: StatementSpan[]): Effect {
  const b = utf8Encoder.encode(text);
  return scanEffects(b, 0, b.length, spans);
}

/** A statement text with settings effects waiting for the end of its transaction. */
interface PendingChange {
  readonly text: string;
  /** The text is one statement (a DISCARD ALL alone makes the session known again). */
  readonly single: boolean;
}

export class SessionKey {
  /** Database, login user, tenant: fixed for the session. */
  private readonly login: string;
  /** Startup settings and the SETs that took effect, as the core models them (RESET ALL keeps the role...). */
  private readonly state: SessionState;
  private cached: string | null = null;
  /** Requests with settings changes sent and not yet answered. */
  changesInFlight = 0;
  /** Changes inside the open transaction: they count at COMMIT. */
  private txChanges: PendingChange[] = [];
  /** The proxy cannot tell the session's settings or role any more: no cache for it. */
  unknown = false;
  /** The session made temporary objects: its names may shadow others'. */
  temp = false;
  /** Protocol statements this session prepared: name ("" = the unnamed one) -> text (made at its first Parse). */
  private statements: LRUCache<string, string> | null = null;

  /**
   * The statements of a request's messages up to its Sync, in order: each Parse's text (remembered
   * by name) and the text each Bind executes (undefined when this session never prepared it).
   * `complete`: the Sync is among the bytes (else later messages are not known yet).
   */
  runTexts(raw: Uint8Array, firstText?: string): { texts: (string | undefined)[]; complete: boolean; prepareOnly: boolean } {
    const texts: (string | undefined)[] = [];
    // Only Parse, Describe, Close and Flush so far: the run prepares statements and will execute them later (postgres.js).
    let prepareOnly = true;
    // The run's last Parse: its Bind in the same run finds it even when it was too large to remember.
    let parsedName: string | null = null;
    let parsedText = "";
    let pos = 0;
    while (pos + 5 <= raw.length) {
      const type = raw[pos]!;
      const end = pos + 1 + (((raw[pos + 1]! << 24) | (raw[pos + 2]! << 16) | (raw[pos + 3]! << 8) | raw[pos + 4]!) >>> 0);
      if (end > raw.length) break;
      if (type === 83) return { texts, complete: true, prepareOnly }; // 'S'
      if (type !== 80 && type !== 68 && type !== 67 && type !== 72) prepareOnly = false;
      if (type === 80) {
        const nameEnd = cstringEnd(raw, pos + 5, end);
        const textEnd = nameEnd < 0 ? -1 : cstringEnd(raw, nameEnd + 1, end);
        if (textEnd < 0 || textEnd >= end) break;
        // The request's own first Parse: its text as the proxy decoded it already.
        const text = pos === 0 && firstText !== undefined ? firstText : utf8.decode(raw.subarray(nameEnd + 1, textEnd));
        const name = nameEnd === pos + 5 ? "" : utf8.decode(raw.subarray(pos + 5, nameEnd));
        this.remember(name, text);
        parsedName = name;
        parsedText = text;
        texts.push(text);
      } else if (type === 66) {
        const name = this.statementName(raw, pos, end);
        texts.push(name !== undefined && name === parsedName ? parsedText : this.textOf(name));
      }
      pos = end;
    }
    return { texts, complete: false, prepareOnly: prepareOnly && pos === raw.length && raw[pos - 5] === 72 };
  }

  /** The text of the statement the Bind at raw[0] executes, if this session prepared it (and still remembers it). */
  statementText(raw: Uint8Array): string | undefined {
    return this.textOf(this.statementName(raw, 0, raw.length));
  }

  private textOf(name: string | undefined): string | undefined {
    if (name === "") return this.unnamed;
    return name === undefined ? undefined : this.statements?.get(name);
  }

  /** A Parse of `name` with `text`: a text too large to remember (over a quarter of the bound) forgets any earlier one of that name too. */
  private remember(name: string, text: string): void {
    if (name === "") {
      // The unnamed statement, replaced by nearly every extended request: a field, not an entry of the list.
      this.unnamed = statementBytes(text, name) > STATEMENTS_MAX_BYTES / 4 ? undefined : text;
      return;
    }
    this.statements ??= new LRUCache<string, string>({ maxSize: STATEMENTS_MAX_BYTES, maxEntrySize: STATEMENTS_MAX_BYTES / 4, sizeCalculation: statementBytes });
    this.statements.set(name, text);
  }

  /** The text of the unnamed statement as last prepared, when not too large to keep. */
  private unnamed: string | undefined = undefined;

  /** Statements remembered and their estimated bytes. */
  statementStats(): { entries: number; bytes: number } {
    return { entries: this.statements?.size ?? 0, bytes: this.statements?.calculatedSize ?? 0 };
  }

  /** The statement name of the Bind at raw[pos, end). */
  private statementName(raw: Uint8Array, pos: number, end: number): string | undefined {
    const portalEnd = cstringEnd(raw, pos + 5, end);
    const nameEnd = portalEnd < 0 ? -1 : cstringEnd(raw, portalEnd + 1, end);
    if (nameEnd < 0) return undefined;
    return nameEnd === portalEnd + 1 ? "" : utf8.decode(raw.subarray(portalEnd + 1, nameEnd));
  }

  /** The template the session's last simple Query was found by (its next statement is looked for after it first). */
  lastTemplate: Learned<Known> | null = null;
  /** The last unnamed Parse was answered from the cache: the server does not have that statement. */
  unnamedAnswered = false;
  /** Tables this session wrote in its open transaction (dropped again when it ends). */
  openWrites: Set<string> | "all" | null = null;
  /** The open transaction changed the schema. */
  openDdl = false;
  /** The session's commit position when its open transaction first wrote (its commit must be past it). */
  lsnBefore = 0;

  constructor(s: SessionCtx) {
    // Tenants may be served by different servers or schemas: their replies never meet.
    this.login = `${s.database}\u0000${s.user}\u0000${s.tenant ?? ""}`;
    this.state = new SessionState(new Map([...(s.params ?? [])].filter(([n]) => !NOT_OUTPUT.has(n))));
  }

  /** Everything about the session that changes a reply's bytes. */
  get key(): string {
    return (this.cached ??= `${this.login}\u0000${this.state.key}`);
  }

  /** Settings changes are sent and not answered, or wait for their transaction's end. */
  changesPending(): boolean {
    return this.changesInFlight > 0 || this.txChanges.length > 0;
  }

  /** The session may use the cache now (outside a transaction, nothing pending or unknown). */
  usable(): boolean {
    return !this.unknown && !this.temp && this.changesInFlight === 0 && this.txChanges.length === 0 && this.openWrites === null;
  }

  /** A request was sent (`fx`: its statements' effects by the core's scan): changes the proxy cannot follow count at once. */
  sent(a: Analysis, fx: Effect): void {
    if (a.change & SessionChange.Unknown || fx & UNFOLLOWED) this.unknown = true;
    if (a.change & SessionChange.Temp) this.temp = true;
    if (fx & SETTINGS) this.changesInFlight++;
  }

  /**
   * A request was answered; `changes` are its statement texts with settings effects. They join
   * the transaction's; when the transaction ends they take effect (COMMIT, or autocommit without
   * an error) or are dropped (ROLLBACK, error). Anything the proxy cannot be sure of makes the
   * session's state unknown.
   */
  answered(a: Analysis, fx: Effect, changes: readonly string[], txStatus: "I" | "T" | "E", tag: string, failed: boolean): void {
    if (fx & SETTINGS) {
      this.changesInFlight--;
      // Transaction control and changes in one multi-statement request: which survived is not known.
      if (a.txControl && a.statements > 1) this.unknown = true;
      for (const text of changes) this.txChanges.push({ text, single: a.statements === 1 });
    }
    if (this.txChanges.length === 0) return;
    if (fx & (Effect.RollbackTo | Effect.Release)) {
      // Which SETs a savepoint undid is not followed.
      this.unknown = true;
      this.txChanges = [];
      return;
    }
    if (txStatus !== "I") return;
    const pending = this.txChanges;
    this.txChanges = [];
    if (failed || tag === "ROLLBACK") return;
    for (const p of pending) this.apply(p);
  }

  private apply(p: PendingChange): void {
    this.cached = null;
    const spans: StatementSpan[] = [];
    settingsEffects(p.text, spans);
    const b = utf8Encoder.encode(p.text);
    for (const span of spans) {
      if (span.effect & Effect.DiscardAll) {
        this.state.resetAll();
        this.temp = false;
        if (p.single) this.unknown = false;
      } else if (span.effect & Effect.SetGuc && !this.state.record(utf8.decode(b.subarray(span.start, span.end)))) this.unknown = true;
    }
  }
}
