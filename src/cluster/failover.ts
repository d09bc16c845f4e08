// Failover controller: confirmed primary loss or an operator's request -> hold, fence, rank, promote, record N0, move the primary, repoint standbys.

import type { FailoverSection } from "../config/types.ts";
import type { ServerEndpoint } from "../server/connection.ts";
import type { ServerCredentials } from "../server/login.ts";
import { log } from "../util/log.ts";
import { rankCandidates, type Candidate } from "./candidates.ts";
import type { Cluster, NodeView } from "./cluster.ts";
import type { FleetHooks, FleetRecord } from "./coordination/hooks.ts";
import type { HealthChecker } from "./health.ts";
import { NodeSql, rewriteConninfo, sqlLiteral, withNode } from "./node-sql.ts";
import type { SwitchoverBuffer } from "./switchover-buffer.ts";
import { standbyApplicationName } from "./sync-names.ts";
import { streamersAfter, syncSettingFor, SyncWatch } from "./sync-watch.ts";

/** What the controller needs from the proxy around it (getters: a reload may replace them). */
export interface FailoverDeps {
  cluster(): Cluster;
  settings(): FailoverSection;
  health(): HealthChecker | null;
  readonly buffer: SwitchoverBuffer;
  endpoint(node: NodeView): ServerEndpoint;
  /** Who the controller logs in as (the health checker's user; promotion needs a superuser). */
  creds(): ServerCredentials;
  /** Seconds one admin statement or login may take. */
  timeoutSecs(): number;
  /** Servers on `node` inside a transaction or a request now. */
  busyServers(node: string): number;
  /** The fleet this proxy coordinates with ([coordination]); null when it decides alone. */
  fleet?(): FleetHooks | null;
  /** End the client request whose server is backend `pid` on `node` (FATAL `code`); false when no client of ours has it. */
  endRequest(node: string, pid: number, code: string, message: string): boolean;
}

export type FailoverKind = "failover" | "switchover";
export type FailoverResult = "running" | "done" | "refused" | "aborted" | "failed";

export interface Repointed {
  node: string;
  ok: boolean;
  /** The application_name it streams under (synchronous_standby_names names it by that). */
  application_name?: string;
  /** From the primary change until it streamed from the new primary (ms). */
  ms: number | null;
  error?: string;
}

/** One failover or switchover, as GET /failovers shows it. */
export interface FailoverRecord {
  id: number;
  kind: FailoverKind;
  /** fleet: another proxy of the fleet did it; this is its record. */
  trigger: "auto" | "api" | "fleet";
  from: string;
  to: string | null;
  result: FailoverResult;
  reason: string;
  started_at: string;
  duration_ms: number | null;
  /** How long requests for the primary were held (ms). */
  hold_ms: number | null;
  /** pg_snapshot_xmax(pg_current_snapshot()) on the new primary before it took writes. */
  n0: string | null;
  epoch: number | null;
  fence: string;
  candidates: readonly Candidate[];
  ack_floor: number | null;
  repointed: Repointed[];
  steps: { at_ms: number; step: string }[];
}

/** A request the controller turned down; `status` is the HTTP status the API answers with. */
export class FailoverRefused extends Error {
  constructor(
    message: string,
    readonly status: 400 | 409,
    readonly record: FailoverRecord | null = null,
  ) {
    super(message);
  }
}

const HISTORY = 100;
/** How long a proxy cut off from the fleet holds writes for a primary it found by probing (the leader reads N0 first). */
export const CUT_OFF_GRACE_MS = 1000;

/** One primary change this proxy followed, by its local epoch, and the N0 it holds for it. */
interface PrimaryChange {
  epoch: number;
  from: string;
  to: string;
  /** null: none (followed by probing without the fleet's record, set by a provider or the admin API). */
  n0: string | null;
  /** Requests wait for the fleet's record of this change, which brings its N0. */
  awaitingRecord: boolean;
}
/** Statements that take a reachable old primary out of service (HA.md, soft fence). */
const FENCE_SQL = [
  "ALTER SYSTEM SET default_transaction_read_only = on",
  "SELECT pg_reload_conf()",
  "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
];

export class FailoverController {
  private readonly records: FailoverRecord[] = [];
  private readonly finishedCounts = new Map<string, { kind: FailoverKind; trigger: FailoverRecord["trigger"]; result: FailoverResult; count: number }>();
  private nextId = 1;
  private running: FailoverRecord | null = null;
  /** Why operator attention is needed ("" when all is well). */
  alarm = "";
  /** The buffer holds because the primary is down and nobody promoted yet (released when it comes back). */
  private holdingForDownPrimary = false;
  private readonly startedAt = new WeakMap<FailoverRecord, number>();
  /** Synchronous replication against the topology (report, alarm, bounded SyncRep waits). */
  readonly sync: SyncWatch;
  /** Nodes fenced at the last tick (one that leaves the set in recovery has rejoined). */
  private fencedBefore = new Set<string>();
  /** Fenced nodes rejoin_command ran for (once per fencing). */
  private rejoinRan = new Set<string>();

