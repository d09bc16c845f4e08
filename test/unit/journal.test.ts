// The transaction journal on its own: what it keeps of requests, how it hashes replies, trims, caps, replays, reads transaction ids and holds back conflicts.

import { describe, expect, test } from "bun:test";
import { isCommit, Journal, volatileMatcher, volatileMatcherFor, type JournalEntry } from "../../src/cluster/ha/journal.ts";
import { DEFAULT_VOLATILE_FUNCTIONS } from "../../src/cluster/ha/replay-registry.ts";
import { TxStatus } from "../../src/protocol/codes.ts";
import { errorResponse, noticeResponse } from "../../src/protocol/errors.ts";
import { commandComplete, parameterStatus, queryMessage, readyForQuery, SyncMessage } from "../../src/protocol/messages.ts";
import type { Sink } from "../../src/server/connection.ts";
import { bind, concat, cstr, execute, int16, int32, message, parse } from "../support/frames.ts";

const encoder = new TextEncoder();
const crc32 = Bun.hash.crc32;
const MiB = 1 << 20;

/** The client side: everything the journal lets through, write by write. */
class Recorder implements Sink {
  readonly writes: Uint8Array[] = [];
  write(b: Uint8Array, from = 0, to = b.length): boolean {
    this.writes.push(b.slice(from, to));
    return true;
  }
  get bytes(): Uint8Array {
    return concat(...this.writes);
  }
}

// ---- backend messages --------------------------------------------------------------------

const rowDescription = (...names: string[]) =>
  message("T", concat(int16(names.length), ...names.map((n) => concat(cstr(n), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0)))));
const dataRow = (...values: (string | null)[]) =>
  message(
    "D",
    concat(
      int16(values.length),
      ...values.map((v) => {
        if (v === null) return int32(-1);
        const b = encoder.encode(v);
        return concat(int32(b.length), b);
      }),
    ),
  );
const notification = (pid: number, channel: string, payload: string) => message("A", concat(int32(pid), cstr(channel), cstr(payload)));
const error = (code: string, text: string) => errorResponse({ severity: "ERROR", code, message: text });
const notice = (text: string) => noticeResponse({ severity: "NOTICE", code: "00000", message: text });
const ready = (s: "I" | "T" | "E") => readyForQuery(s.charCodeAt(0));

// ---- requests ----------------------------------------------------------------------------

/** Journal one request message by message, as the forwarder does. */
function request(j: Journal, sql: string, ...msgs: Uint8Array[]): JournalEntry {
  const e = j.begin(sql);
  for (const m of msgs) j.add(m, 0, m.length);
  return e;
}
const simple = (j: Journal, sql: string) => request(j, sql, queryMessage(sql));
const answered = (j: Journal, sql: string, ...replies: Uint8Array[]) => {
  const e = simple(j, sql);
  j.write(concat(...replies));
  return e;
};

const fresh = (maxBytes = MiB, volatile: RegExp | null = null) => {
  const client = new Recorder();
  return { client, j: new Journal(client, maxBytes, volatile) };
};

/** A result of three rows, the middle one over the 64 KiB the server streams in pieces. */
const BIG = "x".repeat(100_000);
const selectReplies = [rowDescription("a"), dataRow("1"), dataRow(BIG), dataRow(null), commandComplete("SELECT 3"), ready("T")];
const selectStream = concat(...selectReplies);
/** An offset inside the big row. */
const MID_BIG = selectReplies[0]!.length + selectReplies[1]!.length + 50_000;

