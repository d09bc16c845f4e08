// Synchronous replication against the topology: which standbys could commit after promotion, an alarm for commits stuck on SyncRep, and the bound on such waits.

import type { SyncMode } from "../config/types.ts";
import { log } from "../util/log.ts";
import type { Cluster, NodeView } from "./cluster.ts";
import { formatSyncNames, parseSyncNames, remainingSyncNames, syncShortfall, type SyncSpec } from "./sync-names.ts";

/** One node as the report shows it. */
export interface SyncNodeReport {
  synchronous_standby_names: string | null;
  application_name: string | null;
  /** Why this standby could not commit once promoted (null: it could, or it is not a candidate). */
  after_promotion: string | null;
}

export interface SyncReport {
  mode: SyncMode;
  /** Standbys that would wait forever on their first commit once promoted. */
  problems: string[];
  /** Commits wait on SyncRep on the primary and no listed standby that could confirm them is connected ("" when not). */
  alarm: string;
  /** Backends on the primary waiting for a synchronous standby now. */
  waiting: number;
  /** Requests ended by failover.sync_wait_timeout_secs since start. */
  waits_ended: number;
  nodes: Record<string, SyncNodeReport>;
}

/** What the watch needs around it (getters: a reload may replace them). */
export interface SyncWatchDeps {
  cluster(): Cluster;
  mode(): SyncMode;
  waitTimeoutSecs(): number;
  /** End the client request whose server is backend `pid` on `node` with `code`; false when no client of ours has it. */
  endRequest(node: string, pid: number, code: string, message: string): boolean;
}

const standbyNow = (n: NodeView) => n.role === "standby" && n.health === "up" && !n.fenced && n.status?.inRecovery === true;

/**
 * The application names that would stream from `candidate` once it is promoted: the other
 * standbys (the old primary is fenced out). Null when one of them streams under a name we cannot read.
 */
export function streamersAfter(nodes: readonly NodeView[], candidate: string): string[] | null {
  const out: string[] = [];
  for (const n of nodes) {
    if (n.name === candidate || !standbyNow(n)) continue;
    const a = n.status?.applicationName;
    if (a === null || a === undefined) return null;
    out.push(a);
  }
  return out;
}

/** For each standby: would its first commit after promotion be confirmed, under `mode`? */
export function promotionProblems(nodes: readonly NodeView[], mode: SyncMode): Map<string, string> {
  const out = new Map<string, string>();
  if (mode === "off" || mode === "remaining") return out; // the controller sets a value that can commit
  for (const c of nodes) {
    if (!standbyNow(c)) continue;
    const streamers = streamersAfter(nodes, c.name);
    if (mode === "strict") {
      if (streamers !== null && streamers.length === 0) out.set(c.name, `no other standby would stream from ${c.name}: with failover.synchronous = "strict" its commits wait for one to attach`);
      continue;
    }
    const setting = c.status?.syncNames ?? null;
    if (setting === null) continue;
    const spec = parseSyncNames(setting);
    if (typeof spec === "string") {
      out.set(c.name, spec);
      continue;
    }
    if (spec === null) continue;
    if (streamers === null) {
      out.set(c.name, `synchronous_standby_names = '${setting}' on ${c.name}, and the application_name of a standby is not readable (grant pg_read_all_settings to the health user)`);
      continue;
    }
    const short = syncShortfall(spec, streamers);
    if (short === "") continue;
    const own = c.status?.applicationName;
    const self = own !== null && own !== undefined && spec.names.some((l) => l.toLowerCase() === own.toLowerCase()) ? ` (it names ${own}, ${c.name} itself)` : "";
    out.set(c.name, `synchronous_standby_names = '${setting}' on ${c.name}${self}: once promoted, its commits would wait forever: ${short}`);
  }
  return out;
}

export class SyncWatch {
  private lastProblems = "";
  private lastAlarm = "";
  private started = false;
  waitsEnded = 0;
  /** Backends already ended (they stay in SyncRep on the server): not counted twice. */
  private ended = new Set<string>();

  constructor(private readonly deps: SyncWatchDeps) {}

