// One client connection: startup, TLS, login, then forwarding requests to leased servers.

import type { Socket } from "bun";
import type { PoolMode } from "../config/types.ts";
import type { ProxyContext } from "../core/context.ts";
import { Outbox, type BackpressureTarget } from "../util/outbox.ts";
import { Fe, MAX_AUTH_MESSAGE, TxStatus } from "../protocol/codes.ts";
import { Errors, errorFields, errorResponse } from "../protocol/errors.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import { ReceiveBuffer, readInt32 } from "../protocol/framing.ts";
import { ReadyIdle, SslNo, SslYes, negotiateProtocolVersion } from "../protocol/messages.ts";
import { CONSOLE_DATABASES, type ConsoleAnswerer } from "../core/console.ts";
import { NEWEST_MINOR, parseStartupPacket } from "../protocol/startup.ts";
import type { Lessee, ServerConnection } from "../server/connection.ts";
import type { LoginError } from "../server/login.ts";
import type { Pool, PoolWaiter } from "../server/pool.ts";
import type { PoolGroup } from "../server/pool-group.ts";
import type { HeldClient } from "../cluster/switchover-buffer.ts";
import type { SessionCtx } from "../core/hooks.ts";
import { runStartupHooks } from "../core/startup-hooks.ts";
import { clientsOf } from "./registry.ts";
import { ResultTally } from "../server/result-tally.ts";
import { route } from "../router/route.ts";
import { waitForReplay } from "../cluster/replay-wait.ts";
import { authenticateClient, loginFailure } from "./auth.ts";
import { welcome } from "./welcome.ts";
import { logDisconnect, logLogin, logRefused, type ConnectionFacts } from "./connection-log.ts";
import { replicationRefusal, unknownSettingRefusal } from "./startup-settings.ts";
import { RequestForwarder } from "./forwarder.ts";
import { SessionState, traceContextParam } from "../sql/session-state.ts";
import { cancelServer } from "./cancel.ts";
import { constantTimeEqual } from "../protocol/secrets.ts";
import { log } from "../util/log.ts";
import { edgeAllowed, transitionBug } from "../util/state-bugs.ts";
import { CLIENT_MACHINE, CLIENT_STATE_NAMES, ClientState, isWaiting } from "./client-state.ts";
import { clock } from "../util/clock.ts";
import type { Sink } from "../server/connection.ts";
import { Pending } from "../server/response-queue.ts";
import type { RequestTap, TappedSession } from "../core/request-tap.ts";

export { ClientState } from "./client-state.ts";

const NO_PARAMS = new Map<string, string>();
let nextPid = 1 + Math.floor(Math.random() * 1_000_000);

export class ClientSession implements Lessee, PoolWaiter, HeldClient, BackpressureTarget, TappedSession {
  private current = ClientState.Startup;
  sock: Socket<ClientSession>;
  readonly recv = new ReceiveBuffer(1024);
  readonly out: Outbox = new Outbox(this);
  /** Where server replies go: the outbox, or the tap's sink in front of it (ha-tr). */
  replies: Sink = this.out;
  /** The request tap a module attached (ha-tr: journal, migration, recovery); null when none. */
  tap: RequestTap | null = null;
  user = "";
  database = "";
  params = new Map<string, string>();
  minor = 0;
  pool: Pool | null = null;
  server: ServerConnection | null = null;
  mode: PoolMode;
  /** Keeps its server until it leaves (session mode, or session state a pool cannot move). */
  pinned = false;
  /** performance.now() when the current wait began (pool waits stamp it in the pool). */
  waitingSince = 0;
  sessionState: SessionState | null = null;
  txStatus = TxStatus.Idle;
  readonly connectedAt = clock.now;
  lastActivity = clock.now;
  /** When the oldest request still owed a reply was sent (0 = none). */
  requestStartedAt = 0;
  pid = 0;
  private cancelSecret: Uint8Array = new Uint8Array(0);
  private tlsDone = false;
  /** SSLRequest (1) and GSSENCRequest (2) already answered. */
  private negotiated = 0;
  private authQueue: Uint8Array[] = [];
  private authWaiter: ((b: Uint8Array | null) => void) | null = null;
  readonly forwarder: RequestForwarder;
  private inLoop = false;
  private releaseDeferred = false;
  private counted = false;

