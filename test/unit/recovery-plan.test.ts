// What recovery does for a lost server connection, decided from the journal alone: migrate, replay, resolve a COMMIT, or refuse.

import { describe, expect, test } from "bun:test";
import { Journal, volatileMatcherFor } from "../../src/cluster/ha/journal.ts";
import { afterLookup, inDoubt, planRecovery, replayOrRefuse } from "../../src/cluster/ha/recovery-plan.ts";
import { DEFAULT_VOLATILE_FUNCTIONS } from "../../src/cluster/ha/replay-registry.ts";
import { commandComplete, queryMessage, readyForQuery } from "../../src/protocol/messages.ts";
import { concat, parse, sync } from "../support/frames.ts";

const discard = { write: () => true };
const writes = () => true;
const reads = () => false;

const journal = (volatile = false) => new Journal(discard, 1 << 20, volatile ? volatileMatcherFor(DEFAULT_VOLATILE_FUNCTIONS) : null);

/** A request sent to the server; `status` given: answered with its tag and that ReadyForQuery status. */
function send(j: Journal, sql: string, status?: "I" | "T" | "E") {
  const e = j.begin(sql);
  const q = queryMessage(sql);
  j.add(q, 0, q.length);
  if (status !== undefined) j.write(concat(commandComplete(sql.split(" ")[0]!.toUpperCase()), readyForQuery(status.charCodeAt(0))));
  return e;
}

/** BEGIN and an UPDATE answered inside the transaction. */
function openTransaction(volatile = false): Journal {
  const j = journal(volatile);
  send(j, "BEGIN", "T");
  send(j, "UPDATE t SET v = v + 1", "T");
  return j;
}

/** An open transaction with its COMMIT in flight, the transaction-id read sent in epoch 4. */
function commitInFlight(): Journal {
  const j = openTransaction();
  j.xidAsked(true, 4);
  send(j, "COMMIT");
  return j;
}

const UNKNOWN_COMMIT = "the connection to the primary was lost during COMMIT before its transaction id was known; the outcome is unknown";
const UNKNOWN_WRITE =
  "a statement that may have written was in flight outside a transaction when the connection to the primary was lost; its outcome is unknown";
const SEVERAL = "several requests in flight may have committed when the connection to the primary was lost; their outcome is unknown";

