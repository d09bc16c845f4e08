// The typed shape of a loaded, validated HeliosProxy configuration (all defaults filled in).

export type PoolMode = "session" | "transaction" | "statement";
export type ClientTlsMode = "disable" | "allow" | "require";
export type ServerSslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
export type ClientAuthMethod = "scram-sha-256" | "md5" | "trust";
export type NodeRole = "primary" | "standby";
export type LbStrategy = "round_robin" | "least_connections" | "latency";
export type LogLevel = "silent" | "error" | "warn" | "info" | "debug" | "trace";

export interface ProxySection {
  listen_address: string; // "host:port"
  admin_address: string; // "host:port"
  /** Seconds a client may take from TCP connect to finished login. */
  login_timeout_secs: number;
  /** Seconds SIGTERM waits for in-flight transactions before closing. */
  shutdown_timeout_secs: number;
  log_level: LogLevel;
  log_format: "text" | "json";
  /** Log logins and refused logins at info level. */
  log_connections: boolean;
  /** Log logged-in clients' disconnections at info level. */
  log_disconnections: boolean;
  /** GET /metrics without a token. */
  metrics_public: boolean;
}

export interface PoolSection {
  mode: PoolMode;
  min_connections: number;
  max_connections: number;
  idle_timeout_secs: number;
  /** Server connection is closed after this many seconds of life (0 = never). */
  server_lifetime_secs: number;
  /** How long a client waits for a free server before 53300/08006-class error. */
  wait_timeout_secs: number;
  /** Statement run on a server before it goes to another client in session mode. */
  reset_query: string;
  /** Functions taken as keeping no session state (besides the built-in stateless ones). */
  stateless_functions: string[];
  /** Run reset_query after every transaction in transaction and statement modes too. */
  reset_query_always: boolean;
  /** Named protocol statements kept per server connection (LRU). */
  prepared_statements_per_server: number;
  /** Seconds to wait for a backend TCP connect + login. */
  connect_timeout_secs: number;
}

export interface LimitsSection {
  max_client_conn: number;
  /** 0 = unlimited */
  max_db_connections: number;
  max_user_connections: number;
  /** Largest message (declared length) a logged-in client may send. */
  max_message_bytes: number;
}

export interface TimeoutsSection {
  /** Cancel a running query after this many seconds (0 = off). */
  query_timeout_secs: number;
  /** Close a client idle in a transaction for this long (0 = off). */
  idle_in_transaction_timeout_secs: number;
  /** Close a client idle (outside a transaction) for this long (0 = off). */
  client_idle_timeout_secs: number;
}

export interface TlsSection {
  mode: ClientTlsMode;
  cert_file: string;
  key_file: string;
  /** CA used to verify client certificates ("" = no client certs requested). */
  ca_file: string;
  server_sslmode: ServerSslMode;
  /** CA used to verify the server certificate (verify-ca / verify-full). */
  server_ca_file: string;
}

export interface UserEntry {
  name: string;
  /** Plain password or a "SCRAM-SHA-256$..." verifier or "md5..." hash. */
  password: string;
  /** Password the proxy uses towards PostgreSQL; defaults to `password` when it is plain. */
  server_password: string;
  /** Empty = use [auth] method */
  auth_method: ClientAuthMethod | "";
  pool_mode: PoolMode | "";
  max_connections: number; // 0 = unlimited
}

export interface AuthSection {
  method: ClientAuthMethod;
  /** Query returning (usename, passwd) for a user, run with $1 = user name. "" = off. */
  auth_query: string;
  auth_user: string;
  auth_password: string;
  auth_database: string;
  /** Users allowed into the admin console (virtual database `heliosproxy`). */
  admin_users: string[];
  stats_users: string[];
}

export interface HealthSection {
  check_interval_secs: number;
  check_timeout_secs: number;
  check_query: string;
  failure_threshold: number;
  recovery_threshold: number;
  /** Credentials of the probe connections. */
  user: string;
  password: string;
  database: string;
}

export interface LoadBalancerSection {
  strategy: LbStrategy;
  read_write_split: boolean;
  /** Extra functions whose calls are safe on a standby. */
  read_safe_functions: string[];
}

export interface NodeEntry {
  name: string;
  host: string;
  port: number;
  role: NodeRole;
  sync: boolean;
  weight: number;
}

export type TopologyProviderName = "postgres" | "manual" | "patroni" | "heliosdb";

export interface TopologySection {
  provider: TopologyProviderName;
  /** Patroni REST API base URLs (any member answers GET /cluster for all). */
  patroni_urls: string[];
  poll_interval_secs: number;
  request_timeout_secs: number;
}

export type FailoverPolicy = "auto" | "manual" | "off";

/** Who owns synchronous_standby_names across a primary change ([failover] synchronous). */
export type SyncMode = "remaining" | "strict" | "keep" | "off";

export interface FailoverSection {
  policy: FailoverPolicy;
  prefer_sync: boolean;
  max_lag_bytes: number;
  confirm_interval_secs: number;
  promote_timeout_secs: number;
  soft_fence: boolean;
  fence_command: string;
  promote_command: string;
  repoint_standbys: boolean;
  synchronous: SyncMode;
  sync_wait_timeout_secs: number;
  rejoin_command: string;
  buffer_timeout_secs: number;
  buffer_max_clients: number;
  drain_timeout_secs: number;
}

export type CoordinationBackend = "none" | "etcd";

export interface CoordinationSection {
  backend: CoordinationBackend;
  /** etcd client URLs ("http://10.0.0.1:2379"), tried in order. */
  endpoints: string[];
  /** Keys of this cluster live under this prefix (one prefix per database cluster). */
  key_prefix: string;
  lease_ttl_secs: number;
  request_timeout_secs: number;
  username: string;
  password: string;
  ca_file: string;
  cert_file: string;
  key_file: string;
  /** This proxy's name in the fleet ("" = host name and admin port). */
  proxy_name: string;
  /** Where other proxies reach this proxy's admin API ("" = http://admin_address). */
  advertise_admin_url: string;
}

export interface HeliosConfig {
  /** Absolute path of the file this came from ("" when built in code). */
  source: string;
  proxy: ProxySection;
  pool: PoolSection;
  limits: LimitsSection;
  timeouts: TimeoutsSection;
  tls: TlsSection;
  auth: AuthSection;
  users: UserEntry[];
  health: HealthSection;
  load_balancer: LoadBalancerSection;
  nodes: NodeEntry[];
  topology: TopologySection;
  failover: FailoverSection;
  coordination: CoordinationSection;
  /** Feature-module sections, validated by each module: `[name]` -> raw table. */
  modules: Record<string, Record<string, unknown>>;
}