describe("requests", () => {
  test("each request keeps the client's messages, copied out of the buffer they came in", () => {
    const { j } = fresh();
    const q = queryMessage("BEGIN");
    const b0 = simple(j, "BEGIN");
    const ext = [parse("", "SELECT $1"), bind("", "", ["7"]), execute(), SyncMessage];
    const b1 = request(j, "SELECT $1", ...ext);
    const buf = concat([0, 0], queryMessage("SELECT 2"), [0]);
    const b2 = j.begin("SELECT 2");
    j.add(buf, 2, buf.length - 1);
    buf.fill(0);
    expect(b0.bytes).toEqual(q);
    expect(b1.bytes).toEqual(concat(...ext));
    expect(b2.bytes).toEqual(queryMessage("SELECT 2"));
    expect(j.bytes).toBe(q.length + concat(...ext).length + queryMessage("SELECT 2").length);
    expect(j.entries.map((e) => e.sql)).toEqual(["BEGIN", "SELECT $1", "SELECT 2"]);
  });

  test("Bind parameters: text, NULL and binary values; shown by statements() only when asked", () => {
    const { j } = fresh();
    const e = request(
      j,
      "SELECT $1, $2, $3",
      parse("", "SELECT $1, $2, $3"),
      bind("", "", ["héllo", null, Uint8Array.from([0, 0, 0, 1])], { paramFormats: [0, 0, 1] }),
      execute(),
      SyncMessage,
    );
    expect(e.bytes).not.toBeNull();
    // One format code applies to every parameter.
    request(j, "SELECT $1, $2", bind("", "s1", [Uint8Array.from([1]), Uint8Array.from([2])], { paramFormats: [1] }), execute(), SyncMessage);
    simple(j, "SELECT 1");
    expect(j.statements(false)).toStrictEqual([
      { sql: "SELECT $1, $2, $3", param_count: 3, replies: 0, done: false },
      { sql: "SELECT $1, $2", param_count: 2, replies: 0, done: false },
      { sql: "SELECT 1", param_count: 0, replies: 0, done: false },
    ]);
    expect(j.statements(true)).toStrictEqual([
      { sql: "SELECT $1, $2, $3", param_count: 3, replies: 0, done: false, params: ["héllo", null, "<binary>"] },
      { sql: "SELECT $1, $2", param_count: 2, replies: 0, done: false, params: ["<binary>", "<binary>"] },
      { sql: "SELECT 1", param_count: 0, replies: 0, done: false },
    ]);
  });

  test("a Bind added together with other messages in one call is kept and read for parameters all the same", () => {
    const { j } = fresh();
    const all = concat(parse("", "SELECT $1"), bind("", "", ["1"]), execute(), SyncMessage);
    const e = j.begin("SELECT $1");
    j.add(all, 0, all.length);
    expect(e.bytes).toEqual(all);
    expect(j.statements(true)).toStrictEqual([{ sql: "SELECT $1", param_count: 1, replies: 0, done: false, params: ["1"] }]);
  });

  test("statements() shows replies and whether the ReadyForQuery came", () => {
    const { j } = fresh();
    answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    simple(j, "SELECT 1");
    j.write(concat(rowDescription("x"), dataRow("1")));
    expect(j.statements(false)).toStrictEqual([
      { sql: "BEGIN", param_count: 0, replies: 2, done: true },
      { sql: "SELECT 1", param_count: 0, replies: 2, done: false },
    ]);
  });

  test("dropLast forgets the newest request and its bytes", () => {
    const { j } = fresh();
    simple(j, "BEGIN");
    simple(j, "SELECT 1");
    j.dropLast();
    expect(j.entries.map((e) => e.sql)).toEqual(["BEGIN"]);
    expect(j.bytes).toBe(queryMessage("BEGIN").length);
  });
});

describe("reply hashing", () => {
  /** One SELECT journaled, its replies written in the given pieces. */
  const run = (pieces: Uint8Array[]) => {
    const { j, client } = fresh();
    answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    const e = simple(j, "SELECT a FROM t");
    for (const p of pieces) j.write(p);
    return { e, client };
  };

  test("whole, message by message, or split inside a large DataRow: same crc and reply count", () => {
    const whole = run([selectStream]);
    const each = run(selectReplies);
    const split = run([selectStream.subarray(0, MID_BIG), selectStream.subarray(MID_BIG)]);
    const threeWay = run([selectStream.subarray(0, MID_BIG - 30_000), selectStream.subarray(MID_BIG - 30_000, MID_BIG), selectStream.subarray(MID_BIG)]);
    const expected = crc32(selectStream);
    for (const r of [whole, each, split, threeWay]) {
      expect(r.e.replies).toBe(6);
      expect(r.e.crc).toBe(expected);
      expect(r.e.answered).toBe(true);
      expect(r.e.status).toBe(TxStatus.InTransaction);
      expect(r.client.bytes).toEqual(concat(commandComplete("BEGIN"), ready("T"), selectStream));
    }
  });

  test("notices, parameter reports and notifications reach the client but count for nothing", () => {
    const [t, d1, d2, d3, c, z] = selectReplies as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    const extras = [notice("hello"), parameterStatus("TimeZone", "UTC"), notification(42, "ch", "payload")];
    const noisy = [...extras, t, d1, extras[0]!, d2, extras[1]!, d3, c, extras[2]!, z];
    const together = run([concat(...noisy)]);
    const apart = run(noisy);
    const splitNoisy = concat(...noisy);
    const cut = extras.reduce((n, x) => n + x.length, 0) + t.length + d1.length + extras[0]!.length + 50_000;
    const split = run([splitNoisy.subarray(0, cut), splitNoisy.subarray(cut)]);
    for (const r of [together, apart, split]) {
      expect(r.e.replies).toBe(6);
      expect(r.e.crc).toBe(crc32(selectStream));
      expect(r.client.bytes).toEqual(concat(commandComplete("BEGIN"), ready("T"), splitNoisy));
    }
  });

  test("an ErrorResponse counts by SQLSTATE only: the message text does not matter", () => {
    const hashOf = (err: Uint8Array) => run([concat(rowDescription("a"), err, ready("E"))]).e;
    const a = hashOf(error("22012", "division by zero"));
    const b = hashOf(errorResponse({ severity: "ERROR", code: "22012", message: "division par zéro", detail: "translated" }));
    const other = hashOf(error("23505", "division by zero"));
    expect(a.replies).toBe(3);
    expect(a.crc).toBe(b.crc);
    expect(a.crc).toBe(crc32(ready("E"), crc32("E22012", crc32(rowDescription("a")))));
    expect(other.crc).not.toBe(a.crc);
  });

  test("a notice does not split a run: the crc is the one of the counted bytes in order", () => {
    const { e } = run([concat(rowDescription("a"), notice("n"), dataRow("1"), commandComplete("SELECT 1"), ready("T"))]);
    expect(e.crc).toBe(crc32(concat(rowDescription("a"), dataRow("1"), commandComplete("SELECT 1"), ready("T"))));
    expect(e.replies).toBe(4);
  });
});

