// One PostgreSQL server connection: login, then relaying replies to the leasing client in order.

import type { Socket } from "bun";
import { Be, TxStatus } from "../protocol/codes.ts";
import { ReceiveBuffer, decodeAscii, readInt32 } from "../protocol/framing.ts";
import { CloseComplete, ParseComplete, SslRequestPacket, TerminateMessage, commandComplete, readyForQuery, startupMessage } from "../protocol/messages.ts";
import type { ServerSslMode } from "../config/types.ts";
import { Outbox, type BackpressureTarget } from "../util/outbox.ts";
import { clock } from "../util/clock.ts";
import { edgeAllowed, type EdgeTable } from "../util/state-bugs.ts";
import { LATENCY_SAMPLE_EVERY, LatencyHistogram } from "../util/latency.ts";
import { errorFields } from "../protocol/errors.ts";
import { commandTag, type ResultTally } from "./result-tally.ts";
import { LoginError, LoginExchange, type ServerCredentials } from "./login.ts";
import { Pending, ResponseQueue } from "./response-queue.ts";

/** Where replies for a client go (its outbox, or nowhere while the proxy resets a server). */
export interface Sink {
  /** Write data[from, to) (default: all of it). */
  write(data: Uint8Array, from?: number, to?: number): boolean;
}

/** The client side of a lease, as the server connection sees it. */
export interface Lessee {
  /** Where replies for the client go. */
  readonly replies: Sink;
  /** A ReadyForQuery meant for the client was written; `status` is its transaction byte. */
  serverReady(server: ServerConnection, status: number): void;
  /** The server connection broke while leased. */
  serverLost(server: ServerConnection, reason: string): void;
  /** The ReadyForQuery of an injected statement arrived (and was not forwarded). */
  injectedReady(server: ServerConnection, status: number): void;
  /** An extended-protocol request failed at entry number `failed`: it and the entries up to Sync were skipped. */
  extendedFailed(server: ServerConnection, failed: number): void;
  /** Client-facing form of an error that names a server-side statement (null: forward it unchanged). */
  clientError?(b: Uint8Array, from: number, to: number): Uint8Array | null;
  /** An injected statement (session state, reset) failed. */
  injectedFailed(server: ServerConnection, message: string): void;
  /** The WAL position read after a request (read-your-writes), with the transaction status it was read in. */
  lsnObserved?(server: ServerConnection, lsn: string, status: number): void;
  /** True when the client survives this server's end (its session moves to another): a FATAL is not relayed. */
  outlivesServer?(): boolean;
  /**
   * The one value of an injected read (Pending.InjectedXid: the transaction id before a COMMIT;
   * InjectedLocks: advisory locks): "" when NULL, null when the read failed; `status` the
   * transaction status it was read in.
   */
  valueRead?(server: ServerConnection, kind: Pending, value: string | null, status: number): void;
  pauseReading(): void;
  resumeReading(): void;
}

export interface ServerEndpoint {
  host: string;
  port: number;
  name: string;
  /** libpq-style sslmode towards this server, and the CA (PEM) for verify-ca / verify-full. */
  sslmode?: ServerSslMode;
  ca?: string;
}

/** Where a server connection is; changed only by ServerConnection.enter() (the pool asks through lease() and park()). */
export const enum ServerState {
  Connecting,
  /** SSLRequest sent, waiting for the one-byte answer. */
  SslWait,
  Login,
  /** Logged in, owned by no client (in its pool's idle stack, or a pool-less connection such as a health probe). */
  Idle,
  /** Leased to a client by its pool. */
  Active,
  Closed,
}

/** State names for logs, in enum order. */
export const SERVER_STATE_NAMES: readonly string[] = ["connecting", "ssl_wait", "login", "idle", "active", "closed"];

/** The server state machine: SERVER_EDGES[from] has bit (1 << to) set for each allowed transition. */
const SERVER_EDGES: readonly number[] = [
  /* Connecting */ (1 << ServerState.SslWait) | (1 << ServerState.Login) | (1 << ServerState.Closed),
  /* SslWait    */ (1 << ServerState.Login) | (1 << ServerState.Closed),
  /* Login      */ (1 << ServerState.Idle) | (1 << ServerState.Closed),
  /* Idle       */ (1 << ServerState.Active) | (1 << ServerState.Closed),
  /* Active     */ (1 << ServerState.Idle) | (1 << ServerState.Closed),
  /* Closed     */ 0,
];
const SERVER_MACHINE: EdgeTable = { kind: "server", edges: SERVER_EDGES, names: SERVER_STATE_NAMES };

