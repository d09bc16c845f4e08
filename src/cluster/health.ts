// Health checker: probes every node on an interval (check query, recovery state, replay lag) and marks it up or down.

import type { HealthSection } from "../config/types.ts";
import { ServerConnection, ServerState, type ServerEndpoint, type ServerOwner } from "../server/connection.ts";
import { runQuery } from "../server/query-runner.ts";
import type { Cluster } from "./cluster.ts";
import { log } from "../util/log.ts";

/** One probe connection per node, reopened when it breaks. */
class Probe implements ServerOwner {
  conn: ServerConnection | null = null;
  failures = 0;
  successes = 0;
  busy = false;

  constructor(readonly node: string) {}

  serverClosed(s: ServerConnection): void {
    if (this.conn === s) this.conn = null;
  }
}

/** What one probe learns from a node. */
const STATUS_SQL =
  "SELECT pg_is_in_recovery()::text, " +
  "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, " +
  "pg_last_wal_replay_lsn()::text, " +
  "COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::text";

export class HealthChecker {
  private readonly probes = new Map<string, Probe>();
  private timer: ReturnType<typeof setInterval> | null = null;
  /** The primary's current WAL position, for standby lag in bytes. */
  private primaryLsn: bigint | null = null;

  constructor(
    private readonly cluster: Cluster,
    private settings: HealthSection,
    private readonly endpointFor: (node: string) => ServerEndpoint,
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
    for (const p of this.probes.values()) p.conn?.close("health checker stopped");
  }

  reconfigure(settings: HealthSection): void {
    this.settings = settings;
    if (this.timer) this.start();
  }

  /** Probe every node now (each at most once at a time). */
  round(): void {
    for (const p of this.probes.values()) if (!p.busy) void this.check(p);
  }

  /** A backend socket error on a client connection counts like a failed probe. */
  reportFailure(node: string, reason: string): void {
    const p = this.probes.get(node);
    if (p) this.failed(p, reason);
  }

  private async check(p: Probe): Promise<void> {
    p.busy = true;
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
      this.failed(p, (e as Error).message);
    } finally {
      p.busy = false;
    }
  }

  private learn(node: string, row: (string | null)[]): void {
    const [recovery, currentLsn, replayLsn, replaySecs] = row;
    const isStandby = recovery === "true";
    this.cluster.setRole(node, isStandby ? "standby" : "primary");
    if (!isStandby) {
      if (currentLsn) this.primaryLsn = lsnToBigInt(currentLsn);
      this.cluster.setLag(node, 0, 0);
      return;
    }
    const replay = replayLsn ? lsnToBigInt(replayLsn) : null;
    const bytes = replay !== null && this.primaryLsn !== null ? Number(this.primaryLsn > replay ? this.primaryLsn - replay : 0n) : null;
    // With no bytes outstanding the standby is caught up whatever its last replay time was.
    const secs = bytes === 0 ? 0 : replaySecs !== null ? Number(replaySecs) : null;
    this.cluster.setLag(node, bytes, secs);
  }

  private succeeded(p: Probe): void {
    p.failures = 0;
    p.successes++;
    const view = this.cluster.node(p.node);
    if (view?.health === "down" && p.successes >= this.settings.recovery_threshold) {
      log.info(`node ${p.node} is up`);
      this.cluster.setHealth(p.node, "up");
    }
  }

  private failed(p: Probe, reason: string): void {
    p.successes = 0;
    p.failures++;
    const view = this.cluster.node(p.node);
    if (view?.health === "up" && p.failures >= this.settings.failure_threshold) {
      log.warn(`node ${p.node} is down: ${reason}`);
      this.cluster.setHealth(p.node, "down", reason);
    }
  }
}

/** "16/B374D848" -> bigint. */
export function lsnToBigInt(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}
