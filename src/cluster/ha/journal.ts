// A session's open transaction as the client lived it: its request messages, a hash of the replies it had, and the transaction id read before COMMIT.

import { Be, Fe, TxStatus } from "../../protocol/codes.ts";
import { errorFields } from "../../protocol/errors.ts";
import { readInt32 } from "../../protocol/framing.ts";
import { redactSecrets } from "../../protocol/secrets.ts";
import type { Sink } from "../../server/connection.ts";
import type { JournaledStatement } from "./replay-registry.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const crc32 = Bun.hash.crc32;

/** One request: Query, FunctionCall, or the extended-protocol messages up to Sync. */
export interface JournalEntry {
  /** The client's messages as it sent them (null once the journal is over its size cap). */
  bytes: Uint8Array | null;
  /** Replies relayed to the client for it (NoticeResponse, ParameterStatus and notifications not counted). */
  replies: number;
  /** Bun.hash.crc32 over those replies, chained; an ErrorResponse counts by type and SQLSTATE only. */
  crc: number;
  /** Its ReadyForQuery reached the client (once is enough: a replay does not take it back). */
  answered: boolean;
  /** Its ReadyForQuery came in the current run (a replay starts every entry afresh). */
  done: boolean;
  /** Status byte of that ReadyForQuery. */
  status: number;
  /** Its text ends a transaction (COMMIT / END). */
  commit: boolean;
  /** It carries a Query, Execute or FunctionCall: a Parse, Bind or Sync alone runs nothing (a COMMIT in one ends no transaction). */
  runs: boolean;
  /** The COMMIT comes after other statements of the same Query: their replies cannot be given without running them. */
  commitLater: boolean;
  /** SQL text for inspection (a Bind shows its statement's text). */
  sql: string;
  /** DataRows relayed for it and their crc (cursor positions). */
  dataRows: number;
  dataCrc: number;
  /** Tag of its last CommandComplete. */
  tag: string;
  /** A FETCH or MOVE on a cursor session migration follows ("" otherwise). */
  cursorSql: string;
  /**
   * The proxy's own error raised in place of the client's request (a refusal after a lost
   * connection, or a module's rejection), and whether the session was inside a transaction.
   */
  refused: Refusal | null;
}

/** An error the proxy raised on the server in place of a client request. */
export interface Refusal {
  code: string;
  message: string;
  inTx: boolean;
}

/** Transaction id read before COMMIT: not asked, asked without answer yet, read-only (null), a value, or the read failed. */
export type XidState = { kind: "none" } | { kind: "asked"; epoch: number } | { kind: "null" } | { kind: "value"; xid: string; epoch: number } | { kind: "failed" };

/**
 * A deadlock or serialization failure met by a request sent again: "pass" (a reply like any other,
 * compared with what the client had), "retry" (a conflict retry's run: kept from the client within
 * max_attempts retries per transaction, then given to it), "keep" (a failover replay's run: always
 * kept; the recovery runs the transaction again or refuses it with the conflict's SQLSTATE).
 */
export type ReplayConflicts = "pass" | "retry" | "keep";

/** A conflict kept from the client: its SQLSTATE and PostgreSQL's message. */
export interface KeptConflict {
  code: string;
  message: string;
}

/** What a replay of one entry is checked against, and what it found. */
interface ReplayCheck {
  entry: JournalEntry;
  /** Replies the client already had: these are swallowed and must hash the same. */
  skip: number;
  seen: number;
  crc: number;
}

/**
 * The requests since the session was last idle outside a transaction, in order, with the replies
 * each got. Also the Sink between the server and the client: it hashes what goes by, and while a
 * replay runs it swallows the replies the client already had, checking they hash the same.
 */