  constructor(
    readonly ctx: ProxyContext,
    sock: Socket<ClientSession>,
  ) {
    this.sock = sock;
    this.peer = `${sock.remoteAddress}:${sock.remotePort}`;
    this.out.attach(sock);
    this.mode = ctx.config.pool.mode;
    this.forwarder = new RequestForwarder(this);
  }

  /** Where the session is (client-state.ts); changed only by enter(). */
  get state(): ClientState {
    return this.current;
  }

  /**
   * The one transition function. An edge the machine does not have (CLIENT_EDGES) is a bug: one
   * error line with both states, one more on heliosproxy_state_transition_bugs_total, and the
   * session keeps its state. Returns whether the session moved.
   */
  enter(to: ClientState): boolean {
    if (!edgeAllowed(CLIENT_MACHINE, this.pid, this.current, to)) return false;
    this.current = to;
    return true;
  }

  /** A callback meant for one state only (a pool, the switchover buffer, a replay wait answering): move on from `from`, else a refused bug. */
  private leave(from: ClientState, to: ClientState): boolean {
    if (this.current === from) return this.enter(to);
    transitionBug("client", this.pid, CLIENT_STATE_NAMES[this.current]!, CLIENT_STATE_NAMES[to]!);
    return false;
  }

  /** Enter a waiting state (not the pool's: the pool stamps its own waits) and start its clock. */
  private wait(state: ClientState): void {
    if (this.enter(state)) this.waitingSince = performance.now();
  }

  /** Read through a method so the compiler does not narrow it across awaits. */
  get closed(): boolean {
    return this.current === ClientState.Closed;
  }

  /** Past login (a pool's client or the console's), not closed. */
  get loggedIn(): boolean {
    return this.current > ClientState.Auth && this.current !== ClientState.Closed;
  }

  /** Waiting for a server, a replay, a new primary or a recovery: requests queue meanwhile. */
  get waiting(): boolean {
    return isWaiting(this.current);
  }

  // ---- socket events -------------------------------------------------------------------

  onData(sock: Socket<ClientSession>, chunk: Uint8Array): void {
    if (sock !== this.sock) return; // ciphertext still arriving on the pre-TLS socket
    this.lastActivity = performance.now(); // exact: idle timeouts must never fire early
    switch (this.current) {
      case ClientState.Idle:
      case ClientState.Leased:
        if (this.recv.size === 0) this.process(chunk, 0, chunk.length, false);
        else {
          this.recv.push(chunk);
          this.processBuffered();
        }
        return;
      case ClientState.WaitingPool:
      case ClientState.WaitingReplay:
      case ClientState.Held:
      case ClientState.Recovering:
        this.recv.push(chunk);
        if (this.recv.size > 1 << 20) this.pauseReading();
        return;
      case ClientState.Console:
        this.recv.push(chunk);
        this.consoleData();
        return;
      case ClientState.Startup:
        this.recv.push(chunk);
        this.startup();
        return;
      case ClientState.Auth:
        this.recv.push(chunk);
        this.authData();
        return;
      case ClientState.Closed:
        return;
    }
  }

  onClose(sock: Socket<ClientSession>): void {
    if (sock !== this.sock && this.tlsDone) return;
    this.teardown();
  }

  // ---- startup --------------------------------------------------------------------------

  private startup(): void {
    const r = this.recv;
    for (;;) {
      const pkt = parseStartupPacket(r.buf, r.start, r.end);
      switch (pkt.kind) {
        case "incomplete":
          return;
        case "reject":
          if (pkt.reply) this.fatal(pkt.reply);
          else this.close();
          return;
        case "cancel":
          r.consume(pkt.length);
          this.handleCancel(pkt.pid, pkt.secret);
          return;
        case "ssl":
        case "gssenc": {
          r.consume(pkt.length);
          if (this.tlsDone) {
            this.fatal(Errors.protocolViolation("SSL/GSS negotiation requested twice"));
            return;
          }
          // As PostgreSQL: each negotiation once; a repeat is read as an unknown protocol version (0A000).
          const bit = pkt.kind === "ssl" ? 1 : 2;
          if (this.negotiated & bit) {
            this.fatal(Errors.unsupportedProtocol(1234, pkt.kind === "ssl" ? 5679 : 5680));
            return;
          }
          this.negotiated |= bit;
          // Bytes after the request arrived before any handshake: they may be injected (CVE-2021-23214).
          if (r.size > 0) {
            this.fatal(Errors.unencryptedAfterSsl());
            return;
          }
          if (pkt.kind === "ssl" && this.ctx.tls) {
            this.sock.write(SslYes);
            this.upgradeTls();
          } else {
            this.sock.write(SslNo);
          }
          return;
        }
        case "startup": {
          r.consume(pkt.length);
          if (this.ctx.config.tls.mode === "require" && !this.tlsDone) {
            this.fatal(Errors.tlsRequired());
            return;
          }
          this.params = pkt.params;
          this.user = pkt.params.get("user")!;
          this.database = pkt.params.get("database") || this.user;
          this.minor = pkt.minor;
          void this.login(pkt.minor, pkt.unsupportedOptions);
          return;
        }
      }
    }
  }

