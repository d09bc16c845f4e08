// Server-side session state that SET cannot rebuild (SQL prepared statements, LISTEN, advisory locks, WITH HOLD cursors) and the plan to rebuild it elsewhere.

import { Lexer, Tok, wordEq } from "../../sql/lexer.ts";
import { WordTable, wordSet } from "../../sql/words.ts";

/** A WITH HOLD cursor and how far the client has moved it. */
export interface CursorState {
  /** As PostgreSQL knows it (unquoted names folded to lower case). */
  name: string;
  /** The DECLARE text, re-run as is. */
  declare: string;
  /** Rows moved forward from the start (0: before the first row). */
  position: number;
  /** Bun.hash.crc32 over the DataRow messages the client got from this cursor, chained from 0 in order. */
  crc: number;
  /** Rows the client received via FETCH (position exceeds it when MOVE skipped rows). */
  rowsSeen: number;
  /** False once a non-forward move (BACKWARD, ABSOLUTE, RELATIVE <= 0, PRIOR, FIRST, LAST) happened. */
  verifiable: boolean;
  /** The position is not known (a backward or end-relative move): the cursor cannot be restored. */
  unknownPosition: boolean;
}

export interface AdvisoryLock {
  /** The bigint key, or the first of two int4 keys (decimal text). */
  key1: string;
  /** The second int4 key; null for a bigint key. */
  key2: string | null;
  shared: boolean;
}

/** One statement to run on the new server, in plan order, with what its result must be. */
export type RestoreStep =
  /** Run; any success will do. */
  | { kind: "exec"; sql: string }
  /** Must return one row with the value 't'. */
  | { kind: "lock"; sql: string; lock: AdvisoryLock }
  /**
   * Run `declare`, then `fetch` (compare Bun.hash.crc32 of the returned DataRows, chained from 0,
   * with cursor.crc) or `move` (its count must equal cursor.position); both null when the position
   * is 0, or unknown (cursor.unknownPosition: refuse the move).
   */
  | { kind: "cursor"; declare: string; fetch: string | null; move: string | null; cursor: CursorState };

/** Lists the session's advisory locks: rows [classid, objid, objsubid, mode] for setAdvisoryLocks. */
export const ADVISORY_LOCKS_SQL =
  "SELECT classid::text, objid::text, objsubid::text, mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted ORDER BY 1,2,3";

/** The same rows as one JSON array value (for a read pipelined behind a request). */
export const ADVISORY_LOCKS_JSON_SQL =
  "SELECT coalesce(json_agg(json_build_array(classid::text, objid::text, objsubid::text, mode) ORDER BY classid, objid, objsubid), '[]')::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted";

const SEMI = 59, LPAREN = 40, RPAREN = 41, STAR = 42, PLUS = 43, MINUS = 45, DOT = 46;

const enum First {
  Other = 0, Prepare, Deallocate, Listen, Unlisten, Declare, Close, Create, Discard, Select, With, Fetch, Move,
}

const FIRST = new WordTable({
  prepare: First.Prepare, deallocate: First.Deallocate, listen: First.Listen, unlisten: First.Unlisten,
  declare: First.Declare, close: First.Close, create: First.Create, discard: First.Discard, select: First.Select,
  with: First.With, fetch: First.Fetch, move: First.Move,
});

/** Session-level advisory lock functions (transaction-level ones end with their transaction). */
const ADVISORY = wordSet([
  "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
  "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all",
]);

/** The significant tokens of one statement at a time; the arrays are reused from statement to statement. */
class StatementReader {
  src = "";
  n = 0;
  readonly kinds: Tok[] = [];
  readonly starts: number[] = [];
  readonly ends: number[] = [];
  private readonly lx = new Lexer();
  private readonly one = new Lexer();

  reset(src: string): this {
    this.src = src;
    this.lx.reset(src);
    return this;
  }

  /** Read the next statement with tokens in it; false at the end of the text. */
  next(): boolean {
    const lx = this.lx;
    this.n = 0;
    let depth = 0;
    let atomic = 0;
    for (;;) {
      const k = lx.nextSignificant();
      if (k === Tok.End) return this.n > 0;
      if (k === Tok.Punct) {
        if (lx.isChar(SEMI) && depth === 0 && atomic === 0) {
          if (this.n > 0) return true;
          continue;
        }
        if (lx.isChar(LPAREN)) depth++;
        else if (lx.isChar(RPAREN) && depth > 0) depth--;
      } else if (k === Tok.Word && this.n > 0 && this.is(0, "create")) {
        // CREATE FUNCTION ... BEGIN ATOMIC ... END: the body's semicolons do not end the statement.
        if (atomic > 0) {
          if (lx.is("case")) atomic++;
          else if (lx.is("end")) atomic--;
        } else if (lx.is("atomic") && this.is(this.n - 1, "begin")) atomic = 1;
      }
      const i = this.n++;
      this.kinds[i] = k;
      this.starts[i] = lx.start;
      this.ends[i] = lx.end;
    }
  }