export class Journal implements Sink {
  readonly entries: JournalEntry[] = [];
  /** First entry whose ReadyForQuery has not come. */
  private open = 0;
  bytes = 0;
  /** The open transaction went over the size cap: its messages are no longer kept. */
  private overflowed = false;
  /** Why the open transaction cannot be replayed ("" while it can). */
  unsafe = "";
  xid: XidState = { kind: "none" };
  /** Set while entries are being re-sent: the forwarder does not journal them again. */
  replaying = false;
  /** What a deadlock or serialization failure in the request being sent again does while a replay runs; "pass" again when it ends. */
  replayConflicts: ReplayConflicts = "pass";
  /** SQLSTATE of a conflict that went to the client in a conflict retry's run, the retries spent ("" when none). */
  conflictGiven = "";
  /** The last deadlock or serialization failure kept from the client (null before the first). */
  keptConflict: KeptConflict | null = null;
  private check: ReplayCheck | null = null;
  /**
   * A deadlock or serialization failure ended the newest request and was kept from the client
   * (called at its ReadyForQuery, which was kept too): the transaction is to run again. Set only
   * with retry_conflicts.
   */
  onConflict: ((entry: JournalEntry) => void) | null = null;
  /** Conflicts retried in the open transaction (bounded by max_attempts). */
  conflictRetries = 0;
  private maxRetries = 0;
  /** The entry whose conflict error is being kept from the client, until its ReadyForQuery. */
  private conflict: JournalEntry | null = null;
  /** A FETCH/MOVE entry was answered the first time (its tag and rows move a cursor). */
  onCursorMoved: ((entry: JournalEntry) => void) | null = null;
  /** Called when a replayed entry's ReadyForQuery has arrived (mismatch: its replies differed). */
  onReplayed: ((entry: JournalEntry, mismatch: boolean) => void) | null = null;
  /** Called at the ReadyForQuery of a conflict kept from the client in a replay (replayConflicts "retry" or "keep"): roll back and run again. */
  onReplayConflict: ((entry: JournalEntry) => void) | null = null;
  /** A message split over writes (an oversized row): its type, bytes left, and whether it is swallowed. */
  private partType = 0;
  private partLeft = 0;
  private partSwallow = false;

  constructor(
    private readonly client: Sink,
    private readonly maxBytes: number,
    private readonly volatile: RegExp | null,
  ) {}

  /** Retry deadlocks and serialization failures up to `max` times per transaction, calling `f`. */
  retryConflicts(max: number, f: (entry: JournalEntry) => void): void {
    this.maxRetries = max;
    this.onConflict = f;
  }

  // ---- requests ---------------------------------------------------------------------------

  /** A request starts: `sql` its text (or ""). */
  begin(sql: string): JournalEntry {
    const e: JournalEntry = {
      bytes: null,
      replies: 0,
      crc: 0,
      answered: false,
      done: false,
      status: 0,
      commit: isCommit(sql),
      runs: false,
      commitLater: false,
      sql,
      dataRows: 0,
      dataCrc: 0,
      tag: "",
      cursorSql: "",
      refused: null,
    };
    if (e.commit) e.commitLater = !startsWithCommit(sql);
    if (this.unsafe === "" && this.volatile !== null && sql !== "") {
      const m = this.volatile.exec(sql);
      if (m) this.unsafe = `it used ${(m[1] ?? m[2]!).toLowerCase()}, whose value differs on a second run`;
    }
    this.entries.push(e);
    return e;
  }

  /** Append the client message b[from, to) to the newest entry. */
  add(b: Uint8Array, from: number, to: number): void {
    const e = this.entries[this.entries.length - 1];
    if (e === undefined) return;
    const type = b[from];
    if (type === Fe.Query || type === Fe.Execute || type === Fe.FunctionCall) e.runs = true;
    const n = to - from;
    this.bytes += n;
    if (this.bytes > this.maxBytes) {
      if (!this.overflowed) {
        // Past the cap the messages are not kept (the transaction is not replayable); replies are still counted.
        this.overflowed = true;
        this.unsafe = `it is over max_journal_bytes (${this.maxBytes})`;
        for (const x of this.entries) x.bytes = null;
      }
      return;
    }
    const old = e.bytes;
    if (old === null) e.bytes = b.slice(from, to);
    else {
      const next = new Uint8Array(old.length + n);
      next.set(old);
      next.set(b.subarray(from, to), old.length);
      e.bytes = next;
    }
  }