let nextServerId = 1;

/** Traffic counters a pool keeps for its connections. */
export interface ConnectionStats {
  /** Requests answered (ReadyForQuery relayed to a client). */
  queryCount: number;
  /** Bytes clients sent to servers, and servers sent back. */
  bytesIn: number;
  bytesOut: number;
  /** Request round trips through this pool's servers, sampled (see LATENCY_SAMPLE_EVERY). */
  latency: LatencyHistogram;
  /** ErrorResponses relayed to clients, by SQLSTATE. */
  errors: Map<string, number>;
  /** Microseconds servers spent on client requests (first message to ReadyForQuery), and in transactions (first request to ReadyForQuery idle). */
  queryTimeUs: number;
  xactTimeUs: number;
  /** Parse messages clients sent, Parse messages sent to servers (the proxy's own included), Bind messages clients sent. */
  clientParseCount: number;
  serverParseCount: number;
  bindCount: number;
}

/** Fresh zeroed counters. */
export function connectionStats(): ConnectionStats {
  return { queryCount: 0, bytesIn: 0, bytesOut: 0, latency: new LatencyHistogram(), errors: new Map(), queryTimeUs: 0, xactTimeUs: 0, clientParseCount: 0, serverParseCount: 0, bindCount: 0 };
}

/**
 * Distinct SQLSTATEs counted per pool: clients choose codes freely (RAISE SQLSTATE), so past this
 * many the rest are counted as "other" and metric series stay bounded.
 */
export const MAX_ERROR_CODES = 64;

/** Count `n` errors of `code` (as "other" once MAX_ERROR_CODES distinct codes are counted). */
export function countError(errors: Map<string, number>, code: string, n: number): void {
  const key = errors.has(code) || errors.size < MAX_ERROR_CODES ? code : "other";
  errors.set(key, (errors.get(key) ?? 0) + n);
}

const NO_STATS: ConnectionStats = connectionStats();

/** Hands closed or failed connections back to whoever owns them (the pool). */
export interface ServerOwner {
  serverClosed(s: ServerConnection): void;
  /** The server side ended the connection (not the proxy): a failure signal for health checks. */
  serverDropped?(s: ServerConnection, reason: string): void;
  /** A sampled request took `ms` from first message to ReadyForQuery. */
  requestTimed?(ms: number): void;
}

/** Column name of the transaction-id read appended to a client Query (Pending.QueryXid): its replies are the proxy's. */
export const XID_COLUMN = "hp_xid_tail_9c1";
const XID_COLUMN_BYTES = new TextEncoder().encode(`${XID_COLUMN}\0`);

/** Is the RowDescription at b[pos] the one of the appended transaction-id read (one column, that name)? */
function isXidDescription(b: Uint8Array, pos: number, msgEnd: number): boolean {
  if (b[pos + 5] !== 0 || b[pos + 6] !== 1 || pos + 7 + XID_COLUMN_BYTES.length > msgEnd) return false;
  for (let i = 0; i < XID_COLUMN_BYTES.length; i++) if (b[pos + 7 + i] !== XID_COLUMN_BYTES[i]) return false;
  return true;
}

export class ServerConnection implements BackpressureTarget {
  readonly id = nextServerId++;
  private current = ServerState.Connecting;

  get state(): ServerState {
    return this.current;
  }

  /**
   * The one transition function. An edge the machine does not have is a bug: logged, counted
   * (heliosproxy_state_transition_bugs_total) and refused, so the connection keeps its state.
   */
  private enter(to: ServerState): boolean {
    if (!edgeAllowed(SERVER_MACHINE, this.id, this.current, to)) return false;
    this.current = to;
    return true;
  }

  /** Its pool hands this idle server to a client; false (a refused bug) when it is not idle. */
  lease(): boolean {
    return this.enter(ServerState.Active);
  }

  /** Given back by its client to its pool; false (a refused bug) when it was not leased. */
  park(): boolean {
    return this.enter(ServerState.Idle);
  }