describe("planRecovery", () => {
  test("an empty journal: the session just moves", () => {
    expect(planRecovery(journal(), writes)).toEqual({ kind: "migrate" });
  });

  test("a finished autocommit statement leaves the journal empty: migrate", () => {
    const j = journal();
    send(j, "UPDATE t SET v = 1", "I");
    expect(j.entries).toEqual([]);
    expect(planRecovery(j, writes)).toEqual({ kind: "migrate" });
  });

  test("a COMMIT only parsed (Parse + Sync in flight) ran nothing: not in doubt, the transaction is replayed or refused", () => {
    const j = openTransaction();
    j.xidAsked(true, 4);
    const e = j.begin("END");
    const m = concat(parse("s1", "END"), sync());
    j.add(m, 0, m.length);
    expect(e.commit).toBe(true);
    expect(e.runs).toBe(false);
    expect(inDoubt(j, writes)).toEqual([]);
    expect(planRecovery(j, writes)).toEqual({ kind: "replay" });
    j.unsafe = "it used now()";
    expect(planRecovery(j, writes).kind).toBe("fail");
  });

  test("an open transaction with nothing in flight is replayed", () => {
    const j = openTransaction();
    expect(inDoubt(j, writes)).toEqual([]);
    expect(planRecovery(j, writes)).toEqual({ kind: "replay" });
  });

  test("COMMIT in flight with a transaction id: look it up, with the id and the epoch it was read in", () => {
    const j = commitInFlight();
    j.xidRead("7001", true, 5);
    expect(inDoubt(j, writes)).toEqual([j.entries[2]!]);
    expect(planRecovery(j, writes)).toEqual({ kind: "resolve", xid: "7001", epoch: 4 });
  });

  test("COMMIT in flight of a transaction that wrote nothing (NULL id): committed", () => {
    const j = commitInFlight();
    j.xidRead("", true, 4);
    expect(planRecovery(j, writes)).toEqual({ kind: "committed" });
  });

  test("COMMIT in flight before the id was read, or never asked: 08007", () => {
    const asked = commitInFlight();
    expect(asked.xid).toEqual({ kind: "asked", epoch: 4 });
    expect(planRecovery(asked, writes)).toEqual({ kind: "fail", code: "08007", message: UNKNOWN_COMMIT });

    const never = openTransaction();
    send(never, "COMMIT");
    expect(never.xid).toEqual({ kind: "none" });
    expect(planRecovery(never, writes)).toEqual({ kind: "fail", code: "08007", message: UNKNOWN_COMMIT });
  });

  test("COMMIT in flight whose id read failed (the transaction had failed): replay", () => {
    const j = commitInFlight();
    j.xidRead(null, true, 4);
    expect(j.xid).toEqual({ kind: "failed" });
    expect(planRecovery(j, writes)).toEqual({ kind: "replay" });
  });

  test("the id read early in the transaction settles a COMMIT in flight", () => {
    const j = journal();
    send(j, "BEGIN", "T");
    j.xidAsked(false, 2);
    send(j, "INSERT INTO t VALUES (1)", "T");
    j.xidRead("640", true, 2);
    send(j, "COMMIT");
    expect(planRecovery(j, writes)).toEqual({ kind: "resolve", xid: "640", epoch: 2 });
  });

  test("a plain ROLLBACK in flight is answered, even when the transaction could not be replayed", () => {
    for (const sql of ["ROLLBACK", "rollback;", "ABORT", " ROLLBACK WORK ", "rollback transaction"]) {
      const j = openTransaction();
      j.unsafe = "the transaction was already refused after a lost connection";
      send(j, sql);
      expect(planRecovery(j, writes)).toEqual({ kind: "rolledBack" });
    }
    for (const sql of ["ROLLBACK TO SAVEPOINT a", "ROLLBACK AND CHAIN", "ROLLBACK PREPARED 'x'", "ROLLBACK; SELECT 1"]) {
      const j = openTransaction();
      send(j, sql);
      expect(planRecovery(j, writes)).toEqual({ kind: "replay" });
    }
  });

  test("the proxy's own refusal in flight: the same error again, whatever the request was", () => {
    const j = openTransaction(true);
    send(j, "SELECT now()", "T");
    j.begin("").refused = { code: "40001", message: "refused: now()", inTx: true };
    expect(planRecovery(j, writes)).toEqual({ kind: "fail", code: "40001", message: "refused: now()" });
    const reject = journal();
    reject.begin("").refused = { code: "42501", message: "not allowed", inTx: false };
    expect(planRecovery(reject, writes)).toEqual({ kind: "fail", code: "42501", message: "not allowed" });
  });

  test("an autocommit statement that may write, in flight: 08007", () => {
    const j = journal();
    const e = send(j, "INSERT INTO t VALUES (1)");
    expect(inDoubt(j, writes)).toEqual([e]);
    expect(planRecovery(j, writes)).toEqual({ kind: "fail", code: "08007", message: UNKNOWN_WRITE });
  });

  test("an autocommit read in flight: replay; the classifier sees its text", () => {
    const j = journal();
    send(j, "SELECT * FROM t");
    const judged: string[] = [];
    const plan = planRecovery(j, (sql) => {
      judged.push(sql);
      return false;
    });
    expect(plan).toEqual({ kind: "replay" });
    expect(judged).toEqual(["SELECT * FROM t"]);
  });

  test("a request without text outside a transaction is in doubt whatever the classifier says", () => {
    const j = journal();
    const e = send(j, "");
    expect(inDoubt(j, reads)).toEqual([e]);
    expect(planRecovery(j, reads)).toEqual({ kind: "fail", code: "08007", message: UNKNOWN_WRITE });
  });

  test("a write in flight inside an open transaction (the request before it answered 'T'): replay", () => {
    const j = openTransaction();
    send(j, "DELETE FROM t");
    expect(inDoubt(j, writes)).toEqual([]);
    expect(planRecovery(j, writes)).toEqual({ kind: "replay" });
  });

  test("inside a failed transaction ('E') a write in flight is not in doubt either", () => {
    const j = journal();
    send(j, "BEGIN", "T");
    send(j, "SELECT 1/0", "E");
    send(j, "UPDATE t SET v = 2");
    expect(inDoubt(j, writes)).toEqual([]);
  });

  test("a pipelined BEGIN and UPDATE both in flight: the UPDATE is inside the transaction", () => {
    const j = journal();
    send(j, "BEGIN");
    send(j, "UPDATE t SET v = 1");
    expect(j.inFlight().length).toBe(2);
    expect(inDoubt(j, writes)).toEqual([]);
    expect(planRecovery(j, writes)).toEqual({ kind: "replay" });
  });

  test("START TRANSACTION opens a transaction as BEGIN does; after ROLLBACK a write is in doubt again", () => {
    const j = journal();
    send(j, "start  transaction isolation level serializable");
    send(j, "UPDATE t SET v = 1");
    send(j, "ROLLBACK");
    const after = send(j, "UPDATE t SET v = 2");
    expect(inDoubt(j, writes)).toEqual([after]);
  });

  test("two COMMITs in flight: 08007", () => {
    const j = journal();
    for (const sql of ["BEGIN", "UPDATE t SET v = 1", "COMMIT", "BEGIN", "UPDATE t SET v = 2", "COMMIT"]) send(j, sql);
    j.xidAsked(true, 1);
    j.xidRead("10", true, 1);
    expect(inDoubt(j, writes).map((e) => j.entries.indexOf(e))).toEqual([2, 5]);
    expect(planRecovery(j, writes)).toEqual({ kind: "fail", code: "08007", message: SEVERAL });
  });

  test("a COMMIT and an autocommit write after it, both in flight: 08007", () => {
    const j = openTransaction();
    send(j, "COMMIT");
    send(j, "INSERT INTO t VALUES (2)");
    expect(inDoubt(j, writes).map((e) => e.sql)).toEqual(["COMMIT", "INSERT INTO t VALUES (2)"]);
    expect(planRecovery(j, writes)).toEqual({ kind: "fail", code: "08007", message: SEVERAL });
  });

  test("an unsafe journal is refused with 40001 naming the reason", () => {
    const j = journal(true);
    send(j, "BEGIN", "T");
    send(j, "INSERT INTO t VALUES (nextval('s'))", "T");
    expect(planRecovery(j, writes)).toEqual({
      kind: "fail",
      code: "40001",
      message: "the transaction could not be replayed after the connection to the primary was lost: it used nextval, whose value differs on a second run",
    });
  });

  test("over the size cap: refused with 40001", () => {
    const j = new Journal(discard, 16, null);
    send(j, "BEGIN", "T");
    send(j, "UPDATE t SET v = 1", "T");
    expect(planRecovery(j, writes)).toEqual({
      kind: "fail",
      code: "40001",
      message: "the transaction could not be replayed after the connection to the primary was lost: it is over max_journal_bytes (16)",
    });
  });

  test("a COMMIT whose id read failed in an unsafe transaction: refused, not replayed", () => {
    const j = openTransaction(true);
    send(j, "SELECT now()", "T");
    j.xidAsked(true, 1);
    send(j, "COMMIT");
    j.xidRead(null, true, 1);
    expect(planRecovery(j, writes)).toMatchObject({ kind: "fail", code: "40001" });
  });
});