  private upgradeTls(): void {
    const [, tls] = this.sock.upgradeTLS<ClientSession>({
      data: this,
      tls: this.ctx.tls!,
      socket: clientHandlers,
    });
    this.sock = tls;
    this.out.attach(tls);
    this.tlsDone = true;
  }

  /** With [tls] ca_file set a client must present a certificate that verifies against it. */
  onHandshake(sock: Socket<ClientSession>, error: Error | null): void {
    if (sock !== this.sock || !this.ctx.config.tls.ca_file) return;
    if (error || !sock.getPeerCertificate()?.subject) {
      this.fatal(Errors.clientCertificate((error as { code?: string } | null)?.code ?? "no certificate"));
    }
  }

  private async login(minor: number, unsupported: string[]): Promise<void> {
    const ctx = this.ctx;
    this.enter(ClientState.Auth);
    if (minor > NEWEST_MINOR || minor === 1 || unsupported.length > 0) {
      const speak = minor > NEWEST_MINOR ? NEWEST_MINOR : minor === 1 ? 0 : minor;
      this.minor = speak;
      this.out.write(negotiateProtocolVersion((3 << 16) | speak, unsupported));
    }
    if (ctx.shuttingDown) return this.fatal(Errors.shuttingDown());
    const limit = ctx.config.limits.max_client_conn;
    if (ctx.clientCount >= limit) {
      ctx.stats.clientsRefused++;
      return this.fatal(Errors.tooManyClients(limit));
    }
    let tenant = "";
    if (ctx.startupHooks !== null) {
      const o = runStartupHooks(ctx.startupHooks, this.moduleView(), this.params, this.sock.getServername?.() || "");
      this.view = null; // the session's id and names change at login
      if (o.reject !== null) return this.fatal(Errors.refusedByModule(o.reject.sqlstate, o.reject.message));
      [this.user, this.database, tenant] = [o.user, o.database, o.tenant];
    }
    if (Buffer.byteLength(this.database) > 63 || Buffer.byteLength(this.user) > 63) return this.fatal(Errors.authFailed(this.user));
    // The admin console is a virtual database: who may log in is checked like a login to "postgres".
    const toConsole = CONSOLE_DATABASES.has(this.database);
    const replication = replicationRefusal(this.params);
    if (replication !== null) return this.fatal(replication);
    const candidate = ctx.loginGroup(toConsole ? "postgres" : this.database, this.user, tenant);
    const pool = await this.admit(candidate, toConsole);
    if (pool === null) {
      ctx.dropUnlisted(candidate);
      return;
    }
    if (toConsole) {
      // The console needs no server: its login lists no pool.
      this.openConsole(pool);
      ctx.dropUnlisted(candidate);
      return;
    }
    if (ctx.clientCount >= limit) return this.fatal(Errors.tooManyClients(limit));
    // Again with no await before the counts go up: logins admitted together all saw room in admit().
    const full = this.limitRefusal();
    if (full !== null) return this.fatal(full);
    this.pool = pool;
    this.group = ctx.loginGroup(this.database, this.user, tenant);
    if (tenant !== "") this.view = null; // modules see the tenant from here on
    this.mode = ctx.userEntry(this.user)?.pool_mode || ctx.config.pool.mode;
    this.counted = true;
    ctx.clientCount++;
    pool.clients++;
    ctx.adjust(ctx.perDatabase, this.database, 1);
    ctx.adjust(ctx.perUser, this.user, 1);
    ctx.stats.loginsOk++;
    this.sessionState = new SessionState(this.params);
    if (ctx.hooks !== null) {
      this.appName = this.params.get("application_name") ?? "";
      this.traceparent = traceContextParam(this.params);
    }
    if (ctx.tap !== null) {
      this.tap = ctx.tap(this);
      this.replies = this.tap.replies;
    }
    this.pid = nextPid++;
    if (nextPid > 0x7ffffff0) nextPid = 1;
    this.cancelSecret = crypto.getRandomValues(new Uint8Array(this.minor >= 2 ? 32 : 4));
    ctx.cancelTargets.set(this.pid, this);
    this.out.write(welcome(pool, this.sessionState, this.pid, this.cancelSecret));
    this.enter(ClientState.Idle);
    logLogin(this.facts(), this.pid);
    this.lastActivity = performance.now();
    if (this.mode === "session") this.pinned = true;
    // Modules see the startup parameters (SessionCtx.params: the query cache keys by them): their view keeps the map.
    if (ctx.hooks !== null || ctx.startupHooks !== null) this.moduleView();
    if (this.recv.size > 0) this.processBuffered();
    else this.recv.shrinkIfIdle(0); // the startup packet's buffer is not needed by an idle client
    this.params = NO_PARAMS;
  }

