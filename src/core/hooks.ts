// The stable surface between the proxy core and feature modules: the ProxyModule contract and its hook contexts.

import type { ReplayRegistry, ReplaySettings } from "../cluster/ha/replay-registry.ts";
import type { QueryShape } from "../sql/fingerprint.ts";
import type { ModuleConfig } from "../config/schema.ts";

/**
 * Version of the hook surface below. A module states the version it was written against;
 * the loader refuses a module whose apiVersion differs.
 */
export const HOOKS_API_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Contexts (stable surface: add optional members only; never rename or remove)
// ---------------------------------------------------------------------------------------------

/** One client session as modules see it. */
export interface SessionCtx {
  /** Process-unique session id (also the BackendKeyData process id shown to the client). */
  readonly id: number;
  readonly user: string;
  readonly database: string;
  readonly applicationName: string;
  /** "ip:port" of the client, or "unix" for a Unix socket. */
  readonly remoteAddress: string;
  readonly tls: boolean;
  /** Milliseconds since the epoch when the client connected. */
  readonly startedAt: number;
  /**
   * W3C trace context the client gave at login (startup parameter `traceparent`, or
   * `-c traceparent=...` in `options`); the proxy reads it and never sends it to a server.
   */
  readonly traceparent?: string;
  /** Every startup parameter as the client sent it (user, database, options, DateStyle...). */
  readonly params?: ReadonlyMap<string, string>;
}

/** A client's startup packet, before authentication completes. */
export interface StartupCtx {
  readonly session: SessionCtx;
  /** Every startup parameter as sent (user, database, options, application_name, ...). */
  readonly params: ReadonlyMap<string, string>;
  /** SNI server name from the TLS handshake, "" without TLS or SNI. */
  readonly serverName: string;
}

/** One request (a simple Query, or an extended-protocol run up to Sync). Accessors are lazy and memoised. */
export interface QueryCtx {
  readonly session: SessionCtx;
  readonly protocol: "simple" | "extended";
  /** Transaction status before this request: 'I' idle, 'T' in transaction, 'E' failed transaction. */
  readonly txStatus: "I" | "T" | "E";
  /** The SQL text (for extended protocol, of the statement being executed). */
  sql(): string;
  /**
   * The same text as UTF-8 bytes, without decoding: for cheap scans. Valid only during onQuery
   * (the bytes are the proxy's receive buffer).
   */
  sqlBytes(): Uint8Array;
  /** Normalised text, fingerprint, statement kind and workload flags (one lexer pass, cached by text). */
  facts(): QueryShape;
  /** Normalised fingerprint (literals stripped), stable across parameter values. */
  fingerprint(): string;
  /** Full parse tree from the PostgreSQL parser (costly: ask only when needed). */
  parse(): unknown;
  /**
   * The request's messages as received so far, from its first one (a Query; or Parse, Bind...
   * up to and including Sync when it has arrived). Valid only during onQuery.
   */
  requestBytes?(): Uint8Array;
  /**
   * Ask for the exact backend messages of this request's reply (all but ReadyForQuery, as the
   * client receives them from the server) in ResultCtx.reply. A reply over `maxBytes` is not kept.
   * Nothing is copied for requests no module asked this for.
   */
  captureReply?(maxBytes: number): void;
}

/** What came back for a request, seen after ReadyForQuery. Rows are counted, not decoded. */
export interface ResultCtx {
  readonly query: QueryCtx;
  /** Name of the node that served the request. */
  readonly node: string;
  /** CommandComplete tag of the last statement ("SELECT 3", "INSERT 0 1"), "" if none. */
  readonly commandTag: string;
  readonly rows: number;
  readonly durationMs: number;
  /** Part of durationMs spent waiting for a server (pool, switchover buffer); absent when the request found one attached. */
  readonly waitMs?: number;
  /** Transaction status from ReadyForQuery. */
  readonly txStatus: "I" | "T" | "E";
  /** Set when the server answered with an ErrorResponse. */
  readonly error?: { readonly code: string; readonly message: string };
  /** The reply's backend messages, when a module asked with captureReply and it fit. */
  readonly reply?: Uint8Array;
}

/** Something that happened in the cluster or the pools. */
export interface ClusterEvent {
  readonly type:
    | "node_up"
    | "node_down"
    | "role_changed"
    | "failover_started"
    | "failover_done"
    | "switchover_started"
    | "switchover_done"
    | "pool_exhausted"
    | "config_reloaded";
  /** Node name, when the event concerns one node. */
  readonly node?: string;
  /** Milliseconds since the epoch. */
  readonly at: number;
  readonly detail?: Readonly<Record<string, unknown>>;
}

// ---------------------------------------------------------------------------------------------
// Hook results
// ---------------------------------------------------------------------------------------------

/** Refuse the connection or request with an ErrorResponse carrying this SQLSTATE. */
export interface Reject {
  readonly kind: "reject";
  readonly sqlstate: string;
  readonly message: string;
}

/**
 * Answer the request without a server: `messages` are complete backend messages
 * (RowDescription, DataRow..., CommandComplete); the proxy appends ReadyForQuery.
 */
export interface Reply {
  readonly kind: "reply";
  readonly messages: Uint8Array;
}