  /** The request at hand is refused by the proxy before reaching a server: forget it. */
  dropLast(): void {
    const e = this.entries.pop();
    if (e?.bytes) this.bytes -= e.bytes.length;
  }

  /** Entries the client has had no ReadyForQuery for, oldest first. */
  inFlight(): JournalEntry[] {
    return this.entries.filter((e) => !e.answered);
  }

  /** Transaction-id reads sent and not answered yet, oldest first: whether it is the one before a COMMIT, and the transaction it was asked in. */
  private readonly xidReads: { commit: boolean; gen: number }[] = [];
  /** Moves on when a transaction ends (the journal goes idle): an answer asked in an earlier one is not this one's id. */
  private gen = 0;

  /** Whether an early read (after a write inside the transaction) is still worth sending: no id known yet. */
  get xidUnknown(): boolean {
    return this.xid.kind === "none";
  }

  /** A transaction-id read was sent: before a COMMIT (`commit`), or early, after a write inside the transaction. */
  xidAsked(commit: boolean, epoch: number): void {
    this.xidReads.push({ commit, gen: this.gen });
    if (commit) this.xid = { kind: "asked", epoch };
  }

  /**
   * A transaction-id answer (value "" = NULL, null = the read failed; `inTx` it was read inside a
   * transaction). The read before a COMMIT settles the state; an early one only ever supplies the id.
   */
  xidRead(value: string | null, inTx: boolean, epoch: number): void {
    // An answer nobody waits for any more (the journal was cleared meanwhile) says nothing.
    const read = this.xidReads.shift();
    if (read === undefined || read.gen !== this.gen) return;
    if (read.commit) {
      const asked = this.xid.kind === "asked" ? this.xid.epoch : epoch;
      if (this.xid.kind === "asked") this.xid = value === null ? { kind: "failed" } : value === "" ? { kind: "null" } : { kind: "value", xid: value, epoch: asked };
    } else if (inTx && value !== null && value !== "" && (this.xid.kind === "none" || this.xid.kind === "asked")) {
      // The read before the COMMIT may still be on its way: it would tell the same id.
      this.xid = { kind: "value", xid: value, epoch: this.xid.kind === "asked" ? this.xid.epoch : epoch };
    }
  }

  /** The server is gone: answers still owed by it will never come. */
  serverGone(): void {
    this.xidReads.length = 0;
  }

  /** Forget everything (DISCARD, a finished recovery that could not replay). */
  clear(): void {
    this.entries.length = 0;
    this.open = 0;
    this.bytes = 0;
    this.overflowed = false;
    this.conflictRetries = 0;
    this.conflict = null;
    this.conflictGiven = "";
    this.keptConflict = null;
    this.unsafe = "";
    this.xid = { kind: "none" };
    this.xidReads.length = 0;
    this.check = null;
  }

  // ---- replies (Sink) ----------------------------------------------------------------------

  /** Replies on their way to the client: hash them into the entry they answer; swallow what a replay repeats. */
  write(b: Uint8Array, from = 0, to = b.length): boolean {
    if (this.conflict !== null) return this.keepConflict(b, from, to);
    if (this.check === null && this.partLeft === 0) {
      const stop = this.observe(b, from, to);
      if (stop === to) return this.client.write(b, from, to);
      // A conflict to retry starts at `stop`: what came before goes on, the rest is kept back.
      const ok = stop > from ? this.client.write(b, from, stop) : true;
      return this.keepConflict(b, stop, to) && ok;
    }
    return this.filter(b, from, to);
  }