  constructor(private readonly deps: FailoverDeps) {
    this.sync = new SyncWatch({
      cluster: () => deps.cluster(),
      mode: () => deps.settings().synchronous,
      waitTimeoutSecs: () => deps.settings().sync_wait_timeout_secs,
      endRequest: (node, pid, code, message) => deps.endRequest(node, pid, code, message),
    });
  }

  /** Requests cut because the fenced old primary never answered them (failover.buffer_timeout_secs). */
  requestsCut = 0;

  countCut(): void {
    this.requestsCut++;
  }

  /** Upkeep: the synchronous replication watch, and old primaries that rejoined as standbys. */
  tick(): void {
    this.sync.tick();
    const nodes = this.deps.cluster().snapshot();
    for (const n of nodes) {
      if (n.fenced && n.health === "up" && this.running === null) this.nodeBack(n.name);
      if (n.fenced || !this.fencedBefore.has(n.name) || n.status?.inRecovery !== true) continue;
      this.rejoinRan.delete(n.name);
      void this.rejoined(n);
    }
    this.fencedBefore = new Set(nodes.filter((n) => n.fenced).map((n) => n.name));
  }

  /** A fenced old primary answers (again): run rejoin_command (once per fencing) to make it a standby of the primary. */
  private nodeBack(name: string): void {
    const n = this.deps.cluster().node(name);
    const cmd = this.deps.settings().rejoin_command;
    if (n === undefined || !n.fenced || cmd === "" || this.rejoinRan.has(name)) return;
    this.rejoinRan.add(name);
    const primary = this.deps.cluster().primary();
    log.warn(`old primary ${name} answers; running rejoin_command`);
    const env = { HELIOS_PRIMARY_NAME: primary.name, HELIOS_PRIMARY_HOST: primary.host, HELIOS_PRIMARY_PORT: String(primary.port) };
    runHook(cmd, n, REJOIN_TIMEOUT_SECS, env).then(
      () => log.info(`rejoin_command for ${name} finished; it is taken back once it reports recovery`),
      (e: Error) => {
        this.alarm = `rejoin_command for ${name} failed: ${e.message}`;
        log.error(this.alarm);
      },
    );
  }

  /** An old primary is a standby again: its synchronous_standby_names is cleared (unless the operator keeps it). */
  private async rejoined(n: NodeView): Promise<void> {
    log.info(`old primary ${n.name} rejoined as a standby`);
    const mode = this.deps.settings().synchronous;
    try {
      await this.node(n, async (db) => {
        // The soft fence is the controller's: a standby that may be promoted later must not stay read-only.
        await db.query("ALTER SYSTEM RESET default_transaction_read_only");
        if (mode !== "keep") await db.query("ALTER SYSTEM SET synchronous_standby_names = ''");
        await db.query("SELECT pg_reload_conf()");
      });
    } catch (e) {
      log.warn(`could not reset the fence or synchronous_standby_names on ${n.name}: ${(e as Error).message}`);
    }
    if (mode !== "keep") await this.nameStandbysOnPrimary([n]);
  }

  /**
   * The primary names every standby that streams (or is about to) from it (remaining, strict):
   * the up, unfenced standbys plus `joining`, FIRST/ANY n kept from its setting.
   */
  private async nameStandbysOnPrimary(joining: readonly NodeView[]): Promise<void> {
    const cluster = this.deps.cluster();
    const primary = cluster.primary();
    const mode = this.deps.settings().synchronous;
    if (this.running !== null || mode === "keep" || mode === "off" || primary.status === null || primary.status.inRecovery) return;
    const names = new Set<string>();
    for (const n of [...cluster.snapshot(), ...joining]) {
      if (n.name === primary.name || (n.health !== "up" && !joining.includes(n)) || (n.fenced && !joining.includes(n))) continue;
      const a = n.status?.applicationName;
      if (a !== null && a !== undefined) names.add(a);
    }
    const value = syncSettingFor(mode, primary.status.syncNames ?? null, [...names])!;
    if (value === (primary.status.syncNames ?? "")) return;
    try {
      await this.setSyncNames(primary, value);
      log.info(`synchronous_standby_names on the primary ${primary.name}: '${value}'`);
    } catch (e) {
      log.warn(`could not set synchronous_standby_names on the primary ${primary.name}: ${(e as Error).message}`);
    }
  }

  /** ALTER SYSTEM SET synchronous_standby_names + reload on `n` (or on the open connection `db`). */
  private async setSyncNames(n: NodeView, value: string, db?: NodeSql): Promise<void> {
    const run = async (d: NodeSql) => {
      await d.query(`ALTER SYSTEM SET synchronous_standby_names = ${sqlLiteral(value)}`);
      await d.query("SELECT pg_reload_conf()");
    };
    if (db !== undefined) await run(db);
    else await this.node(n, run);
  }

  history(): readonly FailoverRecord[] {
    return this.records;
  }

