// After a session's server connection is lost: wait for a writable primary, settle the COMMIT in flight, move session state, replay the open transaction.

import { TxStatus } from "../../protocol/codes.ts";
import { errorResponse } from "../../protocol/errors.ts";
import { readyForQuery } from "../../protocol/messages.ts";
import type { ServerConnection } from "../../server/connection.ts";
import type { Pool, PoolWaiter } from "../../server/pool.ts";
import type { LoginError } from "../../server/login.ts";
import { runQuery } from "../../server/query-runner.ts";
import type { TappedSession } from "../../core/request-tap.ts";
import { log } from "../../util/log.ts";
import type { JournalEntry, KeptConflict, ReplayConflicts } from "../../cluster/ha/journal.ts";
import { afterLookup, planRecovery, type RecoveryPlan } from "../../cluster/ha/recovery-plan.ts";
import type { RecoveryOutcome, RecoveryRecord } from "../../cluster/ha/replay-registry.ts";
import { restoreSession } from "../../cluster/ha/restore.ts";
import type { JournalTap } from "./session-tap.ts";

/** How a replay ended; "conflict": the run met a deadlock or serialization failure, kept from the client (its transaction failed on the server). */
type Step = "ok" | "lost" | "mismatch" | "conflict";

const MISMATCH: RecoveryPlan = {
  kind: "fail",
  code: "40001",
  message: "the transaction was run again on a new server connection, but a reply differed from the one the client had",
};

/** One recovery of one session; `lost()` is called if the new server goes too. */
export class SessionRecovery {
  private readonly started = performance.now();
  private readonly at = new Date().toISOString();
  private attempts = 0;
  private to = "";
  private replayed = 0;
  /** SQLSTATE of each deadlock or serialization failure kept from the client, in order (each made the transaction run again, or refused it). */
  private readonly conflicts: string[] = [];
  private readonly inFlightAtLoss: number;
  private settle: ((s: Step) => void) | null = null;

  constructor(
    private readonly sess: TappedSession,
    /** The session's journal, state to migrate and recovery record. */
    private readonly tap: JournalTap,
    private readonly from: string,
    /** Backend pid of the lost connection (its transaction may still be running there). */
    private readonly lostPid: number,
    private readonly reason: string,
  ) {
    this.inFlightAtLoss = tap.journal.inFlight().length;
  }

  /** The server the recovery was using is gone too. */
  lost(): void {
    const s = this.settle;
    this.settle = null;
    s?.("lost");
  }

  /**
   * A deadlock or serialization failure was kept from the client: roll the transaction back and
   * run it again on the same server, replies checked; the failing request then gets its reply.
   * A run that meets a conflict again (the rolled-back transaction can overtake the one it
   * deadlocked with, which was woken but has not run yet) runs once more, within max_attempts.
   */
  async retry(server: ServerConnection): Promise<void> {
    const sess = this.sess;
    this.to = server.endpoint.name;
    this.retrying = true;
    this.noteConflict();
    let step: Step;
    for (;;) {
      this.attempts++;
      this.tap.serverGone();
      sess.forwarder.injectQuery(server, "ROLLBACK");
      step = await this.replayFrom(server, 0, false, "retry");
      if (step !== "conflict") break;
      this.noteConflict();
    }
    if (step === "ok") return this.finish({ kind: "replay" }, "");
    this.retrying = false;
    return this.run(step === "mismatch" ? MISMATCH : null);
  }

  private retrying = false;