  /**
   * Authenticate against `group` and reach its server once; only then is the group listed (a
   * refused login creates no pool anyone sees; a console login none at all). Returns the pool on
   * the primary, or null once the client has been told why not.
   */
  private async admit(group: PoolGroup, toConsole: boolean): Promise<Pool | null> {
    const ctx = this.ctx;
    const pool = ctx.nodePool(group, ctx.cluster.primary());
    const res = await authenticateClient(ctx, this.authChannel(), this.user, pool);
    if (this.closed) return null;
    if (!res.ok) {
      ctx.stats.loginsFailed++;
      this.fatal(res.reply);
      return null;
    }
    if (toConsole) return pool;
    const full = this.limitRefusal();
    if (full !== null) return this.refuse(full);
    if (!(await this.primed(pool))) return null;
    // Settings PostgreSQL would refuse at startup are refused here, before the group is listed.
    const unknown = await unknownSettingRefusal(pool, this.params);
    if (this.closed) return null;
    if (unknown !== null) return this.refuse(unknown);
    const listed = ctx.nodePool(ctx.listGroup(group), ctx.cluster.primary());
    if (listed !== pool && !(await this.primed(listed))) return null;
    return listed;
  }

  /** The refusal when max_db_connections or max_user_connections leaves no room for this login; null when there is. */
  private limitRefusal(): Uint8Array | null {
    const { perDatabase, perUser, config } = this.ctx;
    const dbLimit = config.limits.max_db_connections;
    const userLimit = config.limits.max_user_connections;
    if (dbLimit > 0 && (perDatabase.get(this.database) ?? 0) >= dbLimit) return Errors.tooManyForDatabase(this.database, dbLimit);
    if (userLimit > 0 && (perUser.get(this.user) ?? 0) >= userLimit) return Errors.tooManyForUser(this.user, userLimit);
    return null;
  }

  /** The pool has reached its server once (its parameters are known); false once the client was told why not. */
  private async primed(pool: Pool): Promise<boolean> {
    if (pool.serverParams !== null) return true;
    const e = await pool.prime(performance.now() + this.ctx.config.pool.wait_timeout_secs * 1000);
    if (this.closed) return false;
    if (e === null) return true;
    this.ctx.stats.loginsFailed++;
    const f = loginFailure(this.ctx, this.user, e.code, e.message);
    this.fatal(f.ok ? Errors.serverLost() : f.reply);
    return false;
  }

  private refuse(reply: Uint8Array): null {
    this.fatal(reply);
    return null;
  }

  /** Logged in to the virtual admin database: listed admin or stats users only. */
  private openConsole(pool: Pool): void {
    const a = this.ctx.config.auth;
    const role = a.admin_users.includes(this.user) ? "admin" : a.stats_users.includes(this.user) ? "stats" : null;
    if (role === null) return this.fatal(Errors.notConsoleUser(this.user));
    if (this.ctx.openConsole === null) return this.fatal(Errors.consoleUnavailable());
    this.console = this.ctx.openConsole({ user: this.user, role });
    this.sessionState = new SessionState(this.params);
    this.pid = nextPid++;
    this.cancelSecret = crypto.getRandomValues(new Uint8Array(4));
    this.out.write(welcome(pool, this.sessionState, this.pid, this.cancelSecret));
    this.enter(ClientState.Console);
    logLogin(this.facts(), this.pid);
    this.params = NO_PARAMS;
    if (this.recv.size > 0) this.consoleData();
  }