  /** Every primary change followed, oldest first (bounded); `changesBefore`: epochs trimmed off its start. */
  private readonly changes: PrimaryChange[] = [];
  private changesBefore = 0;

  /**
   * The primary changed (every PrimaryChanged event). A change this controller or the fleet's
   * record made gets its N0 from them (knowN0); one found by probing gets the fleet's only if
   * requests waited for its record (awaitWritablePrimary); any other has none.
   */
  primaryChanged(e: { epoch: number; from: string; to: string }): void {
    this.changes.push({ ...e, n0: null, awaitingRecord: false });
    if (this.changes.length > HISTORY) this.changesBefore = this.changes.shift()!.epoch;
  }

  /**
   * The N0 of the change of `epoch`. `own`: this controller made it, or the fleet's record did
   * (not merely confirmed one found by probing). A change found by probing takes the record's N0
   * only when requests waited for that record: a proxy cut off from etcd sent writes there before
   * it could know the record, and may have sent them before the leader took N0.
   */
  private knowN0(epoch: number, n0: string | null, from: string, to: string, own: boolean): void {
    const c = this.changes.find((x) => x.epoch === epoch);
    if (c === undefined) return;
    if (c.n0 === null && (own || c.awaitingRecord) && c.from === from && c.to === to) c.n0 = n0;
    c.awaitingRecord = false;
  }

  /** The fleet's record of the change to `to` did not come in time: it is followed without an N0. */
  followWithoutRecord(to: string, why: string): void {
    for (const c of this.changes) if (c.to === to) c.awaitingRecord = false;
    this.releaseDownHold(why);
  }

  /**
   * The N0 of the first primary change after local epoch `epoch` (a COMMIT sent in that epoch was
   * in doubt across it); null when this proxy holds none for that change: commit-outcome
   * resolution then trusts only answers that need no N0 (recovery-plan.ts, afterLookup).
   */
  n0After(epoch: number): string | null {
    if (epoch < this.changesBefore) return null;
    return this.changes.find((c) => c.epoch > epoch)?.n0 ?? null;
  }

  /** Failovers and switchovers finished since start, counted by kind, trigger and result (never trimmed, unlike history). */
  finished(): { kind: FailoverKind; trigger: FailoverRecord["trigger"]; result: FailoverResult; count: number }[] {
    return [...this.finishedCounts.values()];
  }

  get inProgress(): FailoverRecord | null {
    return this.running;
  }

  /** The primary was confirmed down (failure_threshold probes): act on the policy. */
  primaryDown(node: string, reason: string): void {
    const policy = this.deps.settings().policy;
    if (this.running !== null) return;
    if (policy === "off") {
      log.error(`primary ${node} is down (${reason}); failover.policy = off: not promoting`);
      return;
    }
    if (this.deps.buffer.hold(`primary ${node} down`)) this.holdingForDownPrimary = true;
    const notMine = this.deps.fleet?.()?.refusal() ?? null;
    if (notMine !== null) {
      log.warn(`primary ${node} is down (${reason}); not promoting here: ${notMine}`);
      return;
    }
    if (policy === "manual") {
      this.alarm = `primary ${node} is down (${reason}); failover.policy = manual: POST /failover to promote a standby`;
      log.error(this.alarm);
      return;
    }
    void this.failover({ trigger: "auto", reason: `primary ${node} down: ${reason}` }).catch(() => {});
  }

  /** The primary answered again before anyone promoted: stop holding. */
  primaryUp(node: string): void {
    if (this.running !== null || !this.holdingForDownPrimary || this.deps.cluster().primary().name !== node) return;
    this.holdingForDownPrimary = false;
    this.alarm = "";
    const n = this.deps.buffer.release();
    log.info(`primary ${node} is back; ${n} held requests go on`);
  }

  /**
   * The primary is not writable yet or any more: a provider or the admin API named a node that
   * has not finished its promotion (Patroni names its new leader a little before), or the primary
   * reports it is in recovery (being demoted). Hold requests for it until the primary of the
   * moment says it is out of recovery, at most promote_timeout_secs.
   */
  awaitWritablePrimary(reason: string): void {
    const cluster = this.deps.cluster();
    const health = this.deps.health();
    const writable = () => {
      const st = cluster.primary().status;
      return st !== null && !st.inRecovery;
    };
    if (this.running !== null || health === null) return;
    if (writable()) {
      // Promoted elsewhere (found by probing): under coordination requests wait for the fleet's record (its N0 comes before any write here).
      const name = cluster.primary().name;
      const fleet = this.deps.fleet?.() ?? null;
      if (fleet?.awaitRecord(name) === true) {
        const change = this.changes.findLast((c) => c.to === name);
        if (change !== undefined && change.epoch === cluster.epoch) change.awaitingRecord = true;
        if (this.deps.buffer.hold(`waiting for the fleet's record of ${name}`)) this.holdingForDownPrimary = true;
        return;
      }
      // Cut off from the fleet: the leader reads N0 the moment the node leaves recovery; writes from here wait a
      // little longer, so that none of them takes a transaction id below the N0 the other proxies settle commits with.
      if (fleet?.followsByProbing() === true) {
        if (this.deps.buffer.hold(`following ${name} without the fleet`)) this.holdingForDownPrimary = true;
        if (this.holdingForDownPrimary) setTimeout(() => this.releaseDownHold(`primary is now ${name} (followed by probing, cut off from the fleet)`), CUT_OFF_GRACE_MS);
        return;
      }
      if (this.holdingForDownPrimary) this.releaseDownHold(`primary is now ${name}`);
      return;
    }
    if (!this.deps.buffer.hold(reason)) return;
    log.warn(`holding requests for the primary: ${reason}`);
    void (async () => {
      const deadline = performance.now() + this.deps.settings().promote_timeout_secs * 1000;
      while (performance.now() < deadline && this.running === null) {
        await health.probeNow(cluster.primary().name);
        if (writable()) break;
        await Bun.sleep(20);
      }
      if (this.running !== null) return; // a failover took over the hold
      const n = this.deps.buffer.release();
      log.info(`primary ${cluster.primary().name} ${writable() ? "is writable" : "still not writable"}; ${n} held requests go on`);
    })();
  }