  async run(forcedPlan: RecoveryPlan | null = null): Promise<void> {
    const sess = this.sess;
    const ctx = sess.ctx;
    const settings = this.tap.registry.settings;
    const j = this.tap.journal;
    const deadline = this.started + settings.maxReplaySecs * 1000;
    let forced: RecoveryPlan | null = forcedPlan;
    let lastXid = "";
    if (forced === null) log.info("server connection lost; recovering the session", { pid: sess.pid, node: this.from, reason: this.reason, journaled: j.entries.length });
    while (!sess.closed) {
      if (this.attempts >= settings.maxAttempts || performance.now() > deadline) {
        const why = this.attempts >= settings.maxAttempts ? `${this.attempts} attempts` : `max_replay_secs (${settings.maxReplaySecs}) passed`;
        return this.close("08006", `the connection to the primary was lost and the session could not be recovered: ${why}`);
      }
      let plan = forced ?? planRecovery(j, (sql) => ctx.classifier.isWrite(sql));
      const migration = this.tap.migration;
      const blocker = migration.blocker();
      if (blocker !== "" && (sess.pinned || sess.mode === "session")) return this.close("08006", `the connection to the server was lost and the session cannot move to another: ${blocker}`);
      const server = await this.leasePrimary(deadline);
      if (server === null) continue;
      this.attempts++;
      this.to = server.endpoint.name;
      if (plan.kind === "resolve") {
        lastXid = plan.xid;
        const looked = await this.lookUp(server, plan.xid, plan.epoch);
        if (looked === null) continue;
        plan = looked;
      }
      if (!migration.empty || this.tap.sessionParses.size > 0) {
        const problem = await restoreSession(server, migration, this.tap.sessionParses);
        if (problem === "lost") continue;
        if (problem !== "") {
          this.giveBack(server, true);
          return this.close("08006", `the connection to the server was lost and the session state could not be restored: ${problem}`);
        }
      }
      // The new server went while its outcome or state was being settled: start over on another.
      if (server.closed) continue;
      const step = await this.carryOut(server, plan, deadline);
      if (step === "lost") continue;
      if (step === "mismatch") {
        forced = MISMATCH;
        continue;
      }
      return this.finish(plan, lastXid);
    }
  }

  // ---- steps ------------------------------------------------------------------------------

  /** Wait for a writable primary and lease a server on it (null: none before the deadline or the session left). */
  private async leasePrimary(deadline: number): Promise<ServerConnection | null> {
    const sess = this.sess;
    const ctx = sess.ctx;
    while (!sess.closed && performance.now() < deadline) {
      const node = ctx.cluster.primary();
      if (ctx.buffer.active || ctx.failover?.inProgress || node.health !== "up" || node.fenced || node.status?.inRecovery === true) {
        await Bun.sleep(20);
        continue;
      }
      const s = await lease(ctx.nodePool(sess.group!, node), deadline);
      // Leased, then closed before the session held it (its backend ended meanwhile): the pool dropped it; lease another.
      if (s?.closed === true) continue;
      if (s !== null) {
        if (sess.closed) {
          this.giveBack(s, false);
          return null;
        }
        return s;
      }
      await Bun.sleep(50);
    }
    return null;
  }

  /** The COMMIT's outcome by the N0 rule, then pg_xact_status; null when the server was lost meanwhile. */
  private async lookUp(server: ServerConnection, xid: string, epoch: number): Promise<RecoveryPlan | null> {
    const ctx = this.sess.ctx;
    const j = this.tap.journal;
    // The first primary change after the COMMIT was sent: transaction ids from its N0 on never reached the new line.
    // Without an N0 for it (followed by probing while cut off from the fleet, or not made by a controller), only
    // the answers that need none settle the COMMIT.
    let withoutN0 = false;
    if (ctx.cluster.epoch !== epoch) {
      const n0 = ctx.failover?.n0After(epoch) ?? null;
      if (n0 !== null && BigInt(xid) >= BigInt(n0)) return afterLookup(j, null, true);
      withoutN0 = n0 === null;
    }
    let terminated = false;
    for (;;) {
      const r = await runQuery(server, "SELECT pg_xact_status($1::xid8)", [xid]);
      if (r.error !== undefined) {
        if (r.error.code === "08006") return null;
        // "transaction ID ... is in the future": it never reached this server.
        if (r.error.code === "22023" && /future/.test(r.error.message)) return afterLookup(j, null, true);
        return afterLookup(j, null, false, withoutN0);
      }
      const status = r.rows[0]?.[0] ?? null;
      if (status !== "in progress" || server.endpoint.name !== this.from || this.lostPid === 0) return afterLookup(j, status, false, withoutN0);
      // The old backend still holds the transaction (the link broke, the backend lives on): end it, then it is settled one way or the other.
      if (!terminated) {
        terminated = true;
        const t = await runQuery(server, "SELECT pg_terminate_backend($1::int)", [String(this.lostPid)]);
        if (t.error?.code === "08006") return null;
      }
      if (performance.now() - this.started > this.tap.registry.settings.maxReplaySecs * 1000) return afterLookup(j, status, false, withoutN0);
      await Bun.sleep(20);
    }
  }

