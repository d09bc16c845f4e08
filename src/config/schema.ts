// The one config schema: every key of every core section with its type, default, allowed values and doc.

import type {
  AuthSection,
  CoordinationSection,
  FailoverSection,
  TopologySection,
  HealthSection,
  LimitsSection,
  LoadBalancerSection,
  NodeEntry,
  PoolSection,
  ProxySection,
  TimeoutsSection,
  TlsSection,
  UserEntry,
} from "./types.ts";

export type FieldKind =
  | "string" // any string
  | "int" // integer, optional range
  | "number" // finite number (fractions allowed), optional range
  | "bool"
  | "enum" // one of `values`
  | "address" // "host:port", "[v6]:port"; port 1..65535
  | "host" // host name, IPv4 or IPv6 address
  | "strings" // array of strings
  | "table" // a nested table of `fields`
  | "tables" // an array of tables ([[section.key]]), each of `fields`
  | "map"; // a table of free keys, each value checked against `item`

export interface FieldSpec {
  readonly kind: FieldKind;
  /** Value used when the key is absent. Absent on required keys. */
  readonly default?: string | number | boolean | readonly string[];
  readonly required?: boolean;
  readonly values?: readonly string[];
  readonly min?: number;
  /** `min` itself is not allowed (value must be greater). */
  readonly minExclusive?: boolean;
  readonly max?: number;
  /** Masked in SHOW CONFIG, GET /config and logs. */
  readonly secret?: boolean;
  /** Keys of a "table" or of each entry of "tables". */
  readonly fields?: Readonly<Record<string, FieldSpec>>;
  /** The spec every value of a "map" meets. */
  readonly item?: FieldSpec;
  readonly doc: string;
}

export interface SectionSpec {
  /** "table" = `[name]`, "array" = repeated `[[name]]`. */
  readonly kind: "table" | "array";
  readonly doc: string;
  readonly fields: Readonly<Record<string, FieldSpec>>;
}

/** One spec per key of a settings type: the compiler keeps a schema and its type in step. */
export type Fields<T> = { readonly [K in keyof T]-?: FieldSpec };

function table<T>(doc: string, fields: Fields<T>): SectionSpec {
  return { kind: "table", doc, fields };
}
function array<T>(doc: string, fields: Fields<T>): SectionSpec {
  return { kind: "array", doc, fields };
}

/** A module's config section as it declares it: what it is for and its keys (`enabled` comes with every module). */
export interface ModuleConfig {
  readonly doc: string;
  readonly fields: Readonly<Record<string, FieldSpec>>;
}

/** The key every module section has: `enabled = false` keeps the section and leaves the module stopped. */
export const ENABLED_FIELD: FieldSpec = { kind: "bool", default: true, doc: "Start the module (false: keep the section, run nothing)." };

/** A module's settings type -> its declared keys (all but `enabled`), checked by the compiler. */
export function moduleConfig<T extends { enabled: boolean }>(doc: string, fields: Fields<Omit<T, "enabled">>): ModuleConfig {
  return { doc, fields };
}

/** The section the core checker validates for a module: `enabled` plus the module's keys. */
export function moduleSectionSpec(config: ModuleConfig): SectionSpec {
  return { kind: "table", doc: config.doc, fields: { enabled: ENABLED_FIELD, ...config.fields } };
}

const POOL_MODES = ["session", "transaction", "statement"] as const;
const AUTH_METHODS = ["scram-sha-256", "md5", "trust"] as const;
const SECS_MAX = 365 * 24 * 3600;