  /**
   * Promote a standby (the best candidate, or `target`) after the primary failed or on request.
   * Nothing irreversible happens before a candidate is chosen and answers as a standby; a fenced
   * old primary is unfenced again when the promotion fails. The API's request against a healthy
   * primary is a forced failover: refused without `force` (a planned move is POST /switchover).
   * `resume`: finish the fleet's failover of that epoch (its leader was lost), from `from` to `to`.
   */
  async failover(o: { trigger: "auto" | "api"; target?: string; reason?: string; force?: boolean; resume?: FleetRecord }): Promise<FailoverRecord> {
    const cluster = this.deps.cluster();
    const old = (o.resume && cluster.node(o.resume.from)) || cluster.primary();
    if (o.trigger === "api" && o.force !== true && old.health === "up" && !old.fenced) {
      throw new FailoverRefused(
        `the primary ${old.name} is up and answering: a failover would cut it off with its sessions. Use POST /switchover for a planned move, or POST /failover with {"force": true} to promote a standby anyway`,
        409,
      );
    }
    const rec = this.begin("failover", o.trigger, old, o.reason ?? (o.force === true ? "forced by the API" : "requested by the API"));
    const buffer = this.deps.buffer;
    const ownHold = buffer.hold(`failover from ${old.name}`);
    let fenced = false;
    try {
      await this.refreshStandbys(cluster, old);
      const chosen = o.resume ? cluster.node(o.resume.to)! : this.choose(rec, cluster, old, o.target);
      if (o.resume === undefined) {
        await this.verifyStandby(chosen);
        this.step(rec, `${chosen.name} answers as a standby`);
      }
      // The fleet's epoch is won before the old primary is touched.
      await this.claim(rec, chosen, o.resume);
      const f = await this.fence(old);
      rec.fence = f.summary;
      fenced = f.soft;
      this.step(rec, `old primary: ${rec.fence}`);
      await this.promote(rec, chosen, o.resume !== undefined);
      await this.publish(rec);
      this.finishMove(rec, cluster, chosen);
    } catch (e) {
      if (fenced && cluster.primary().name === old.name) {
        const undone = await this.unfence(old).then(
          () => "soft fence undone",
          (u: Error) => `soft fence could not be undone: ${u.message}`,
        );
        rec.fence += `; ${undone}`;
        this.step(rec, `old primary: ${undone}`);
      }
      this.fail(rec, e as Error, ownHold || this.holdingForDownPrimary);
      throw e instanceof FailoverRefused && e.record === null ? new FailoverRefused(e.message, e.status, rec) : e;
    }
    return rec;
  }

  /** The chosen node answers and is still in recovery (a standby that went or was promoted elsewhere is not promoted). */
  private async verifyStandby(n: NodeView): Promise<void> {
    const inRecovery = await this.node(n, (db) => db.value("SELECT pg_is_in_recovery()::text"), Math.min(2, this.deps.timeoutSecs())).catch((e: Error) => {
      throw new FailoverRefused(`candidate ${n.name} does not answer: ${e.message}; nothing changed`, 409);
    });
    if (inRecovery !== "true") throw new FailoverRefused(`candidate ${n.name} is not in recovery any more; nothing changed`, 409);
  }