describe("closing and trimming", () => {
  test("pipelined requests close in order at their ReadyForQuery; inFlight() lists the rest", () => {
    const { j } = fresh();
    const [b, i, s] = [simple(j, "BEGIN"), simple(j, "INSERT INTO t VALUES (1)"), simple(j, "SELECT 1")];
    expect(j.inFlight()).toEqual([b, i, s]);
    j.write(concat(commandComplete("BEGIN"), ready("T"), commandComplete("INSERT 0 1")));
    expect(j.inFlight()).toEqual([i, s]);
    expect([b.answered, b.done, b.status, b.replies]).toEqual([true, true, TxStatus.InTransaction, 2]);
    expect([i.answered, i.replies]).toEqual([false, 1]);
    j.write(concat(ready("T"), rowDescription("?column?"), dataRow("1"), commandComplete("SELECT 1"), ready("T")));
    expect(j.inFlight()).toEqual([]);
    expect(j.entries).toEqual([b, i, s]);
    expect([i.replies, s.replies]).toEqual([2, 4]);
  });

  test("idle outside a transaction: finished entries go, with their bytes, transaction id and unsafe reason", () => {
    const { j } = fresh(MiB, volatileMatcherFor(DEFAULT_VOLATILE_FUNCTIONS));
    answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    answered(j, "SELECT now()", rowDescription("now"), dataRow("2024-01-01"), commandComplete("SELECT 1"), ready("T"));
    j.xidAsked(true, 1);
    simple(j, "COMMIT");
    j.xidRead("900", true, 1);
    expect(j.unsafe).toBe("it used now, whose value differs on a second run");
    expect(j.xid).toEqual({ kind: "value", xid: "900", epoch: 1 });
    expect(j.entries.length).toBe(3);
    j.write(concat(commandComplete("COMMIT"), ready("I")));
    expect(j.entries).toEqual([]);
    expect(j.bytes).toBe(0);
    expect(j.unsafe).toBe("");
    expect(j.xid).toEqual({ kind: "none" });
    expect(j.inFlight()).toEqual([]);
  });

  test("inside a transaction ('T' or 'E') entries are kept", () => {
    const { j } = fresh();
    answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    answered(j, "SELECT 1/0", error("22012", "division by zero"), ready("E"));
    expect(j.entries.map((e) => [e.sql, e.status])).toEqual([
      ["BEGIN", TxStatus.InTransaction],
      ["SELECT 1/0", TxStatus.Failed],
    ]);
    expect(j.bytes).toBe(queryMessage("BEGIN").length + queryMessage("SELECT 1/0").length);
  });

  test("idle with a pipelined request still unanswered: only the finished ones go", () => {
    const { j } = fresh();
    simple(j, "SELECT 1");
    const next = simple(j, "SELECT 2");
    j.write(concat(commandComplete("SELECT 1"), ready("I")));
    expect(j.entries).toEqual([next]);
    expect(j.bytes).toBe(queryMessage("SELECT 2").length);
    j.write(concat(commandComplete("SELECT 1"), ready("I")));
    expect(j.entries).toEqual([]);
    expect(j.bytes).toBe(0);
  });

  test("replies with no request open pass to the client and change nothing", () => {
    const { j, client } = fresh();
    const stray = concat(parameterStatus("application_name", "x"), notice("n"));
    j.write(stray);
    expect(client.bytes).toEqual(stray);
    expect(j.entries).toEqual([]);
  });
});

describe("size cap", () => {
  test("past max_journal_bytes no message is kept, later ones cost nothing, and the next transaction starts clean", () => {
    const { j, client } = fresh(64);
    const b = answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    const first = queryMessage("INSERT INTO t VALUES (1)");
    const i1 = simple(j, "INSERT INTO t VALUES (1)");
    expect(j.unsafe).toBe("");
    expect(j.bytes).toBe(queryMessage("BEGIN").length + first.length);
    const long = `INSERT INTO t VALUES ('${"y".repeat(40)}')`;
    const i2 = simple(j, long);
    expect(j.unsafe).toBe("it is over max_journal_bytes (64)");
    expect([b.bytes, i1.bytes, i2.bytes]).toEqual([null, null, null]);
    const over = queryMessage("BEGIN").length + first.length + queryMessage(long).length;
    expect(j.bytes).toBe(over);
    const i3 = simple(j, "INSERT INTO t VALUES (3)");
    expect(i3.bytes).toBeNull();
    expect(j.unsafe).toBe("it is over max_journal_bytes (64)");
    // Replies are still counted.
    j.write(concat(commandComplete("INSERT 0 1"), ready("T"), commandComplete("INSERT 0 1"), ready("T"), commandComplete("INSERT 0 1"), ready("T")));
    expect([i1.replies, i2.replies, i3.replies]).toEqual([2, 2, 2]);
    answered(j, "COMMIT", commandComplete("COMMIT"), ready("I"));
    expect(j.entries).toEqual([]);
    expect(j.bytes).toBe(0);
    expect(j.unsafe).toBe("");
    const again = simple(j, "SELECT 1");
    expect(again.bytes).toEqual(queryMessage("SELECT 1"));
    expect(j.bytes).toBe(queryMessage("SELECT 1").length);
    // Every reply reached the client, one write each.
    expect(client.writes.length).toBe(3);
  });
});

