// What each client session's cached replies depend on: login, startup settings and the SETs that took effect, followed as they commit.

import type { SessionCtx } from "../../core/hooks.ts";
import { SessionChange, type Analysis } from "./analysis.ts";

/** Startup parameters that do not change a reply's bytes (or are in the key already). */
const NOT_OUTPUT = new Set(["user", "database", "application_name", "fallback_application_name", "replication", "traceparent", "tracestate"]);

const utf8 = new TextDecoder();
/** Protocol statements remembered per session. */
const MAX_STATEMENTS = 10_000;

/** A request's SETs waiting for the end of their transaction. */
interface PendingChange {
  readonly analysis: Analysis;
  readonly text: string;
}

export class SessionKey {
  /** Database, login user, startup settings: fixed for the session. */
  private readonly login: string;
  /** Parameter -> the statement that last set it (in the order they were last set). */
  private readonly sets = new Map<string, string>();
  private cached: string | null = null;
  /** Requests with session changes sent and not yet answered. */
  changesInFlight = 0;
  /** Changes inside the open transaction: they count at COMMIT. */
  private txChanges: PendingChange[] = [];
  /** The proxy cannot tell the session's settings or role any more: no cache for it. */
  unknown = false;
  /** The session made temporary objects: its names may shadow others'. */
  temp = false;
  /** Protocol statements this session prepared: name ("" = the unnamed one) -> text. */
  private readonly statements = new Map<string, string>();

  /**
   * The statements of a request's messages up to its Sync, in order: each Parse's text (remembered
   * by name) and the text each Bind executes (undefined when this session never prepared it).
   * `complete`: the Sync is among the bytes (else later messages are not known yet).
   */
  runTexts(raw: Uint8Array): { texts: (string | undefined)[]; complete: boolean; prepareOnly: boolean } {
    const texts: (string | undefined)[] = [];
    // Only Parse, Describe, Close and Flush so far: the run prepares statements and will execute them later (postgres.js).
    let prepareOnly = true;
    let pos = 0;
    while (pos + 5 <= raw.length) {
      const type = raw[pos]!;
      const end = pos + 1 + (((raw[pos + 1]! << 24) | (raw[pos + 2]! << 16) | (raw[pos + 3]! << 8) | raw[pos + 4]!) >>> 0);
      if (end > raw.length) break;
      if (type === 83) return { texts, complete: true, prepareOnly }; // 'S'
      if (type !== 80 && type !== 68 && type !== 67 && type !== 72) prepareOnly = false;
      if (type === 80) {
        const nameEnd = raw.indexOf(0, pos + 5);
        const textEnd = nameEnd < 0 ? -1 : raw.indexOf(0, nameEnd + 1);
        if (textEnd < 0 || textEnd >= end) break;
        const text = utf8.decode(raw.subarray(nameEnd + 1, textEnd));
        // Bounded: a session preparing without end forgets them all (a Bind of a forgotten one then counts as unknown).
        if (this.statements.size >= MAX_STATEMENTS) this.statements.clear();
        this.statements.set(utf8.decode(raw.subarray(pos + 5, nameEnd)), text);
        texts.push(text);
      } else if (type === 66) texts.push(this.statementText(raw.subarray(pos, end)));
      pos = end;
    }
    return { texts, complete: false, prepareOnly: prepareOnly && pos === raw.length && raw[pos - 5] === 72 };
  }

  /** The text of the statement the Bind at raw[0] executes, if this session prepared it. */
  statementText(raw: Uint8Array): string | undefined {
    const portalEnd = raw.indexOf(0, 5);
    const nameEnd = portalEnd < 0 ? -1 : raw.indexOf(0, portalEnd + 1);
    if (nameEnd < 0) return undefined;
    return this.statements.get(utf8.decode(raw.subarray(portalEnd + 1, nameEnd)));
  }

  /** The last unnamed Parse was answered from the cache: the server does not have that statement. */
  unnamedAnswered = false;
  /** Tables this session wrote in its open transaction (dropped again when it ends). */
  openWrites: Set<string> | "all" | null = null;
  /** The open transaction changed the schema. */
  openDdl = false;

  constructor(s: SessionCtx) {
    // Tenants may be served by different servers or schemas: their replies never meet.
    let k = `${s.database}\u0000${s.user}\u0000${s.tenant ?? ""}`;
    const params = s.params === undefined ? [] : [...s.params].filter(([n]) => !NOT_OUTPUT.has(n)).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    for (const [n, v] of params) k += `\u0000${n}=${v}`;
    this.login = k;
  }

  /** Everything about the session that changes a reply's bytes. */
  get key(): string {
    if (this.cached === null) {
      let k = this.login;
      for (const text of this.sets.values()) k += `\u0001${text}`;
      this.cached = k;
    }
    return this.cached;
  }

  /** The session may use the cache now (outside a transaction, nothing pending or unknown). */
  usable(): boolean {
    return !this.unknown && !this.temp && this.changesInFlight === 0 && this.txChanges.length === 0 && this.openWrites === null;
  }

  /** A request was sent: changes the proxy cannot follow count at once. */
  sent(a: Analysis): void {
    if (a.change & SessionChange.Unknown) this.unknown = true;
    if (a.change & SessionChange.Temp) this.temp = true;
    if (a.change & (SessionChange.Sets | SessionChange.ResetAll | SessionChange.Discard)) this.changesInFlight++;
  }

  /**
   * A request was answered. Its SETs join the transaction's; when the transaction ends they take
   * effect (COMMIT, or autocommit without an error) or are dropped (ROLLBACK, error). Anything the
   * proxy cannot be sure of makes the session's state unknown.
   */
  answered(a: Analysis, text: string, txStatus: "I" | "T" | "E", tag: string, failed: boolean): void {
    const changes = a.change & (SessionChange.Sets | SessionChange.ResetAll | SessionChange.Discard);
    if (changes !== 0) {
      this.changesInFlight--;
      // Transaction control and changes in one multi-statement request: which survived is not known.
      if (a.txControl && a.statements > 1) this.unknown = true;
      this.txChanges.push({ analysis: a, text });
    }
    if (this.txChanges.length === 0) return;
    if (a.partialRollback) {
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
    const a = p.analysis;
    this.cached = null;
    if (a.change & SessionChange.Discard) {
      this.sets.clear();
      this.temp = false;
      if (a.statements === 1) this.unknown = false;
    }
    if (a.change & SessionChange.ResetAll) {
      // RESET ALL leaves the role and session authorization as they are (PostgreSQL's NO_RESET_ALL); be sure rather than assume.
      if (this.sets.has("role") || this.sets.has("session_authorization")) this.unknown = true;
      this.sets.clear();
    }
    for (const name of a.sets) {
      if (name === "session_authorization") this.sets.delete("role");
      this.sets.delete(name);
      this.sets.set(name, p.text);
    }
  }
}
