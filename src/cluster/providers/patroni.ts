// Topology provider `patroni`: follows the leader and members reported by Patroni's REST API (GET /cluster).

import type { AlarmBoard } from "../../util/alarms.ts";
import type { TopologySection } from "../../config/types.ts";
import type { Cluster } from "../cluster.ts";
import type { TopologyProvider } from "../topology.ts";
import { log } from "../../util/log.ts";

/** The fields of one GET /cluster member this provider reads (anything may be missing or mistyped). */
interface PatroniMember {
  name?: unknown;
  role?: unknown;
  state?: unknown;
  host?: unknown;
  port?: unknown;
  lag?: unknown;
}

const PATRONI_ALARM = "patroni_unreachable";

/** Member states in which PostgreSQL is known not to serve. */
const DOWN_STATES = new Set(["stopped", "crashed", "start failed", "restart failed"]);

export class PatroniProvider implements TopologyProvider {
  readonly name = "patroni";
  /** `{url}/cluster` for each configured URL. */
  private readonly endpoints: string[];
  /** The endpoint that answered last: the next poll starts there. */
  private current = 0;
  /** Bumped by start() and stop(): a poll loop of an older generation ends. */
  private generation = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Inside a streak of failed polls (warned once per streak). */
  private failing = false;
  /** Last state seen per member: a member is marked down when it enters a down state, not on every poll. */
  private readonly states = new Map<string, string>();
  /** Members that match no configured node (warned once each). */
  private readonly unmatched = new Set<string>();

  constructor(
    private readonly cluster: Cluster,
    private readonly settings: TopologySection,
    /** Where "Patroni unreachable" is raised while polls fail. */
    private readonly alarms: AlarmBoard | null = null,
  ) {
    this.endpoints = settings.patroni_urls.map((u) => `${u.replace(/\/+$/, "")}/cluster`);
  }

  start(): void {
    this.stop();
    if (this.endpoints.length === 0) log.warn("topology provider patroni: no patroni_urls configured");
    void this.tick(++this.generation);
  }

  stop(): void {
    this.generation++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Poll Patroni once and apply the answer; false when no URL gave a usable one. Never throws. */
  async poll(): Promise<boolean> {
    try {
      this.apply(await this.fetchCluster());
      if (this.failing) log.info("patroni API answers again");
      this.failing = false;
      this.alarms?.clear(PATRONI_ALARM);
      return true;
    } catch (e) {
      if (!this.failing) log.warn("patroni API unavailable: keeping the last known topology", { error: (e as Error).message });
      this.failing = true;
      this.alarms?.raise({
        key: PATRONI_ALARM,
        severity: "critical",
        title: "Patroni (and its DCS) unreachable",
        detail: `${(e as Error).message}. The proxy keeps the last known topology and cannot follow a failover until Patroni answers.`,
      });
      return false;
    }
  }

  private async tick(gen: number): Promise<void> {
    await this.poll();
    if (gen === this.generation) this.timer = setTimeout(() => void this.tick(gen), this.settings.poll_interval_secs * 1000);
  }

  /** GET /cluster from the first endpoint that answers, starting at the one that answered last. */
  private async fetchCluster(): Promise<PatroniMember[]> {
    const n = this.endpoints.length;
    let error = "no patroni_urls configured";
    for (let i = 0; i < n; i++) {
      const at = (this.current + i) % n;
      try {
        const res = await fetch(this.endpoints[at]!, { signal: AbortSignal.timeout(this.settings.request_timeout_secs * 1000) });
        if (!res.ok) {
          await res.body?.cancel();
          throw new Error(`HTTP ${res.status}`);
        }
        const members = ((await res.json()) as { members?: unknown } | null)?.members;
        if (!Array.isArray(members)) throw new Error("the answer has no members list");
        this.current = at;
        return members as PatroniMember[];
      } catch (e) {
        error = `${this.endpoints[at]}: ${(e as Error).message}`;
      }
    }
    throw new Error(error);
  }

  /** The configured node a member is: same host and port, else same name. */
  private nodeFor(m: PatroniMember): string | null {
    if (typeof m.host === "string" && m.port !== undefined) {
      const port = Number(m.port);
      for (const v of this.cluster.snapshot()) if (v.port === port && v.host === m.host) return v.name;
    }
    const name = String(m.name);
    if (this.cluster.node(name)) return name;
    if (!this.unmatched.has(name)) {
      this.unmatched.add(name);
      log.warn(`patroni member ${name} (${String(m.host)}:${String(m.port)}) matches no configured node: ignored`);
    }
    return null;
  }

  private apply(members: PatroniMember[]): void {
    const leaderMember = members.find((m) => m?.role === "leader");
    // No leader (an election in progress, or a standby cluster): keep what we know.
    if (leaderMember === undefined) return;
    const leader = this.nodeFor(leaderMember);
    if (leader === null) return;
    const c = this.cluster;
    if (c.node(leader)!.role !== "primary" || c.primary().name !== leader) {
      log.info(`patroni: leader is ${String(leaderMember.name)}, node ${leader} is the primary`);
      c.setPrimary(leader, `patroni: leader ${String(leaderMember.name)}`);
    }
    for (const m of members) {
      const node: string | null = m === leaderMember ? leader : this.nodeFor(m);
      if (node === null) continue;
      if (node !== leader) {
        c.setStandby(node);
        const lag = typeof m.lag === "number" && Number.isFinite(m.lag) && m.lag >= 0 ? m.lag : null;
        // The health checker measures lag itself (bytes and seconds) once it has a status; Patroni's figure fills in until then.
        if (c.node(node)!.status === null) c.setLag(node, lag, c.node(node)!.lagSeconds);
      }
      const state = typeof m.state === "string" ? m.state : "";
      const member = String(m.name);
      if (this.states.get(member) === state) continue;
      this.states.set(member, state);
      if (DOWN_STATES.has(state)) c.setHealth(node, "down", `patroni: member ${member} is ${state}`);
    }
  }
}