  /** Drop the conflict's error and what follows up to its ReadyForQuery; then the transaction runs again. */
  private keepConflict(b: Uint8Array, from: number, to: number): boolean {
    let p = from;
    while (p + 5 <= to) {
      const type = b[p]!;
      p += 1 + readInt32(b, p + 1);
      if (type === Be.ReadyForQuery) {
        const e = this.conflict!;
        this.conflict = null;
        // A failover replay's runs again count as the recovery's attempts, not as this transaction's retries.
        if (this.replayConflicts !== "keep") this.conflictRetries++;
        if (this.replaying) {
          this.check = null;
          this.onReplayConflict?.(e);
        } else this.onConflict?.(e);
        return p < to ? this.write(b, p, to) : true;
      }
    }
    return true;
  }

  /**
   * Is this error one to hide and retry? Only in a replayable transaction: outside a replay for the
   * newest request (retry_conflicts, within the bound); in a replay for the request being sent
   * again, as replayConflicts says.
   */
  private retries(e: JournalEntry, b: Uint8Array, p: number, end: number): boolean {
    if (this.unsafe !== "") return false;
    if (this.replaying) {
      if (this.replayConflicts === "pass" || this.check?.entry !== e) return false;
    } else if (this.onConflict === null || this.entries[this.entries.length - 1] !== e) return false;
    const { code, message } = errorFields(b, p + 5, end);
    if (code !== "40P01" && code !== "40001") return false;
    if ((this.replaying && this.replayConflicts === "keep") || this.conflictRetries < this.maxRetries) {
      this.keptConflict = { code, message };
      return true;
    }
    if (this.replaying) this.conflictGiven = code;
    return false;
  }

  /**
   * Normal path: hash runs of counted messages in one call each, close entries at ReadyForQuery.
   * Returns `to`, or where an error to retry starts (nothing from there on was counted).
   */
  private observe(b: Uint8Array, from: number, to: number): number {
    let p = from;
    let run = from;
    while (p < to) {
      const e = this.entries[this.open];
      if (to - p < 5) {
        // Never expected (writes carry whole headers); count it so the entry still closes in order.
        if (e !== undefined) e.crc = crc32(b.subarray(run, to), e.crc);
        return to;
      }
      const type = b[p]!;
      const end = p + 1 + readInt32(b, p + 1);
      if (e === undefined) {
        p = run = Math.min(end, to);
        if (end > to) this.startPart(type, end - to, false);
        continue;
      }
      if (type === Be.NoticeResponse || type === Be.ParameterStatus || type === Be.NotificationResponse || type === Be.ErrorResponse) {
        if (p > run) e.crc = crc32(b.subarray(run, p), e.crc);
        if (type === Be.ErrorResponse && end <= to && this.retries(e, b, p, end)) {
          this.conflict = e;
          return p;
        }
        if (type === Be.ErrorResponse) {
          e.crc = crc32(errorKey(b, p, Math.min(end, to)), e.crc);
          e.replies++;
        }
        p = run = Math.min(end, to);
        if (end > to) this.startPart(type, end - to, false);
        continue;
      }
      e.replies++;
      if (e.cursorSql !== "") {
        if (type === Be.DataRow) {
          e.dataRows++;
          if (end <= to) e.dataCrc = crc32(b.subarray(p, end), e.dataCrc);
        } else if (type === Be.CommandComplete && end <= to) e.tag = decoder.decode(b.subarray(p + 5, end - 1));
      }
      if (end > to) {
        e.crc = crc32(b.subarray(run, to), e.crc);
        this.startPart(type, end - to, false);
        return to;
      }
      p = end;
      if (type === Be.ReadyForQuery) {
        e.crc = crc32(b.subarray(run, p), e.crc);
        run = p;
        this.closeEntry(e, b[p - 1]!);
      }
    }
    const e = this.entries[this.open];
    if (e !== undefined && p > run) e.crc = crc32(b.subarray(run, p), e.crc);
    return to;
  }

  private startPart(type: number, left: number, swallow: boolean): void {
    this.partType = type;
    this.partLeft = left;
    this.partSwallow = swallow;
  }