  sock: Socket<ServerConnection> | null = null;
  readonly recv = new ReceiveBuffer(8192);
  readonly out: Outbox = new Outbox(this);
  readonly queue = new ResponseQueue();
  /** ReadyForQuery messages still owed (Sync, Query, injected and fake commands). */
  owed = 0;
  lessee: Lessee | null = null;
  /** Global prepared-statement names known to this server, least recently used first. */
  readonly prepared = new Map<string, true>();
  /** Session-state key (GUCs) last applied to this server for a client. */
  stateKey = "";
  params = new Map<string, string>();
  pid = 0;
  secret: Uint8Array = new Uint8Array(4);
  readonly createdAt = clock.now;
  lastUsedAt = clock.now;
  /** Transaction status from the last ReadyForQuery. */
  txStatus = TxStatus.Idle;
  /** The value of an injected LSN read, until its ReadyForQuery. */
  private injectedValue = "";
  /** The injected transaction-id read failed (inside a failed transaction). */
  private injectedFailed = false;
  /**
   * Client-bound bytes held back while replies the proxy owes itself are cut out of a run: the
   * pieces around them leave in one write (one syscall) instead of several.
   */
  private gather = new Uint8Array(0);
  private gathered = 0;
  /** The replies of a transaction-id read appended to a client Query are going by (swallowed). */
  private xidTail = false;
  /** That read's value came ("" = NULL). */
  private xidTailValue: string | null = null;
  /** Status of a client ReadyForQuery held back until the LSN read behind it answers (-1: none). */
  private heldReady = -1;
  /** Rows, tag and error of the request in flight, for feature modules' result hooks (null when none listens). */
  tally: ResultTally | null = null;
  /** Session state (temp tables, LISTEN, what a function or DO block did...) that requires a full reset before reuse. */
  dirty = false;
  /**
   * Something the proxy could not follow may have deallocated or left statements (DEALLOCATE in a
   * multi-statement query, a DO block): `prepared` is not to be trusted until the next reset.
   */
  preparedUncertain = false;
  /** Counters of the pool this connection belongs to (set by the pool). */
  stats: ConnectionStats = NO_STATS;
  /** The pool generation this connection was made in (see Pool.recycle). */
  generation = 0;
  /** Latency sampling: requests since the last sample, and when the sampled one started (0: none). */
  private sampleTick = 0;
  private sampledAt = 0;
  /** When the client request in progress started, and the transaction it is part of (0: none); for query_time/xact_time. */
  private requestSince = 0;
  private xactSince = 0;
  /** ErrorResponses relayed so far (lets a client tell whether its SETs succeeded). */
  errors = 0;
  /** Bytes of an oversized DataRow/CopyData still streaming straight to the client. */
  private passthrough = 0;
  private login: LoginExchange | null = null;
  private loginBusy = false;
  private loginResolve: ((s: ServerConnection) => void) | null = null;
  private loginReject: ((e: LoginError) => void) | null = null;
  private loginTimer: ReturnType<typeof setTimeout> | null = null;
  private startupParams: Record<string, string> = {};
  closeReason = "";

  constructor(
    readonly endpoint: ServerEndpoint,
    readonly owner: ServerOwner,
  ) {}

  /** Connect and log in; resolves once the server is ready for queries. */
  open(creds: ServerCredentials, startupParams: Record<string, string>, timeoutMs: number): Promise<ServerConnection> {
    return new Promise((resolve, reject) => {
      this.loginResolve = resolve;
      this.loginReject = reject;
      this.login = new LoginExchange(creds, (b) => this.out.write(b));
      this.loginTimer = setTimeout(
        () => this.failLogin(new LoginError(`timeout connecting to ${this.endpoint.host}:${this.endpoint.port}`, "08001", false, true)),
        timeoutMs,
      );
      this.startupParams = { user: creds.user, database: creds.database, ...startupParams };
      Bun.connect<ServerConnection>({
        hostname: this.endpoint.host,
        port: this.endpoint.port,
        data: this,
        socket: serverHandlers,
      }).then(
        (sock) => {
          if (this.state === ServerState.Closed) {
            sock.end();
            return;
          }
          this.sock = sock;
          this.out.attach(sock);
          sock.setNoDelay(true);
          const mode = this.endpoint.sslmode ?? "disable";
          if (mode === "disable") this.sendStartup();
          else {
            this.enter(ServerState.SslWait);
            this.out.write(SslRequestPacket);
          }
        },
        (err: Error) => this.failLogin(new LoginError(`could not connect to ${this.endpoint.host}:${this.endpoint.port}: ${err.message}`, "08001")),
      );
    });
  }

  private sendStartup(): void {
    this.enter(ServerState.Login);
    this.out.write(startupMessage(this.startupParams));
  }

