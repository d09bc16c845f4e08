// The client session state machine: its states, the edges between them, and their names (ClientSession.enter() takes them).

import type { EdgeTable } from "../util/state-bugs.ts";

/** Where a client connection is. A session is in exactly one; only ClientSession.enter() changes it. */
export const enum ClientState {
  /** Waiting for StartupMessage / SSLRequest / CancelRequest. */
  Startup,
  /** Authentication and admission in progress. */
  Auth,
  /** Logged in, no server, nothing owed: the next request leases one. */
  Idle,
  /** A server is attached (a transaction or request in flight, or the session is pinned to it). */
  Leased,
  /** Queued in a pool for a server (the session's waitPool). */
  WaitingPool,
  /** Giving standbys time to replay this session's writes before a read is routed. */
  WaitingReplay,
  /** Held in the switchover buffer while the primary changes. */
  Held,
  /** The server was lost or a conflict is retried: the session moves to a new server (ha-tr). May hold a server meanwhile. */
  Recovering,
  /** Logged in to the admin console's virtual database: no server, ever. */
  Console,
  Closed,
}

/** State names for logs and tests, in enum order. */
export const CLIENT_STATE_NAMES: readonly string[] = ["startup", "auth", "idle", "leased", "waiting_pool", "waiting_replay", "held", "recovering", "console", "closed"];

const bit = (s: ClientState): number => 1 << s;
const CLOSED = bit(ClientState.Closed);

/** The edges: CLIENT_EDGES[from] has bit (1 << to) set for each allowed transition. Every state but Closed may close. */
export const CLIENT_EDGES: readonly number[] = [
  /* Startup       */ bit(ClientState.Auth) | CLOSED,
  /* Auth          */ bit(ClientState.Idle) | bit(ClientState.Console) | CLOSED,
  /* Idle          */ bit(ClientState.Leased) | bit(ClientState.WaitingPool) | bit(ClientState.WaitingReplay) | bit(ClientState.Held) | CLOSED,
  /* Leased        */ bit(ClientState.Idle) | bit(ClientState.Recovering) | CLOSED,
  /* WaitingPool   */ bit(ClientState.Leased) | bit(ClientState.Idle) | CLOSED,
  /* WaitingReplay */ bit(ClientState.Idle) | CLOSED,
  /* Held          */ bit(ClientState.Idle) | CLOSED,
  /* Recovering    */ bit(ClientState.Idle) | bit(ClientState.Leased) | CLOSED,
  /* Console       */ CLOSED,
  /* Closed        */ 0,
];

/** The client machine for edgeAllowed. */
export const CLIENT_MACHINE: EdgeTable = { kind: "client", edges: CLIENT_EDGES, names: CLIENT_STATE_NAMES };

/** Waiting for something before the next request can go (its bytes are buffered meanwhile). */
export function isWaiting(s: ClientState): boolean {
  return s === ClientState.WaitingPool || s === ClientState.WaitingReplay || s === ClientState.Held || s === ClientState.Recovering;
}