  /** Slow path (a replay is running, or a message spans writes): message by message. */
  private filter(b: Uint8Array, from: number, to: number): boolean {
    let ok = true;
    let p = from;
    let pass = from; // start of bytes still to pass to the client
    const flushTo = (q: number) => {
      if (q > pass) ok = this.client.write(b, pass, q) && ok;
    };
    if (this.partLeft > 0) {
      const n = Math.min(this.partLeft, to - p);
      const e = this.entries[this.open];
      const counted = this.partType !== Be.NoticeResponse && this.partType !== Be.ParameterStatus && this.partType !== Be.NotificationResponse && this.partType !== Be.ErrorResponse;
      if (e !== undefined && counted) {
        if (this.partSwallow && this.check !== null) this.check.crc = crc32(b.subarray(p, p + n), this.check.crc);
        else e.crc = crc32(b.subarray(p, p + n), e.crc);
      }
      if (this.partSwallow) pass = p + n;
      p += n;
      this.partLeft -= n;
      // The last swallowed message is whole now: compare.
      const c = this.check;
      if (this.partLeft === 0 && this.partSwallow && c !== null && e === c.entry && c.seen === c.skip && c.crc !== e.crc) {
        this.check = null;
        this.onReplayed?.(e, true);
        return ok;
      }
    }
    while (p + 5 <= to) {
      const type = b[p]!;
      const end = Math.min(p + 1 + readInt32(b, p + 1), to);
      const whole = p + 1 + readInt32(b, p + 1) <= to;
      const e = this.entries[this.open];
      const async = type === Be.NoticeResponse || type === Be.ParameterStatus || type === Be.NotificationResponse;
      const c = this.check;
      const swallowing = c !== null && e === c.entry && c.seen < c.skip;
      if (e === undefined || async) {
        if (swallowing) {
          // Notices of a repeated request were seen the first time.
          flushTo(p);
          pass = end;
        }
        if (!whole) this.startPart(type, p + 1 + readInt32(b, p + 1) - to, swallowing);
        p = end;
        continue;
      }
      if (type === Be.ErrorResponse && whole && c !== null && e === c.entry && this.retries(e, b, p, end)) {
        // The run again met a conflict too: nothing more of it goes to the client; it runs once more.
        flushTo(p);
        this.conflict = e;
        return this.keepConflict(b, p, to) && ok;
      }
      const key = type === Be.ErrorResponse ? errorKey(b, p, end) : b.subarray(p, end);
      if (swallowing) {
        flushTo(p);
        pass = end;
        c.crc = crc32(key, c.crc);
        c.seen++;
        if (whole && c.seen === c.skip && c.crc !== e.crc) {
          this.check = null;
          this.onReplayed?.(e, true);
          return ok;
        }
      } else {
        e.crc = crc32(key, e.crc);
        e.replies++;
        if (e.cursorSql !== "") {
          if (type === Be.DataRow) {
            e.dataRows++;
            if (whole) e.dataCrc = crc32(key, e.dataCrc);
          } else if (type === Be.CommandComplete && whole) e.tag = decoder.decode(b.subarray(p + 5, end - 1));
        }
      }
      if (!whole) {
        this.startPart(type, p + 1 + readInt32(b, p + 1) - to, swallowing);
        p = end;
        break;
      }
      p = end;
      if (type === Be.ReadyForQuery) {
        const replayed = c !== null && e === c.entry;
        if (replayed && c.seen < c.skip) {
          // The request ended with fewer replies than the client had: it went differently.
          this.check = null;
          this.onReplayed?.(e, true);
          return ok;
        }
        this.closeEntry(e, b[p - 1]!);
        if (replayed) {
          this.check = null;
          flushTo(p);
          pass = p;
          this.onReplayed?.(e, false);
          if (this.check === null && this.partLeft === 0 && p < to) {
            // The rest goes the normal way.
            return this.write(b, p, to) && ok;
          }
        }
      }
    }
    flushTo(to);
    return ok;
  }