  /**
   * Planned switchover: hold new transactions, let open ones finish, fence the primary, wait
   * until the target has all its WAL, promote, move, repoint. Clients see a pause, not an error.
   */
  async switchover(o: { target?: string }): Promise<FailoverRecord> {
    const cluster = this.deps.cluster();
    const old = cluster.primary();
    if (old.health !== "up") throw new FailoverRefused(`the primary ${old.name} is down: use POST /failover`, 409);
    const rec = this.begin("switchover", "api", old, "requested by the API");
    const buffer = this.deps.buffer;
    if (!buffer.hold(`switchover from ${old.name}`)) {
      this.close(rec, "refused", "another primary change holds requests");
      throw new FailoverRefused(rec.reason, 409, rec);
    }
    let fenced = false;
    try {
      await this.refreshStandbys(cluster, old);
      const chosen = this.choose(rec, cluster, old, o.target);
      const s = this.deps.settings();
      const deadline = performance.now() + s.drain_timeout_secs * 1000;
      for (;;) {
        const busy = this.deps.busyServers(old.name);
        if (busy === 0) break;
        if (performance.now() >= deadline) {
          this.close(rec, "aborted", `${busy} open transaction${busy === 1 ? "" : "s"} still running after failover.drain_timeout_secs (${s.drain_timeout_secs} s); nothing changed`);
          buffer.release();
          throw new FailoverRefused(rec.reason, 409, rec);
        }
        await Bun.sleep(5);
      }
      this.step(rec, "open transactions finished");
      const finalLsn = await this.node(old, async (db) => {
        await db.query("CHECKPOINT");
        for (const sql of FENCE_SQL) await db.query(sql);
        fenced = true;
        return Number(await db.value("SELECT pg_current_wal_lsn() - '0/0'"));
      });
      rec.fence = "soft fence: read-only, client backends ended";
      this.step(rec, `old primary fenced at WAL ${finalLsn}`);
      await this.waitReceived(chosen, finalLsn);
      this.step(rec, `${chosen.name} has received all WAL`);
      await this.claim(rec, chosen);
      await this.promote(rec, chosen);
      await this.publish(rec);
      this.finishMove(rec, cluster, chosen);
      return rec;
    } catch (e) {
      if (rec.result !== "running") throw e;
      if (fenced && cluster.primary().name === old.name) await this.unfence(old).catch(() => {});
      this.fail(rec, e as Error, true);
      throw e;
    }
  }

  // ---- steps ---------------------------------------------------------------------------------

  private begin(kind: FailoverKind, trigger: "auto" | "api", old: NodeView, reason: string): FailoverRecord {
    const policy = this.deps.settings().policy;
    if (policy === "off") throw new FailoverRefused("failover.policy = off: the proxy does not promote standbys", 409);
    if (this.running !== null) throw new FailoverRefused(`a ${this.running.kind} from ${this.running.from} is in progress`, 409);
    const notMine = this.deps.fleet?.()?.refusal() ?? null;
    if (notMine !== null) throw new FailoverRefused(notMine, 409);
    const rec: FailoverRecord = {
      id: this.nextId++,
      kind,
      trigger,
      from: old.name,
      to: null,
      result: "running",
      reason,
      started_at: new Date().toISOString(),
      duration_ms: null,
      hold_ms: null,
      n0: null,
      epoch: null,
      fence: "not attempted",
      candidates: [],
      ack_floor: null,
      repointed: [],
      steps: [],
    };
    this.startedAt.set(rec, performance.now());
    this.running = rec;
    this.records.push(rec);
    if (this.records.length > HISTORY) this.records.shift();
    log.warn(`${kind} from ${old.name} started (${reason})`);
    return rec;
  }

  private elapsed(rec: FailoverRecord): number {
    return Math.round((performance.now() - (this.startedAt.get(rec) ?? 0)) * 10) / 10;
  }

  private step(rec: FailoverRecord, step: string): void {
    rec.steps.push({ at_ms: this.elapsed(rec), step });
  }

  private close(rec: FailoverRecord, result: FailoverResult, reason: string): void {
    rec.result = result;
    const key = `${rec.kind}|${rec.trigger}|${result}`;
    const counted = this.finishedCounts.get(key);
    if (counted) counted.count++;
    else this.finishedCounts.set(key, { kind: rec.kind, trigger: rec.trigger, result, count: 1 });
    if (result !== "done") rec.reason = reason;
    rec.duration_ms = this.elapsed(rec);
    this.step(rec, result === "done" ? "done" : `${result}: ${reason}`);
    if (this.running === rec) this.running = null;
  }

  private fail(rec: FailoverRecord, e: Error, release: boolean): void {
    if (rec.result !== "running") return;
    const refused = e instanceof FailoverRefused;
    this.close(rec, refused ? "refused" : "failed", e.message);
    // A fleet epoch won for it is closed too: no other proxy finishes a promotion that failed here.
    if (rec.epoch !== null) void this.deps.fleet?.()?.abandon(rec);
    this.alarm = `${rec.kind} from ${rec.from} ${rec.result}: ${e.message}`;
    log.error(this.alarm);
    // With the primary down, held requests keep waiting (and time out cleanly) unless it comes back.
    if (release && (rec.kind === "switchover" || this.deps.cluster().primary().health === "up")) {
      this.holdingForDownPrimary = false;
      this.deps.buffer.release();
    } else if (release) this.holdingForDownPrimary = true;
  }

  /** Fresh WAL positions of the standbys before ranking them (probes run in parallel). */
  private async refreshStandbys(cluster: Cluster, old: NodeView): Promise<void> {
    const health = this.deps.health();
    if (health === null) return;
    await Promise.all(cluster.snapshot().filter((n) => n.name !== old.name).map((n) => health.probeNow(n.name)));
  }

