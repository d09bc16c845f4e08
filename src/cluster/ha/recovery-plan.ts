// What to do for a session whose server was lost, from its journal alone: replay, settle a COMMIT first, just move, or refuse.

import { TxStatus } from "../../protocol/codes.ts";
import { firstWord, isPlainRollback, type Journal, type JournalEntry } from "./journal.ts";

export type RecoveryPlan =
  /** Nothing open: the session moves (state re-applied) and goes on. */
  | { kind: "migrate" }
  /** Re-send every journaled request, checking the replies the client had. */
  | { kind: "replay" }
  /** A COMMIT was in flight with a known transaction id: look its outcome up first. */
  | { kind: "resolve"; xid: string; epoch: number }
  /** The in-flight COMMIT took effect (or wrote nothing): answer it on an empty transaction, replay nothing. */
  | { kind: "committed" }
  /** A plain ROLLBACK was the one request in flight: the lost connection rolled back; answer it on an empty transaction. */
  | { kind: "rolledBack" }
  /** The client gets `code`; the connection stays when the protocol state allows it. */
  | { kind: "fail"; code: string; message: string };

const opens = (sql: string) => {
  const w = firstWord(sql);
  return w === "begin" || w === "start";
};
const closes = (sql: string) => {
  const w = firstWord(sql);
  return w === "commit" || w === "end" || w === "rollback" || w === "abort";
};

/**
 * Requests that may have committed without the client hearing so: a COMMIT in flight, or a
 * request that may write sent outside a transaction (it commits on its own).
 */
export function inDoubt(j: Journal, mayWrite: (sql: string) => boolean): JournalEntry[] {
  const out: JournalEntry[] = [];
  let inTx = false;
  for (const e of j.entries) {
    if (e.answered) {
      inTx = e.status !== TxStatus.Idle;
      continue;
    }
    // A COMMIT only parsed or bound (no Execute yet) has not run: nothing of it can have committed.
    if (e.commit && e.runs) out.push(e);
    else if (!inTx && !opens(e.sql) && (e.sql === "" || mayWrite(e.sql))) out.push(e);
    if (opens(e.sql)) inTx = true;
    else if (closes(e.sql)) inTx = false;
  }
  return out;
}

/** Decide from the journal; `mayWrite` judges statements sent outside a transaction (the classifier). */
export function planRecovery(j: Journal, mayWrite: (sql: string) => boolean): RecoveryPlan {
  if (j.entries.length === 0) return { kind: "migrate" };
  const open = j.inFlight();
  // Whatever the transaction was (even one already refused), its ROLLBACK has the same answer.
  if (open.length === 1 && isPlainRollback(open[0]!.sql)) return { kind: "rolledBack" };
  // The proxy's own refusal was on its way: nothing of the request ran; the client gets that error.
  const refused = open.length === 1 ? open[0]!.refused : null;
  if (refused !== null) return { kind: "fail", code: refused.code, message: refused.message };
  const doubt = inDoubt(j, mayWrite);
  if (doubt.length > 1) return { kind: "fail", code: "08007", message: "several requests in flight may have committed when the connection to the primary was lost; their outcome is unknown" };
  if (doubt.length === 1) {
    const e = doubt[0]!;
    if (!e.commit) {
      return { kind: "fail", code: "08007", message: "a statement that may have written was in flight outside a transaction when the connection to the primary was lost; its outcome is unknown" };
    }
    const x = j.xid;
    if (x.kind === "value") return { kind: "resolve", xid: x.xid, epoch: x.epoch };
    // Read just before a Query whose later statements write and commit, NULL proves nothing.
    if (x.kind === "null" && !e.commitLater) return { kind: "committed" };
    if (x.kind !== "failed") return { kind: "fail", code: "08007", message: "the connection to the primary was lost during COMMIT before its transaction id was known; the outcome is unknown" };
    // The transaction had failed: its COMMIT can only roll back, which a replay shows the client again.
  }
  return replayOrRefuse(j);
}

/** Replay when the journal allows it, else refuse with 40001. */
export function replayOrRefuse(j: Journal): RecoveryPlan {
  if (j.unsafe !== "") return { kind: "fail", code: "40001", message: `the transaction could not be replayed after the connection to the primary was lost: ${j.unsafe}` };
  return { kind: "replay" };
}

/**
 * How pg_xact_status answers map onto a plan, after the N0 rule (`neverReached`: the xid is at or
 * past N0, or the new primary never assigned it). `withoutN0`: the primary changed and this proxy
 * holds no N0 for that change; an xid the new primary reused may then read "committed" or "in
 * progress" for another transaction, so only "aborted" (whichever transaction it was, the
 * client's did not commit on the new line) settles it.
 */
export function afterLookup(j: Journal, status: string | null, neverReached: boolean, withoutN0 = false): RecoveryPlan {
  if (neverReached || status === "aborted") return replayOrRefuse(j);
  if (withoutN0) {
    return { kind: "fail", code: "08007", message: `the primary changed while the COMMIT was in flight and this proxy holds no N0 for that change (it followed it by probing, cut off from the fleet, or the change was not a failover of its own): transaction status ${status ?? "unknown"} cannot be told from a reused transaction id, so the outcome is unknown` };
  }
  if (status === "committed" && j.inFlight().some((e) => e.commitLater)) {
    return { kind: "fail", code: "08007", message: "the transaction committed, but the replies to the statements sent with its COMMIT were lost" };
  }
  if (status === "committed") return { kind: "committed" };
  return { kind: "fail", code: "08007", message: `the outcome of the COMMIT in flight is unknown (transaction status: ${status ?? "not known to the new primary"})` };
}
