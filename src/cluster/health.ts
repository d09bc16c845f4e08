// Health checker and the `postgres` topology provider: probes every node on an interval (check query, recovery, timeline, LSNs, replication) and marks it up or down.

import type { HealthSection } from "../config/types.ts";
import { ServerConnection, ServerState, type ServerEndpoint, type ServerOwner } from "../server/connection.ts";
import { LoginError } from "../server/login.ts";
import { runQuery } from "../server/query-runner.ts";
import type { Cluster, NodeStatus, ReplicaStatus } from "./cluster.ts";
import { log } from "../util/log.ts";
import { standbyApplicationName } from "./sync-names.ts";

/** One probe connection per node, reopened when it breaks. */
class Probe implements ServerOwner {
  conn: ServerConnection | null = null;
  failures = 0;
  successes = 0;
  busy = false;
  confirmTimer: ReturnType<typeof setTimeout> | null = null;
  /** performance.now() when the last probe started. */
  lastStart = 0;
  /** Why the node refused the checker's login, while it does. */
  loginRefusal: string | null = null;

  constructor(readonly node: string) {}

  serverClosed(s: ServerConnection): void {
    if (this.conn === s) this.conn = null;
  }
}

/**
 * What one probe learns from a node (HA.md, "Topology"): recovery state; timeline (of the WAL
 * being written on a primary, received on a standby); system identifier; WAL positions as byte
 * numbers; replay delay; and on a primary its pg_stat_replication rows.
 */
export const STATUS_SQL =
  "SELECT pg_is_in_recovery()::text, " +
  "(CASE WHEN pg_is_in_recovery() THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint())) " +
  "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END)::text, " +
  "(SELECT system_identifier FROM pg_control_system())::text, " +
  "(CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() - '0/0' END)::text, " +
  "(pg_last_wal_receive_lsn() - '0/0')::text, " +
  "(pg_last_wal_replay_lsn() - '0/0')::text, " +
  "COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::text, " +
  "CASE WHEN pg_is_in_recovery() THEN NULL ELSE (SELECT json_agg(json_build_array(application_name, sync_state, flush_lsn - '0/0', replay_lsn - '0/0')) FROM pg_stat_replication)::text END, " +
  // Synchronous replication: the node's setting, the name it streams under (primary_conninfo is
  // hidden from users without pg_read_all_settings: then NULL), and on a primary the backends
  // waiting for a synchronous standby (pid, seconds in the statement).
  "current_setting('synchronous_standby_names'), " +
  "(SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'), " +
  "current_setting('cluster_name'), " +
  "CASE WHEN pg_is_in_recovery() THEN NULL ELSE (SELECT json_agg(json_build_array(pid, EXTRACT(EPOCH FROM now() - state_change)::float8)) FROM pg_stat_activity WHERE wait_event = 'SyncRep')::text END";

/** Options beyond [health]: whether probes decide roles, and how fast a suspected failure is confirmed. */
/** A login the server refused on authentication grounds (it answered, so it is alive). */
function isLoginRefusal(e: unknown): e is LoginError {
  return e instanceof LoginError && (e.needsPassword || e.code.startsWith("28"));
}

export interface HealthOptions {
  /** The `postgres` topology provider: roles follow pg_is_in_recovery() and timelines. */
  learnRoles: boolean;
  /** Probes mark nodes up and down (false under the heliosdb provider: the orchestrator does; probes only measure). */
  decideHealth: boolean;
  /** Seconds between re-probes of a node that just failed one (confirmation). */
  confirmIntervalSecs: number;
}

export class HealthChecker {
  private readonly probes = new Map<string, Probe>();
  private timer: ReturnType<typeof setInterval> | null = null;
  /** The primary's current WAL position, for standby lag in bytes. */
  private primaryLsn: number | null = null;

  constructor(
    private readonly cluster: Cluster,
    private settings: HealthSection,
    private readonly endpointFor: (node: string) => ServerEndpoint,
    private options: HealthOptions = { learnRoles: true, decideHealth: true, confirmIntervalSecs: 0.2 },
  ) {
    for (const n of cluster.snapshot()) this.probes.set(n.name, new Probe(n.name));
  }