/**
 * Ask the router for a target: "primary", "standby", "any", a node name, or "default" (route as
 * the proxy would, within the hint's limits). A request that may write always goes to the primary
 * whatever the hint says. When several modules give hints, the first target wins and the limits
 * combine (the strictest lag, the furthest minLsn).
 */
export interface RouteHint {
  readonly kind: "route";
  readonly target: string;
  /** Only standbys at most this far behind (bytes of WAL) qualify. */
  readonly maxLagBytes?: number;
  /** Only standbys at most this far behind (milliseconds of replay) qualify. */
  readonly maxLagMs?: number;
  /**
   * A group of nodes (schema routing, workload classes): the read goes to one of these, picked by
   * the balancer among those usable and within the lag limits; `target` is then ignored. None
   * usable: the primary.
   */
  readonly nodes?: readonly string[];
  /**
   * Read-your-writes: only standbys that have replayed WAL up to this position (bytes) qualify;
   * none: the primary.
   */
  readonly minLsn?: number;
  /** With minLsn: wait up to this long (ms), re-probing the standbys, before settling for the primary. */
  readonly waitMs?: number;
}

/** Send this SQL instead of the client's (simple protocol only). */
export interface Rewrite {
  readonly kind: "rewrite";
  readonly sql: string;
}

export type QueryDecision = Reject | Reply | RouteHint | Rewrite;

/** The hook points. A module implements only those it needs; returning nothing means "no opinion". */
export interface Hooks {
  /** Tenant resolution, auth gateway, connection limits. */
  onStartup?(s: StartupCtx): void | Reject;
  /** Called in module order; the first Reject or Reply wins. */
  onQuery?(q: QueryCtx): void | QueryDecision;
  /** After ReadyForQuery: cache fill, statistics, LSN tracking. */
  onResult?(r: ResultCtx): void;
  /** Health, failover and pool events. */
  onServerEvent?(e: ClusterEvent): void;
  onClose?(s: SessionCtx): void;
}

// ---------------------------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------------------------

/** Thrown by `configure` for a bad key in the module's section; the loader adds file and line. */
export class ModuleConfigError extends Error {
  constructor(
    /** Key inside the module's section, dotted for nested tables ("l1.max_entries"). */
    readonly key: string,
    /** What was expected, e.g. `expected an integer >= 1, got 0`. */
    readonly detail: string,
  ) {
    super(`${key}: ${detail}`);
    this.name = "ModuleConfigError";
  }
}

/** One optional feature, compiled in or out as a whole. */
export interface ProxyModule<Settings = unknown> {
  /** Config section name, e.g. "lag_routing". */
  readonly name: string;
  /** Feature flag, e.g. "lag-routing". */
  readonly feature: string;
  /** Version of the module itself. */
  readonly version: string;
  /** HOOKS_API_VERSION the module was written against. */
  readonly apiVersion: number;
  /**
   * The module's config section: every key with its type, range, default and doc, secrets marked.
   * The core checker validates it like a core section (file:line:key errors, "did you mean",
   * defaults filled in); `enabled` comes with every module.
   */
  readonly config: ModuleConfig;
  /**
   * Checks spanning keys, and settings derived from the validated section (every key present, of
   * its declared type). Pure: no I/O, no side effects (it also runs on check-config and before a
   * reload swaps). Throws ModuleConfigError. Absent: the section itself is the settings.
   */
  configure?(section: Readonly<Record<string, unknown>>): Settings;
  /** Start the module with validated settings; the returned hooks join the query path. */
  start(settings: Settings, host: ModuleHost): Hooks | Promise<Hooks>;
}

/** A row set a module shows in the admin console (`SHOW <name>`). */
export interface ShowResult {
  readonly columns: readonly string[];
  readonly rows: readonly (readonly (string | number | null)[])[];
}

/** What the proxy lends a module when it starts. */
export interface ModuleHost {
  /** Serve an admin HTTP route under the same tokens as the built-in ones. `path` is exact. */
  addRoute(method: "GET" | "POST", path: string, handler: (req: Request, url: URL) => Response | Promise<Response>): void;
  /** Answer `SHOW <name>` in the admin console (name in lower case, one word). */
  addShow(name: string, show: () => ShowResult): void;
  /** Nodes as the cluster sees them now. */
  nodes(): readonly NodeInfo[];
  /**
   * Ask the proxy to learn the WAL position of every commit (a `pg_current_wal_lsn()` pipelined
   * after requests that may write, no extra round trip) for read-your-writes.
   */
  trackCommits(): CommitPositions;
  /**
   * Turn on the transaction journal: every session keeps its open transaction's requests so that
   * after a failover it can be resolved, replayed and moved to the new primary (ha-tr).
   */
  journalTransactions(settings: ReplaySettings): ReplayRegistry;
}

/** Commit positions the proxy learned (bytes of WAL; 0 = none known). */
export interface CommitPositions {
  /** The newest commit of one session (SessionCtx.id). */
  session(id: number): number;
  /** The newest commit of any session. */
  latest(): number;
}

/** One node as modules see it. */
export interface NodeInfo {
  readonly name: string;
  readonly role: "primary" | "standby";
  readonly up: boolean;
  readonly lagBytes: number | null;
  readonly lagSeconds: number | null;
}