  /** Put the plan into effect on `server`. */
  private carryOut(server: ServerConnection, plan: RecoveryPlan, deadline: number): Promise<Step> {
    switch (plan.kind) {
      case "migrate":
        this.sess.adopt(server);
        return Promise.resolve("ok");
      case "replay":
        return this.replayRunningAgain(server, deadline);
      case "committed":
      case "rolledBack": {
        const j = this.tap.journal;
        const open = j.inFlight();
        if (open.length !== 1 || (plan.kind === "committed" && !open[0]!.commit)) {
          this.giveBack(server, true);
          this.sess.fatal(errorResponse({ severity: "FATAL", code: "08007", message: "the COMMIT in flight committed, but replies to requests sent with it were lost" }));
          return Promise.resolve("ok");
        }
        return this.replayFrom(server, j.entries.indexOf(open[0]!), true);
      }
      case "resolve":
        throw new Error("resolve is looked up before it is carried out");
      case "fail":
        return Promise.resolve(this.deliverFailure(server, plan.code, plan.message));
    }
  }

  /**
   * Replay the whole journal on `server`. A run that meets a deadlock or serialization failure
   * (kept from the client) is rolled back and run again from the start of the transaction while
   * attempts (max_attempts, counted with the recovery's other attempts) and time (max_replay_secs)
   * last; then the client gets the last conflict's SQLSTATE, as it would for a conflict of its own.
   */
  private async replayRunningAgain(server: ServerConnection, deadline: number): Promise<Step> {
    const settings = this.tap.registry.settings;
    for (;;) {
      const step = await this.replayFrom(server, 0, false, "keep");
      if (step !== "conflict") return step;
      // The client left meanwhile: its server went back with it.
      if (this.sess.closed) return "lost";
      const conflict = this.noteConflict();
      this.tap.serverGone();
      if (this.attempts >= settings.maxAttempts) return this.refuseConflict(server, conflict, `max_attempts (${settings.maxAttempts}) spent`);
      if (performance.now() > deadline) return this.refuseConflict(server, conflict, `max_replay_secs (${settings.maxReplaySecs}) passed`);
      this.attempts++;
      this.sess.forwarder.injectQuery(server, "ROLLBACK");
    }
  }

  /** The conflict the journal kept last, noted for the record. */
  private noteConflict(): KeptConflict {
    const c = this.tap.journal.keptConflict ?? { code: "40001", message: "" };
    this.conflicts.push(c.code);
    return c;
  }

  /** No run again left (`why`): the failed transaction is rolled back and the client's request refused with the conflict's SQLSTATE. */
  private async refuseConflict(server: ServerConnection, conflict: KeptConflict, why: string): Promise<Step> {
    this.sess.detach();
    const r = await runQuery(server, "ROLLBACK");
    if (r.error !== undefined) {
      server.close("rollback after a conflict failed");
      return "lost";
    }
    const runs = this.conflicts.length;
    const each = runs === 1 ? "its run" : `each of its ${runs} runs`;
    const message = `the transaction, run again on a new server connection, met a deadlock or serialization failure in ${each} (${why}): ${conflict.message}`;
    return this.deliverFailure(server, conflict.code, message);
  }