  /** The report for /health, /nodes and the metrics. */
  report(): SyncReport {
    const cluster = this.deps.cluster();
    const nodes = cluster.snapshot();
    const mode = this.deps.mode();
    const problems = promotionProblems(nodes, mode);
    const out: Record<string, SyncNodeReport> = {};
    for (const n of nodes) {
      out[n.name] = { synchronous_standby_names: n.status?.syncNames ?? null, application_name: n.status?.applicationName ?? null, after_promotion: problems.get(n.name) ?? null };
    }
    const primary = cluster.primary();
    return { mode, problems: [...problems.values()], alarm: this.alarmFor(primary), waiting: primary.status?.syncWaiters?.length ?? 0, waits_ended: this.waitsEnded, nodes: out };
  }

  /** Commits waiting on SyncRep while no listed standby that could confirm them is connected. */
  private alarmFor(primary: NodeView): string {
    const st = primary.status;
    if (st === null || st.inRecovery || (st.syncWaiters?.length ?? 0) === 0) return "";
    const spec = parseSyncNames(st.syncNames ?? "");
    if (spec === null || typeof spec === "string") return "";
    const short = syncShortfall(spec, st.replicas.map((r) => r.applicationName));
    if (short === "") return "";
    return `${st.syncWaiters!.length} commit${st.syncWaiters!.length === 1 ? "" : "s"} on the primary ${primary.name} wait for synchronous replication (synchronous_standby_names = '${st.syncNames}': ${short}); they end with 08007 after failover.sync_wait_timeout_secs`;
  }

  /** Upkeep: log the layout at start and when it changes, raise or clear the alarm, end waits past the bound. */
  tick(): void {
    const cluster = this.deps.cluster();
    const primary = cluster.primary();
    const nodes = cluster.snapshot();
    if (!nodes.some((n) => n.status !== null)) return;
    const problems = [...promotionProblems(nodes, this.deps.mode()).values()];
    const key = problems.join("\n");
    if (!this.started || key !== this.lastProblems) {
      if (problems.length > 0) for (const p of problems) log.warn(`synchronous replication: ${p}`);
      else if (this.started) log.info("synchronous replication: every standby could commit once promoted");
      this.started = true;
      this.lastProblems = key;
    }
    const alarm = this.alarmFor(primary);
    if (alarm !== this.lastAlarm) {
      if (alarm !== "") log.error(`synchronous replication: ${alarm}`);
      else log.info("synchronous replication: no commit waits without a standby any more");
      this.lastAlarm = alarm;
    }
    this.endLongWaits(primary);
  }

  /** Requests of ours waiting on SyncRep longer than the bound end with 08007 (never cancelled on the server: that would publish the commit unreplicated). */
  private endLongWaits(primary: NodeView): void {
    const waiters = primary.status?.syncWaiters ?? [];
    if (waiters.length === 0) {
      this.ended.clear();
      return;
    }
    const limit = this.deps.waitTimeoutSecs();
    for (const w of waiters) {
      const key = `${primary.name}:${w.pid}`;
      if (w.secs < limit || this.ended.has(key)) continue;
      this.ended.add(key);
      const message = `the commit waited more than ${limit} s for a synchronous standby (failover.sync_wait_timeout_secs; synchronous_standby_names = '${primary.status?.syncNames ?? ""}' on ${primary.name}): it is committed on the primary, not confirmed on a standby`;
      if (this.deps.endRequest(primary.name, w.pid, "08007", message)) {
        this.waitsEnded++;
        log.warn(`synchronous replication: ended a request waiting ${Math.round(w.secs)} s on SyncRep`, { node: primary.name, pid: w.pid });
      }
    }
  }
}

/** synchronous_standby_names for a node the controller moves: what `mode` says, given the old setting and the standbys streaming. */
export function syncSettingFor(mode: SyncMode, previous: string | null, streamers: readonly string[]): string | null {
  if (mode === "keep") return null;
  if (mode === "off") return "";
  const prev = parseSyncNames(previous ?? "");
  const spec: SyncSpec | null = remainingSyncNames(typeof prev === "string" ? null : prev, streamers, mode === "strict");
  return formatSyncNames(spec);
}