  private choose(rec: FailoverRecord, cluster: Cluster, old: NodeView, target: string | undefined): NodeView {
    const s = this.deps.settings();
    const ranking = rankCandidates(cluster.snapshot(), cluster.node(old.name) ?? old, { preferSync: s.prefer_sync, maxLagBytes: s.max_lag_bytes }, cluster.syncMemory);
    rec.candidates = ranking.candidates;
    rec.ack_floor = ranking.ackFloor;
    let pick: Candidate | undefined;
    if (target !== undefined) {
      pick = ranking.candidates.find((c) => c.name === target);
      if (pick === undefined) throw new FailoverRefused(`target ${JSON.stringify(target)} is not a standby of this cluster`, 400);
      if (!pick.eligible) throw new FailoverRefused(`target ${target} is not a safe candidate: ${pick.reason}`, 409);
    } else {
      pick = ranking.candidates[0];
      if (pick === undefined || !pick.eligible) {
        const why = ranking.candidates.map((c) => `${c.name}: ${c.reason}`).join("; ") || "no standbys";
        throw new FailoverRefused(`no safe candidate (${why})`, 409);
      }
    }
    this.step(rec, `candidate ${pick.name} at WAL ${pick.position}${pick.sync ? " (sync)" : ""}`);
    return cluster.node(pick.name)!;
  }

  /** The fleet's next epoch for this change, won by compare-and-swap before anything is promoted. */
  private async claim(rec: FailoverRecord, to: NodeView, resume?: FleetRecord): Promise<void> {
    const fleet = this.deps.fleet?.();
    if (!fleet) return;
    rec.to = to.name;
    rec.epoch = await fleet.claim(rec, resume);
    this.step(rec, `fleet epoch ${rec.epoch} won`);
  }

  /** Every proxy of the fleet learns the change (N0, epoch) before writes are released here. */
  private async publish(rec: FailoverRecord): Promise<void> {
    const fleet = this.deps.fleet?.();
    if (!fleet) return;
    await fleet.publish(rec);
    this.step(rec, "failover record written to the fleet");
  }

  /** pg_promote() (or promote_command), then wait until the node is out of recovery and take N0. */
  private async promote(rec: FailoverRecord, node: NodeView, resumed = false): Promise<void> {
    const s = this.deps.settings();
    rec.to = node.name;
    // Finishing a lost leader's failover: a node it promoted already is not promoted twice.
    if (resumed && (await this.node(node, (db) => db.value("SELECT pg_is_in_recovery()::text"))) === "false") {
      this.step(rec, `${node.name} was promoted already`);
      await this.node(node, async (db) => {
        rec.n0 = await db.value("SELECT pg_snapshot_xmax(pg_current_snapshot())::text");
        await this.syncOnPromoted(rec, node, db);
      });
      return;
    }
    if (s.promote_command) {
      await runHook(s.promote_command, node, s.promote_timeout_secs);
      this.step(rec, "promote_command finished");
    }
    await this.node(node, async (db) => {
      if (!s.promote_command) {
        // Not pg_promote(true): it looks every 100 ms, and N0 is read the moment the node leaves recovery (below).
        const ok = await db.value("SELECT pg_promote(false)::text");
        if (ok !== "true") throw new Error(`pg_promote() on ${node.name} did not signal the promotion`);
      }
      const deadline = performance.now() + s.promote_timeout_secs * 1000;
      while ((await db.value("SELECT pg_is_in_recovery()::text")) === "true") {
        if (performance.now() > deadline) throw new Error(`${node.name} still in recovery after ${s.promote_timeout_secs} s`);
        await Bun.sleep(10);
      }
      // Transactions with xids from N0 on never reached the old primary's WAL (HA.md). Taken at once: a proxy cut off
      // from the fleet follows the node by probing and writes there after CUT_OFF_GRACE_MS (awaitWritablePrimary).
      rec.n0 = await db.value("SELECT pg_snapshot_xmax(pg_current_snapshot())::text");
      this.step(rec, `${node.name} promoted`);
      await this.syncOnPromoted(rec, node, db);
    });
  }

  /**
   * synchronous_standby_names on the new primary before any write is released: under
   * remaining no standby streams from it yet (cleared; named once repointed), under strict the
   * standbys about to be repointed ("*" when none), under off cleared, under keep untouched.
   */
  private async syncOnPromoted(rec: FailoverRecord, node: NodeView, db: NodeSql): Promise<void> {
    const mode = this.deps.settings().synchronous;
    if (mode === "keep") return;
    const cluster = this.deps.cluster();
    const previous = cluster.node(rec.from)?.status?.syncNames ?? node.status?.syncNames ?? null;
    const expected = mode === "strict" ? (streamersAfter(cluster.snapshot().filter((n) => n.name !== rec.from), node.name) ?? []) : [];
    const value = syncSettingFor(mode, previous, expected)!;
    this.previousSync.set(rec, previous);
    try {
      await this.setSyncNames(node, value, db);
      this.step(rec, `synchronous_standby_names on ${node.name}: '${value}' (failover.synchronous = ${mode})`);
    } catch (e) {
      // The node is promoted: going on beats calling it off; commits that wait are bounded and alarmed.
      this.step(rec, `could not set synchronous_standby_names on ${node.name}: ${(e as Error).message}`);
      log.error(`could not set synchronous_standby_names on the new primary ${node.name}: ${(e as Error).message}`);
    }
  }

