// The stable surface between the proxy core and feature modules: the ProxyModule contract, its hook contexts, and the rules a module is written to.

import type { RecoveryRecord, ReplayRegistry } from "../cluster/ha/replay-registry.ts";
import type { TapFactory } from "./request-tap.ts";
import type { ClusterEvent } from "../cluster/cluster.ts";
import type { QueryShape } from "../sql/fingerprint.ts";
import type { Effect } from "../sql/session-effects.ts";
import type { ModuleConfig } from "../config/schema.ts";

export type { ClusterEvent } from "../cluster/cluster.ts";

/*
 * THE MODULE CONTRACT
 *
 * A module is one folder and one row.
 *
 *   src/modules/<feature>/index.ts   default-exports one ProxyModule (below); other files of the
 *                                    folder are its parts (config.ts for its section, pure logic
 *                                    in files of their own so tests can reach them without a proxy)
 *   src/modules/index.ts             one row in FEATURES: { feature, profiles, compiled, section,
 *                                    load }; `compiled` and `load` test the flag's build constant
 *                                    written out in full, as the other rows do, so the bundler
 *                                    drops a module left out of a profile (plus its `declare
 *                                    const`). The build's defines and profiles come from the rows;
 *                                    test/unit/modules-table.test.ts checks the rest. A feature
 *                                    listed as planned leaves UNBUILT_SECTIONS in the same change.
 *
 * Config. `config` declares every key of the module's section with the same FieldSpec the core
 * sections use (src/config/schema.ts): kind, range, default, doc, `secret` for credentials;
 * nested tables ("table"), arrays of tables ("tables") and free-key tables ("map") included.
 * `moduleConfig<Settings>(doc, fields)` checks at compile time that the keys match the settings
 * type. The core checker validates the section (file:line:key errors, "did you mean", defaults
 * filled in, `enabled` added) before the module sees it; `configure` only adds checks spanning
 * keys and derives settings. SHOW CONFIG and GET /config list the keys with their defaults and
 * mask the secret ones: a module writes no validation or display code of its own.
 *
 * Lifecycle. check-config and every reload run the checker and `configure` (pure, repeatable). At
 * start `start(settings, host)` runs once per module, in the order of the config file; it may
 * register admin routes and SHOW commands on `host` and returns its hooks. Settings are applied at
 * start: a reload does not restart modules (SHOW CONFIG marks module keys not changeable).
 *
 * Hooks, in the order a session meets them:
 *   1. onStartup     once per client, after the startup packet (and TLS) and before
 *                    authentication. It sees every startup parameter and the TLS SNI name. It may
 *                    refuse the client (Reject: FATAL with its SQLSTATE, nothing else runs), or
 *                    return a StartupRoute: log in as another user or database (authentication is
 *                    then of the rewritten user) and/or choose the tenant, which is part of the
 *                    pool key (sessions of different tenants never share a server connection).
 *                    Modules run in config order; each sees the rewrites of those before it; a
 *                    later tenant replaces an earlier one; the first Reject ends the run.
 *   2. onQuery       per request (a simple Query, or an extended run up to Sync), before routing.
 *                    First Reject or Reply wins (later modules are not asked); RouteHints merge;
 *                    the first Rewrite wins (simple protocol only).
 *   3. onResult      per request, after its ReadyForQuery: rows counted, tag, error, timings.
 *   4. onClose       once per logged-in client, when it goes.
 *   onServerEvent    whenever the cluster changes (node up/down/drained, lag, primary changed,
 *                    primary not writable), after the pools have reacted; not tied to a session.
 *
 * Cost rules (hooks run on the proxy's only thread):
 *   - No hook blocks or awaits: return at once. Work that needs I/O is started and finished
 *     outside the hook (a timer, a promise whose result a later hook reads).
 *   - onQuery/onResult run for every request: no per-request allocation beyond what the module
 *     needs; ask QueryCtx only for what you use (sql(), facts(), parse() are lazy and memoised;
 *     sqlBytes() decodes nothing). A proxy with no onQuery/onResult hook decodes no query text.
 *   - A QueryCtx and its ResultCtx are valid until the onResult hooks of that request return: the
 *     proxy then reuses the QueryCtx object for a later request. Keep what you need (a copy of the
 *     text, counts), not the objects; a map keyed by the QueryCtx must drop its entry in onResult.
 *   - A hook must not throw: return Reject to refuse. (An onStartup or onServerEvent hook that
 *     throws is logged; the client is refused with XX000, the event reaches the other modules.)
 *   - Keep per-session state in a Map keyed by SessionCtx.id and drop it in onClose; bound every
 *     table a module keeps (entries, bytes) by a config key.
 *
 * Tests. Pure parts: unit tests beside the others (test/modules/<feature>-parts.test.ts), config
 * through `moduleSettings(section, raw)` of src/config/load.ts (the loader's own checks). End to
 * end: a real proxy (test/support/proxy.ts) with the section in its config and real clients,
 * asserting values and SQLSTATEs. The build test proves a module left out of a profile is absent
 * from that binary when the module carries a string of its own.
 */

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
  /** The tenant an onStartup hook chose (absent: none); sessions of different tenants never share servers. */
  readonly tenant?: string;
}