  first(): First {
    return this.kinds[0] === Tok.Word ? (FIRST.code(this.src, this.starts[0]!, this.ends[0]!) as First) : First.Other;
  }

  /** Token i is the unquoted word `lower`. */
  is(i: number, lower: string): boolean {
    return i < this.n && this.kinds[i] === Tok.Word && wordEq(this.src, this.starts[i]!, this.ends[i]!, lower);
  }

  isChar(i: number, ch: number): boolean {
    const k = this.kinds[i];
    return i < this.n && (k === Tok.Punct || k === Tok.Operator) && this.ends[i]! - this.starts[i]! === 1 && this.src.charCodeAt(this.starts[i]!) === ch;
  }

  isName(i: number): boolean {
    return i < this.n && (this.kinds[i] === Tok.Word || this.kinds[i] === Tok.QuotedIdent);
  }

  /** The name token i denotes: unquoted folded to lower case, quoted exact. */
  name(i: number): string {
    const one = this.one.reset(this.src, this.starts[i]!, this.ends[i]!);
    one.next();
    return one.word();
  }

  /** The statement's text from its first token to its last. */
  text(): string {
    return this.src.slice(this.starts[0]!, this.ends[this.n - 1]!);
  }

  /** Signed integer at token i (`5`, `-5`, `+5`): [value, tokens used], or null. */
  int(i: number): [number, number] | null {
    let sign = 1, used = 0;
    if (this.isChar(i, MINUS) || this.isChar(i, PLUS)) {
      if (this.isChar(i, MINUS)) sign = -1;
      used = 1;
    }
    const j = i + used;
    if (j >= this.n || this.kinds[j] !== Tok.Number) return null;
    const v = Number(this.src.slice(this.starts[j]!, this.ends[j]!).replaceAll("_", ""));
    return Number.isInteger(v) ? [sign * v, used + 1] : null;
  }

  /** A session-level advisory lock function is named in the statement. */
  mentionsAdvisory(): boolean {
    for (let i = 0; i < this.n; i++) {
      if (this.kinds[i] === Tok.Word && ADVISORY.has(this.src, this.starts[i]!, this.ends[i]!)) return true;
    }
    return false;
  }
}

/** `name` or `pg_temp_N`: the session's temporary schema. */
const isTempSchema = (name: string) => name === "pg_temp" || /^pg_temp_\d+$/.test(name);

/** CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY ..., or anything created in pg_temp, that outlives the statement. */
function createsTemp(r: StatementReader): boolean {
  let i = 1;
  if (r.is(i, "or") && r.is(i + 1, "replace")) i += 2;
  if (r.is(i, "global") || r.is(i, "local")) i++;
  let temp = r.is(i, "temp") || r.is(i, "temporary");
  for (let j = 1; !temp && j + 1 < r.n; j++) temp = r.isName(j) && r.isChar(j + 1, DOT) && isTempSchema(r.name(j));
  if (!temp) return false;
  // ON COMMIT DROP: gone by the time the statement took effect.
  for (let j = 1; j + 2 < r.n; j++) if (r.is(j, "on") && r.is(j + 1, "commit") && r.is(j + 2, "drop")) return false;
  return true;
}

/** SELECT ... INTO [GLOBAL|LOCAL] TEMP|TEMPORARY [TABLE] x, or INTO pg_temp.x. */
function selectsIntoTemp(r: StatementReader): boolean {
  for (let i = 1; i + 1 < r.n; i++) {
    if (!r.is(i, "into") || r.is(i - 1, "insert") || r.is(i - 1, "merge")) continue;
    let j = i + 1;
    if (r.is(j, "global") || r.is(j, "local")) j++;
    if (r.is(j, "temp") || r.is(j, "temporary")) return true;
    if (r.isName(j) && r.isChar(j + 1, DOT) && isTempSchema(r.name(j))) return true;
  }
  return false;
}