  /** The server's answer to SSLRequest: 'S' (upgrade), 'N' (plaintext if the mode allows). */
  private sslAnswer(chunk: Uint8Array): void {
    const mode = this.endpoint.sslmode ?? "disable";
    const answer = chunk[0];
    if (answer === 83 && chunk.length === 1) {
      const [, tls] = this.sock!.upgradeTLS<ServerConnection>({
        data: this,
        tls: {
          serverName: this.endpoint.host,
          rejectUnauthorized: false,
          ...(this.endpoint.ca ? { ca: this.endpoint.ca } : {}),
        },
        socket: { ...serverHandlers, handshake: tlsHandshake },
      });
      this.sock = tls;
      this.out.attach(tls);
      this.tlsUpgraded = true;
      return;
    }
    if (answer === 83) {
      // Bytes after 'S' arrived unencrypted: they could be injected (CVE-2021-23222).
      this.failLogin(new LoginError("server sent unencrypted data after SSL response", "08P01"));
    } else if (answer === 78 && (mode === "allow" || mode === "prefer") && chunk.length === 1) {
      this.sendStartup();
    } else {
      this.failLogin(
        answer === 78
          ? new LoginError("server does not support SSL, but SSL was required", "08001", false, true)
          : new LoginError("invalid response to SSL negotiation", "08P01"),
      );
    }
  }

  /** TLS established: check the certificate as the sslmode says, then log in. */
  onHandshake(sock: Socket<ServerConnection>, error: Error | null): void {
    if (sock !== this.sock || this.state !== ServerState.SslWait) return;
    const mode = this.endpoint.sslmode ?? "disable";
    const code = (error as { code?: string } | null)?.code ?? (error ? String(error) : "");
    const hostOnly = code === "ERR_TLS_CERT_ALTNAME_INVALID";
    if (error && (mode === "verify-full" || (mode === "verify-ca" && !hostOnly))) {
      this.failLogin(new LoginError(`server certificate verification failed (${code})`, "08001", false, true));
      return;
    }
    this.sendStartup();
  }

  /** Settle the login with `e` (once; nothing when it is settled already) and stop its timer. */
  private rejectLogin(e: LoginError): void {
    const r = this.loginReject;
    if (r === null) return;
    this.loginReject = this.loginResolve = null;
    if (this.loginTimer) clearTimeout(this.loginTimer);
    r(e);
  }

  private failLogin(e: LoginError): void {
    this.rejectLogin(e);
    this.close(e.message);
  }

  private async runLogin(): Promise<void> {
    if (this.loginBusy) return;
    this.loginBusy = true;
    try {
      const r = this.recv;
      while (this.login && r.size >= 5) {
        const b = r.buf;
        const len = readInt32(b, r.start + 1);
        if (len < 4 || len > 1 << 20) throw new LoginError("invalid message length from server during login", "08P01");
        if (r.size < len + 1) break;
        const type = b[r.start]!;
        const body = r.start + 5;
        const end = r.start + 1 + len;
        const done = await this.login.handle(type, r.buf, body, end);
        // Closed while the step ran (a SCRAM proof is computed asynchronously): close() settled the login.
        if (this.current === ServerState.Closed) return;
        r.consume(len + 1);
        if (done) {
          this.params = this.login.params;
          this.pid = this.login.pid;
          this.secret = this.login.secret;
          this.login = null;
          this.enter(ServerState.Idle);
          if (this.loginTimer) clearTimeout(this.loginTimer);
          const resolve = this.loginResolve!;
          this.loginResolve = this.loginReject = null;
          resolve(this);
          if (r.size > 0) this.relay(r.buf, r.start, r.end, true);
        }
      }
    } catch (e) {
      this.failLogin(e instanceof LoginError ? e : new LoginError(String(e), "08006"));
    } finally {
      this.loginBusy = false;
    }
  }

  /** Set once the socket was upgraded to TLS (the handshake decides what follows). */
  private tlsUpgraded = false;

  /** Method the server used to authenticate us (valid after login). */
  get loginMethod(): string {
    return this.login?.method ?? "";
  }