  start(): void {
    this.stop();
    const ms = Math.max(50, this.settings.check_interval_secs * 1000);
    this.timer = setInterval(() => this.round(), ms);
    this.round();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const p of this.probes.values()) {
      if (p.confirmTimer) clearTimeout(p.confirmTimer);
      p.confirmTimer = null;
      p.conn?.close("health checker stopped");
    }
  }

  reconfigure(settings: HealthSection, options: HealthOptions = this.options): void {
    this.settings = settings;
    this.options = options;
    if (this.timer) this.start();
  }

  /** Probe every node now (each at most once at a time). */
  round(): void {
    const now = performance.now();
    const gap = this.options.confirmIntervalSecs * 1000;
    for (const p of this.probes.values()) {
      // A node being confirmed keeps its own pace: misses at least confirm_interval apart.
      if (!p.busy && p.confirmTimer === null && (p.failures === 0 || now - p.lastStart >= gap)) void this.check(p);
    }
  }

  /** Probe one node now, unless a probe of it is running; resolves when that probe is done. */
  async probeNow(node: string): Promise<boolean> {
    const p = this.probes.get(node);
    if (!p) return false;
    if (!p.busy) await this.check(p);
    else while (p.busy) await Bun.sleep(10);
    return p.failures === 0;
  }

  /**
   * A backend socket error on a client connection: a signal, not a verdict. The node is probed at
   * once, and only failed probes count towards failure_threshold.
   */
  reportFailure(node: string, reason: string): void {
    const p = this.probes.get(node);
    if (!p || p.busy || p.confirmTimer !== null) return;
    // Misses stay at least confirm_interval apart however many clients saw the error at once.
    const wait = p.lastStart + this.options.confirmIntervalSecs * 1000 - performance.now();
    log.debug(`backend error on ${node}, probing it`, { reason });
    if (wait <= 0) void this.check(p);
    else this.confirmLater(p, wait);
  }

  /** Re-probe a node that failed, sooner than the interval, until it is confirmed down or answers. */
  private confirmLater(p: Probe, ms = this.options.confirmIntervalSecs * 1000): void {
    if (this.timer === null || p.confirmTimer !== null) return;
    p.confirmTimer = setTimeout(() => {
      p.confirmTimer = null;
      if (this.timer !== null && !p.busy) void this.check(p);
    }, ms);
  }

  private async check(p: Probe): Promise<void> {
    p.busy = true;
    p.lastStart = performance.now();
    const s = this.settings;
    const timeoutMs = s.check_timeout_secs * 1000;
    try {
      if (p.conn === null || p.conn.state === ServerState.Closed) {
        const conn = new ServerConnection(this.endpointFor(p.node), p);
        p.conn = conn;
        await conn.open({ user: s.user, database: s.database, password: s.password || null }, { application_name: "heliosproxy-health" }, timeoutMs);
      }
      const conn = p.conn!;
      // Only the check query is timed: a fresh probe's connect and login are not the node's latency.
      const started = performance.now();
      const r = await runQuery(conn, s.check_query, undefined, timeoutMs);
      if (r.error) throw new Error(`${r.error.code} ${r.error.message}`);
      this.cluster.sampleLatency(p.node, performance.now() - started);
      const st = await runQuery(conn, STATUS_SQL, undefined, timeoutMs);
      if (!st.error && st.rows[0]) this.learn(p.node, st.rows[0]);
      this.succeeded(p);
    } catch (e) {
      p.conn?.close("health check failed");
      // The checker closed its own probe while it logged in (stopped, reconfigured): nothing about the node.
      if (e instanceof LoginError && e.byProxy) return;
      if (isLoginRefusal(e)) this.refusedLogin(p, e);
      else this.failed(p, (e as Error).message);
    } finally {
      p.busy = false;
    }
  }

  private learn(node: string, row: (string | null)[]): void {
    const status = parseStatus(row);
    const c = this.cluster;
    c.setStatus(node, status);
    if (this.options.learnRoles && !c.observeRole(node, status.inRecovery, status.timeline)) {
      log.warn(`node ${node} says it is a primary but is on timeline ${status.timeline} (newest ${c.maxTimeline}, primary ${c.primary().name}): not routing to it`);
    }
    const view = c.node(node);
    if (!status.inRecovery) {
      if (view?.role === "primary") {
        this.primaryLsn = status.walLsn;
        c.setLag(node, 0, 0);
      }
      return;
    }
    const replay = status.replayLsn;
    const bytes = replay !== null && this.primaryLsn !== null ? Math.max(0, this.primaryLsn - replay) : null;
    // With no bytes outstanding the standby is caught up whatever its last replay time was.
    const secs = bytes === 0 ? 0 : row[6] !== null ? Number(row[6]) : null;
    c.setLag(node, bytes, secs);
  }

  private succeeded(p: Probe): void {
    if (p.loginRefusal !== null) {
      log.info(`node ${p.node}: health checker logs in again`);
      p.loginRefusal = null;
      this.cluster.noteProbeProblem(p.node, "");
    }
    this.alive(p);
  }

  /** The node answered: misses reset, and a down node comes back after recovery_threshold answers. */
  private alive(p: Probe): void {
    p.failures = 0;
    p.successes++;
    const view = this.cluster.node(p.node);
    if (!this.options.decideHealth) return;
    if (view?.health === "down" && p.successes >= this.settings.recovery_threshold) {
      log.info(`node ${p.node} is up`);
      this.cluster.setHealth(p.node, "up");
    }
  }

  /**
   * The node answered but refused the health checker's login ([health] user/password wrong, or
   * pg_hba asks for a password it does not have): the postmaster is alive, so this is not a miss
   * (a node marked down for it would hold every client of a healthy server). Roles and lag cannot
   * be learned; the operator is told once per node and reason, and /nodes shows it as lastError.
   */
  private refusedLogin(p: Probe, e: LoginError): void {
    const reason = `health checker cannot log in as "${this.settings.user}": ${e.code} ${e.message}; set [health] user and password`;
    if (p.loginRefusal !== reason) log.warn(`node ${p.node}: ${reason}`);
    p.loginRefusal = reason;
    this.cluster.noteProbeProblem(p.node, reason);
    this.alive(p);
  }

  private failed(p: Probe, reason: string): void {
    p.successes = 0;
    p.failures++;
    const view = this.cluster.node(p.node);
    if (!this.options.decideHealth) return;
    if (view?.health === "up" && p.failures >= this.settings.failure_threshold) {
      log.warn(`node ${p.node} is down: ${reason}`);
      this.cluster.setHealth(p.node, "down", reason);
    } else if (view?.health === "up") this.confirmLater(p);
  }
}