describe("volatile functions", () => {
  const matcher = volatileMatcherFor(DEFAULT_VOLATILE_FUNCTIONS);
  const unsafeAfter = (sql: string) => {
    const { j } = fresh(MiB, matcher);
    j.begin(sql);
    return j.unsafe;
  };
  const reason = (name: string) => `it used ${name}, whose value differs on a second run`;

  test("calls and the SQL time keywords make the transaction unsafe, naming the function", () => {
    expect(unsafeAfter("SELECT now()")).toBe(reason("now"));
    expect(unsafeAfter("select NOW ()")).toBe(reason("now"));
    expect(unsafeAfter("INSERT INTO t VALUES (CURRENT_TIMESTAMP)")).toBe(reason("current_timestamp"));
    expect(unsafeAfter("SELECT nextval('s')")).toBe(reason("nextval"));
    expect(unsafeAfter("INSERT INTO t (id) VALUES (gen_random_uuid())")).toBe(reason("gen_random_uuid"));
  });

  test("names inside longer words do not count", () => {
    expect(unsafeAfter("SELECT snowfall()")).toBe("");
    expect(unsafeAfter("SELECT current_timestamps FROM t")).toBe("");
    expect(unsafeAfter("SELECT knownow(1)")).toBe("");
    expect(unsafeAfter("SELECT now FROM t")).toBe("");
  });

  test("the first volatile request names the reason; later ones do not change it", () => {
    const { j } = fresh(MiB, matcher);
    j.begin("SELECT random()");
    j.begin("SELECT now()");
    expect(j.unsafe).toBe(reason("random"));
  });

  test("no matcher: nothing is volatile; one matcher per list", () => {
    const { j } = fresh(MiB, null);
    j.begin("SELECT now()");
    expect(j.unsafe).toBe("");
    expect(volatileMatcherFor(DEFAULT_VOLATILE_FUNCTIONS)).toBe(matcher);
    expect(volatileMatcher([])).toBeNull();
    const words = volatileMatcher(["localtime"])!;
    expect(words.test("SELECT LOCALTIME")).toBe(true);
    expect(words.test("SELECT localtime(2)")).toBe(true);
    expect(words.test("SELECT localtimestamp")).toBe(false);
  });
});

describe("isCommit", () => {
  test("COMMIT and END, after blanks and comments", () => {
    for (const sql of ["COMMIT", "commit;", "END", "  /* c */ COMMIT", "-- x\nEND", "Commit Work"]) expect([sql, isCommit(sql)]).toEqual([sql, true]);
  });

  test("not COMMIT PREPARED, other words, or nothing", () => {
    for (const sql of ["COMMIT PREPARED 'x'", "commit   prepared 'x'", "ENDPOINT", "SELECT 1", "ROLLBACK", "", "/* COMMIT", "-- COMMIT"]) {
      expect([sql, isCommit(sql)]).toEqual([sql, false]);
    }
  });

  test("begin() marks the entry", () => {
    const { j } = fresh();
    expect([j.begin("END").commit, j.begin("ABORT").commit]).toEqual([true, false]);
  });
});