  /** A ReadyForQuery closed the entry; idle outside a transaction, everything before it is history. */
  private closeEntry(e: JournalEntry, status: number): void {
    e.done = true;
    if (!e.answered && e.cursorSql !== "") this.onCursorMoved?.(e);
    e.answered = true;
    e.status = status;
    this.open++;
    if (status === TxStatus.Idle && !this.replaying) this.trim();
  }

  /** Drop finished entries: the transaction they belonged to is over. */
  private trim(): void {
    const n = this.open;
    for (let i = 0; i < n; i++) {
      const x = this.entries[i]!;
      if (x.bytes !== null) this.bytes -= x.bytes.length;
    }
    this.entries.splice(0, n);
    this.open = 0;
    // The transaction is over: its id is no one else's.
    this.gen++;
    this.xid = { kind: "none" };
    if (this.entries.length === 0) {
      this.bytes = 0;
      this.conflictRetries = 0;
      this.overflowed = false;
      this.unsafe = "";
    }
  }

  // ---- replay -----------------------------------------------------------------------------

  /** Entries from `first` on are sent again: open until their replies come again. */
  rewindFrom(first: number): void {
    // What is replayed runs as a new transaction with an id of its own; answers still owed for the old one say nothing.
    this.gen++;
    this.xid = { kind: "none" };
    this.conflictGiven = "";
    this.open = first;
    for (let i = first; i < this.entries.length; i++) this.entries[i]!.done = false;
    this.partLeft = 0;
  }

  /** `e` is being sent again: swallow the replies the client had and compare their hash. */
  expectReplay(e: JournalEntry): void {
    this.check = { entry: e, skip: e.replies, seen: 0, crc: 0 };
  }

  /** Replaying is over (done or abandoned): back to normal, finished entries trimmed. */
  endReplay(): void {
    this.replaying = false;
    this.replayConflicts = "pass";
    this.check = null;
    if (this.open > 0 && this.entries[this.open - 1]!.status === TxStatus.Idle) this.trim();
  }

  // ---- inspection -------------------------------------------------------------------------

  statements(withParams: boolean): JournaledStatement[] {
    return this.entries.map((e) => {
      // Read from the kept messages only when asked: the hot path stores bytes, nothing decoded.
      const params = e.bytes === null ? null : bindParams(e.bytes);
      const s: JournaledStatement = { sql: redactSecrets(e.sql), param_count: params?.length ?? 0, replies: e.replies, done: e.answered };
      if (withParams && params !== null) s.params = params.map((v) => (v === null ? v : redactSecrets(v)));
      return s;
    });
  }
}

/** ErrorResponse reduced to what must repeat: its type and SQLSTATE. */
function errorKey(b: Uint8Array, p: number, end: number): Uint8Array {
  return encoder.encode(`E${errorFields(b, p + 5, end).code}`);
}

/** Parameter values of the first Bind among `msgs` (text ones as text; binary ones shown as "<binary>"); null when there is none. */
function bindParams(msgs: Uint8Array): (string | null)[] | null {
  let from = 0;
  while (from + 5 <= msgs.length && msgs[from] !== Fe.Bind) from += 1 + readInt32(msgs, from + 1);
  if (from + 5 > msgs.length) return null;
  const b = msgs;
  const to = Math.min(msgs.length, from + 1 + readInt32(msgs, from + 1));
  let p = b.indexOf(0, from + 5);
  if (p < 0 || p >= to) return null;
  p = b.indexOf(0, p + 1);
  if (p < 0 || p + 3 > to) return null;
  p++;
  const nFormats = (b[p]! << 8) | b[p + 1]!;
  const formats: number[] = [];
  p += 2;
  for (let i = 0; i < nFormats && p + 2 <= to; i++, p += 2) formats.push((b[p]! << 8) | b[p + 1]!);
  if (p + 2 > to) return null;
  const n = (b[p]! << 8) | b[p + 1]!;
  p += 2;
  const out: (string | null)[] = [];
  for (let i = 0; i < n && p + 4 <= to; i++) {
    const len = readInt32(b, p);
    p += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    const f = nFormats === 0 ? 0 : nFormats === 1 ? formats[0]! : (formats[i] ?? 0);
    out.push(f === 0 ? decoder.decode(b.subarray(p, p + len)) : "<binary>");
    p += len;
  }
  return out;
}