  /** Admin console sessions (state Console): one simple Query at a time, answered by the console. */
  private console: ConsoleAnswerer | null = null;
  private consoleBusy = false;

  private consoleData(): void {
    const r = this.recv;
    if (this.consoleBusy) return;
    while (r.size >= 5 && this.console) {
      const type = r.buf[r.start]!;
      const len = readInt32(r.buf, r.start + 1);
      if (len < 4 || len > 1 << 20) return this.fatal(Errors.invalidMessageLength());
      if (r.size < len + 1) return;
      if (type === Fe.Terminate) return this.close();
      if (type !== Fe.Query) {
        r.consume(len + 1);
        if (type === Fe.Sync) {
          this.out.write(Errors.consoleSimpleOnly());
          this.out.write(ReadyIdle);
        }
        continue;
      }
      const sql = new TextDecoder().decode(r.buf.subarray(r.start + 5, r.start + len));
      r.consume(len + 1);
      this.consoleBusy = true;
      void this.console.execute(sql).then((reply) => {
        this.consoleBusy = false;
        if (this.closed) return;
        this.out.write(reply);
        this.consoleData();
      });
      return;
    }
  }

  private authChannel() {
    return {
      send: (b: Uint8Array) => this.out.write(b),
      receive: () =>
        new Promise<Uint8Array | null>((resolve) => {
          const next = this.authQueue.shift();
          if (next !== undefined) resolve(next);
          else if (this.closed) resolve(null);
          else this.authWaiter = resolve;
        }),
    };
  }

  /** Frame the client's authentication replies ('p' messages) during login. */
  private authData(): void {
    const r = this.recv;
    while (r.size >= 5) {
      const type = r.buf[r.start]!;
      const len = readInt32(r.buf, r.start + 1);
      if (type !== Fe.Password) return this.fatal(Errors.protocolViolation(`expected password response, got message type ${type}`));
      if (len < 4 || len > MAX_AUTH_MESSAGE) return this.fatal(Errors.invalidMessageLength());
      if (r.size < len + 1) return;
      const body = r.buf.slice(r.start + 5, r.start + 1 + len);
      r.consume(len + 1);
      if (this.authWaiter) {
        const w = this.authWaiter;
        this.authWaiter = null;
        w(body);
      } else this.authQueue.push(body);
    }
  }

  // ---- cancel ---------------------------------------------------------------------------

  private handleCancel(pid: number, secret: Uint8Array): void {
    const target = this.ctx.cancelTargets.get(pid) as ClientSession | undefined;
    if (target && target.cancelKeyMatches(secret)) target.forwardCancel();
    this.close();
  }

  cancelKeyMatches(secret: Uint8Array): boolean {
    return constantTimeEqual(secret, this.cancelSecret);
  }

  /** Send a CancelRequest for this client's running query to its server, on a fresh connection. */
  forwardCancel(): void {
    const s = this.server;
    if (s === null || s.owed === 0) return;
    // A COMMIT waiting for a synchronous standby must not be cancelled: its changes would show without being replicated (HA.md).
    if (this.tap !== null && this.tap.commitInFlight()) {
      log.info("cancel request not forwarded: a COMMIT is in flight", { pid: this.pid });
      return;
    }
    cancelServer(s);
  }

  // ---- forwarding -----------------------------------------------------------------------

  processBuffered(): void {
    const r = this.recv;
    if (r.size === 0 || this.current === ClientState.Recovering) return;
    this.process(r.buf, r.start, r.end, true);
  }

  /** Forward the complete messages in b[start, end); keep what cannot go yet in recv. */
  process(b: Uint8Array, start: number, end: number, owned: boolean): void {
    if (this.inLoop) {
      if (!owned) this.recv.push(b.subarray(start, end));
      return;
    }
    this.inLoop = true;
    let consumed: number;
    // Answers made here (a module's reply and its ReadyForQuery, errors) leave in one socket write.
    this.out.cork();
    try {
      consumed = this.forwarder.forward(b, start, end);
    } finally {
      this.inLoop = false;
      this.out.uncork();
    }
    if (this.state === ClientState.Closed) return;
    if (owned) this.recv.consume(consumed - start);
    else if (consumed < end) this.recv.push(b.subarray(consumed, end));
    if (this.releaseDeferred) {
      this.releaseDeferred = false;
      this.maybeRelease();
    }
  }