describe("replay", () => {
  /** BEGIN and a SELECT answered; the replay sink records what it is told. */
  const transaction = () => {
    const { j, client } = fresh();
    const b = answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    const s = answered(j, "SELECT a FROM t", ...selectReplies);
    const calls: [string, boolean][] = [];
    j.onReplayed = (e, mismatch) => calls.push([e.sql, mismatch]);
    client.writes.length = 0;
    return { j, client, b, s, calls };
  };

  test("identical replies are swallowed and each replayed entry is reported as matching", () => {
    const { j, client, b, s, calls } = transaction();
    j.rewindFrom(0);
    j.replaying = true;
    expect([b.done, s.done, b.answered, s.answered]).toEqual([false, false, true, true]);
    j.expectReplay(b);
    j.write(concat(commandComplete("BEGIN"), ready("T")));
    expect(calls).toEqual([["BEGIN", false]]);
    j.expectReplay(s);
    j.write(selectStream.subarray(0, MID_BIG));
    j.write(selectStream.subarray(MID_BIG));
    expect(calls).toEqual([
      ["BEGIN", false],
      ["SELECT a FROM t", false],
    ]);
    expect(client.writes).toEqual([]);
    expect([s.done, s.replies, s.crc]).toEqual([true, 6, crc32(selectStream)]);
    j.endReplay();
    expect(j.replaying).toBe(false);
    expect(j.entries).toEqual([b, s]);
  });

  test("a DataRow that differs is a mismatch, and nothing of it reaches the client", () => {
    const { j, client, b, s, calls } = transaction();
    j.rewindFrom(0);
    j.replaying = true;
    j.expectReplay(b);
    j.write(concat(commandComplete("BEGIN"), ready("T")));
    j.expectReplay(s);
    j.write(concat(rowDescription("a"), dataRow("1"), dataRow(`${BIG.slice(1)}y`), dataRow(null), commandComplete("SELECT 3"), ready("T")));
    expect(calls).toEqual([
      ["BEGIN", false],
      ["SELECT a FROM t", true],
    ]);
    expect(client.writes).toEqual([]);
  });

  test("a large row that differs only in its second piece is a mismatch too", () => {
    const { j, client, b, s, calls } = transaction();
    j.rewindFrom(1);
    j.replaying = true;
    expect([b.done, s.done]).toEqual([true, false]);
    j.expectReplay(s);
    const changed = concat(rowDescription("a"), dataRow("1"), dataRow(`${BIG.slice(1)}y`), dataRow(null), commandComplete("SELECT 3"), ready("T"));
    j.write(changed.subarray(0, MID_BIG));
    expect(calls).toEqual([]);
    j.write(changed.subarray(MID_BIG));
    expect(calls).toEqual([["SELECT a FROM t", true]]);
    expect(client.writes).toEqual([]);
  });

  test("an entry in flight: what the client had is swallowed, the rest is relayed and counted on", () => {
    const { j, client } = fresh();
    const b = answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    const s = simple(j, "SELECT a FROM t");
    j.write(concat(rowDescription("a"), dataRow("1")));
    expect(s.replies).toBe(2);
    client.writes.length = 0;
    const calls: [string, boolean][] = [];
    j.onReplayed = (e, mismatch) => calls.push([e.sql, mismatch]);
    j.rewindFrom(0);
    j.replaying = true;
    j.expectReplay(b);
    j.write(concat(commandComplete("BEGIN"), ready("T")));
    j.expectReplay(s);
    j.write(concat(notice("again"), selectStream));
    const rest = concat(dataRow(BIG), dataRow(null), commandComplete("SELECT 3"), ready("T"));
    expect(client.bytes).toEqual(rest);
    expect(calls).toEqual([
      ["BEGIN", false],
      ["SELECT a FROM t", false],
    ]);
    expect([s.replies, s.crc, s.answered, s.status]).toEqual([6, crc32(selectStream), true, TxStatus.InTransaction]);
    expect(j.inFlight()).toEqual([]);
  });

  test("an entry in flight whose seen part differs is a mismatch before anything is relayed", () => {
    const { j, client } = fresh();
    const s = simple(j, "SELECT a FROM t");
    j.write(concat(rowDescription("a"), dataRow("1")));
    client.writes.length = 0;
    const calls: [string, boolean][] = [];
    j.onReplayed = (e, mismatch) => calls.push([e.sql, mismatch]);
    j.rewindFrom(0);
    j.replaying = true;
    j.expectReplay(s);
    j.write(concat(rowDescription("a"), dataRow("2"), commandComplete("SELECT 1"), ready("I")));
    expect(calls).toEqual([["SELECT a FROM t", true]]);
    expect(client.writes).toEqual([]);
  });

  test("endReplay trims when the last entry closed idle; the COMMIT in flight is relayed whole", () => {
    const { j, client } = fresh();
    const b = answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    const i = answered(j, "INSERT INTO t VALUES (1)", commandComplete("INSERT 0 1"), ready("T"));
    const c = simple(j, "COMMIT");
    j.xidAsked(true, 1);
    j.xidRead(null, true, 1);
    expect(j.xid).toEqual({ kind: "failed" });
    client.writes.length = 0;
    const calls: string[] = [];
    j.onReplayed = (e) => calls.push(e.sql);
    j.rewindFrom(0);
    expect(j.xid).toEqual({ kind: "none" });
    j.replaying = true;
    for (const [e, reply] of [
      [b, concat(commandComplete("BEGIN"), ready("T"))],
      [i, concat(commandComplete("INSERT 0 1"), ready("T"))],
      [c, concat(commandComplete("COMMIT"), ready("I"))],
    ] as const) {
      j.expectReplay(e);
      j.write(reply);
    }
    expect(calls).toEqual(["BEGIN", "INSERT INTO t VALUES (1)", "COMMIT"]);
    expect(client.bytes).toEqual(concat(commandComplete("COMMIT"), ready("I")));
    // Not while replaying.
    expect(j.entries.length).toBe(3);
    j.endReplay();
    expect(j.entries).toEqual([]);
    expect(j.bytes).toBe(0);
  });

  test("after endReplay replies take the normal path again", () => {
    const { j, client, b, s } = transaction();
    j.rewindFrom(0);
    j.replaying = true;
    j.expectReplay(b);
    j.write(concat(commandComplete("BEGIN"), ready("T")));
    j.expectReplay(s);
    j.write(selectStream);
    j.endReplay();
    const next = answered(j, "SELECT 2", commandComplete("SELECT 0"), ready("T"));
    expect(client.bytes).toEqual(concat(commandComplete("SELECT 0"), ready("T")));
    expect([next.replies, next.answered]).toEqual([2, true]);
  });
});