/** The first keyword of `sql` in lower case ("" when none): blanks, comments, semicolons and parentheses skipped. */
export function firstWord(sql: string): string {
  let i = 0;
  const n = sql.length;
  for (;;) {
    while (i < n && (sql.charCodeAt(i) <= 32 || sql[i] === ";" || sql[i] === "(")) i++;
    if (sql.startsWith("--", i)) {
      const nl = sql.indexOf("\n", i);
      if (nl < 0) return "";
      i = nl + 1;
    } else if (sql.startsWith("/*", i)) {
      const close = sql.indexOf("*/", i + 2);
      if (close < 0) return "";
      i = close + 2;
    } else break;
  }
  let e = i;
  while (e < n && ((sql.charCodeAt(e) | 0x20) >= 97 && (sql.charCodeAt(e) | 0x20) <= 122)) e++;
  return sql.slice(i, e).toLowerCase();
}

const COMMIT_PREPARED = /^\s*commit\s+prepared\b/i;
/** A COMMIT or END statement after a semicolon (semicolons inside strings count too: the safe side). */
const LATER_COMMIT = /;\s*(?:commit|end)\b(?!\s+prepared)/i;

/** Does this SQL end a transaction with COMMIT (or END) as its first statement? */
export function startsWithCommit(sql: string): boolean {
  const c0 = sql.charCodeAt(0) | 0x20;
  // Most statements start with a letter other than c or e: no need to look further.
  if (c0 >= 97 && c0 <= 122 && c0 !== 99 && c0 !== 101) return false;
  const w = firstWord(sql);
  // COMMIT PREPARED is two-phase commit of another transaction, not the end of this one.
  return w === "end" || (w === "commit" && !COMMIT_PREPARED.test(sql.slice(sql.toLowerCase().indexOf("commit"))));
}

/** Does this SQL commit: a COMMIT/END first, or one later in a simple Query of several statements? */
export function isCommit(sql: string): boolean {
  return startsWithCommit(sql) || (sql.indexOf(";") >= 0 && LATER_COMMIT.test(sql));
}

const PLAIN_ROLLBACK = /^\s*(?:rollback|abort)(?:\s+(?:work|transaction))?\s*;?\s*$/i;

/** Only ROLLBACK (or ABORT), with no savepoint, chain, prepared transaction or other statement. */
export function isPlainRollback(sql: string): boolean {
  return PLAIN_ROLLBACK.test(sql);
}

const matchers = new WeakMap<readonly string[], RegExp | null>();

/** volatileMatcher, made once per list. */
export function volatileMatcherFor(names: readonly string[]): RegExp | null {
  let m = matchers.get(names);
  if (m === undefined) matchers.set(names, (m = volatileMatcher(names)));
  return m;
}

/** A matcher for calls of the named functions (and the SQL-standard time keywords, which take no parentheses). */
export function volatileMatcher(names: readonly string[]): RegExp | null {
  const bare = new Set(["current_timestamp", "localtimestamp", "current_time", "localtime"]);
  const calls = names.filter((n) => !bare.has(n));
  const words = names.filter((n) => bare.has(n));
  const parts: string[] = [];
  if (calls.length > 0) parts.push(`\\b(${calls.join("|")})\\s*\\(`);
  if (words.length > 0) parts.push(`\\b(${words.join("|")})\\b`);
  return parts.length === 0 ? null : new RegExp(parts.join("|"), "i");
}