  /**
   * Get a server for the next request, on the node the router picks (`write`: only the primary
   * will do); false when the client must wait.
   */
  acquireServer(write: boolean): boolean {
    if (this.server !== null) return true;
    if (this.current !== ClientState.Idle) return false; // waiting (or recovering) already
    const ctx = this.ctx;
    const h = this.forwarder.routeHint;
    const hinted = h !== null && (ctx.splitting || h.target !== "default" || h.nodes !== undefined);
    const toPrimary = write || (!ctx.splitting && !hinted) || this.primaryOnce;
    if (toPrimary && ctx.buffer.active) {
      // The primary is changing: wait for the new one (or a refusal) without a server. Held before
      // admit(): a full buffer refuses at once, and refused() takes the session back to idle.
      this.wait(ClientState.Held);
      ctx.buffer.admit(this);
      return false;
    }
    this.primaryOnce = false;
    const fw = this.forwarder;
    const hint = fw.routeHint;
    // The primary of now (it moves with failover), not the one of login time.
    let node = ctx.cluster.primary();
    if (!toPrimary) {
      const rc = ctx.routeContext();
      node = route({ write, hint }, rc);
      if (node === rc.primary && hint?.minLsn && hint.waitMs && !fw.waitedForReplay && rc.standbys.length > 0) {
        // No standby has replayed this session's writes yet: give them up to waitMs, then route again.
        fw.waitedForReplay = true;
        this.wait(ClientState.WaitingReplay);
        void waitForReplay(ctx, hint.minLsn, hint.waitMs).then(() => {
          if (!this.closed && this.leave(ClientState.WaitingReplay, ClientState.Idle)) this.processBuffered();
        });
        return false;
      }
    }
    const pool = ctx.nodePool(this.group!, node);
    const s = pool.acquire(this);
    if (s === null) {
      this.enter(ClientState.WaitingPool);
      this.waitPool = pool;
      return false;
    }
    this.enter(ClientState.Leased);
    this.attach(s);
    return true;
  }

  /** This session as feature modules see it (made on first use). */
  moduleView(): SessionCtx {
    return (this.view ??= {
      id: this.pid,
      user: this.user,
      database: this.database,
      applicationName: this.appName,
      ...(this.traceparent !== undefined ? { traceparent: this.traceparent } : {}),
      params: this.params,
      ...(this.group !== null && this.group.tenant !== "" ? { tenant: this.group.tenant } : {}),
      remoteAddress: this.sock.remoteAddress ?? "",
      tls: this.tlsDone,
      startedAt: Date.now() - (clock.now - this.connectedAt),
    });
  }

  private view: SessionCtx | null = null;
  /** application_name from the startup packet (kept only when modules look at sessions). */
  private appName = "";
  /** Trace context from the startup packet (kept only when modules look at sessions). */
  private traceparent: string | undefined = undefined;

  /** The next request goes to the primary whatever it is (a standby just failed it). */
  private primaryOnce = false;

  /** An LSN read pipelined after a write came back: outside a transaction it is a commit position. */
  lsnObserved(_s: ServerConnection, lsn: string, status: number): void {
    if (status === TxStatus.Idle && this.ctx.commits !== null) this.ctx.commits.record(this.pid, Number(lsn));
  }

  /** The switchover buffer let the request go on: route it to the primary of now. */
  released(): void {
    if (!this.closed && this.leave(ClientState.Held, ClientState.Idle)) this.processBuffered();
  }

  /** The switchover buffer gave up on the request: it gets an error, the connection stays. */
  refused(code: string, message: string): void {
    if (this.closed || !this.leave(ClientState.Held, ClientState.Idle)) return;
    this.forwarder.refuseRequest(errorResponse({ severity: "ERROR", code, message }));
    // Refused at once (a full buffer) from inside the forwarding loop: answer once that loop has returned.
    if (this.inLoop) {
      queueMicrotask(() => {
        if (!this.closed) this.processBuffered();
      });
    } else this.processBuffered();
  }
  /** The pool this client waits in (state WaitingPool). */
  private waitPool: Pool | null = null;
  /** The client's (database, user) pools across nodes. */
  group: PoolGroup | null = null;