describe("transaction ids", () => {
  test("the read before COMMIT: a value keeps the epoch it was asked in; NULL is read-only; a failed read is failed", () => {
    const { j } = fresh();
    expect(j.xid).toEqual({ kind: "none" });
    j.xidAsked(true, 7);
    expect(j.xid).toEqual({ kind: "asked", epoch: 7 });
    j.xidRead("123", true, 9);
    expect(j.xid).toEqual({ kind: "value", xid: "123", epoch: 7 });

    const n = fresh().j;
    n.xidAsked(true, 1);
    n.xidRead("", true, 1);
    expect(n.xid).toEqual({ kind: "null" });

    const f = fresh().j;
    f.xidAsked(true, 1);
    f.xidRead(null, true, 1);
    expect(f.xid).toEqual({ kind: "failed" });
  });

  test("an early read supplies the id only when it has one and was read inside a transaction", () => {
    const { j } = fresh();
    j.xidAsked(false, 2);
    expect(j.xid).toEqual({ kind: "none" });
    j.xidRead("", true, 2);
    expect(j.xid).toEqual({ kind: "none" });
    expect(j.xidUnknown).toBe(true);
    j.xidAsked(false, 2);
    j.xidRead("55", false, 2);
    expect(j.xid).toEqual({ kind: "none" });
    j.xidAsked(false, 2);
    j.xidRead(null, true, 2);
    expect(j.xid).toEqual({ kind: "none" });
    j.xidAsked(false, 3);
    j.xidRead("56", true, 3);
    expect(j.xid).toEqual({ kind: "value", xid: "56", epoch: 3 });
    expect(j.xidUnknown).toBe(false);
    // A later early read does not replace a known id.
    j.xidAsked(false, 4);
    j.xidRead("99", true, 4);
    expect(j.xid).toEqual({ kind: "value", xid: "56", epoch: 3 });
  });

  test("an early read and the COMMIT's read are answered in the order they were sent", () => {
    const { j } = fresh();
    j.xidAsked(false, 1);
    j.xidAsked(true, 2);
    j.xidRead("", true, 5);
    expect(j.xid).toEqual({ kind: "asked", epoch: 2 });
    j.xidRead("88", true, 5);
    expect(j.xid).toEqual({ kind: "value", xid: "88", epoch: 2 });
  });

  test("serverGone drops the reads still owed; the state stays as it was", () => {
    const { j } = fresh();
    j.xidAsked(false, 1);
    j.xidAsked(true, 1);
    j.serverGone();
    expect(j.xid).toEqual({ kind: "asked", epoch: 1 });
    // The next answer is for the next read, not for one sent to the lost server.
    j.xidAsked(true, 2);
    j.xidRead("", true, 2);
    expect(j.xid).toEqual({ kind: "null" });
  });

  test("clear forgets everything", () => {
    const { j } = fresh(MiB, volatileMatcherFor(DEFAULT_VOLATILE_FUNCTIONS));
    simple(j, "SELECT now()");
    j.xidAsked(true, 1);
    j.clear();
    expect([j.entries.length, j.bytes, j.unsafe, j.xid]).toEqual([0, 0, "", { kind: "none" }]);
    // The read asked before is forgotten: the next answer is for the next read.
    j.xidAsked(true, 2);
    j.xidRead("", true, 2);
    expect(j.xid).toEqual({ kind: "null" });
  });
});