/** A client's startup packet, before authentication completes. */
export interface StartupCtx {
  /** The client as it stands before authentication: id is 0 (assigned at login), user and database as sent. */
  readonly session: SessionCtx;
  /** Every startup parameter as sent (user, database, options, application_name, ...). */
  readonly params: ReadonlyMap<string, string>;
  /** SNI server name from the TLS handshake, "" without TLS or SNI. */
  readonly serverName: string;
}

/** A stretch of bytes in a buffer the caller does not own: bytes[from, to). */
export interface ByteSpan {
  bytes: Uint8Array;
  from: number;
  to: number;
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
   * The same text as UTF-8 bytes, without decoding: for cheap scans. During onQuery they are the
   * proxy's receive buffer; in onResult a copy (see Hooks.resultReadsText).
   */
  sqlBytes(): Uint8Array;
  /**
   * Where those bytes are, with no view made (cheaper than sqlBytes() for a scan): the text is
   * `span.bytes` from `span.from` to `span.to`. Valid only during onQuery.
   */
  sqlSpan?(span: ByteSpan): void;
  /** Normalised text, fingerprint, statement kind and workload flags (one lexer pass, cached by text). */
  facts(): QueryShape;
  /** Normalised fingerprint (literals stripped), stable across parameter values. */
  fingerprint(): string;
  /** Full parse tree from the PostgreSQL parser (costly: ask only when needed). */
  parse(): unknown;
  /**
   * What the text's statements do to the session (SET, RESET, DISCARD ALL, set_config, savepoints,
   * code the proxy cannot see into): the bits of src/sql/session-effects.ts, from the scan the
   * proxy makes for pooling anyway (memoised).
   */
  effects?(): Effect;
  /**
   * The request's messages as received so far, from its first one (a Query; or Parse, Bind...
   * up to and including Sync when it has arrived). Valid only during onQuery.
   */
  requestBytes?(): Uint8Array;
  /**
   * For a request that starts with a Bind of a named protocol statement: the Parse message that
   * prepared it (its text and parameter types), when the proxy keeps it (pooled modes); else null.
   */
  preparedStatement?(): Uint8Array | null;
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
  /**
   * Set when a module's Reply answered the request without a server: its `source` ("module" when
   * it gave none). `node` is then "", rows and tag are counted from the reply's messages.
   */
  readonly answeredBy?: string;
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
  /** Who answered (the module's section name): ResultCtx.answeredBy, traces and statistics show it. */
  readonly source?: string;
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

/** What onStartup may decide besides refusing: the user and database to log in as, and the tenant (part of the pool key). */
export interface StartupRoute {
  readonly kind: "startup";
  /** Sessions of different tenants never share server connections. Absent: keep the current one ("" at first). */
  readonly tenant?: string;
  /** Log in (and authenticate) as this user instead. */
  readonly user?: string;
  /** Connect to this database instead. */
  readonly database?: string;
}

export type StartupDecision = Reject | StartupRoute;

/** The hook points. A module implements only those it needs; returning nothing means "no opinion". */
export interface Hooks {
  /** Before authentication: tenant resolution, auth gateway, connection limits. See the contract above. */
  onStartup?(s: StartupCtx): void | StartupDecision;
  /** Called in module order; the first Reject or Reply wins. */
  onQuery?(q: QueryCtx): void | QueryDecision;
  /** After ReadyForQuery: cache fill, statistics, LSN tracking. */
  onResult?(r: ResultCtx): void;
  /**
   * False: onResult never asks its query for the text (sql(), sqlBytes(), facts(), fingerprint(),
   * parse()). When no module's onResult does, the proxy keeps no copy of each request's text for them.
   */
  readonly resultReadsText?: boolean;
  /** Cluster changes (node health, drain, lag, primary), after the pools reacted. */
  onServerEvent?(e: ClusterEvent): void;
  /**
   * A session's recovery finished (ha-tr: its server was lost, or a conflict was retried): what was
   * replayed and how it ended. `r.session` is the SessionCtx id; when a request was in flight
   * (`r.in_flight` > 0) its ReadyForQuery, and so its onResult, comes after this.
   */
  onRecovery?(r: RecoveryRecord): void;
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

/** How the admin API's OpenAPI document describes a module's route. */
export interface RouteDoc {
  readonly summary: string;
  /** Query parameters: name -> what it means. */
  readonly query?: Readonly<Record<string, string>>;
  /** A POST's JSON body, as a JSON Schema. */
  readonly body?: Readonly<Record<string, unknown>>;
  /** What a 200 answer's JSON holds. */
  readonly returns: string;
}

/** What the proxy lends a module when it starts. */
export interface ModuleHost {
  /**
   * Serve an admin HTTP route under the same tokens as the built-in ones. `path` is exact; `doc`
   * is how GET /openapi.json describes it (a route nobody can discover is not an API).
   */
  addRoute(method: "GET" | "POST", path: string, doc: RouteDoc, handler: (req: Request, url: URL) => Response | Promise<Response>): void;
  /** Answer `SHOW <name>` in the admin console (name in lower case, one word). */
  addShow(name: string, show: () => ShowResult): void;
  /**
   * Add series to GET /metrics: `render` returns Prometheus text exposition (# HELP, # TYPE and
   * sample lines), called per scrape.
   */
  addMetrics?(render: () => string): void;
  /**
   * Run one read-only statement on the current primary in `database`, as the health checker's
   * user, on a connection of its own (for catalog lookups; not for the hot path). Rows as text;
   * rejects with the server's error or after a timeout.
   */
  catalogQuery?(database: string, sql: string, params?: string[]): Promise<(string | null)[][]>;
  /**
   * Open a logical replication connection (replication=database) to the current primary in
   * `database`, as the health checker's user (it needs REPLICATION or superuser). Rejects with an
   * error carrying `code` (the server's SQLSTATE) when the login fails.
   */
  replicationConnection?(database: string): Promise<ReplicationLink>;
  /** Nodes as the cluster sees them now. */
  nodes(): readonly NodeInfo[];
  /**
   * Ask the proxy to learn the WAL position of every commit (a `pg_current_wal_lsn()` pipelined
   * after requests that may write, no extra round trip) for read-your-writes.
   */
  trackCommits(): CommitPositions;
  /**
   * Attach a request tap to every session (ha-tr: each session journals its open transaction so
   * that after a failover it can be resolved, replayed and moved to the new primary). `registry`
   * reports the journals and recoveries (GET /metrics). One module may tap requests.
   */
  tapRequests(tap: TapFactory, registry: ReplayRegistry): void;
}

/** A replication=database connection lent to a module (ModuleHost.replicationConnection). */
export interface ReplicationLink {
  /** Name of the node it is connected to. */
  readonly node: string;
  /** Run one replication command (CREATE_REPLICATION_SLOT ...) or SQL; rows as text; rejects with `code`. */
  command(sql: string, timeoutMs: number): Promise<(string | null)[][]>;
  /**
   * Enter copy-both (START_REPLICATION ...): resolves once the server answers CopyBothResponse.
   * `data` gets each CopyData payload (a view valid only during the call); `end` is called once
   * when the stream stops for any reason after it started.
   */
  stream(sql: string, handlers: { data(payload: Uint8Array): void; end(reason: string): void }, timeoutMs: number): Promise<void>;
  /** Send one CopyData message (standby status updates). */
  send(payload: Uint8Array): void;
  close(): void;
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
