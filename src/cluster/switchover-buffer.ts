// Switchover buffer: while the primary changes, requests bound for it wait here (bounded in count and time), then go on to the new one.

/** A client whose next request waits for the primary. Called back exactly once. */
export interface HeldClient {
  /** The primary is usable again: route the request. */
  released(): void;
  /** Waited too long, or no room: answer the request with this error (the connection stays). */
  refused(code: string, message: string): void;
}

export interface BufferSettings {
  timeoutMs: number;
  maxClients: number;
}

export interface BufferStats {
  /** Clients that waited and were released. */
  released: number;
  /** Clients that got an error (time or room). */
  refused: number;
  /** Longest wait of a released client, ms. */
  maxWaitMs: number;
  /** Holds started (failovers and switchovers). */
  holds: number;
}

export class SwitchoverBuffer {
  private held: HeldClient[] = [];
  private since: number[] = [];
  private holding = false;
  private reason = "";
  private heldSince = 0;
  readonly stats: BufferStats = { released: 0, refused: 0, maxWaitMs: 0, holds: 0 };

  constructor(public settings: BufferSettings) {}

  get active(): boolean {
    return this.holding;
  }

  get size(): number {
    return this.held.length;
  }

  /** Why requests are held ("" when they are not). */
  get why(): string {
    return this.holding ? this.reason : "";
  }

  /** Start holding requests for the primary. Returns false when a hold is on already. */
  hold(reason: string): boolean {
    if (this.holding) return false;
    this.holding = true;
    this.reason = reason;
    this.heldSince = performance.now();
    this.stats.holds++;
    return true;
  }

  /** How long the current hold has lasted, ms (0 when not holding). */
  heldForMs(): number {
    return this.holding ? performance.now() - this.heldSince : 0;
  }

  /**
   * Take a client while holding. Returns false when not holding (the caller goes on); true when
   * the client now waits, or was refused at once because the buffer is full.
   */
  admit(c: HeldClient): boolean {
    if (!this.holding) return false;
    if (this.held.length >= this.settings.maxClients) {
      this.stats.refused++;
      c.refused("53300", `the primary is changing (${this.reason}) and ${this.settings.maxClients} requests already wait for it`);
      return true;
    }
    this.held.push(c);
    this.since.push(performance.now());
    return true;
  }

  /** A held client went away. */
  forget(c: HeldClient): void {
    const i = this.held.indexOf(c);
    if (i < 0) return;
    this.held.splice(i, 1);
    this.since.splice(i, 1);
  }

  /** Stop holding: every waiting client goes on, oldest first. Returns how many were released. */
  release(): number {
    this.holding = false;
    const held = this.held;
    const since = this.since;
    this.held = [];
    this.since = [];
    const now = performance.now();
    for (let i = 0; i < held.length; i++) {
      const waited = now - since[i]!;
      if (waited > this.stats.maxWaitMs) this.stats.maxWaitMs = waited;
      this.stats.released++;
      held[i]!.released();
    }
    return held.length;
  }

  /** Refuse clients that waited longer than the timeout (called from the upkeep tick). */
  expire(now = performance.now()): void {
    if (this.held.length === 0) return;
    const limit = this.settings.timeoutMs;
    let keep = 0;
    const late: HeldClient[] = [];
    for (let i = 0; i < this.held.length; i++) {
      if (now - this.since[i]! > limit) late.push(this.held[i]!);
      else {
        this.held[keep] = this.held[i]!;
        this.since[keep] = this.since[i]!;
        keep++;
      }
    }
    this.held.length = keep;
    this.since.length = keep;
    for (const c of late) {
      this.stats.refused++;
      c.refused("57P03", `the primary is changing (${this.reason}); the request waited ${(limit / 1000).toFixed(1)} s (failover.buffer_timeout_secs)`);
    }
  }
}