describe("conflict retry", () => {
  const setup = (max = 3, volatile: RegExp | null = null) => {
    const { j, client } = fresh(MiB, volatile);
    const retried: string[] = [];
    j.retryConflicts(max, (e) => retried.push(e.sql));
    answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    client.writes.length = 0;
    return { j, client, retried };
  };

  test("a deadlock for the newest request is kept from the client with its ReadyForQuery; the retry is called once", () => {
    const { j, client, retried } = setup();
    const u = simple(j, "UPDATE t SET v = 1");
    j.write(concat(error("40P01", "deadlock detected"), ready("E")));
    expect(client.writes).toEqual([]);
    expect(retried).toEqual(["UPDATE t SET v = 1"]);
    expect(j.conflictRetries).toBe(1);
    expect([u.answered, u.replies]).toEqual([false, 0]);
    expect(j.inFlight()).toEqual([u]);
  });

  test("a serialization failure after rows: the rows go on, the error is kept; the retry waits for the ReadyForQuery", () => {
    const { j, client, retried } = setup();
    simple(j, "SELECT a FROM t FOR UPDATE");
    const rows = concat(rowDescription("a"), dataRow("1"));
    j.write(concat(rows, error("40001", "could not serialize access")));
    expect(client.bytes).toEqual(rows);
    expect(retried).toEqual([]);
    const after = parameterStatus("TimeZone", "UTC");
    j.write(concat(notice("kept too"), ready("E"), after));
    expect(retried).toEqual(["SELECT a FROM t FOR UPDATE"]);
    expect(client.bytes).toEqual(concat(rows, after));
  });

  test("other SQLSTATEs pass through", () => {
    const { j, client, retried } = setup();
    const u = simple(j, "INSERT INTO t VALUES (1)");
    const reply = concat(error("23505", "duplicate key"), ready("E"));
    j.write(reply);
    expect(client.bytes).toEqual(reply);
    expect(retried).toEqual([]);
    expect([u.answered, u.replies, u.status]).toEqual([true, 2, TxStatus.Failed]);
  });

  test("an unsafe transaction is not retried", () => {
    const { j, client, retried } = setup(3, volatileMatcherFor(DEFAULT_VOLATILE_FUNCTIONS));
    simple(j, "UPDATE t SET at = now()");
    const reply = concat(error("40P01", "deadlock detected"), ready("E"));
    j.write(reply);
    expect(client.bytes).toEqual(reply);
    expect(retried).toEqual([]);
  });

  test("past max retries the conflict passes through", () => {
    const { j, client, retried } = setup(1);
    simple(j, "UPDATE t SET v = 1");
    const reply = concat(error("40P01", "deadlock detected"), ready("E"));
    j.write(reply);
    expect(client.writes).toEqual([]);
    j.write(reply);
    expect(client.bytes).toEqual(reply);
    expect(retried).toEqual(["UPDATE t SET v = 1"]);
    expect(j.conflictRetries).toBe(1);
  });

  test("an error for a request that is not the newest passes through", () => {
    const { j, client, retried } = setup();
    simple(j, "UPDATE t SET v = 1");
    simple(j, "UPDATE t SET v = 2");
    const reply = concat(error("40001", "could not serialize access"), ready("E"));
    j.write(reply);
    expect(client.bytes).toEqual(reply);
    expect(retried).toEqual([]);
  });

  test("not while replaying, and never without retryConflicts", () => {
    const { j, client, retried } = setup();
    const u = simple(j, "UPDATE t SET v = 1");
    j.replaying = true;
    const reply = concat(error("40P01", "deadlock detected"), ready("E"));
    j.write(reply);
    expect(client.bytes).toEqual(reply);
    expect([retried, u.answered]).toEqual([[], true]);

    const plain = fresh();
    simple(plain.j, "UPDATE t SET v = 1");
    plain.j.write(reply);
    expect(plain.client.bytes).toEqual(reply);
  });

  /** A conflict kept, then the transaction's run again under way: BEGIN matched, the failing UPDATE sent again. */
  const rerun = (max: number) => {
    const { j, client, retried } = setup(max);
    const u = simple(j, "UPDATE t SET v = 1");
    j.write(concat(error("40P01", "deadlock detected"), ready("E")));
    const again: string[] = [];
    j.onReplayConflict = (e) => again.push(e.sql);
    j.rewindFrom(0);
    j.replaying = true;
    j.replayConflicts = "retry";
    j.expectReplay(j.entries[0]!);
    j.write(concat(commandComplete("BEGIN"), ready("T")));
    j.expectReplay(u);
    client.writes.length = 0;
    return { j, client, retried, again, u };
  };

  test("in a conflict retry's run, a conflict again is kept too and reported to the retry, not to the first-run handler", () => {
    const { j, client, retried, again, u } = rerun(3);
    j.write(concat(error("40P01", "deadlock detected"), notice("kept"), ready("E")));
    expect(client.writes).toEqual([]);
    expect(again).toEqual(["UPDATE t SET v = 1"]);
    expect(retried).toEqual(["UPDATE t SET v = 1"]);
    expect(j.conflictRetries).toBe(2);
    expect([u.answered, u.replies]).toEqual([false, 0]);
    expect(j.conflictGiven).toBe("");
  });

  test("in a conflict retry's run with the retries spent, the conflict goes to the client and is noted", () => {
    const { j, client, again, u } = rerun(1);
    const calls: boolean[] = [];
    j.onReplayed = (_e, mismatch) => calls.push(mismatch);
    const reply = concat(error("40001", "could not serialize access"), ready("E"));
    j.write(reply);
    expect(client.bytes).toEqual(reply);
    expect(again).toEqual([]);
    expect(calls).toEqual([false]);
    expect([u.answered, u.status]).toEqual([true, TxStatus.Failed]);
    expect(j.conflictGiven).toBe("40001");
  });

  /** A failover replay under way (no retry_conflicts): BEGIN matched, an UPDATE the client had "UPDATE 1" for sent again. */
  const failoverRun = (conflicts: "pass" | "keep") => {
    const { j, client } = fresh();
    answered(j, "BEGIN", commandComplete("BEGIN"), ready("T"));
    const u = answered(j, "UPDATE t SET v = 1", commandComplete("UPDATE 1"), ready("T"));
    const again: string[] = [];
    const replayed: boolean[] = [];
    j.onReplayConflict = (e) => again.push(e.sql);
    j.onReplayed = (_e, mismatch) => replayed.push(mismatch);
    j.rewindFrom(0);
    j.replaying = true;
    j.replayConflicts = conflicts;
    j.expectReplay(j.entries[0]!);
    j.write(concat(commandComplete("BEGIN"), ready("T")));
    j.expectReplay(u);
    client.writes.length = 0;
    replayed.length = 0;
    return { j, client, again, replayed, u };
  };

  test("in a failover replay's run a deadlock on a request the client had its reply for is kept, with its message, for the recovery to run the transaction again", () => {
    const { j, client, again, replayed, u } = failoverRun("keep");
    j.write(concat(error("40P01", "deadlock detected"), ready("E")));
    expect(client.writes).toEqual([]);
    expect([again, replayed]).toEqual([["UPDATE t SET v = 1"], []]);
    expect(j.keptConflict).toEqual({ code: "40P01", message: "deadlock detected" });
    // Runs again of a failover replay are the recovery's attempts, not retries of the transaction.
    expect(j.conflictRetries).toBe(0);
    expect([u.answered, u.status, u.replies]).toEqual([true, TxStatus.InTransaction, 2]);
  });

  test("kept however many runs met one before; other SQLSTATEs are replies that differ", () => {
    const { j, again, replayed } = failoverRun("keep");
    for (let i = 0; i < 10; i++) {
      j.expectReplay(j.entries[1]!);
      j.write(concat(error("40001", "could not serialize access"), ready("E")));
    }
    expect(again).toHaveLength(10);
    j.expectReplay(j.entries[1]!);
    j.write(concat(error("23505", "duplicate key"), ready("E")));
    expect(replayed).toEqual([true]);
  });

  test("without keep (a replay of a committed COMMIT or a ROLLBACK) the conflict is a reply that differs", () => {
    const { j, client, again, replayed } = failoverRun("pass");
    j.write(concat(error("40P01", "deadlock detected"), ready("E")));
    expect(again).toEqual([]);
    expect(replayed).toEqual([true]);
    expect(client.writes).toEqual([]);
    expect(j.keptConflict).toBeNull();
  });
});