describe("replayOrRefuse", () => {
  test("replay unless the journal is unsafe", () => {
    const j = openTransaction();
    expect(replayOrRefuse(j)).toEqual({ kind: "replay" });
    j.unsafe = "it used COPY";
    expect(replayOrRefuse(j)).toEqual({
      kind: "fail",
      code: "40001",
      message: "the transaction could not be replayed after the connection to the primary was lost: it used COPY",
    });
  });
});

describe("afterLookup", () => {
  test("committed: answer the COMMIT, replay nothing", () => {
    expect(afterLookup(commitInFlight(), "committed", false)).toEqual({ kind: "committed" });
  });

  test("aborted, or never reached the new primary: replay", () => {
    expect(afterLookup(commitInFlight(), "aborted", false)).toEqual({ kind: "replay" });
    expect(afterLookup(commitInFlight(), null, true)).toEqual({ kind: "replay" });
    expect(afterLookup(commitInFlight(), "in progress", true)).toEqual({ kind: "replay" });
  });

  test("aborted but unsafe: refused", () => {
    const j = commitInFlight();
    j.unsafe = "it used COPY";
    expect(afterLookup(j, "aborted", false)).toMatchObject({ kind: "fail", code: "40001" });
  });

  test("in progress or unknown to the new primary: 08007", () => {
    expect(afterLookup(commitInFlight(), "in progress", false)).toEqual({
      kind: "fail",
      code: "08007",
      message: "the outcome of the COMMIT in flight is unknown (transaction status: in progress)",
    });
    expect(afterLookup(commitInFlight(), null, false)).toEqual({
      kind: "fail",
      code: "08007",
      message: "the outcome of the COMMIT in flight is unknown (transaction status: not known to the new primary)",
    });
  });
});