  /**
   * Send journal entries from `first` on again, one request at a time, each checked against the
   * replies the client had before the next goes (a COMMIT never goes after a mismatch).
   * `emptyTx`: run them in a fresh transaction of their own (a committed COMMIT answered again).
   * `conflicts`: what a deadlock or serialization failure in a request sent again does; one kept
   * from the client ends the replay with "conflict".
   */
  private replayFrom(server: ServerConnection, first: number, emptyTx: boolean, conflicts: ReplayConflicts = "pass"): Promise<Step> {
    const sess = this.sess;
    const j = this.tap.journal;
    const entries = j.entries.slice(first);
    if (entries.some((e) => e.bytes === null)) {
      return Promise.resolve(this.deliverFailure(server, "40001", "the transaction could not be replayed: its journal is over max_journal_bytes"));
    }
    sess.adopt(server);
    if (emptyTx) sess.forwarder.injectQuery(server, "BEGIN");
    j.rewindFrom(first);
    j.replaying = true;
    j.replayConflicts = conflicts;
    return new Promise<Step>((resolve) => {
      let i = 0;
      const finish = (s: Step) => {
        j.onReplayed = null;
        j.onReplayConflict = null;
        j.endReplay();
        resolve(s);
      };
      const done = (s: Step) => {
        if (this.settle === null) return;
        this.settle = null;
        finish(s);
      };
      this.settle = finish;
      const sendNext = () => {
        if (this.settle === null) return;
        if (i >= entries.length) return done("ok");
        const e: JournalEntry = entries[i++]!;
        j.expectReplay(e);
        this.replayed++;
        sess.forwarder.forward(e.bytes!, 0, e.bytes!.length);
      };
      j.onReplayed = (_e, mismatch) => {
        if (mismatch) {
          // Whatever the replay did is rolled back with the connection.
          const s = sess.server;
          sess.detach();
          if (s !== null) s.close("replayed reply differed");
          return done("mismatch");
        }
        // After the relay has finished with this reply (the session has seen its ReadyForQuery).
        queueMicrotask(sendNext);
      };
      // The server's transaction failed and nothing went to the client: the caller rolls back and runs it again.
      j.onReplayConflict = () => done("conflict");
      sendNext();
    });
  }

  /**
   * Tell the client its request or transaction cannot go on. Inside a transaction the new server
   * opens one and the error fails it, so what the client sends next meets an aborted transaction
   * as it would have on the old primary; a COMMIT or a statement of its own ends with it.
   */
  private deliverFailure(server: ServerConnection, code: string, message: string): Step {
    const sess = this.sess;
    const j = this.tap.journal;
    const open = j.inFlight();
    this.failure = { code, message };
    if (open.length > 1) {
      this.giveBack(server, true);
      sess.fatal(errorResponse({ severity: "FATAL", code, message }));
      return "ok";
    }
    const e = open[0];
    const prev = e === undefined ? undefined : j.entries[j.entries.indexOf(e) - 1];
    // Only a COMMIT that runs (a Query, or an Execute) ends the transaction; a Parse, Bind or Sync of
    // one leaves it open, so the refusal fails it and the client's COMMIT later is answered ROLLBACK.
    const endsTx = e !== undefined && e.commit && e.runs && !e.commitLater;
    const inTx = e === undefined ? sess.txStatus !== TxStatus.Idle : e.refused !== null ? e.refused.inTx : !endsTx && prev !== undefined && prev.status !== TxStatus.Idle;
    if (!inTx) {
      if (sess.pinned) sess.adopt(server);
      else this.giveBack(server, false);
      j.clear();
      sess.txStatus = TxStatus.Idle;
      sess.out.write(errorResponse({ severity: "ERROR", code, message }));
      sess.out.write(readyForQuery(TxStatus.Idle));
      return "ok";
    }
    j.clear();
    sess.adopt(server);
    sess.forwarder.injectQuery(server, "BEGIN");
    sess.forwarder.failNextRequest(code, message);
    if (e !== undefined && e.bytes !== null) sess.forwarder.forward(e.bytes, 0, e.bytes.length);
    j.unsafe = "the transaction was already refused after a lost connection";
    return "ok";
  }

