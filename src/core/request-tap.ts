// The request tap: what a session-level feature (the transaction journal, ha-tr) sees of each client request and the few fixed points the forwarder calls it at.

import type { Cluster } from "../cluster/cluster.ts";
import type { FailoverController } from "../cluster/failover.ts";
import type { SwitchoverBuffer } from "../cluster/switchover-buffer.ts";
import type { ServerConnection, Sink } from "../server/connection.ts";
import type { Pool } from "../server/pool.ts";
import type { PoolGroup } from "../server/pool-group.ts";
import type { Effect, StatementSpan } from "../sql/session-effects.ts";
import type { Pending } from "../server/response-queue.ts";

/**
 * One client message as the forwarder reads it, with lazy, memoised facts: each is computed once,
 * and only when someone asks. Valid until the forwarder moves to the next message.
 */
export interface MessageView {
  /** Message type byte, and the message at b[pos, end). */
  readonly type: number;
  readonly b: Uint8Array;
  readonly pos: number;
  readonly end: number;
  /** The SQL it carries as UTF-8 bytes (a Query's text, a Parse's, a Bind's statement's), or null. */
  textBytes(): Uint8Array | null;
  /** That SQL as text ("" when none). */
  sql(): string;
  /** Index of the statement name in b (Parse: its own; Bind: the one it binds; Describe/Close: its target). */
  nameStart(): number;
  /** Index of the NUL ending that name; -1 when the message is malformed. */
  nameEnd(): number;
  /** The statement name ("" for the unnamed one or when malformed). */
  statementName(): string;
  /** Session effects of its SQL (Query and Parse; None otherwise). */
  effects(): Effect;
  /** Statements of its SQL that have an effect. */
  spans(): readonly StatementSpan[];
}

/** Where the forwarder gathers a round's bytes when it does not forward them as received. */
export interface Stage {
  /** Start (or continue) staging: copy b[run, pos) in; returns pos, the new run start. */
  spill(b: Uint8Array, run: number, pos: number): number;
  /** Stage b[from, to). */
  put(b: Uint8Array, from: number, to: number): void;
  /** Stage the Query at b[pos, end) with `tail` (ending with its NUL) appended to its text. */
  putQueryWithTail(b: Uint8Array, pos: number, end: number, tail: Uint8Array): void;
}

/** A request's message the tap answered itself (the forwarder does not send it). */
export const CONSUMED = -1;

/**
 * Attached to a session by a module (ha-tr); null on every session otherwise, so the forwarder pays
 * one null check per message. Called in this order for each request: onMessage for each message
 * once a server is attached (it may stage reads ahead of a Sync); onQueryEnd at a Query; then
 * readsAfter at the request's end; onReady at each client-visible ReadyForQuery; onServerLost when the server breaks.
 */
export interface RequestTap {
  /** The tap re-sends journaled requests: they are not journaled again and what the client already has is answered here. */
  readonly replaying: boolean;
  /** A recovery is moving the session: requests wait and the server is not released. */
  readonly recovering: boolean;
  /** Where server replies go (the client's outbox behind the tap's own sink). */
  readonly replies: Sink;
  /**
   * A message on its way to `server` (after the module hooks and routing, before the forwarder's
   * own bookkeeping). May stage bytes ahead of it: returns the new run start, or CONSUMED.
   */
  onMessage(m: MessageView, server: ServerConnection, stage: Stage, run: number): number;
  /** A Query ends the request: true when the tap staged it in a form of its own (and set what the server owes). */
  onQueryEnd(m: MessageView, server: ServerConnection, stage: Stage, run: number): boolean;
  /** Reads the tap wants pipelined after the request's last message. */
  wantsReadsAfter(): boolean;
  readsAfter(server: ServerConnection, stage: Stage): void;
  /** The proxy answered the request with an error raised on `server` (the bytes of that raise). */
  onRaised(raise: Uint8Array, code: string, message: string, inTx: boolean): void;
  /** The client dropped a statement (null: all of them) by DEALLOCATE or DISCARD ALL. */
  statementsDropped(name: string | null): void;
  /** A client-visible ReadyForQuery. */
  onReady(server: ServerConnection, status: number): void;
  /** An injected read's value (see Lessee.valueRead). */
  valueRead(kind: Pending, value: string | null, status: number): void;
  /** The server broke: true when the session lives on (the tap recovers it). */
  onServerLost(server: ServerConnection, reason: string): boolean;
  /** A COMMIT is in flight: a cancel must not reach its server (it may wait for a synchronous standby). */
  commitInFlight(): boolean;
  /** The session ended. */
  close(): void;
}

/** What the tap sees of the proxy around a session. */
export interface TapContext {
  readonly cluster: Cluster;
  readonly buffer: SwitchoverBuffer;
  readonly failover: FailoverController | null;
  readonly classifier: { isWrite(sql: string): boolean };
  nodePool(group: PoolGroup, node: ReturnType<Cluster["primary"]>): Pool;
}

/** The forwarder's part a recovery drives. */
export interface TapForwarder {
  serverGone(): void;
  injectQuery(server: ServerConnection, sql: string): void;
  forward(b: Uint8Array, start: number, end: number): number;
  failNextRequest(code: string, message: string): void;
  /** The server has the proxy's statement `name` (else it is to be prepared there; a Close may have been staged). */
  knownPrepared(server: ServerConnection, name: string): boolean;
  /** Make room in the server's statement cache for one more (Closes staged). */
  evictIfFull(server: ServerConnection): void;
}

/** The session a tap is attached to, as the tap and its recovery see it. */
export interface TappedSession {
  readonly ctx: TapContext;
  readonly out: Sink;
  readonly forwarder: TapForwarder;
  readonly closed: boolean;
  readonly pid: number;
  readonly user: string;
  readonly database: string;
  readonly pinned: boolean;
  readonly mode: string;
  readonly group: PoolGroup | null;
  readonly server: ServerConnection | null;
  txStatus: number;
  /** Logged in and forwarding (a server lost before that ends the session). */
  readonly forwarding: boolean;
  /** Requests wait from here until endRecovery(). */
  beginRecovery(): void;
  endRecovery(): void;
  /** Attach a server leased during a recovery. */
  adopt(s: ServerConnection): void;
  /** Forget the attached server without returning it. */
  detach(): void;
  fatal(reply: Uint8Array): void;
}

/** Makes the tap of one session (a module registers it with the host). */
export type TapFactory = (session: TappedSession) => RequestTap;
