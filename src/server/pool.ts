// Server connections for one (node, database, user): idle stack, waiters, limits, timeouts.

import { ServerConnection, connectionStats, countError, type ConnectionStats, type ServerEndpoint, type ServerOwner } from "./connection.ts";
import { LoginError, type ServerCredentials } from "./login.ts";
import { clock } from "../util/clock.ts";

/** A client waiting for a server. The pool calls back exactly once (unless it leaves the queue). */
export interface PoolWaiter {
  serverLeased(s: ServerConnection): void;
  serverFailed(e: LoginError): void;
  /** The node went down or was drained while this waited: route again (only clients can). */
  reroute?(): void;
  /** performance.now() when it started waiting. */
  waitingSince: number;
}

export interface PoolSettings {
  minConnections: number;
  maxConnections: number;
  idleTimeoutMs: number;
  lifetimeMs: number;
  connectTimeoutMs: number;
  waitTimeoutMs: number;
}

export interface PoolStats extends ConnectionStats {
  /** Leases completed (transactions in transaction mode). */
  xactCount: number;
  totalWaitUs: number;
  maxWaitUs: number;
  /** Clients that got a server after waiting. */
  waitCount: number;
}

export function emptyPoolStats(): PoolStats {
  return { ...connectionStats(), xactCount: 0, totalWaitUs: 0, maxWaitUs: 0, waitCount: 0 };
}

/**
 * Move `from`'s totals into `into` (the totals of a pool that goes away stay counted); `from` is
 * left at zero, so a pool that comes back (a login was under way) does not count them twice.
 */
export function movePoolStats(into: PoolStats, from: PoolStats): void {
  into.xactCount += from.xactCount;
  into.queryCount += from.queryCount;
  into.totalWaitUs += from.totalWaitUs;
  into.waitCount += from.waitCount;
  into.maxWaitUs = Math.max(into.maxWaitUs, from.maxWaitUs);
  into.bytesIn += from.bytesIn;
  into.bytesOut += from.bytesOut;
  into.queryTimeUs += from.queryTimeUs;
  into.xactTimeUs += from.xactTimeUs;
  into.clientParseCount += from.clientParseCount;
  into.serverParseCount += from.serverParseCount;
  into.bindCount += from.bindCount;
  into.latency.add(from.latency);
  for (const [code, n] of from.errors) countError(into.errors, code, n);
  Object.assign(from, { ...emptyPoolStats(), latency: from.latency, errors: from.errors });
  from.latency.clear();
  from.errors.clear();
}

/** What the pools of one (database, user) on different nodes share: how to log in, what clients are told. */
export interface PoolShared {
  creds: ServerCredentials;
  /** Parameters reported by the first server login (what clients are told at login). */
  serverParams: Map<string, string> | null;
  /**
   * Passthrough auth (no [[users]]): what the server is known to demand of this user. "unknown"
   * until a login proves it, and again after a reload or when the learned password stops working.
   */
  passthrough: "unknown" | "trust" | "password";
  /** The one login attempt in flight for a pool nobody has reached yet. */
  firstLogin: Promise<LoginError | null> | null;
  /** The one passwordless (trust) probe in flight while passthrough is unknown. */
  trustProbe: Promise<LoginError | null> | null;
}

export class Pool implements ServerOwner {
  readonly idle: ServerConnection[] = [];
  readonly all = new Set<ServerConnection>();
  private waiters: PoolWaiter[] = [];
  private connecting = 0;
  lastError: LoginError | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  paused = false;
  readonly stats: PoolStats = emptyPoolStats();
  /** Clients logged in to this pool. */
  clients = 0;
  /** Told about connect failures that are not the client's fault (health accounting). */
  onBackendFailure: ((reason: string) => void) | null = null;
  /** Judges a fresh login by the parameters the server reported; an error refuses it (retried as transient). */
  loginCheck: ((params: ReadonlyMap<string, string>) => LoginError | null) | null = null;
  /** Told about sampled request timings (latency balancing). */
  onRequestTimed: ((ms: number) => void) | null = null;

  requestTimed(ms: number): void {
    this.onRequestTimed?.(ms);
  }

  constructor(
    readonly database: string,
    readonly user: string,
    public endpoint: ServerEndpoint,
    readonly shared: PoolShared,
    public settings: PoolSettings,
    /** Node name this pool's servers live on. */
    readonly node = endpoint.name,
  ) {}

  get creds(): ServerCredentials {
    return this.shared.creds;
  }

  set creds(c: ServerCredentials) {
    this.shared.creds = c;
  }