  private attach(s: ServerConnection): void {
    this.server = s;
    s.lessee = this;
    // Still backed up from an earlier result: this server waits too until the client has read (resumeProducer).
    if (this.out.producerPaused) s.pauseReads();
    s.tally = this.ctx.hooks !== null && this.ctx.hooks.onResult.length > 0 ? (s.tally ?? new ResultTally()) : null;
    const key = this.sessionState!.key;
    if (s.stateKey !== key) {
      this.forwarder.injectQuery(s, this.sessionState!.applySql(s.stateKey === ""));
      s.stateKey = key;
    }
  }

  serverLeased(s: ServerConnection): void {
    this.waitPool = null;
    if (this.closed || !this.leave(ClientState.WaitingPool, ClientState.Leased)) {
      (s.owner as Pool).release(s);
      return;
    }
    this.attach(s);
    this.resumeReading();
    this.processBuffered();
  }

  /** The node this client waited for went down or was drained: route the request again. */
  reroute(): void {
    this.waitPool = null;
    if (!this.closed && this.leave(ClientState.WaitingPool, ClientState.Idle)) this.processBuffered();
  }

  /** No server for a logged-in client (wait_timeout, server gone): it may hear why. */
  serverFailed(e: LoginError): void {
    const fromStandby = this.waitPool !== null && this.waitPool.node !== this.ctx.cluster.primary().name;
    this.waitPool = null;
    if (this.closed || !this.leave(ClientState.WaitingPool, ClientState.Idle)) return;
    if (fromStandby) {
      // A standby that cannot serve this client (not replayed its database yet, down): the primary can.
      log.warn("standby could not serve a read; sending it to the primary", { code: e.code, error: e.message });
      this.primaryOnce = true;
      this.processBuffered();
      return;
    }
    if (e.code.startsWith("28") || e.code === "3D000") {
      const f = loginFailure(this.ctx, this.user, e.code, e.message);
      this.fatal(f.ok ? Errors.serverLost() : f.reply);
    } else this.fatal(errorResponse({ severity: "FATAL", code: e.code.startsWith("08") ? e.code : SqlState.ConnectionFailure, message: e.message }));
  }

  serverReady(s: ServerConnection, status: number): void {
    this.txStatus = status;
    this.forwarder.onReady(s, status);
    if (s.owed === 0) this.requestStartedAt = 0;
    if (this.mode === "statement" && status !== TxStatus.Idle && s.owed === 0) {
      this.fatal(Errors.statementModeTransaction());
      return;
    }
    this.maybeRelease();
  }

  /** Give the server back when the client is between transactions with nothing in flight. */
  maybeRelease(): void {
    const s = this.server;
    if (s === null || this.pinned || s.owed !== 0 || s.txStatus !== TxStatus.Idle || this.forwarder.midRequest || this.current !== ClientState.Leased) return;
    if (this.inLoop) {
      this.releaseDeferred = true;
      return;
    }
    this.enter(ClientState.Idle);
    this.server = null;
    this.forwarder.release(s);
    if (this.recv.size > 0) this.processBuffered();
    else this.recv.shrinkIfIdle();
  }

  serverLost(s: ServerConnection, reason: string): void {
    this.server = null;
    log.debug("server lost", { pid: this.pid, reason });
    // ha-tr: the tap moves the session to the primary of now, settling or replaying what was open.
    if (this.tap !== null && this.tap.onServerLost(s, reason)) return;
    this.fatal(Errors.serverLost());
  }

  outlivesServer(): boolean {
    return this.tap !== null && this.loggedIn;
  }

  /** Logged in and forwarding (TappedSession). */
  get forwarding(): boolean {
    return this.loggedIn;
  }

  /** A recovery moves the session to a new server (it may keep the one it has meanwhile): requests wait until endRecovery(). */
  beginRecovery(): void {
    this.wait(ClientState.Recovering);
  }

  /** A server leased for this session during a recovery: attach it (SET state follows). */
  adopt(s: ServerConnection): void {
    this.attach(s);
    this.resumeReading();
  }

  /** Forget the attached server without returning it (the caller closes or releases it). */
  detach(): void {
    if (this.server !== null) this.server.lessee = null;
    this.server = null;
  }

  /** The recovery is over: requests that waited go on. */
  endRecovery(): void {
    if (this.closed || !this.leave(ClientState.Recovering, this.server !== null ? ClientState.Leased : ClientState.Idle)) return;
    this.maybeRelease();
    this.processBuffered();
  }