  private failure: { code: string; message: string } | null = null;

  // ---- ending -----------------------------------------------------------------------------

  private finish(plan: RecoveryPlan, xid: string): void {
    const outcome: RecoveryOutcome =
      this.failure !== null
        ? this.failure.code === "08007"
          ? "unknown"
          : "refused"
        : this.retrying
          ? "retried"
          : plan.kind === "committed"
            ? "committed"
            : plan.kind === "rolledBack"
              ? "rolled_back"
            : plan.kind === "migrate"
              ? "migrated"
              : "replayed";
    // Retries spent: the last run's conflict went to the client as PostgreSQL gave it.
    const given = this.retrying && this.failure === null ? this.tap.journal.conflictGiven : "";
    if (given !== "") this.conflicts.push(given);
    const reason = given === "" ? "" : `a deadlock or serialization failure again each of the ${this.attempts} times the transaction was run again`;
    this.record(outcome, this.failure?.code ?? given, this.failure?.message ?? reason, xid);
    this.tap.recovered();
  }

  private close(code: string, message: string): void {
    this.record("closed", code, message, "");
    this.sess.fatal(errorResponse({ severity: "FATAL", code, message }));
    this.tap.recovered();
  }

  private record(outcome: RecoveryOutcome, sqlstate: string, reason: string, xid: string): void {
    const sess = this.sess;
    const reg = this.tap.registry;
    const r: RecoveryRecord = {
      at: this.at,
      session: sess.pid,
      user: sess.user,
      database: sess.database,
      outcome,
      sqlstate,
      reason: reason || this.reason,
      from: this.from,
      to: this.to,
      replayed: this.replayed,
      in_flight: this.inFlightAtLoss,
      xid,
      attempts: this.attempts,
      duration_ms: Math.round(performance.now() - this.started),
      statements: this.tap.journal.statements(reg.settings.journalParameters),
      conflicts: this.conflicts,
    };
    reg.record(r);
    const level = outcome === "replayed" || outcome === "committed" || outcome === "migrated" ? "info" : "warn";
    log[level](`session recovery: ${outcome}`, { pid: sess.pid, from: this.from, to: this.to, replayed: this.replayed, ms: r.duration_ms, sqlstate });
  }

  /** Hand a leased server back (closed when its state is unknown). */
  private giveBack(s: ServerConnection, close: boolean): void {
    if (this.sess.server === s) this.sess.detach();
    if (close) s.close("session recovery gave it up");
    else (s.owner as Pool).release(s);
  }
}

/** Lease a server from `pool`, waiting at most until `deadline`; null when it fails or times out. */
function lease(pool: Pool, deadline: number): Promise<ServerConnection | null> {
  return new Promise((resolve) => {
    let timer: ReturnType<typeof setTimeout> | null = null;
    let settled = false;
    const settle = (s: ServerConnection | null) => {
      if (timer) clearTimeout(timer);
      if (settled) {
        // Leased after the wait was given up: straight back.
        if (s !== null) pool.release(s);
        return;
      }
      settled = true;
      resolve(s);
    };
    const w: PoolWaiter = {
      waitingSince: performance.now(),
      serverLeased: (s: ServerConnection) => settle(s),
      serverFailed: (_e: LoginError) => settle(null),
      reroute() {
        pool.forget(w);
        settle(null);
      },
    };
    const s = pool.acquire(w);
    if (s !== null) return settle(s);
    timer = setTimeout(() => {
      pool.forget(w);
      settle(null);
    }, Math.max(1, deadline - performance.now()));
  });
}