  get serverParams(): Map<string, string> | null {
    return this.shared.serverParams;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  get active(): number {
    return this.all.size - this.idle.length - this.connecting;
  }

  /** A free server now, or null after queueing the waiter. */
  acquire(w: PoolWaiter): ServerConnection | null {
    if (!this.paused) {
      for (let s = this.idle.pop(); s !== undefined; s = this.idle.pop()) {
        if (s.lease()) return s;
        s.close("not idle in the idle stack"); // a refused transition (logged as a bug): never hand it out
      }
    }
    w.waitingSince = performance.now();
    this.waiters.push(w);
    if (!this.paused) this.grow();
    return null;
  }

  /** Leave the queue (client went away). */
  forget(w: PoolWaiter): void {
    const i = this.waiters.indexOf(w);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  /** Open servers while clients wait and the pool has room. */
  private grow(): void {
    while (this.connecting < this.waiters.length && this.all.size < this.settings.maxConnections) this.spawn();
  }

  /**
   * Log in once with `creds` (default: the pool's), retrying transient failures (server down,
   * starting up) until `deadline` (performance.now() scale), never beyond max_connections. The
   * server joins the pool. Returns null on success, else why it failed.
   */
  async tryLogin(deadline: number, creds: ServerCredentials = this.creds): Promise<LoginError | null> {
    for (;;) {
      // A full pool makes room by closing an idle server: a login must not wait on idle ones.
      if (this.all.size >= this.settings.maxConnections && this.idle.length > 0) this.idle[0]!.close("making room for a login");
      if (this.all.size < this.settings.maxConnections) {
        const r = await this.spawn(creds);
        if (!(r instanceof LoginError)) return null;
        if (!isTransient(r)) return r;
      }
      if (performance.now() >= deadline) {
        return this.lastError ?? new LoginError(`no server connection available within wait_timeout`, "08006");
      }
      await Bun.sleep(this.all.size < this.settings.maxConnections ? 200 : 25);
    }
  }

  /** Make sure the pool has reached its server once (shared by concurrent first logins). */
  async prime(deadline: number): Promise<LoginError | null> {
    const sh = this.shared;
    while (sh.serverParams === null) {
      sh.firstLogin ??= this.tryLogin(deadline).finally(() => (sh.firstLogin = null));
      const e = await sh.firstLogin;
      if (e !== null && sh.serverParams === null) return e;
    }
    return null;
  }

  /** Open one server connection; on success it goes to a waiter or the idle stack. Resolves to it, or to why not. */
  spawn(creds: ServerCredentials = this.creds): Promise<ServerConnection | LoginError> {
    const s = new ServerConnection(this.endpoint, this);
    s.generation = this.generation;
    s.stats = this.stats;
    this.all.add(s);
    this.connecting++;
    return s.open(creds, {}, this.settings.connectTimeoutMs).then(
      (srv) => {
        const refused = this.loginCheck?.(srv.params) ?? null;
        if (refused !== null) {
          // Logged in, but not to what this pool needs (a primary pool reaching a node in recovery).
          srv.close(refused.message);
          this.connecting--;
          this.all.delete(s);
          this.lastError = refused;
          this.onBackendFailure?.(refused.message);
          this.scheduleRetry();
          return refused;
        }
        this.connecting--;
        this.lastError = null;
        if (this.shared.serverParams === null) this.shared.serverParams = srv.params;
        // Opened before a recycle (drain, node down, reload): never handed out.
        if (srv.generation !== this.generation) srv.close("pool recycled while connecting");
        else this.give(srv);
        return srv;
      },
      (e: LoginError) => {
        this.connecting--;
        this.all.delete(s);
        if (e.byProxy) {
          // Closed by the proxy while logging in (pool closing, KILL, shutdown): no failure of the server's.
          if (this.waiters.length > 0 && !this.paused) this.grow();
          return e;
        }
        this.lastError = e;
        // The password learned in passthrough no longer works: the next login must prove a new one.
        if (creds === this.creds && ((e.code === "28P01" && this.shared.passthrough === "password") || (e.needsPassword && this.shared.passthrough === "trust"))) {
          this.shared.passthrough = "unknown";
        }
        if (isPermanent(e)) this.failWaiters(e);
        else {
          this.onBackendFailure?.(e.message);
          this.scheduleRetry();
        }
        return e;
      },
    );
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.waiters.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.paused) this.grow();
    }, 200);
  }

  private failWaiters(e: LoginError): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.serverFailed(e);
  }

  /** Hand a ready server to the first waiter, or park it idle. */
  private give(s: ServerConnection): void {
    if (s.closed) return;
    s.lessee = null;
    s.lastUsedAt = clock.now;
    if (!this.paused) {
      const w = this.waiters.shift();
      if (w !== undefined) {
        const waited = (performance.now() - w.waitingSince) * 1000;
        this.stats.totalWaitUs += waited;
        this.stats.waitCount++;
        if (waited > this.stats.maxWaitUs) this.stats.maxWaitUs = waited;
        if (s.lease()) w.serverLeased(s);
        else {
          this.waiters.unshift(w); // a refused transition (logged as a bug): the waiter keeps its place
          s.close("not idle when handed out");
        }
        return;
      }
    }
    this.idle.push(s);
  }

  /**
   * A client is done with a server. Broken, busy or expired servers are closed instead; one with a
   * forwarded cancel still in flight waits out of the pool until that cancel has landed, and one
   * left paused by its last client's backpressure reads again before anyone gets it.
   */
  release(s: ServerConnection): void {
    this.stats.xactCount++;
    s.lessee = null;
    this.settle(s);
  }

  private settle(s: ServerConnection): void {
    if (!s.reusable || s.queue.length !== 0) {
      s.close("released while busy");
      return;
    }
    if (s.dirty) {
      // Session state of its last client that nobody reset (the client's release resets it first).
      s.close("released with its last client's session state");
      return;
    }
    if (s.cancelsInFlight > 0) {
      s.whenCancelsSettled(() => this.settle(s));
      return;
    }
    s.resumeReads();
    if (this.settings.lifetimeMs > 0 && clock.now - s.createdAt > this.settings.lifetimeMs) {
      s.close("server lifetime reached");
      return;
    }
    if (s.generation !== this.generation) {
      s.close("pool recycled");
      return;
    }
    if (!s.park()) {
      s.close("given back while not leased"); // a refused transition (logged as a bug)
      return;
    }
    this.give(s);
  }

  /** A server connection the server ended (backend killed, node down): the node gets probed. */
  serverDropped(_s: ServerConnection, reason: string): void {
    this.onBackendFailure?.(reason);
  }

  serverClosed(s: ServerConnection): void {
    if (!this.all.delete(s)) return;
    const i = this.idle.indexOf(s);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.waiters.length > 0 && !this.paused) this.grow();
  }

  /** Periodic upkeep: idle timeouts, lifetimes, waiter timeouts, min pool size. */
  tick(now: number): void {
    const st = this.settings;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const s = this.idle[i]!;
      const tooOld = st.lifetimeMs > 0 && now - s.createdAt > st.lifetimeMs;
      const tooIdle = st.idleTimeoutMs > 0 && now - s.lastUsedAt > st.idleTimeoutMs && this.all.size > st.minConnections;
      if (tooOld || tooIdle) s.close(tooOld ? "server lifetime reached" : "server idle timeout");
    }
    if (st.waitTimeoutMs > 0 && this.waiters.length > 0) {
      const expired = this.waiters.filter((w) => now - w.waitingSince > st.waitTimeoutMs);
      if (expired.length > 0) {
        this.waiters = this.waiters.filter((w) => now - w.waitingSince <= st.waitTimeoutMs);
        const e = new LoginError(
          `no server connection available within wait_timeout (${st.waitTimeoutMs / 1000} s)` +
            (this.lastError ? `: ${this.lastError.message}` : ""),
          "08006",
        );
        for (const w of expired) w.serverFailed(e);
      }
    }
    if (!this.paused && !this.suspended && this.lastError === null) {
      while (this.all.size < st.minConnections) void this.spawn();
    }
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    while (this.idle.length > 0 && this.waiters.length > 0) this.give(this.idle.pop()!);
    this.grow();
  }

  /** Servers made before this moment are not reused: idle ones close now, busy ones when released. */
  recycle(reason: string): void {
    this.generation++;
    this.closeIdle(reason);
  }

  /** Bumped by recycle(); a server from an older generation is closed on release. */
  generation = 0;
  /** The node is down or drained: no new servers for min_connections, waiters routed elsewhere. */
  suspended = false;

  /** Hand every waiting client back to be routed again; waiters that cannot re-route keep waiting. */
  rerouteWaiters(): void {
    const stay: PoolWaiter[] = [];
    const go: PoolWaiter[] = [];
    for (const w of this.waiters) (w.reroute ? go : stay).push(w);
    this.waiters = stay;
    for (const w of go) w.reroute!();
  }

  /** Close every idle server (reconnect / reload of a changed backend). */
  closeIdle(reason: string): void {
    for (const s of [...this.idle]) s.close(reason);
  }

  closeAll(reason: string): void {
    for (const s of [...this.all]) s.close(reason);
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  /** No server, no client, nobody waiting: nothing would be lost if the pool went away. */
  get empty(): boolean {
    return this.all.size === 0 && this.clients === 0 && this.waiters.length === 0 && this.connecting === 0;
  }

  /** Counts for SHOW POOLS / metrics. */
  counts(): { idle: number; active: number; connecting: number; waiting: number; total: number } {
    return { idle: this.idle.length, active: this.active, connecting: this.connecting, waiting: this.waiters.length, total: this.all.size };
  }
}

/** Failures worth another try: the server unreachable, gone mid-login, starting up or full. */
function isTransient(e: LoginError): boolean {
  return !e.needsPassword && !e.final && (e.code === "08001" || e.code === "08006" || e.code === "57P03" || e.code === "53300");
}

/** Auth and unknown-database failures will not fix themselves by retrying. */
function isPermanent(e: LoginError): boolean {
  return e.code.startsWith("28") || e.code === "3D000" || e.code === "42501";
}

