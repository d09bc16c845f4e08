// The fleet of proxies in front of one cluster, coordinated through etcd: leader, epoch fencing, the shared failover record, shared drain/pause/primary, GET /fleet.

import { hostname } from "node:os";
import type { CoordinationSection, HeliosConfig } from "../../config/types.ts";
import { log } from "../../util/log.ts";
import type { Cluster } from "../cluster.ts";
import { FailoverRefused, type FailoverController, type FailoverRecord } from "../failover.ts";
import { EtcdClient, type EtcdEvent, type EtcdKv } from "./etcd-client.ts";
import type { FleetHooks, FleetRecord } from "./hooks.ts";
import { Election } from "./leader.ts";

const VERSION = (require("../../../package.json") as { version: string }).version;

/** What one proxy's heartbeat key says. */
interface MemberBeat {
  name: string;
  version: string;
  admin_url: string;
  started_at: string;
  view: { primary: string; epoch: number; degraded: string | null; nodes: Record<string, string> };
}

/** What the fleet needs from the proxy around it (getters: a reload may replace them). */
export interface FleetHost {
  cluster(): Cluster;
  config(): HeliosConfig;
  failover(): FailoverController | null;
  /** Pause (true) or resume (false) the whole proxy; false when it was so already. */
  setPaused(paused: boolean): boolean;
  /** Another proxy reports `node` down: probe it now (a signal: only this proxy's own probes count towards failure_threshold); true when it answered. */
  suspect(node: string, reason: string): Promise<boolean>;
}

/** The result of sharing an operator's action with the fleet. */
export interface Shared {
  shared: boolean;
  error?: string;
}