describe("replays that end differently", () => {
  const rows = () => concat(rowDescription("a"), dataRow("1"), dataRow("2"), commandComplete("SELECT 2"), ready("T"));

  function replaying(first: Uint8Array): { j: Journal; e: JournalEntry; calls: boolean[]; client: Recorder } {
    const client = new Recorder();
    const j = new Journal(client, MiB, null);
    const e = simple(j, "SELECT a FROM t");
    j.write(first);
    const calls: boolean[] = [];
    j.onReplayed = (_e, mismatch) => calls.push(mismatch);
    j.rewindFrom(0);
    j.replaying = true;
    j.expectReplay(e);
    client.writes.length = 0;
    return { j, e, calls, client };
  }

  test("fewer replies than the client had (one row instead of two): a mismatch, nothing passed on", () => {
    const { j, calls, client } = replaying(rows());
    j.write(concat(rowDescription("a"), dataRow("1"), commandComplete("SELECT 1"), ready("T")));
    expect(calls).toEqual([true]);
    expect(client.bytes.length).toBe(0);
  });

  test("an error where the client had rows: a mismatch", () => {
    const { j, calls } = replaying(rows());
    j.write(concat(error("42P01", "relation does not exist"), ready("E")));
    expect(calls).toEqual([true]);
  });

  test("the same replies: a match", () => {
    const { j, calls, client } = replaying(rows());
    j.write(rows());
    expect(calls).toEqual([false]);
    expect(client.bytes.length).toBe(0);
  });
});

describe("isCommit on Queries of several statements", () => {
  test("a COMMIT or END after a semicolon counts; COMMIT PREPARED does not", () => {
    expect(isCommit("INSERT INTO t VALUES (1); COMMIT")).toBe(true);
    expect(isCommit("BEGIN; UPDATE t SET v = 1; end;")).toBe(true);
    expect(isCommit("UPDATE t SET v = 1; COMMIT PREPARED 'x'")).toBe(false);
    expect(isCommit("SELECT 1; SELECT 2")).toBe(false);
  });
});

test("a transaction-id answer after the journal was cleared says nothing", () => {
  const j = new Journal(new Recorder(), MiB, null);
  j.xidAsked(false, 1);
  j.clear();
  j.xidRead("55", true, 1);
  expect(j.xid).toEqual({ kind: "none" });
});