  /** An injected read came back (ha-tr): the transaction id before a COMMIT, or the advisory locks held. */
  valueRead(_s: ServerConnection, kind: Pending, value: string | null, status: number): void {
    this.tap?.valueRead(kind, value, status);
  }

  clientError(b: Uint8Array, from: number, to: number): Uint8Array | null {
    return this.mode === "session" ? null : this.forwarder.clientError(b, from, to);
  }

  extendedFailed(_s: ServerConnection, failed: number): void {
    this.forwarder.undoFrom(failed);
  }

  /** An injected statement finished (session state applied, or the startup settings after DISCARD ALL). */
  injectedReady(): void {
    this.maybeRelease();
  }

  injectedFailed(s: ServerConnection, message: string): void {
    log.warn("session state could not be applied on server", { server: s.id, message });
    s.stateKey = "\u0000invalid";
  }

  // ---- backpressure ----------------------------------------------------------------------

  private readingPaused = false;
  pauseReading(): void {
    if (!this.readingPaused) {
      this.readingPaused = true;
      this.sock.pause();
    }
  }

  resumeReading(): void {
    if (this.readingPaused) {
      this.readingPaused = false;
      this.sock.resume();
    }
  }

  /** The client's outbox is full: stop reading from its server. */
  pauseProducer(): void {
    this.server?.pauseReads();
  }

  resumeProducer(): void {
    this.server?.resumeReads();
  }

  // ---- ending ---------------------------------------------------------------------------

  /** Send a FATAL/ERROR and close. */
  fatal(reply: Uint8Array): void {
    if (this.closed) return;
    if (this.current <= ClientState.Auth) {
      if (this.current === ClientState.Auth) logRefused(this.facts(), reply);
    } else this.endReason = errorFields(reply, 5, reply.length).message;
    this.out.write(reply);
    this.close();
  }

  /** host:port of the client (read at connect: a closed socket no longer knows it). */
  private readonly peer: string;

  /** Why a logged-in session ended, for the disconnect line. */
  private endReason = "client closed the connection";

  /** Who this client is, for connection log lines. */
  private facts(): ConnectionFacts {
    return { ctx: this.ctx, user: this.user, database: this.database, client: this.peer, tls: this.tlsDone };
  }

  close(): void {
    if (this.closed) return;
    this.out.end();
    this.teardown();
  }

  /** Free everything: the server goes back clean (rolled back, reset) or is closed. */
  private teardown(): void {
    const was = this.current;
    if (was === ClientState.Closed) return;
    if (this.loggedIn) logDisconnect(this.facts(), this.pid, (clock.now - this.connectedAt) / 1000, this.endReason);
    this.enter(ClientState.Closed);
    if (this.authWaiter) {
      const w = this.authWaiter;
      this.authWaiter = null;
      w(null);
    }
    const ctx = this.ctx;
    clientsOf(ctx).delete(this);
    this.tap?.close();
    if (ctx.hooks !== null && this.counted) for (const hook of ctx.hooks.onClose) hook(this.moduleView());
    ctx.commits?.forget(this.pid);
    if (this.pid !== 0) ctx.cancelTargets.delete(this.pid);
    if (this.counted) {
      this.counted = false;
      ctx.clientCount--;
      this.pool!.clients--;
      ctx.adjust(ctx.perDatabase, this.database, -1);
      ctx.adjust(ctx.perUser, this.user, -1);
    }
    if (was === ClientState.Held) ctx.buffer.forget(this);
    else if (was === ClientState.WaitingPool) this.waitPool?.forget(this);
    const s = this.server;
    this.server = null;
    if (s !== null) this.forwarder.returnServer(s, this.pinned || this.mode === "session");
  }
}

export const clientHandlers = {
  handshake(sock: Socket<ClientSession>, _ok: boolean, error: Error | null) {
    sock.data.onHandshake(sock, error);
  },
  data(sock: Socket<ClientSession>, chunk: Uint8Array) {
    sock.data.onData(sock, chunk);
  },
  drain(sock: Socket<ClientSession>) {
    if (sock === sock.data.sock) sock.data.out.flush();
  },
  close(sock: Socket<ClientSession>) {
    sock.data.onClose(sock);
  },
  error(sock: Socket<ClientSession>) {
    sock.data.onClose(sock);
  },
  end(sock: Socket<ClientSession>) {
    sock.data.onClose(sock);
  },
};