describe("no N0 for the primary change the COMMIT was in doubt across (followed by probing, cut off from the fleet)", () => {
  test("aborted, or never assigned on the new primary: replayed (true whichever transaction holds the id)", () => {
    expect(afterLookup(commitInFlight(), "aborted", false, true)).toEqual({ kind: "replay" });
    expect(afterLookup(commitInFlight(), null, true, true)).toEqual({ kind: "replay" });
  });

  test("committed, in progress or unknown: 08007, never taken as this transaction's outcome (the id may be reused)", () => {
    for (const status of ["committed", "in progress", null]) {
      const p = afterLookup(commitInFlight(), status, false, true);
      expect(p).toMatchObject({ kind: "fail", code: "08007" });
      expect(p.kind === "fail" && p.message).toContain("holds no N0");
    }
  });
});

describe("a COMMIT later in a Query of several statements", () => {
  test("is in doubt: resolved by an id known from earlier, never taken as committed from a NULL read", () => {
    const j = journal();
    send(j, "BEGIN", "T");
    const e = send(j, "INSERT INTO t VALUES (1); COMMIT");
    expect(e.commit).toBe(true);
    expect(e.commitLater).toBe(true);
    expect(planRecovery(j, writes)).toEqual({ kind: "fail", code: "08007", message: UNKNOWN_COMMIT });
    j.xidAsked(false, 2);
    j.xidRead("77", true, 2);
    expect(planRecovery(j, writes)).toEqual({ kind: "resolve", xid: "77", epoch: 2 });
  });

  test("committed: 08007, since the replies to the statements before the COMMIT cannot be given without running them again", () => {
    const j = journal();
    send(j, "BEGIN", "T");
    send(j, "UPDATE t SET v = 1; END");
    const p = afterLookup(j, "committed", false);
    expect(p.kind).toBe("fail");
    expect(p.kind === "fail" && p.code).toBe("08007");
    expect(afterLookup(j, "aborted", false)).toEqual({ kind: "replay" });
  });

  test("BEGIN; INSERT; COMMIT sent whole outside a transaction: in doubt", () => {
    const j = journal();
    send(j, "BEGIN; INSERT INTO t VALUES (1); COMMIT");
    expect(inDoubt(j, reads).length).toBe(1);
    expect(planRecovery(j, reads).kind).toBe("fail");
  });

  test("comments before BEGIN: a pipelined UPDATE behind it is inside the transaction", () => {
    const j = journal();
    send(j, "/* app */ BEGIN");
    send(j, "UPDATE t SET v = 2");
    expect(inDoubt(j, writes)).toEqual([]);
    expect(planRecovery(j, writes)).toEqual({ kind: "replay" });
  });
});