const num = (v: string | null | undefined): number | null => (v === null || v === undefined || v === "" ? null : Number(v));

/** One STATUS_SQL row as a NodeStatus. */
export function parseStatus(row: readonly (string | null)[]): NodeStatus {
  let replicas: ReplicaStatus[] = [];
  if (row[7]) {
    const list = JSON.parse(row[7]) as [string, string, number | string | null, number | string | null][];
    replicas = list.map(([applicationName, syncState, flush, replay]) => ({
      applicationName,
      syncState,
      flushLsn: flush === null ? null : Number(flush),
      replayLsn: replay === null ? null : Number(replay),
    }));
  }
  const inRecovery = row[0] === "true";
  const receiveLsn = num(row[4]);
  const replayLsn = num(row[5]);
  const walLsn = inRecovery ? (receiveLsn === null ? replayLsn : replayLsn === null ? receiveLsn : Math.max(receiveLsn, replayLsn)) : num(row[3]);
  const waiters = row[11] ? (JSON.parse(row[11]) as [number, number | null][]).map(([pid, secs]) => ({ pid, secs: secs ?? 0 })) : [];
  return {
    inRecovery,
    timeline: num(row[1]),
    systemId: row[2] ?? null,
    walLsn,
    receiveLsn,
    replayLsn,
    replicas,
    syncNames: row[8] ?? null,
    applicationName: standbyApplicationName(row[9] ?? null, row[10] ?? null),
    syncWaiters: waiters,
  };
}

/** "16/B374D848" -> the byte position as a number (exact below 2^53: 8 PiB of WAL). */
export function lsnToNumber(lsn: string): number {
  const [hi, lo] = lsn.split("/");
  return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16);
}

/** A byte position -> "16/B374D848". */
export function numberToLsn(n: number): string {
  const hi = Math.floor(n / 2 ** 32);
  const lo = n - hi * 2 ** 32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}