  /** The old primary's synchronous_standby_names, per primary change (FIRST/ANY n is kept from it). */
  private readonly previousSync = new WeakMap<FailoverRecord, string | null>();

  /** The primary moves (epoch +1, pools follow), held requests go on, standbys are repointed. */
  private finishMove(rec: FailoverRecord, cluster: Cluster, to: NodeView): void {
    cluster.setPrimary(to.name, `${rec.kind} #${rec.id}`, rec.epoch ?? 0);
    rec.epoch = cluster.epoch;
    this.knowN0(rec.epoch, rec.n0, rec.from, to.name, true);
    rec.hold_ms = Math.round(this.deps.buffer.heldForMs() * 10) / 10;
    this.holdingForDownPrimary = false;
    this.alarm = "";
    const released = this.deps.buffer.release();
    this.step(rec, `primary is ${to.name} (epoch ${cluster.epoch}); ${released} held requests released`);
    this.close(rec, "done", "");
    log.warn(`${rec.kind} ${rec.from} -> ${to.name} done in ${rec.duration_ms} ms (requests held ${rec.hold_ms} ms)`);
    if (this.deps.settings().repoint_standbys) void this.repointAll(rec, cluster, to);
  }

  /** Another proxy of the fleet changed the primary: follow its record (its N0 settles this proxy's in-doubt commits). */
  adopt(r: FleetRecord): FailoverRecord {
    const cluster = this.deps.cluster();
    const rec: FailoverRecord = {
      id: this.nextId++, kind: r.kind, trigger: "fleet", from: r.from, to: r.to, result: "done", reason: `by ${r.leader} (fleet epoch ${r.epoch})`,
      started_at: r.started_at, duration_ms: null, hold_ms: Math.round(this.deps.buffer.heldForMs() * 10) / 10, n0: r.n0, epoch: null,
      fence: r.fence, candidates: [], ack_floor: null, repointed: [], steps: [],
    };
    const before = cluster.epoch;
    cluster.setPrimary(r.to, `${r.kind} by ${r.leader} (fleet epoch ${r.epoch})`, r.epoch);
    rec.epoch = cluster.epoch;
    this.knowN0(rec.epoch, r.n0, r.from, r.to, cluster.epoch !== before);
    this.records.push(rec);
    if (this.records.length > HISTORY) this.records.shift();
    this.releaseDownHold(`primary is ${r.to} (fleet epoch ${r.epoch})`);
    return rec;
  }

  /** Stop holding requests for a lost primary (a new one is known). */
  private releaseDownHold(why: string): void {
    if (!this.holdingForDownPrimary || this.running !== null) return;
    this.holdingForDownPrimary = false;
    this.alarm = "";
    const n = this.deps.buffer.release();
    log.info(`${why}; ${n} held requests go on`);
  }

  /** Fence the old primary as configured; `soft`: the soft fence took (it is undone if the promotion fails). */
  private async fence(old: NodeView): Promise<{ summary: string; soft: boolean }> {
    const s = this.deps.settings();
    const parts: string[] = [];
    let soft = false;
    if (s.fence_command) {
      try {
        await runHook(s.fence_command, old, 10);
        parts.push("fence_command ran");
      } catch (e) {
        parts.push(`fence_command failed: ${(e as Error).message}`);
      }
    }
    if (s.soft_fence) {
      try {
        await this.node(old, async (db) => {
          for (const sql of FENCE_SQL) {
            await db.query(sql);
            soft = true;
          }
        }, Math.min(1, this.deps.timeoutSecs()));
        parts.push("soft fence: read-only, client backends ended");
      } catch (e) {
        parts.push(`unreachable (${(e as Error).message})`);
      }
    }
    return { summary: parts.join("; ") || "none configured", soft };
  }

  private async unfence(old: NodeView): Promise<void> {
    await this.node(old, async (db) => {
      await db.query("ALTER SYSTEM RESET default_transaction_read_only");
      await db.query("SELECT pg_reload_conf()");
    });
  }

  /** Wait until `node` has received WAL up to `lsn` (switchover: nothing committed is left behind). */
  private async waitReceived(node: NodeView, lsn: number): Promise<void> {
    const limit = Math.max(5, this.deps.settings().drain_timeout_secs) * 1000;
    await this.node(node, async (db) => {
      const deadline = performance.now() + limit;
      for (;;) {
        const at = Number(await db.value("SELECT GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) - '0/0'"));
        if (at >= lsn) return;
        if (performance.now() > deadline) throw new Error(`${node.name} received WAL up to ${at} only, the old primary stopped at ${lsn}`);
        await Bun.sleep(5);
      }
    });
  }

