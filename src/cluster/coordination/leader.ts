// Leader election on an etcd lease: one lease per proxy carries its heartbeat key and, for the leader, the leader key; the leader stops acting before the lease can expire.

import { log } from "../../util/log.ts";
import type { EtcdClient } from "./etcd-client.ts";

export interface ElectionKeys {
  leader: string;
  member: string;
}

export class Election {
  /** The lease of this proxy (null: none yet, or it expired). */
  lease: string | null = null;
  ttlSecs: number;
  /** performance.now() of the last keepalive etcd confirmed. */
  lastOk = 0;
  /** The last etcd request failed (unreachable, refused). */
  failing = true;
  lastError = "not connected yet";
  /** This proxy holds the leader key (as of the last exchange with etcd). */
  holdsKey = false;
  /** The value written to the leader key: unique per proxy and lease. */
  leaderValue = "";
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly keys: ElectionKeys,
    private readonly self: { name: string; adminUrl: string },
    ttlSecs: number,
    /** The heartbeat value written with every keepalive (this proxy's view). */
    private readonly heartbeat: () => string,
    /** Leadership was won (true) or given up (false). */
    private readonly onChange: (leader: boolean) => void,
    /** After each round that etcd answered. */
    private readonly onRound: () => void,
  ) {
    this.ttlSecs = ttlSecs;
  }

  /**
   * This proxy may act as leader: it holds the key and a keepalive sent within two thirds of the
   * TTL was confirmed (etcd counts the TTL from when it got it, later than the send), so it stops
   * acting well before etcd could hand the key to another proxy.
   */
  get acting(): boolean {
    return this.holdsKey && !this.failing && performance.now() - this.lastOk < (this.ttlSecs * 2000) / 3;
  }

  start(): void {
    this.running = true;
    void this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.setHolds(false);
    // A clean stop hands leadership over at once instead of after the TTL.
    if (this.lease !== null) await this.etcd.revoke(this.lease);
    this.lease = null;
  }

  /** Run one round now (the leader key was deleted: campaign without waiting). */
  poke(): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.loop();
  }

  /** Write the heartbeat now, between rounds (this proxy's view of the primary changed). */
  async beatNow(): Promise<void> {
    if (this.lease === null || this.failing) return;
    await this.etcd.put(this.keys.member, this.heartbeat(), this.lease).catch(() => {});
  }

  private busy = false;

  private async loop(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.round();
      if (this.failing) log.info("etcd answers again");
      this.failing = false;
      this.lastError = "";
      this.onRound();
    } catch (e) {
      if (!this.failing) log.error(`etcd unreachable: ${(e as Error).message}; this proxy does not promote until it answers`);
      this.failing = true;
      this.lastError = (e as Error).message;
      // Past the TTL the lease is gone in etcd: the key may be another proxy's by now.
      if (performance.now() - this.lastOk > this.ttlSecs * 1000) this.setHolds(false);
    } finally {
      this.busy = false;
    }
    if (this.running) this.timer = setTimeout(() => void this.loop(), Math.max(200, (this.ttlSecs * 1000) / 4));
  }

  private async round(): Promise<void> {
    if (this.lease !== null) {
      const sent = performance.now();
      const left = await this.etcd.keepAlive(this.lease);
      if (left <= 0) {
        log.warn(`etcd lease ${this.lease} expired`);
        this.lease = null;
        this.setHolds(false);
      } else this.lastOk = sent;
    }
    if (this.lease === null) {
      const started = performance.now();
      const g = await this.etcd.grant(this.ttlSecs);
      this.lease = g.id;
      this.ttlSecs = g.ttl;
      this.lastOk = started;
      this.leaderValue = JSON.stringify({ name: this.self.name, admin_url: this.self.adminUrl, lease: g.id });
    }
    await this.etcd.put(this.keys.member, this.heartbeat(), this.lease);
    // Campaign: the leader key is created only when absent, bound to this lease.
    const won = await this.etcd.txn(
      [{ key: this.keys.leader, target: "CREATE", revision: 0 }],
      [{ put: this.keys.leader, value: this.leaderValue, lease: this.lease }],
    );
    if (won) {
      this.setHolds(true);
      return;
    }
    const cur = await this.etcd.get(this.keys.leader);
    this.setHolds(cur !== null && cur.value === this.leaderValue);
  }

  private setHolds(holds: boolean): void {
    if (holds === this.holdsKey) return;
    this.holdsKey = holds;
    log.warn(holds ? `this proxy (${this.self.name}) is the fleet leader` : `this proxy (${this.self.name}) is no longer the fleet leader`);
    this.onChange(holds);
  }
}