export const SCHEMA = {
  proxy: table<ProxySection>("Listener, admin endpoint and process behaviour.", {
    listen_address: { kind: "address", default: "127.0.0.1:6432", doc: "Address clients connect to (host:port; [v6]:port)." },
    admin_address: { kind: "address", default: "127.0.0.1:9090", doc: "Address of the admin HTTP API (/health, /nodes, /metrics...)." },
    login_timeout_secs: { kind: "number", default: 15, min: 0, minExclusive: true, max: SECS_MAX, doc: "Seconds a client may take from TCP connect to finished login." },
    shutdown_timeout_secs: { kind: "number", default: 30, min: 0, max: SECS_MAX, doc: "Seconds SIGTERM waits for in-flight transactions before closing." },
    log_level: { kind: "enum", default: "info", values: ["silent", "error", "warn", "info", "debug", "trace"], doc: "Least severe log level written." },
    log_format: { kind: "enum", default: "text", values: ["text", "json"], doc: "text: human lines; json: one JSON object per line." },
    log_connections: { kind: "bool", default: true, doc: "Log each login and each refused login (info level) with the client's address." },
    log_disconnections: { kind: "bool", default: true, doc: "Log each logged-in client's disconnection (info level) with its address, duration and reason." },
    metrics_public: { kind: "bool", default: false, doc: "Serve GET /metrics without a token (for scrapers that cannot send one); other routes keep their tokens." },
  }),
  pool: table<PoolSection>("Server connection pools (one per node x database x user).", {
    mode: { kind: "enum", default: "transaction", values: POOL_MODES, doc: "When a server goes back to the pool: session end, transaction end, or each statement." },
    min_connections: { kind: "int", default: 0, min: 0, max: 100000, doc: "Server connections kept open per pool even when idle." },
    max_connections: { kind: "int", default: 20, min: 1, max: 100000, doc: "Most server connections per pool." },
    idle_timeout_secs: { kind: "number", default: 300, min: 0, max: SECS_MAX, doc: "Close a server connection idle this long, above min_connections (0 = never)." },
    server_lifetime_secs: { kind: "number", default: 3600, min: 0, max: SECS_MAX, doc: "Close a server connection after this many seconds of life, once idle (0 = never)." },
    wait_timeout_secs: { kind: "number", default: 30, min: 0, max: SECS_MAX, doc: "How long a client waits for a free server before an error (0 = no limit)." },
    reset_query: { kind: "string", default: "DISCARD ALL", doc: "Run on a server before it goes to another client in session mode (\"\" = none)." },
    reset_query_always: { kind: "bool", default: false, doc: "Also run reset_query after every transaction in transaction and statement modes (covers state no statement shows: triggers, views); one more round trip per transaction." },
    stateless_functions: { kind: "strings", default: [], doc: "Functions that keep no session state (no SET, PREPARE, LISTEN, session advisory locks or temp tables): calling them costs no server reset in transaction and statement modes." },
    prepared_statements_per_server: { kind: "int", default: 1000, min: 0, max: 1000000, doc: "Named protocol statements kept per server connection, LRU (0 = no tracking)." },
    connect_timeout_secs: { kind: "number", default: 5, min: 0, minExclusive: true, max: SECS_MAX, doc: "Seconds allowed for a backend TCP connect plus login." },
  }),
  limits: table<LimitsSection>("Connection limits.", {
    max_client_conn: { kind: "int", default: 10000, min: 1, max: 10000000, doc: "Most client connections the proxy accepts." },
    max_db_connections: { kind: "int", default: 0, min: 0, max: 10000000, doc: "Most logged-in clients per database across users (0 = unlimited)." },
    max_user_connections: { kind: "int", default: 0, min: 0, max: 10000000, doc: "Most logged-in clients per user across databases (0 = unlimited)." },
    max_message_bytes: { kind: "int", default: 1073741824, min: 65536, max: 1073741824, doc: "Largest message a logged-in client may send (declared length, checked before any of it is buffered); larger gets 08P01 and the connection is closed." },
  }),
  timeouts: table<TimeoutsSection>("Client-side timeouts.", {
    query_timeout_secs: { kind: "number", default: 0, min: 0, max: SECS_MAX, doc: "Cancel a running query after this many seconds (0 = off)." },
    idle_in_transaction_timeout_secs: { kind: "number", default: 0, min: 0, max: SECS_MAX, doc: "Close a client idle in a transaction this long (0 = off)." },
    client_idle_timeout_secs: { kind: "number", default: 0, min: 0, max: SECS_MAX, doc: "Close a client idle outside a transaction this long (0 = off)." },
  }),
  tls: table<TlsSection>("TLS towards clients and towards servers. Relative paths are relative to the config file.", {
    mode: { kind: "enum", default: "disable", values: ["disable", "allow", "require"], doc: "Client TLS: disable, allow (offer), require (refuse plain connections)." },
    cert_file: { kind: "string", default: "", doc: "PEM certificate chain presented to clients (needed by allow/require)." },
    key_file: { kind: "string", default: "", doc: "PEM private key of cert_file (needed by allow/require)." },
    ca_file: { kind: "string", default: "", doc: "CA to verify client certificates (\"\" = client certificates not requested)." },
    server_sslmode: { kind: "enum", default: "disable", values: ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"], doc: "TLS towards PostgreSQL, as libpq's sslmode." },
    server_ca_file: { kind: "string", default: "", doc: "CA to verify server certificates (needed by verify-ca/verify-full)." },
  }),
  auth: table<AuthSection>("Client authentication.", {
    method: { kind: "enum", default: "scram-sha-256", values: AUTH_METHODS, doc: "How clients prove who they are (users may override)." },
    auth_query: { kind: "string", default: "", doc: "Query returning (usename, passwd) for $1 = user name, for users not listed (\"\" = off)." },
    auth_user: { kind: "string", default: "", doc: "User that runs auth_query (required with auth_query)." },
    auth_password: { kind: "string", default: "", secret: true, doc: "Password of auth_user." },
    auth_database: { kind: "string", default: "", doc: "Database auth_query runs in (\"\" = the client's database)." },
    admin_users: { kind: "strings", default: [], doc: "Users allowed into the admin console (virtual database heliosproxy)." },
    stats_users: { kind: "strings", default: [], doc: "Users allowed read-only SHOW commands in the admin console." },
  }),
  users: array<UserEntry>("Users the proxy authenticates (one [[users]] entry each).", {
    name: { kind: "string", required: true, doc: "User name clients log in with." },
    password: { kind: "string", default: "", secret: true, doc: "Plain password, \"SCRAM-SHA-256$...\" verifier or \"md5...\" hash." },
    server_password: { kind: "string", default: "", secret: true, doc: "Password towards PostgreSQL (\"\" = password, when that is plain)." },
    auth_method: { kind: "enum", default: "", values: ["", ...AUTH_METHODS], doc: "Overrides [auth] method for this user (\"\" = inherit)." },
    pool_mode: { kind: "enum", default: "", values: ["", ...POOL_MODES], doc: "Overrides [pool] mode for this user (\"\" = inherit)." },
    max_connections: { kind: "int", default: 0, min: 0, max: 100000, doc: "Most server connections for this user (0 = unlimited)." },
  }),
  health: table<HealthSection>("Node health checks.", {
    check_interval_secs: { kind: "number", default: 5, min: 0, minExclusive: true, max: 3600, doc: "Seconds between checks of each node (fractions allowed)." },
    check_timeout_secs: { kind: "number", default: 1, min: 0, minExclusive: true, max: 3600, doc: "Seconds before a check counts as failed." },
    check_query: { kind: "string", default: "SELECT 1", doc: "Query a healthy node answers." },
    failure_threshold: { kind: "int", default: 3, min: 1, max: 1000, doc: "Consecutive failures that mark a node down." },
    recovery_threshold: { kind: "int", default: 1, min: 1, max: 1000, doc: "Consecutive successes that mark a down node up." },
    user: { kind: "string", default: "postgres", doc: "User the health checker logs in as." },
    password: { kind: "string", default: "", secret: true, doc: "Password of the health-check user (\"\" = none: trust)." },
    database: { kind: "string", default: "postgres", doc: "Database the health checker connects to." },
  }),
  load_balancer: table<LoadBalancerSection>("Choosing a node for each request.", {
    strategy: { kind: "enum", default: "round_robin", values: ["round_robin", "least_connections", "latency"], doc: "How a node is picked among those eligible." },
    read_write_split: { kind: "bool", default: false, doc: "Send read-only requests to standbys (writes always go to the primary)." },
    read_safe_functions: { kind: "strings", default: [], doc: "Functions (besides the built-in list of read-only ones) whose calls may run on a standby." },
  }),
  nodes: array<NodeEntry>("Database nodes (one [[nodes]] entry each; at least one).", {
    name: { kind: "string", default: "", doc: "Name used by the admin API and hints (\"\" = node<N>, N counting from 1)." },
    host: { kind: "host", required: true, doc: "Host name or IP address." },
    port: { kind: "int", default: 5432, min: 1, max: 65535, doc: "TCP port." },
    role: { kind: "enum", default: "primary", values: ["primary", "standby"], doc: "Role at startup (topology discovery may change it)." },
    sync: { kind: "bool", default: false, doc: "Synchronous standby: preferred failover candidate." },
    weight: { kind: "int", default: 1, min: 0, max: 1000, doc: "Share of read traffic relative to other nodes (0 = none)." },
  }),
  topology: table<TopologySection>("Who is primary: the primary tracker and its provider.", {
    provider: { kind: "enum", default: "postgres", values: ["postgres", "manual", "patroni", "heliosdb"], doc: "postgres: poll pg_is_in_recovery() and timelines; manual: config roles, changed by the admin API; patroni: follow Patroni's REST API; heliosdb: events pushed to the admin API." },
    patroni_urls: { kind: "strings", default: [], doc: "Patroni REST API base URLs, tried in order (provider patroni)." },
    poll_interval_secs: { kind: "number", default: 1, min: 0, minExclusive: true, max: 3600, doc: "Seconds between polls of the Patroni API." },
    request_timeout_secs: { kind: "number", default: 1, min: 0, minExclusive: true, max: 3600, doc: "Seconds before a Patroni API request counts as failed." },
  }),
  failover: table<FailoverSection>("Failover controller and switchover buffer.", {
    policy: { kind: "enum", default: "manual", values: ["auto", "manual", "off"], doc: "auto: promote a standby when the primary is confirmed down; manual: alarm, and promote on POST /failover; off: never promote (POST /failover refused)." },
    prefer_sync: { kind: "bool", default: true, doc: "Among candidates equally advanced, prefer the last known synchronous standby." },
    max_lag_bytes: { kind: "int", default: 16777216, min: 0, max: Number.MAX_SAFE_INTEGER, doc: "A standby further behind the old primary's last known position is not a candidate (0 = no limit)." },
    confirm_interval_secs: { kind: "number", default: 0.2, min: 0, minExclusive: true, max: 3600, doc: "Seconds between re-probes of a node that failed a probe, until failure_threshold confirms it down." },
    promote_timeout_secs: { kind: "number", default: 30, min: 0, minExclusive: true, max: 3600, doc: "Seconds pg_promote() may take." },
    soft_fence: { kind: "bool", default: true, doc: "Make a reachable old primary read-only and end its client backends." },
    fence_command: { kind: "string", default: "", doc: "Shell command run to fence the old primary (%n name, %h host, %p port); \"\" = none." },
    promote_command: { kind: "string", default: "", doc: "Shell command that promotes the candidate instead of pg_promote() (%n, %h, %p); \"\" = pg_promote()." },
    repoint_standbys: { kind: "bool", default: true, doc: "Point the other standbys at the new primary (ALTER SYSTEM primary_conninfo + reload)." },
    synchronous: {
      kind: "enum",
      default: "remaining",
      values: ["remaining", "strict", "keep", "off"],
      doc: "synchronous_standby_names on a promoted node and the nodes repointed to it. remaining: the standbys that stream from the new primary, by application_name (FIRST/ANY n kept from the old setting), cleared while none does; strict: the same, but with no standby \"*\" (commits wait for one to attach, up to sync_wait_timeout_secs); keep: left as the operator set it (layouts that would wait on a standby that cannot stream are reported); off: cleared.",
    },
    sync_wait_timeout_secs: { kind: "number", default: 30, min: 0, minExclusive: true, max: 86400, doc: "A request on the primary waiting this long for synchronous replication (wait event SyncRep) is ended with 08007: committed on the primary, not confirmed on a standby." },
    rejoin_command: { kind: "string", default: "", doc: "Shell command run when a fenced old primary answers again, to make it a standby of the new primary (%n, %h, %p of the old primary; HELIOS_PRIMARY_HOST/PORT name the new one), e.g. pg_rewind + standby.signal; \"\" = the operator rejoins it." },
    buffer_timeout_secs: { kind: "number", default: 10, min: 0, minExclusive: true, max: 3600, doc: "How long a statement held during failover or switchover waits before an error." },
    buffer_max_clients: { kind: "int", default: 10000, min: 0, max: 10000000, doc: "Most clients held at once during failover or switchover; more get an error at once." },
    drain_timeout_secs: { kind: "number", default: 5, min: 0, max: 3600, doc: "Switchover: seconds open transactions may take to finish; past that the switchover is called off." },
  }),
  coordination: table<CoordinationSection>("A fleet of proxies in front of one cluster: leader election, failover records and shared state in etcd.", {
    backend: { kind: "enum", default: "none", values: ["none", "etcd"], doc: "none: this proxy decides alone; etcd: one leader among the proxies runs failovers, every proxy follows its records and shares drain, pause and the manual primary." },
    endpoints: { kind: "strings", default: [], doc: "etcd client URLs (\"http://10.0.0.1:2379\", https with TLS), tried in order (backend etcd)." },
    key_prefix: { kind: "string", default: "/heliosproxy/default", doc: "Key prefix of this database cluster in etcd; every proxy of one cluster uses the same, other clusters another." },
    lease_ttl_secs: { kind: "int", default: 10, min: 2, max: 3600, doc: "Seconds the leader's and each proxy's lease lives without a keepalive (kept alive every quarter of it)." },
    request_timeout_secs: { kind: "number", default: 1, min: 0, minExclusive: true, max: 60, doc: "Seconds one etcd request may take." },
    username: { kind: "string", default: "", doc: "etcd user (\"\" = no authentication)." },
    password: { kind: "string", default: "", secret: true, doc: "Password of the etcd user." },
    ca_file: { kind: "string", default: "", doc: "PEM CA that signs the etcd server certificates (https endpoints)." },
    cert_file: { kind: "string", default: "", doc: "PEM client certificate for etcd (with key_file)." },
    key_file: { kind: "string", default: "", doc: "PEM private key of cert_file." },
    proxy_name: { kind: "string", default: "", doc: "This proxy's name in the fleet (\"\" = host name:admin port)." },
    advertise_admin_url: { kind: "string", default: "", doc: "URL other proxies reach this proxy's admin API at (\"\" = http://admin_address)." },
  }),
} as const satisfies Record<string, SectionSpec>;

export type CoreSectionName = keyof typeof SCHEMA;
export const CORE_SECTIONS = Object.keys(SCHEMA) as CoreSectionName[];

/** Parse "host:port" or "[v6]:port". Undefined when malformed or the port is outside 1..65535. */
export function parseAddress(text: string): { host: string; port: number } | undefined {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return undefined;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!isIPv6(host)) return undefined;
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) return undefined;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":") || !isHostName(host)) return undefined;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}