  onData(chunk: Uint8Array): void {
    if (this.state === ServerState.SslWait) {
      if (!this.tlsUpgraded) this.sslAnswer(chunk);
      return;
    }
    if (this.state === ServerState.Login) {
      this.recv.push(chunk);
      void this.runLogin();
      return;
    }
    if (this.state === ServerState.Closed) return;
    this.stats.bytesOut += chunk.length;
    const r = this.recv;
    if (this.passthrough > 0) {
      const n = Math.min(this.passthrough, chunk.length);
      this.passthrough -= n;
      this.lessee?.replies.write(chunk, 0, n);
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    if (r.size === 0) {
      this.relay(chunk, 0, chunk.length, false);
    } else {
      r.push(chunk);
      this.relay(r.buf, r.start, r.end, true);
    }
  }

  /**
   * Frame backend messages in b[start, end) and pass runs of whole messages to the lessee in one
   * write each, dropping the replies the proxy owes itself and inserting the ones it answers.
   * `owned`: the bytes live in this.recv (consume them) rather than in a transient chunk.
   */
  private relay(b: Uint8Array, start: number, end: number, owned: boolean): void {
    let pos = start;
    let run = start;
    const q = this.queue;
    while (end - pos >= 5) {
      const type = b[pos]!;
      const len = readInt32(b, pos + 1);
      if (len < 4) {
        this.protocolFailure("invalid message length from server");
        return;
      }
      const msgEnd = pos + 1 + len;
      const lessee = this.lessee;
      if (msgEnd > end) {
        // Stream an oversized row or copy chunk instead of buffering all of it.
        if ((type === Be.DataRow || type === Be.CopyData) && len > 65536 && lessee && q.peek() !== Pending.InjectedQuery) {
          this.tally?.streamed(type === Be.DataRow);
          this.emit(lessee, b, run, end);
          this.passthrough = msgEnd - end;
          if (owned) this.recv.clear();
          return;
        }
        break;
      }
      if (lessee === null) {
        // Nobody is listening: async notices and parameter reports are dropped; anything else ends us.
        if (type !== Be.NoticeResponse && type !== Be.ParameterStatus && type !== Be.NotificationResponse) {
          this.close(type === Be.ErrorResponse ? "server sent an error while idle" : "unexpected message from idle server");
          return;
        }
        pos = run = msgEnd;
        continue;
      }
      const head = q.peek();
      const valueRead = head === Pending.InjectedXid || head === Pending.InjectedLocks;
      let drop = head === Pending.InjectedQuery || head === Pending.InjectedLsn || valueRead || head === Pending.InjectedXidExec;
      let popped = false;
      if (head === Pending.QueryXid && (this.xidTail || (type === Be.RowDescription && isXidDescription(b, pos, msgEnd)))) {
        // The proxy's own read at the end of the client's Query: RowDescription, DataRow, CommandComplete.
        drop = true;
        this.xidTail = type !== Be.CommandComplete;
        if (type === Be.DataRow) this.xidTailValue = readInt32(b, pos + 7) > 0 ? decodeAscii(b, pos + 11, pos + 11 + readInt32(b, pos + 7)) : "";
      }
      if ((head === Pending.InjectedLsn || valueRead || head === Pending.InjectedXidExec) && type === Be.DataRow && b[pos + 6] === 1) {
        // One column: int16 count, int32 length, text.
        const n = readInt32(b, pos + 7);
        if (n > 0 && (n < 32 || (valueRead && n <= 1 << 16))) this.injectedValue = decodeAscii(b, pos + 11, pos + 11 + n);
      }
      const t = this.tally;
      if (t !== null && !drop) {
        if (type === Be.DataRow) t.rows++;
        else if (type === Be.CommandComplete) t.tag = commandTag(b, pos + 5, msgEnd - 1);
        if (t.capturing && type !== Be.ReadyForQuery) t.keep(b, pos, msgEnd);
      }
      switch (type) {
        case Be.ReadyForQuery: {
          const status = b[pos + 5]!;
          this.txStatus = status;
          if (head !== 0) q.shift();
          this.owed--;
          // A commit whose WAL position is being read (read-your-writes): the client hears it once the position is known.
          const holdReady = !drop && q.peek() === Pending.InjectedLsn;
          if (drop || holdReady) run = this.cut(lessee, b, run, pos, msgEnd);
          else {
            this.emit(lessee, b, run, msgEnd);
            run = msgEnd;
          }
          if (holdReady) this.heldReady = status;
          else run = this.fakes(lessee, b, run, msgEnd);
          pos = msgEnd;
          if (holdReady) {
            this.stats.queryCount++;
            if (this.owed === 0) this.requestEnded(status, performance.now());
            continue;
          }
          // The proxy's own statement ended: what was held back goes before anyone reacts.
          if (drop) this.flushGathered(lessee);
          if (head === Pending.QueryXid) {
            lessee.valueRead?.(this, Pending.InjectedXid, this.xidTailValue, status);
            this.xidTailValue = null;
            this.xidTail = false;
          }
          if (!drop) {
            this.stats.queryCount++;
            if (this.owed === 0) {
              const now = performance.now();
              this.requestEnded(status, now);
              if (this.sampledAt !== 0) {
                const ms = now - this.sampledAt;
                this.stats.latency.observe(ms / 1000);
                this.owner.requestTimed?.(ms);
                this.sampledAt = 0;
              }
            }
            lessee.serverReady(this, status);
          } else if (head === Pending.InjectedLsn) {
            const v = this.injectedValue;
            this.injectedValue = "";
            if (v !== "") lessee.lsnObserved?.(this, v, status);
            const held = this.heldReady;
            this.heldReady = -1;
            if (held >= 0) {
              const ready = readyForQuery(held);
              this.emit(lessee, ready, 0, ready.length);
              run = this.fakes(lessee, b, run, msgEnd);
              lessee.serverReady(this, held);
            } else lessee.injectedReady(this, status);
          } else if (valueRead) {
            const v = this.injectedValue;
            this.injectedValue = "";
            lessee.valueRead?.(this, head, this.injectedFailed ? null : v, status);
            this.injectedFailed = false;
            lessee.injectedReady(this, status);
          } else lessee.injectedReady(this, status);
          if (this.state === ServerState.Closed) return;
          continue;
        }
        case Be.ParseComplete:
          if (head === Pending.Parse || head === Pending.InjectedParse) {
            drop = q.shift() === Pending.InjectedParse;
            popped = true;
          }
          break;
        case Be.BindComplete:
          if (head === Pending.Bind || head === Pending.InjectedBind) {
            drop = q.shift() === Pending.InjectedBind;
            popped = true;
          }
          break;
        case Be.CloseComplete:
          if (head === Pending.Close || head === Pending.InjectedClose) {
            drop = q.shift() === Pending.InjectedClose;
            popped = true;
          }
          break;
        case Be.NoData:
        case Be.RowDescription:
          if (head === Pending.Describe) {
            q.shift();
            popped = true;
          }
          break;
        case Be.CommandComplete:
        case Be.EmptyQueryResponse:
        case Be.PortalSuspended:
          if (head === Pending.Execute) {
            q.shift();
            popped = true;
          } else if (head === Pending.InjectedXidExec) {
            q.shift();
            popped = true;
            const v = this.injectedValue;
            this.injectedValue = "";
            lessee.valueRead?.(this, Pending.InjectedXid, v, this.txStatus);
          }
          break;
        case Be.ErrorResponse:
          // An LSN read that failed (inside a failed transaction) is simply not used.
          if (head === Pending.InjectedLsn) break;
          if (valueRead) {
            this.injectedFailed = true;
            break;
          }
          this.errors++;
          if (drop) lessee.injectedFailed(this, "injected statement failed");
          else {
            const fields = errorFields(b, pos + 5, msgEnd);
            const code = fields.code;
            if ((fields.severity === "FATAL" || fields.severity === "PANIC") && lessee.outlivesServer?.() === true) {
              // The server is going away and the client will be moved to another: it must not hear this.
              run = this.cut(lessee, b, run, pos, msgEnd);
              pos = msgEnd;
              continue;
            }
            countError(this.stats.errors, code, 1);
            if (t !== null && t.errorCode === "") {
              t.errorCode = code;
              t.errorMessage = fields.message;
            }
            if (head !== 0 && head !== Pending.Query && head !== Pending.QueryXid && head !== Pending.Sync) this.skipToSync();
            const renamed = lessee.clientError?.(b, pos, msgEnd) ?? null;
            if (renamed !== null) {
              run = this.cut(lessee, b, run, pos, msgEnd);
              this.emit(lessee, renamed, 0, renamed.length);
            }
          }
          break;
      }
      if (drop) run = this.cut(lessee, b, run, pos, msgEnd);
      if (popped) run = this.fakes(lessee, b, run, msgEnd);
      pos = msgEnd;
    }
    const lessee = this.lessee;
    if (lessee) {
      if (run < pos) this.emit(lessee, b, run, pos);
      else this.flushGathered(lessee);
    }
    if (owned) this.recv.consume(pos - start);
    else if (pos < end) this.recv.push(b.subarray(pos, end));
  }

  /** After an error in the extended protocol the server ignores everything up to Sync: forget those entries. */
  private skipToSync(): void {
    const q = this.queue;
    this.lessee?.extendedFailed(this, q.shifted);
    // Each statement is left as it was before the first skipped message that touched it:
    // a skipped Close means it is still there, a skipped Parse that it never was.
    let touched: Set<string> | null = null;
    for (let k = q.peek(); k !== 0 && k !== Pending.Sync; k = q.peek()) {
      const name = q.peekName();
      const parse = k === Pending.Parse || k === Pending.InjectedParse;
      if ((parse || k === Pending.InjectedClose) && name !== null && !touched?.has(name)) {
        (touched ??= new Set()).add(name);
        if (parse) this.prepared.delete(name);
        else this.prepared.set(name, true);
      } else if (k === Pending.FakeCommand) this.owed--;
      else if (k === Pending.InjectedXidExec) this.lessee?.valueRead?.(this, Pending.InjectedXid, null, this.txStatus);
      q.shift();
    }
  }

  /** Write the run before a dropped message and return the new run start (after it). */
  private cut(_lessee: Lessee, b: Uint8Array, run: number, pos: number, msgEnd: number): number {
    if (run < pos) this.hold(b, run, pos);
    return msgEnd;
  }

  /** Keep b[from, to) for the next write to the client. */
  private hold(b: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (this.gathered + n > this.gather.length) {
      const next = new Uint8Array(Math.max(this.gather.length * 2, this.gathered + n, 1024));
      next.set(this.gather.subarray(0, this.gathered));
      this.gather = next;
    }
    this.gather.set(b.subarray(from, to), this.gathered);
    this.gathered += n;
  }

  /** Write b[from, to) to the client, after anything held back (one write either way). */
  private emit(lessee: Lessee, b: Uint8Array, from: number, to: number): void {
    if (this.gathered === 0) {
      lessee.replies.write(b, from, to);
      return;
    }
    this.hold(b, from, to);
    this.flushGathered(lessee);
  }

  /** Write what was held back. */
  private flushGathered(lessee: Lessee): void {
    if (this.gathered === 0) return;
    const n = this.gathered;
    this.gathered = 0;
    lessee.replies.write(this.gather, 0, n);
    if (this.gather.length > 1 << 16) this.gather = new Uint8Array(0);
  }

  /** After handling the reply ending at msgEnd, answer fake entries now at the head; returns the run start. */
  private fakes(lessee: Lessee, b: Uint8Array, run: number, msgEnd: number): number {
    const k = this.queue.peek();
    if (k !== Pending.FakeParseComplete && k !== Pending.FakeCloseComplete && k !== Pending.FakeCommand) return run;
    if (run < msgEnd) this.emit(lessee, b, run, msgEnd);
    this.drainFakes(lessee);
    return msgEnd;
  }

  /** Answer, in order, the replies the proxy gives itself that are now at the head of the queue. */
  drainFakes(lessee: Lessee): void {
    const q = this.queue;
    for (;;) {
      const k = q.peek();
      this.flushGathered(lessee);
      if (k === Pending.FakeParseComplete) lessee.replies.write(ParseComplete);
      else if (k === Pending.FakeCloseComplete) lessee.replies.write(CloseComplete);
      else if (k === Pending.FakeCommand) {
        const tag = q.peekName() ?? "";
        q.shift();
        this.owed--;
        lessee.replies.write(commandComplete(tag));
        lessee.replies.write(readyForQuery(this.txStatus));
        lessee.serverReady(this, this.txStatus);
        continue;
      } else return;
      q.shift();
    }
  }

  /** The server answered everything owed (ReadyForQuery with `status`): request and, back to idle, transaction time. */
  private requestEnded(status: number, now: number): void {
    if (this.requestSince === 0) return;
    this.stats.queryTimeUs += (now - this.requestSince) * 1000;
    this.requestSince = 0;
    if (status === TxStatus.Idle && this.xactSince !== 0) {
      this.stats.xactTimeUs += (now - this.xactSince) * 1000;
      this.xactSince = 0;
    }
  }

  /** Queue an entry; a fake at the head of an empty queue is answered at once. */
  expect(kind: Pending, name: string | null = null): void {
    this.queue.push(kind, name);
    if (kind === Pending.Parse || kind === Pending.InjectedParse) this.stats.serverParseCount++;
    if (kind === Pending.Sync || kind === Pending.Query || kind === Pending.QueryXid) {
      if (this.owed === 0) {
        // A client request starts on an idle server (and a transaction, when the server was outside one).
        const now = performance.now();
        this.requestSince = now;
        if (this.txStatus === TxStatus.Idle) this.xactSince = now;
        // Time one in LATENCY_SAMPLE_EVERY of them for the latency histogram.
        if (++this.sampleTick >= LATENCY_SAMPLE_EVERY) {
          this.sampleTick = 0;
          this.sampledAt = now;
        }
      }
      this.owed++;
    } else if (kind === Pending.InjectedQuery || kind === Pending.InjectedLsn || kind === Pending.InjectedXid || kind === Pending.InjectedLocks || kind === Pending.FakeCommand) this.owed++;
    if (this.queue.length === 1 && this.lessee && (kind === Pending.FakeParseComplete || kind === Pending.FakeCloseComplete || kind === Pending.FakeCommand)) {
      this.drainFakes(this.lessee);
    }
  }

  private protocolFailure(reason: string): void {
    const l = this.lessee;
    this.close(reason);
    if (l) l.serverLost(this, reason);
  }

  /** The connection is gone (closed by either side); nothing sent on it is answered. */
  get closed(): boolean {
    return this.state === ServerState.Closed;
  }

  // Reads paused by the leasing client's backpressure (its outbox is full).
  private readsPaused = false;

  pauseReads(): void {
    if (this.readsPaused || this.sock === null) return;
    this.readsPaused = true;
    this.sock.pause();
  }

  resumeReads(): void {
    if (!this.readsPaused) return;
    this.readsPaused = false;
    this.sock?.resume();
  }

  /** Cancel requests forwarded to this backend whose connection PostgreSQL has not closed yet. */
  cancelsInFlight = 0;
  private cancelsSettled: (() => void) | null = null;

  /** A cancel is being forwarded; call the returned function (once) when its connection is closed. */
  cancelStarted(): () => void {
    this.cancelsInFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.cancelsInFlight > 0) return;
      const then = this.cancelsSettled;
      this.cancelsSettled = null;
      then?.();
    };
  }

  /** Run `then` once no forwarded cancel is in flight (now, if none is). */
  whenCancelsSettled(then: () => void): void {
    if (this.cancelsInFlight === 0) then();
    else this.cancelsSettled = then;
  }

  /** True when this connection may go back to the pool as it is. */
  get reusable(): boolean {
    return this.state !== ServerState.Closed && this.owed === 0 && this.txStatus === TxStatus.Idle && this.passthrough === 0;
  }

  // Backpressure: the server's outbox is fed by the client socket.
  pauseProducer(): void {
    this.lessee?.pauseReading();
  }

  resumeProducer(): void {
    this.lessee?.resumeReading();
  }

  close(reason: string): void {
    if (this.state === ServerState.Closed) return;
    const wasLoggingIn = this.state === ServerState.Login || this.state === ServerState.Connecting || this.state === ServerState.SslWait;
    this.enter(ServerState.Closed);
    this.closeReason = reason;
    if (this.loginTimer) clearTimeout(this.loginTimer);
    if (this.sock) {
      if (!wasLoggingIn) this.out.write(TerminateMessage);
      this.out.end();
    }
    this.owner.serverClosed(this);
    // Closed by the proxy before the login finished (at connect, SSL or auth): whoever awaits open() hears it now.
    this.rejectLogin(new LoginError(`server connection closed during login: ${reason}`, "08006", false, true, true));
  }

  onSocketClosed(reason: string): void {
    if (this.state === ServerState.Closed) return;
    if (this.loginReject) {
      this.failLogin(new LoginError(`server closed the connection during login: ${reason}`, "08006"));
      return;
    }
    const l = this.lessee;
    this.enter(ServerState.Closed);
    this.closeReason = reason;
    this.out.discard();
    this.owner.serverClosed(this);
    this.owner.serverDropped?.(this, reason);
    if (l) l.serverLost(this, reason);
  }
}

function tlsHandshake(sock: Socket<ServerConnection>, _ok: boolean, error: Error | null): void {
  sock.data.onHandshake(sock, error);
}

const serverHandlers = {
  data(sock: Socket<ServerConnection>, chunk: Uint8Array) {
    if (sock === sock.data.sock) sock.data.onData(chunk);
  },
  drain(sock: Socket<ServerConnection>) {
    if (sock === sock.data.sock) sock.data.out.flush();
  },
  close(sock: Socket<ServerConnection>) {
    if (sock === sock.data.sock) sock.data.onSocketClosed("connection closed by server");
  },
  error(sock: Socket<ServerConnection>, err: Error) {
    if (sock === sock.data.sock) sock.data.onSocketClosed(`socket error: ${err.message}`);
  },
  end(sock: Socket<ServerConnection>) {
    if (sock === sock.data.sock) sock.data.onSocketClosed("server ended the connection");
  },
};