  private async repointAll(rec: FailoverRecord, cluster: Cluster, to: NodeView): Promise<void> {
    const others = cluster.snapshot().filter((n) => n.name !== to.name && n.name !== rec.from && n.health === "up");
    const started = performance.now();
    rec.repointed = await Promise.all(others.map((n) => this.repoint(n, to, started)));
    const ok = rec.repointed.filter((r) => r.ok).map((r) => `${r.node} (${r.ms} ms)`);
    this.step(rec, `standbys repointed: ${ok.join(", ") || "none"}`);
    await this.syncAfterRepoint(rec, cluster, to);
  }

  /** The standbys streaming from the new primary are named there (remaining, strict) and on themselves; off clears them too. */
  private async syncAfterRepoint(rec: FailoverRecord, cluster: Cluster, to: NodeView): Promise<void> {
    const mode = this.deps.settings().synchronous;
    if (mode === "keep") return;
    const streaming = rec.repointed.filter((r) => r.ok);
    const value = syncSettingFor(mode, this.previousSync.get(rec) ?? null, streaming.map((r) => r.application_name ?? r.node))!;
    // The primary names them; the standbys carry none (a promotion rewrites it anyway).
    const standbys = streaming.map((r) => cluster.node(r.node)).filter((n) => n !== undefined);
    const failed: string[] = [];
    await Promise.all(
      [to, ...standbys].map((n) =>
        this.setSyncNames(n, n === to ? value : "").catch((e: Error) => {
          failed.push(`${n.name}: ${e.message}`);
        }),
      ),
    );
    this.step(rec, `synchronous_standby_names '${value}' on ${to.name}${standbys.length > 0 ? `, '' on ${standbys.map((n) => n.name).join(", ")}` : ""}${failed.length > 0 ? `; failed on ${failed.join("; ")}` : ""}`);
    if (failed.length > 0) log.warn(`could not set synchronous_standby_names: ${failed.join("; ")}`);
  }

  /** primary_conninfo -> the new primary (slot created there first if the standby uses one), reload, wait for streaming. */
  private async repoint(n: NodeView, to: NodeView, started: number): Promise<Repointed> {
    try {
      return await this.node(n, async (db) => {
        const conninfo = (await db.value("SHOW primary_conninfo")) ?? "";
        const slot = (await db.value("SHOW primary_slot_name")) ?? "";
        if (slot !== "") {
          await this.node(to, (p) =>
            p.query("SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", [slot]),
          );
        }
        const appName = standbyApplicationName(conninfo, await db.value("SHOW cluster_name")) ?? n.name;
        const next = rewriteConninfo(conninfo, to.host, to.port);
        await db.query(`ALTER SYSTEM SET primary_conninfo = ${sqlLiteral(next)}`);
        await db.query("SELECT pg_reload_conf()");
        const deadline = performance.now() + 10_000;
        for (;;) {
          const row = (await db.query("SELECT status, sender_port::text FROM pg_stat_wal_receiver"))[0];
          if (row && row[0] === "streaming" && Number(row[1]) === to.port) break;
          if (performance.now() > deadline) throw new Error(`not streaming from ${to.name} after 10 s`);
          await Bun.sleep(10);
        }
        return { node: n.name, ok: true, application_name: appName, ms: Math.round(performance.now() - started) };
      });
    } catch (e) {
      log.warn(`could not repoint ${n.name} to ${to.name}: ${(e as Error).message}`);
      return { node: n.name, ok: false, ms: null, error: (e as Error).message };
    }
  }

  private node<T>(n: NodeView, fn: (db: NodeSql) => Promise<T>, timeoutSecs = this.deps.timeoutSecs()): Promise<T> {
    return withNode(this.deps.endpoint(n), this.deps.creds(), timeoutSecs * 1000, fn);
  }
}

/** How long rejoin_command (pg_rewind and a restart, typically) may run. */
const REJOIN_TIMEOUT_SECS = 600;

/** Run an operator hook (fence_command, promote_command, rejoin_command) with %n %h %p filled in; rejects on failure or timeout. */
export async function runHook(template: string, node: NodeView, timeoutSecs: number, extraEnv: Record<string, string> = {}): Promise<void> {
  const cmd = template.replace(/%([nhp%])/g, (_, k: string) => (k === "n" ? node.name : k === "h" ? node.host : k === "p" ? String(node.port) : "%"));
  const proc = Bun.spawn(["sh", "-c", cmd], {
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, HELIOS_NODE: node.name, HELIOS_HOST: node.host, HELIOS_PORT: String(node.port), ...extraEnv },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutSecs * 1000);
  const code = await proc.exited;
  clearTimeout(timer);
  if (code !== 0) {
    const err = (await new Response(proc.stderr).text()).trim().slice(0, 500);
    throw new Error(`\`${cmd}\` exited with ${code}${err ? `: ${err}` : ""}`);
  }
}