/** A DNS name or IPv4 address (RFC 1123 labels; underscores tolerated). */
export function isHostName(text: string): boolean {
  if (text.length === 0 || text.length > 253) return false;
  const labels = text.split(".");
  if (labels.every((l) => /^[0-9]+$/.test(l))) return labels.length === 4 && labels.every((l) => l.length <= 3 && Number(l) <= 255);
  return labels.every((label) => /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label));
}

export function isIPv6(text: string): boolean {
  if (!/^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$/.test(text) || !text.includes(":")) return false;
  const addr = text.split("%")[0]!;
  const halves = addr.split("::");
  if (halves.length > 2) return false;
  const groups = halves.flatMap((h) => (h === "" ? [] : h.split(":")));
  let count = 0;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (g.includes(".")) {
      // Embedded IPv4, last group only.
      if (i !== groups.length - 1 || !/^(\d{1,3})(\.\d{1,3}){3}$/.test(g)) return false;
      if (g.split(".").some((o) => Number(o) > 255)) return false;
      count += 2;
    } else {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return false;
      count += 1;
    }
  }
  return halves.length === 2 ? count < 8 : count === 8;
}

/** A node host: DNS name, IPv4, or IPv6 (bare or in brackets). */
export function isValidHost(text: string): boolean {
  if (text.startsWith("[") && text.endsWith("]")) return isIPv6(text.slice(1, -1));
  return isIPv6(text) || isHostName(text);
}