export class Fleet implements FleetHooks {
  readonly name: string;
  readonly adminUrl: string;
  private readonly etcd: EtcdClient;
  private readonly election: Election;
  private readonly keys: { leader: string; members: string; epoch: string; failover: string; drained: string; paused: string; primary: string };
  private readonly startedAt = new Date().toISOString();
  /** What etcd holds under the prefix, as last listed or watched (key -> kv). */
  private readonly store = new Map<string, EtcdKv>();
  private watchAbort: AbortController | null = null;
  private watching = false;
  private stopped = false;
  /** The highest fleet epoch this proxy has applied (won itself or adopted). */
  private appliedEpoch = 0;
  /** Epochs this proxy won, and the record it claimed with each. */
  private readonly won = new Map<number, FleetRecord>();
  /** Deadline of a hold kept for a record still to come (0: none). */
  private recordTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly host: FleetHost,
    private readonly s: CoordinationSection,
  ) {
    const admin = host.config().proxy.admin_address;
    this.name = s.proxy_name || `${hostname()}:${admin.split(":").at(-1)}`;
    this.adminUrl = (s.advertise_admin_url || `http://${admin}`).replace(/\/+$/, "");
    this.etcd = new EtcdClient(s);
    const p = s.key_prefix;
    this.keys = {
      leader: `${p}/leader`,
      members: `${p}/members/`,
      epoch: `${p}/epoch`,
      failover: `${p}/failover`,
      drained: `${p}/state/drained/`,
      paused: `${p}/state/paused`,
      primary: `${p}/state/primary`,
    };
    this.election = new Election(this.etcd, { leader: this.keys.leader, member: this.keys.members + this.name }, { name: this.name, adminUrl: this.adminUrl }, s.lease_ttl_secs, () => JSON.stringify(this.beat()), (leader) => this.leadershipChanged(leader), () => this.afterRound());
  }

  /** Join the fleet: lease, heartbeat, campaign, and the watch of the shared keys. Waits a bounded time for the first sync. */
  async start(): Promise<void> {
    this.election.start();
    void this.watchLoop();
    const deadline = performance.now() + this.s.request_timeout_secs * 2000;
    while (!this.watching && performance.now() < deadline) await Bun.sleep(20);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watchAbort?.abort();
    if (this.recordTimer) clearTimeout(this.recordTimer);
    await this.election.stop();
  }

  get isLeader(): boolean {
    return this.election.acting;
  }

  private cutOff(): boolean {
    return this.election.failing || !this.watching;
  }

  followsByProbing(): boolean {
    return this.cutOff() && this.host.config().topology.provider === "postgres";
  }

  /** Why this proxy is degraded (null when etcd answers). */
  degraded(): string | null {
    if (!this.cutOff()) return null;
    return `coordination: etcd unreachable (${this.election.lastError || "watch not running"}); this proxy does not promote and follows the topology by probing`;
  }

  /** The leader as its key says (null: none elected, or etcd unreachable and nothing known). */
  leader(): { name: string; admin_url: string } | null {
    const kv = this.store.get(this.keys.leader);
    if (kv === undefined) return null;
    try {
      const v = JSON.parse(kv.value) as { name: string; admin_url: string };
      return { name: v.name, admin_url: v.admin_url };
    } catch {
      return null;
    }
  }

  // ---- FleetHooks ---------------------------------------------------------------------------

  refusal(): string | null {
    const provider = this.host.config().topology.provider;
    if (provider === "patroni" || provider === "heliosdb") return `topology.provider = "${provider}" promotes by itself: no proxy of the fleet promotes`;
    if (this.election.failing) return `etcd is unreachable (${this.election.lastError}): no promotion without the fleet`;
    if (!this.election.acting) {
      const l = this.leader();
      return l === null ? "the fleet has no leader yet" : `this proxy is not the fleet leader (${l.name} at ${l.admin_url} is)`;
    }
    return null;
  }

  async claim(rec: FailoverRecord, resume?: FleetRecord): Promise<number> {
    const why = this.refusal();
    if (why !== null) throw new FailoverRefused(why, 409);
    const lead = { key: this.keys.leader, target: "VALUE" as const, value: this.election.leaderValue };
    const cur = await this.etcd.get(this.keys.epoch);
    const next = resume?.epoch ?? (cur === null ? 0 : Number(cur.value)) + 1;
    const record: FleetRecord = {
      epoch: next, state: "promoting", kind: rec.kind, from: rec.from, to: rec.to!, n0: null, fence: rec.fence,
      leader: this.name, started_at: resume?.started_at ?? rec.started_at, done_at: null,
    };
    const ok = resume
      ? await this.etcd.txn(
          [lead, { key: this.keys.epoch, target: "VALUE", value: String(next) }, { key: this.keys.failover, target: "MOD", revision: this.store.get(this.keys.failover)?.modRevision ?? 0 }],
          [{ put: this.keys.failover, value: JSON.stringify(record) }],
        )
      : await this.etcd.txn(
          [lead, cur === null ? { key: this.keys.epoch, target: "CREATE", revision: 0 } : { key: this.keys.epoch, target: "MOD", revision: cur.modRevision }],
          [{ put: this.keys.epoch, value: String(next) }, { put: this.keys.failover, value: JSON.stringify(record) }],
        );
    if (!ok) throw new FailoverRefused(`fleet epoch ${next} was not won (another proxy changed the epoch or leads now): nothing promoted`, 409);
    this.won.set(next, record);
    log.warn(`fleet epoch ${next} won: ${rec.kind} ${rec.from} -> ${rec.to}`);
    return next;
  }

  async publish(rec: FailoverRecord): Promise<void> {
    const claimed = this.won.get(rec.epoch ?? -1);
    if (claimed === undefined) throw new Error(`fleet epoch ${rec.epoch} was not won by this proxy`);
    if (!(await this.complete(claimed, { n0: rec.n0, fence: rec.fence, state: "done" })))
      throw new Error(`the fleet record of epoch ${claimed.epoch} could not be written (leadership lost): writes are not released here`);
    this.appliedEpoch = Math.max(this.appliedEpoch, claimed.epoch);
  }

  async abandon(rec: FailoverRecord): Promise<void> {
    const claimed = this.won.get(rec.epoch ?? -1);
    if (claimed === undefined) return;
    const ok = await this.complete(claimed, { n0: null, fence: rec.fence, state: "failed" }).catch(() => false);
    log.warn(`fleet epoch ${claimed.epoch}: ${ok ? "record marked failed" : "record left as it was (leadership lost: the next leader finishes it)"}`);
  }

  /** Rewrite the record of a won epoch, only while this proxy leads and the epoch is still the fleet's. */
  private complete(claimed: FleetRecord, change: Pick<FleetRecord, "n0" | "fence" | "state">): Promise<boolean> {
    const record: FleetRecord = { ...claimed, ...change, done_at: new Date().toISOString() };
    return this.etcd.txn(
      [{ key: this.keys.leader, target: "VALUE", value: this.election.leaderValue }, { key: this.keys.epoch, target: "VALUE", value: String(claimed.epoch) }],
      [{ put: this.keys.failover, value: JSON.stringify(record) }],
    );
  }

  awaitRecord(to: string): boolean {
    // Only probing finds a promotion the fleet's leader made (Patroni and the manual primary bring no N0).
    if (this.cutOff() || this.host.config().topology.provider !== "postgres") return false;
    const r = this.record();
    if (r !== null && r.state === "done" && r.to === to && r.epoch <= this.appliedEpoch) return false;
    // Bounded: a record that never comes (its leader lost, nobody finishing) does not hold requests forever.
    if (this.recordTimer) clearTimeout(this.recordTimer);
    const limit = this.host.config().failover.promote_timeout_secs * 1000;
    this.recordTimer = setTimeout(() => {
      this.recordTimer = null;
      this.host.failover()?.followWithoutRecord(to, `no fleet record for ${to} within failover.promote_timeout_secs; following it by probing, without an N0`);
    }, limit);
    log.warn(`primary moved to ${to}; holding its requests until the fleet's failover record (N0) arrives`);
    void this.checkUnderWay(to);
    return true;
  }

  /**
   * A fresh read of the failover record (the watch may lag): when no failover of the fleet is under
   * way towards `to` (its leader writes "promoting" before it promotes), `to` was promoted outside
   * the fleet and no record will come: follow it now, without an N0.
   */
  private async checkUnderWay(to: string): Promise<void> {
    let r: FleetRecord | null = null;
    try {
      const kv = await this.etcd.get(this.keys.failover);
      r = kv === null ? null : (JSON.parse(kv.value) as FleetRecord);
    } catch {
      return; // etcd did not answer: the deadline bounds the wait
    }
    if (r !== null && r.to === to && (r.state === "promoting" || (r.state === "done" && r.epoch > this.appliedEpoch))) return;
    if (this.recordTimer === null) return; // the record came meanwhile
    clearTimeout(this.recordTimer);
    this.recordTimer = null;
    const why = `${to} was promoted outside the fleet (no failover of the fleet towards it); following it by probing, without an N0`;
    log.warn(why);
    this.host.failover()?.followWithoutRecord(to, why);
  }

  // ---- shared operational state -----------------------------------------------------------

  /** Drain or undrain `node` on every proxy (this one has applied it already). */
  shareDrain(node: string, drained: boolean): Promise<Shared> {
    return this.share(() => (drained ? this.etcd.put(this.keys.drained + node, this.name) : this.etcd.delete(this.keys.drained + node)));
  }

  sharePause(paused: boolean): Promise<Shared> {
    return this.share(() => (paused ? this.etcd.put(this.keys.paused, this.name) : this.etcd.delete(this.keys.paused)));
  }

  sharePrimary(node: string): Promise<Shared> {
    return this.share(() => this.etcd.put(this.keys.primary, node));
  }

  private async share(write: () => Promise<void>): Promise<Shared> {
    try {
      await write();
      return { shared: true };
    } catch (e) {
      log.error(`could not share with the fleet: ${(e as Error).message}; applied on this proxy only`);
      return { shared: false, error: (e as Error).message };
    }
  }

  // ---- views ----------------------------------------------------------------------------------

  record(): FleetRecord | null {
    const kv = this.store.get(this.keys.failover);
    if (kv === undefined) return null;
    try {
      return JSON.parse(kv.value) as FleetRecord;
    } catch {
      return null;
    }
  }

  private beat(): MemberBeat {
    const c = this.host.cluster();
    return {
      name: this.name,
      version: VERSION,
      admin_url: this.adminUrl,
      started_at: this.startedAt,
      view: {
        primary: c.primary().name,
        epoch: c.epoch,
        degraded: this.election.failing ? this.election.lastError : null,
        nodes: Object.fromEntries(c.snapshot().map((n) => [n.name, n.health === "down" ? "down" : n.fenced ? "fenced" : n.drained ? "draining" : n.role])),
      },
    };
  }

  /** Proxies whose heartbeat key is in etcd, as last seen. */
  memberCount(): number {
    let n = 0;
    for (const key of this.store.keys()) if (key.startsWith(this.keys.members)) n++;
    return n;
  }

  /** GET /fleet. */
  view(): Record<string, unknown> {
    const members = [...this.store.values()]
      .filter((kv) => kv.key.startsWith(this.keys.members))
      .map((kv) => {
        try {
          return { ...(JSON.parse(kv.value) as MemberBeat), lease: kv.lease };
        } catch {
          return { name: kv.key.slice(this.keys.members.length), lease: kv.lease };
        }
      });
    const leader = this.leader();
    return {
      backend: "etcd",
      key_prefix: this.s.key_prefix,
      self: this.name,
      leader: leader?.name ?? null,
      leader_admin_url: leader?.admin_url ?? null,
      is_leader: this.isLeader,
      etcd: { reachable: !this.election.failing && this.watching, lease_ttl_secs: this.election.ttlSecs, last_error: this.election.lastError || null },
      degraded: this.degraded(),
      epoch: Number(this.store.get(this.keys.epoch)?.value ?? 0),
      failover: this.record(),
      primary_down_reports: [...this.reports].map(([proxy, r]) => ({ proxy, ...r })),
      shared: {
        drained: [...this.store.keys()].filter((k) => k.startsWith(this.keys.drained)).map((k) => k.slice(this.keys.drained.length)),
        paused: this.store.has(this.keys.paused),
        primary: this.store.get(this.keys.primary)?.value ?? null,
      },
      proxies: members.map((m) => ({ ...m, leader: m.name === leader?.name, self: m.name === this.name })),
    };
  }

  // ---- watching -------------------------------------------------------------------------------

  private async watchLoop(): Promise<void> {
    const prefix = `${this.s.key_prefix}/`;
    while (!this.stopped) {
      try {
        const { kvs, revision } = await this.etcd.list(prefix);
        const seen = new Set(kvs.map((kv) => kv.key));
        for (const key of [...this.store.keys()]) if (!seen.has(key)) this.apply({ type: "DELETE", kv: { ...this.store.get(key)!, value: "" } });
        for (const kv of kvs) this.apply({ type: "PUT", kv });
        this.watchAbort = new AbortController();
        this.watching = true;
        await this.etcd.watch(prefix, revision + 1, (e) => this.apply(e), this.watchAbort.signal);
      } catch (e) {
        if (this.stopped) return;
        if (this.watching) log.warn(`etcd watch lost: ${(e as Error).message}`);
      }
      this.watching = false;
      if (!this.stopped) await Bun.sleep(300);
    }
  }

  /** One change of a shared key: follow it. */
  private apply(e: EtcdEvent): void {
    const { key } = e.kv;
    const before = this.store.get(key);
    if (e.type === "DELETE") this.store.delete(key);
    else if (before !== undefined && before.modRevision === e.kv.modRevision) return;
    else this.store.set(key, e.kv);
    const c = this.host.cluster();
    if (key.startsWith(this.keys.drained)) {
      const node = key.slice(this.keys.drained.length);
      if (c.node(node) !== undefined && c.node(node)!.drained !== (e.type === "PUT")) {
        c.setDrained(node, e.type === "PUT");
        log.info(`node ${node} ${e.type === "PUT" ? "drained" : "back in rotation"} by the fleet`);
      }
    } else if (key === this.keys.paused) {
      if (this.host.setPaused(e.type === "PUT")) log.info(`proxy ${e.type === "PUT" ? "paused" : "resumed"} by the fleet`);
    } else if (key === this.keys.primary) {
      if (e.type === "PUT" && this.host.config().topology.provider === "manual" && c.node(e.kv.value) !== undefined && c.primary().name !== e.kv.value) {
        c.setPrimary(e.kv.value, "set by the fleet");
        log.warn(`primary set to ${e.kv.value} by the fleet`);
      }
    } else if (key.startsWith(this.keys.members)) this.heardReport(key.slice(this.keys.members.length), e.type === "PUT" ? e.kv.value : null);
    else if (key === this.keys.failover && e.type === "PUT") this.followRecord();
    else if (key === this.keys.leader && e.type === "DELETE") this.election.poke();
  }

  // ---- what the other proxies see ------------------------------------------------------------

  /** This proxy's view of the primary changed: tell the fleet now rather than at the next heartbeat. */
  viewChanged(): void {
    void this.election.beatNow();
  }

  /** Proxies whose last heartbeat says the primary (as this proxy names it) is down, and what this proxy's probe of it found since. */
  private readonly reports = new Map<string, { node: string; since: string; probe: "none" | "pending" | "answered" | "failed" }>();
  private probing = false;
  /** performance.now() of the last probe a report caused: misses stay failover.confirm_interval_secs apart, as for backend errors. */
  private lastSuspect = -Infinity;

  /**
   * A heartbeat (null: the proxy left). Followers never promote; the leader decides on its own
   * probes, and a follower's report that the primary is down makes it probe the primary at once:
   * a primary the follower cannot reach but the leader can stays (the follower's requests wait in
   * its buffer, bounded), a dead one is confirmed sooner than the leader's next probe.
   */
  private heardReport(member: string, value: string | null): void {
    if (member === this.name) return;
    const primary = this.host.cluster().primary();
    let down = false;
    try {
      const beat = value === null ? null : (JSON.parse(value) as MemberBeat);
      down = beat !== null && beat.view.primary === primary.name && beat.view.nodes[primary.name] === "down";
    } catch {
      // not a heartbeat of this version: no report
    }
    if (!down) {
      this.reports.delete(member);
      return;
    }
    const known = this.reports.get(member);
    const report = known?.node === primary.name ? known : { node: primary.name, since: new Date().toISOString(), probe: this.isLeader ? ("pending" as const) : ("none" as const) };
    this.reports.set(member, report);
    const now = performance.now();
    if (!this.isLeader || primary.health === "down" || this.probing || now - this.lastSuspect < this.host.config().failover.confirm_interval_secs * 1000) return;
    this.probing = true;
    this.lastSuspect = now;
    const node = primary.name;
    void this.host
      .suspect(node, `fleet member ${member} reports it down`)
      .then((answered) => {
        for (const r of this.reports.values()) if (r.node === node) r.probe = answered ? "answered" : "failed";
        if (known?.probe !== (answered ? "answered" : "failed")) {
          log.warn(`fleet member ${member} reports the primary ${node} down; ${answered ? "it answers this proxy's probe: no failover" : "this proxy's probe failed too (failure_threshold decides)"}`);
        }
      })
      .finally(() => (this.probing = false));
  }

  /** A finished record of a newer epoch than this proxy applied: the primary, N0 and epoch of the fleet. */
  private followRecord(): void {
    const r = this.record();
    const fc = this.host.failover();
    if (r === null || r.state !== "done" || r.epoch <= this.appliedEpoch || fc === null) return;
    // This proxy's own record (the watch may bring it before the write's answer): its controller moves the primary.
    if (r.leader === this.name && this.won.has(r.epoch)) return;
    if (this.host.cluster().node(r.to) === undefined) {
      log.error(`fleet record of epoch ${r.epoch} names node ${r.to}, which is not configured here`);
      return;
    }
    this.appliedEpoch = r.epoch;
    if (this.recordTimer) clearTimeout(this.recordTimer);
    this.recordTimer = null;
    const rec = fc.adopt(r);
    log.warn(`following the fleet: ${r.kind} ${r.from} -> ${r.to} by ${r.leader} (fleet epoch ${r.epoch}, N0 ${r.n0}); local epoch ${rec.epoch}`);
  }

  private leadershipChanged(leader: boolean): void {
    if (!leader) this.resumed.clear();
  }

  /** Epochs whose half-done failover this proxy took over; (epoch, primary) pairs it acted on a lost primary for. */
  private readonly resumed = new Set<number>();
  private readonly actedOn = new Set<string>();

  /**
   * After each exchange with etcd, as acting leader: finish a failover its last leader left half
   * done, or act on a primary that is down with nobody promoting (it went down before this proxy
   * led, or while its lease was not fresh enough to act).
   */
  private afterRound(): void {
    const fc = this.host.failover();
    if (fc === null || this.refusal() !== null || fc.inProgress !== null) return;
    const r = this.record();
    if (r !== null && r.state === "promoting" && !this.won.has(r.epoch) && !this.resumed.has(r.epoch)) {
      this.resumed.add(r.epoch);
      log.warn(`finishing the ${r.kind} of epoch ${r.epoch} (${r.from} -> ${r.to}) that ${r.leader} left unfinished`);
      void fc.failover({ trigger: "auto", reason: `finishing ${r.leader}'s ${r.kind} of fleet epoch ${r.epoch}`, resume: r }).catch(() => {});
      return;
    }
    const primary = this.host.cluster().primary();
    const key = `${this.host.cluster().epoch}:${primary.name}`;
    if (primary.health !== "down" || this.host.config().failover.policy !== "auto" || this.actedOn.has(key)) return;
    this.actedOn.add(key);
    fc.primaryDown(primary.name, `still down with ${this.name} acting as the fleet leader`);
  }
}