/** DECLARE name [options] CURSOR WITH HOLD FOR ...: true when the cursor outlives its transaction. */
function declaresHold(r: StatementReader): boolean {
  if (!r.isName(1)) return false;
  let i = 2;
  while (i < r.n && r.kinds[i] === Tok.Word && !r.is(i, "cursor")) i++;
  return r.is(i, "cursor") && r.is(i + 1, "with") && r.is(i + 2, "hold");
}

/** PREPARE name [(types)] AS ... (not PREPARE TRANSACTION 'gid'). */
function preparesStatement(r: StatementReader): boolean {
  return r.isName(1) && (r.is(2, "as") || r.isChar(2, LPAREN));
}

const enum Dir { Forward, Backward, Absolute, Relative, Last }

/** Direction and count of FETCH/MOVE (count Infinity for ALL), cursor name last; null when not understood. */
function parseMove(r: StatementReader): { dir: Dir; count: number; name: string } | null {
  const last = r.n - 1;
  if (last < 1 || !r.isName(last)) return null;
  let end = last;
  if (r.is(end - 1, "from") || r.is(end - 1, "in")) end--;
  let dir = Dir.Forward, count = 1;
  let i = 1;
  if (i < end) {
    const word = r.kinds[i] === Tok.Word ? r.name(i) : "";
    if (word === "next" || word === "prior" || word === "first" || word === "last" || word === "all") {
      i++;
      if (word === "prior") dir = Dir.Backward;
      else if (word === "first") dir = Dir.Absolute;
      else if (word === "last") dir = Dir.Last;
      else if (word === "all") count = Infinity;
    } else {
      if (word === "absolute" || word === "relative" || word === "forward" || word === "backward") {
        i++;
        if (word === "absolute") dir = Dir.Absolute;
        else if (word === "relative") dir = Dir.Relative;
        else if (word === "backward") dir = Dir.Backward;
        if (r.is(i, "all") && (word === "forward" || word === "backward")) {
          count = Infinity;
          i++;
        }
      }
      if (i < end) {
        const n = r.int(i);
        if (n === null) return null;
        count = n[0];
        i += n[1];
      } else if (dir === Dir.Absolute || dir === Dir.Relative) return null;
    }
  }
  if (i !== end) return null;
  if (count < 0 && (dir === Dir.Forward || dir === Dir.Backward)) {
    dir = dir === Dir.Forward ? Dir.Backward : Dir.Forward;
    count = -count;
  }
  // FORWARD 0 and BACKWARD 0 are RELATIVE 0: the current row again.
  if (count === 0 && (dir === Dir.Forward || dir === Dir.Backward)) dir = Dir.Relative;
  return { dir, count, name: r.name(last) };
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

const scratch = new StatementReader();

const NOTHING = Object.freeze({ tracked: false, cursorMove: false, advisory: false });
const FIRST_WORDS = new Set(["prepare", "deallocate", "listen", "unlisten", "declare", "close", "create", "discard", "fetch", "move"]);
const LEADING_WORD = /^\s*([A-Za-z]+)/;
const ONE_STATEMENT = /^[^;]*;?\s*$/;
const ADVISORY_TEXT = /advisory/i;
const INTO = /into/i;

/**
 * The common case, without lexing: one statement whose first word none of the tracked statements
 * start with, naming no advisory function, and no SELECT ... INTO. Comments first: lex it.
 */
function plainlyIrrelevant(sql: string): boolean {
  const m = LEADING_WORD.exec(sql);
  if (m === null) return false;
  const w = m[1]!.toLowerCase();
  if (FIRST_WORDS.has(w) || !ONE_STATEMENT.test(sql) || ADVISORY_TEXT.test(sql)) return false;
  return !((w === "select" || w === "with") && INTO.test(sql));
}

/**
 * Could this text change what SessionMigration tracks? `tracked`: a statement for applied();
 * `cursorMove`: a FETCH or MOVE (for cursorMoved); `advisory`: a session-level advisory lock
 * function is called (re-read ADVISORY_LOCKS_SQL afterwards).
 */
export function migrationRelevant(sql: string): { tracked: boolean; cursorMove: boolean; advisory: boolean } {
  if (plainlyIrrelevant(sql)) return NOTHING;
  const r = scratch.reset(sql);
  let tracked = false, cursorMove = false, advisory = false;
  while (r.next()) {
    switch (r.first()) {
      case First.Prepare:
        tracked ||= preparesStatement(r);
        break;
      case First.Deallocate:
      case First.Listen:
      case First.Unlisten:
      case First.Close:
      case First.Discard:
        tracked = true;
        break;
      case First.Declare:
        tracked ||= declaresHold(r);
        break;
      case First.Create:
        tracked ||= createsTemp(r);
        break;
      case First.Select:
      case First.With:
        tracked ||= selectsIntoTemp(r);
        break;
      case First.Fetch:
      case First.Move:
        cursorMove = true;
        break;
    }
    advisory ||= r.mentionsAdvisory();
  }
  return { tracked, cursorMove, advisory };
}

/** A session's state beyond its parameters, compacted: what to rebuild on a new server, and what forbids it. */
export class SessionMigration {
  /** SQL PREPARE texts by statement name. */
  private readonly prepared = new Map<string, string>();
  private readonly channels = new Set<string>();
  private readonly cursors = new Map<string, CursorState>();
  private locks: AdvisoryLock[] = [];
  private temp = false;
  private readonly reader = new StatementReader();

  /** Statements that took effect (committed, or run outside a transaction); a text may hold several. */
  applied(sql: string): void {
    const r = this.reader.reset(sql);
    while (r.next()) {
      switch (r.first()) {
        case First.Prepare:
          if (preparesStatement(r)) this.prepared.set(r.name(1), r.text());
          break;
        case First.Deallocate: {
          const i = r.is(1, "prepare") && r.n > 2 ? 2 : 1;
          if (r.is(i, "all")) this.prepared.clear();
          else if (r.isName(i)) this.prepared.delete(r.name(i));
          break;
        }
        case First.Listen:
          if (r.isName(1)) this.channels.add(r.name(1));
          break;
        case First.Unlisten:
          if (r.isChar(1, STAR)) this.channels.clear();
          else if (r.isName(1)) this.channels.delete(r.name(1));
          break;
        case First.Declare:
          if (declaresHold(r)) {
            const name = r.name(1);
            this.cursors.set(name, { name, declare: r.text(), position: 0, crc: 0, rowsSeen: 0, verifiable: true, unknownPosition: false });
          }
          break;
        case First.Close:
          if (r.is(1, "all")) this.cursors.clear();
          else if (r.isName(1)) this.cursors.delete(r.name(1));
          break;
        case First.Create:
          if (createsTemp(r)) this.temp = true;
          break;
        case First.Select:
        case First.With:
          if (selectsIntoTemp(r)) this.temp = true;
          break;
        case First.Discard:
          if (r.is(1, "all")) this.clear();
          else if (r.is(1, "temp") || r.is(1, "temporary")) this.temp = false;
          break;
      }
    }
  }

  /** The first FETCH/MOVE statement in sql and the tracked cursor it names. */
  private moveOf(sql: string): { move: NonNullable<ReturnType<typeof parseMove>>; cursor: CursorState; fetch: boolean } | null {
    const r = this.reader.reset(sql);
    while (r.next()) {
      const first = r.first();
      if (first !== First.Fetch && first !== First.Move) continue;
      const move = parseMove(r);
      const cursor = move === null ? undefined : this.cursors.get(move.name);
      return move === null || cursor === undefined ? null : { move, cursor, fetch: first === First.Fetch };
    }
    return null;
  }

  /**
   * The crc to chain this FETCH's DataRows onto (Bun.hash.crc32(row, crc) for each), so that the
   * value passed to cursorMoved covers every row the cursor gave: the named cursor's crc, else 0.
   */
  crcSeed(sql: string): number {
    return this.moveOf(sql)?.cursor.crc ?? 0;
  }

  /**
   * The first FETCH or MOVE in `sql` completed: `rows` is the count of its CommandComplete tag,
   * `crc` the chained crc from crcSeed(sql) over the DataRows the client got and `dataRows` their
   * number (for MOVE: crcSeed(sql) and 0). True if it named a tracked WITH HOLD cursor.
   */
  cursorMoved(sql: string, rows: number, crc: number, dataRows: number): boolean {
    const m = this.moveOf(sql);
    if (m === null) return false;
    const { move, cursor: c } = m;
    if (m.fetch) {
      c.crc = crc;
      c.rowsSeen += dataRows;
    }
    switch (move.dir) {
      case Dir.Forward:
        c.position += rows;
        break;
      case Dir.Relative:
        if (move.count > 0) {
          // Skips to the count-th row; fewer than one row back means it ran past the end.
          if (rows === 1) c.position += move.count;
          else c.unknownPosition = true;
        } else if (move.count < 0) {
          c.verifiable = false;
          c.unknownPosition = true;
        } else if (dataRows > 0) c.verifiable = false; // the current row again: the crc no longer matches a fresh read
        break;
      case Dir.Absolute:
        c.verifiable = false;
        if (move.count === 0 || (move.count > 0 && rows === 1)) {
          c.position = move.count;
          c.unknownPosition = false;
        } else c.unknownPosition = true;
        break;
      case Dir.Backward:
      case Dir.Last:
        c.verifiable = false;
        c.unknownPosition = true;
        break;
    }
    return true;
  }

  /** Replace the advisory locks held, from the rows of ADVISORY_LOCKS_SQL ([classid, objid, objsubid, mode] as text). */
  setAdvisoryLocks(rows: (string | null)[][]): void {
    const locks: AdvisoryLock[] = [];
    for (const [classid, objid, objsubid, mode] of rows) {
      if (classid == null || objid == null || !/^\d+$/.test(classid) || !/^\d+$/.test(objid)) continue;
      if (mode !== "ShareLock" && mode !== "ExclusiveLock") continue;
      const shared = mode === "ShareLock";
      if (objsubid === "1") {
        const key = BigInt.asIntN(64, (BigInt(classid) << 32n) | BigInt(objid));
        locks.push({ key1: key.toString(), key2: null, shared });
      } else if (objsubid === "2") {
        locks.push({ key1: String(Number(classid) | 0), key2: String(Number(objid) | 0), shared });
      }
    }
    this.locks = locks;
  }

  /** "" when the session can move; otherwise why not. */
  blocker(): string {
    if (this.temp) return "the session holds temporary tables";
    for (const c of this.cursors.values()) {
      if (c.unknownPosition) return `cursor ${quoteIdent(c.name)} was moved to a position that cannot be restored`;
      if (hasParameters(c.declare)) return `cursor ${quoteIdent(c.name)} was declared with parameters`;
    }
    return "";
  }

  /** Nothing recorded: no restore needed. */
  get empty(): boolean {
    return !this.temp && this.prepared.size === 0 && this.channels.size === 0 && this.locks.length === 0 && this.cursors.size === 0;
  }

  /** SQL PREPAREs, LISTENs, advisory locks, WITH HOLD cursors: in this order. */
  restorePlan(): RestoreStep[] {
    const steps: RestoreStep[] = [];
    for (const sql of this.prepared.values()) steps.push({ kind: "exec", sql });
    for (const ch of this.channels) steps.push({ kind: "exec", sql: `LISTEN ${quoteIdent(ch)}` });
    for (const l of this.locks) {
      const fn = l.shared ? "pg_try_advisory_lock_shared" : "pg_try_advisory_lock";
      const args = l.key2 === null ? l.key1 : `${l.key1}, ${l.key2}`;
      steps.push({ kind: "lock", sql: `SELECT ${fn}(${args})`, lock: { ...l } });
    }
    for (const c of this.cursors.values()) {
      let fetch: string | null = null, move: string | null = null;
      if (!c.unknownPosition && c.position > 0) {
        if (c.verifiable && c.position === c.rowsSeen) fetch = `FETCH FORWARD ${c.position} FROM ${quoteIdent(c.name)}`;
        else move = `MOVE FORWARD ${c.position} IN ${quoteIdent(c.name)}`;
      }
      steps.push({ kind: "cursor", declare: c.declare, fetch, move, cursor: { ...c } });
    }
    return steps;
  }

  /** For GET /journal. */
  summary(): Record<string, unknown> {
    return {
      prepared: [...this.prepared.keys()],
      channels: [...this.channels],
      advisoryLocks: this.locks.map((l) => ({ ...l })),
      cursors: [...this.cursors.values()].map((c) => ({
        name: c.name, position: c.position, rowsSeen: c.rowsSeen, verifiable: c.verifiable, unknownPosition: c.unknownPosition,
      })),
      temporaryObjects: this.temp,
      blocker: this.blocker(),
    };
  }

  /** DISCARD ALL: deallocates, unlistens, closes cursors, releases advisory locks, drops temp objects. */
  private clear(): void {
    this.prepared.clear();
    this.channels.clear();
    this.cursors.clear();
    this.locks = [];
    this.temp = false;
  }
}

/** The text uses $n parameters (bound values the text alone cannot re-create). */
function hasParameters(sql: string): boolean {
  const lx = new Lexer().reset(sql);
  for (let k = lx.next(); k !== Tok.End; k = lx.next()) if (k === Tok.Param) return true;
  return false;
}
