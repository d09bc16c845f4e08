// OpenAPI 3.1 description of the admin HTTP API, served at GET /openapi.json.

import type { ModuleRoute } from "../core/module-host.ts";

const VERSION = (require("../../package.json") as { version: string }).version;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonBody = (schema: unknown, description: string) => ({ description, content: { "application/json": { schema } } });
const error = (description: string) => jsonBody(ref("Error"), description);
const int = { type: "integer", minimum: 0 };
const nullableNumber = { type: ["number", "null"] };

const nodeId = { name: "id", in: "path", required: true, description: "Node name ([[nodes]] name)", schema: { type: "string" } };
/** The ?wait=N of drain and pause (http.ts MAX_WAIT_SECS). */
const waitParam = (what: string) => ({ name: "wait", in: "query", required: false, description: `Seconds (0..300) to wait ${what}`, schema: { type: "number", minimum: 0, maximum: 300 } });

/** Refusals every protected route can answer with. */
const authErrors = {
  "401": error("Token missing or invalid (tokens are required when bound beyond loopback or when set)"),
  "403": error("Read-only token on a POST, cross-origin POST, or non-loopback Host without tokens"),
};

const schemas = {
  Error: {
    type: "object",
    required: ["error", "message"],
    properties: {
      error: { type: "string", examples: ["not_found", "method_not_allowed", "bad_request", "unauthorized", "forbidden", "invalid_config"] },
      message: { type: "string" },
    },
  },
  PoolCounts: {
    type: "object",
    required: ["active", "idle", "connecting", "waiting", "total"],
    properties: { active: int, idle: int, connecting: int, waiting: int, total: int },
  },
  Node: {
    type: "object",
    required: ["id", "host", "port", "role", "state", "lag_bytes", "lag_seconds", "latency_ms", "pools"],
    properties: {
      id: { type: "string" },
      host: { type: "string" },
      port: { type: "integer" },
      role: { enum: ["primary", "standby"] },
      state: { enum: ["up", "down", "draining"], description: "down wins over draining" },
      drained: { type: "boolean" },
      sync: { type: "boolean" },
      weight: { type: "number" },
      lag_bytes: { type: ["integer", "null"], description: "null until measured" },
      lag_seconds: nullableNumber,
      latency_ms: nullableNumber,
      last_error: { type: ["string", "null"] },
      pools: ref("PoolCounts"),
      synchronous_standby_names: { type: ["string", "null"], description: "The node's setting (null until probed)" },
      application_name: { type: ["string", "null"], description: "Name it streams under as a standby (primary_conninfo; null when not readable)" },
      sync_after_promotion: { type: ["string", "null"], description: "Why its commits would wait forever once promoted (null: they would not)" },
    },
  },
  Pool: {
    type: "object",
    properties: {
      database: { type: "string" },
      user: { type: "string" },
      node: { type: "string" },
      mode: { enum: ["session", "transaction", "statement"] },
      paused: { type: "boolean" },
      clients: { ...int, description: "Logged-in clients whose home pool this is" },
      active: int,
      idle: int,
      connecting: int,
      waiting: int,
      total: int,
      xact_count: int,
      query_count: int,
      bytes_in: int,
      bytes_out: int,
      wait_count: int,
      avg_wait_us: int,
      max_wait_us: int,
    },
  },
  Health: {
    type: "object",
    required: ["status", "reasons"],
    properties: {
      status: { enum: ["ok", "degraded", "unavailable"], description: "degraded (still 200): under [coordination] etcd does not answer; this proxy does not promote" },
      reasons: { type: "array", items: { type: "string" } },
      degraded: { type: "array", items: { type: "string" }, description: "Under [coordination]: why this proxy is degraded (empty when etcd answers)" },
      fleet_leader: { type: ["string", "null"], description: "Under [coordination]: the fleet's leader" },
      primary: { type: ["string", "null"] },
      paused: { type: "boolean" },
      nodes: { type: "object", properties: { total: int, up: int, down: int, draining: int } },
      clients: int,
      uptime_seconds: int,
      synchronous_replication: {
        type: ["object", "null"],
        description: "synchronous_standby_names against the topology (reported, /health stays ok)",
        properties: {
          mode: { enum: ["remaining", "strict", "keep", "off"] },
          problems: { type: "array", items: { type: "string" }, description: "Standbys that could not commit once promoted" },
          alarm: { type: ["string", "null"], description: "Commits wait on SyncRep with no listed standby connected" },
          waiting: int,
          waits_ended: { ...int, description: "Requests ended with 08007 after failover.sync_wait_timeout_secs" },
        },
      },
    },
  },
  Topology: {
    type: "object",
    required: ["primary", "standbys", "nodes"],
    properties: {
      primary: { type: ["string", "null"] },
      standbys: { type: "array", items: { type: "string" } },
      fenced: { type: "array", items: { type: "string" }, description: "Old primaries out of rotation until they rejoin as standbys" },
      version: { type: "integer", description: "Bumped on every cluster change" },
      epoch: { type: "integer", description: "Failover epoch: bumped each time the primary changes" },
      provider: { enum: ["postgres", "manual", "patroni", "heliosdb"] },
      nodes: { type: "array", items: { type: "object" } },
    },
  },
  FailoverRecord: {
    type: "object",
    required: ["id", "kind", "trigger", "from", "to", "result", "reason", "started_at", "candidates", "steps"],
    properties: {
      id: int,
      kind: { enum: ["failover", "switchover"] },
      trigger: { enum: ["auto", "api", "fleet"] },
      from: { type: "string" },
      to: { type: ["string", "null"] },
      result: { enum: ["running", "done", "refused", "aborted", "failed"] },
      reason: { type: "string" },
      started_at: { type: "string", format: "date-time" },
      duration_ms: nullableNumber,
      hold_ms: { ...nullableNumber, description: "How long requests for the primary were held" },
      n0: { type: ["string", "null"], description: "pg_snapshot_xmax(pg_current_snapshot()) on the new primary before it took writes" },
      epoch: { type: ["integer", "null"] },
      fence: { type: "string" },
      ack_floor: { type: ["integer", "null"], description: "WAL position below which commits may have been acknowledged" },
      candidates: {
        type: "array",
        items: { type: "object", properties: { name: { type: "string" }, position: { type: ["integer", "null"] }, sync: { type: "boolean" }, eligible: { type: "boolean" }, reason: { type: "string" } } },
      },
      repointed: { type: "array", items: { type: "object", properties: { node: { type: "string" }, ok: { type: "boolean" }, ms: nullableNumber, error: { type: "string" } } } },
      steps: { type: "array", items: { type: "object", properties: { at_ms: { type: "number" }, step: { type: "string" } } } },
    },
  },
  TopologyEvent: {
    type: "object",
    required: ["type", "node"],
    properties: {
      type: { enum: ["PrimaryChanged", "NodeDown", "NodeUp", "LagChanged"] },
      node: { type: "string", description: "A configured node name" },
      reason: { type: "string", description: "NodeDown only" },
      lag_bytes: { type: ["number", "null"], minimum: 0, description: "LagChanged only (required there)" },
      lag_seconds: { type: ["number", "null"], minimum: 0, description: "LagChanged only" },
    },
  },
};

const target = {
  required: false,
  content: { "application/json": { schema: { type: "object", properties: { target: { type: "string", description: "Standby to promote (default: the best safe candidate)" } } } } },
};

const failoverBody = {
  required: false,
  content: {
    "application/json": {
      schema: {
        type: "object",
        properties: {
          target: { type: "string", description: "Standby to promote (default: the best safe candidate)" },
          force: { type: "boolean", description: "Promote even though the primary is up and answering (it is fenced); without it such a request is refused with 409" },
        },
      },
    },
  },
};

const paths = {
  "/": {
    get: { summary: "Dashboard (HTML; polls /nodes, /pools and /topology)", security: [], responses: { "200": { description: "HTML page", content: { "text/html": {} } } } },
  },
  "/openapi.json": {
    get: { summary: "This document", security: [], responses: { "200": jsonBody({ type: "object" }, "OpenAPI 3.1 document") } },
  },
  "/livez": {
    get: {
      summary: "Liveness for orchestrators: the process answers (no token; the body is only ok)",
      security: [],
      responses: { "200": { description: "Alive", content: { "text/plain": {} } } },
    },
  },
  "/readyz": {
    get: {
      summary: "Readiness for orchestrators: listening, not shutting down, a primary up (or a standby up with read_write_split); no token, the body is only ok or not ready",
      security: [],
      responses: { "200": { description: "Ready", content: { "text/plain": {} } }, "503": { description: "Not ready", content: { "text/plain": {} } } },
    },
  },
  "/health": {
    get: {
      summary: "Readiness: the primary is up and the proxy is not shutting down",
      responses: { "200": jsonBody(ref("Health"), "Ready"), "503": jsonBody(ref("Health"), "Not ready; reasons say why"), ...authErrors },
    },
  },
  "/nodes": {
    get: {
      summary: "Nodes with role, state, replication lag, latency and server connection counts",
      responses: {
        "200": jsonBody({ type: "object", required: ["nodes"], properties: { nodes: { type: "array", items: ref("Node") } } }, "All nodes"),
        ...authErrors,
      },
    },
  },
  "/nodes/{id}": {
    get: { summary: "One node", parameters: [nodeId], responses: { "200": jsonBody(ref("Node"), "The node"), "404": error("Unknown node"), ...authErrors } },
  },
  "/nodes/{id}/drain": {
    post: {
      summary: "Take a node out of rotation: in-flight transactions finish, idle servers close",
      parameters: [
        nodeId,
        waitParam("for in-flight work to finish"),
      ],
      responses: {
        "200": jsonBody(
          { type: "object", properties: { node: ref("Node"), in_flight: { ...int, description: "Servers leased before the drain still busy" }, complete: { type: "boolean" } } },
          "Drained",
        ),
        "400": error("Bad wait value"),
        "404": error("Unknown node"),
        ...authErrors,
      },
    },
  },
  "/nodes/{id}/undrain": {
    post: {
      summary: "Put a drained node back into rotation",
      parameters: [nodeId],
      responses: { "200": jsonBody({ type: "object", properties: { node: ref("Node") } }, "Back in rotation"), "404": error("Unknown node"), ...authErrors },
    },
  },
  "/topology": {
    get: { summary: "Who is primary and who are standbys, live (reflects promotions)", responses: { "200": jsonBody(ref("Topology"), "Topology"), ...authErrors } },
  },
  "/pools": {
    get: {
      summary: "Every pool (database, user, node) with counts and traffic totals",
      responses: {
        "200": jsonBody(
          {
            type: "object",
            required: ["uptime_ms", "pools"],
            properties: { uptime_ms: { type: "number", minimum: 0, description: "Monotonic sample time: rates are deltas of counters over deltas of this" }, pools: { type: "array", items: ref("Pool") } },
          },
          "All pools",
        ),
        ...authErrors,
      },
    },
  },
  "/config": {
    get: {
      summary: "The running configuration as SHOW CONFIG: every key with its value and default, module sections included, secrets masked",
      responses: {
        "200": jsonBody(
          {
            type: "object",
            required: ["settings"],
            properties: {
              settings: {
                type: "array",
                items: {
                  type: "object",
                  required: ["key", "value", "default", "changeable"],
                  properties: {
                    key: { type: "string", description: "Dotted key: pool.mode, nodes[0].host, query_analytics.slow_query_ms" },
                    value: { type: "string", description: "Current value; secrets show ********" },
                    default: { type: ["string", "null"], description: "Default from the schema; null for required keys" },
                    changeable: { type: "boolean", description: "Whether a reload applies a new value" },
                  },
                },
              },
            },
          },
          "Configuration rows",
        ),
        ...authErrors,
      },
    },
  },
  "/metrics": {
    get: { summary: "Prometheus text exposition (no token when [proxy] metrics_public = true)", responses: { "200": { description: "Metrics", content: { "text/plain": {} } }, ...authErrors } },
  },
  "/pause": {
    post: {
      summary: "Pause every client pool, as the console's PAUSE: new transactions queue; idle servers close now, busy ones when their transactions end",
      parameters: [waitParam("until no server is in a transaction (default 0: answer at once)")],
      responses: {
        "200": jsonBody(
          {
            type: "object",
            properties: {
              paused: { type: "boolean", description: "False when a resume came during the wait" },
              pools: int,
              busy: { ...int, description: "Servers still in a transaction" },
              complete: { type: "boolean", description: "True when no server is busy (they are all closed)" },
            },
          },
          "Paused",
        ),
        "400": error("Bad wait value"),
        ...authErrors,
      },
    },
  },
  "/resume": {
    post: { summary: "Undo /pause", responses: { "200": jsonBody({ type: "object", properties: { paused: { const: false }, pools: int } }, "Resumed"), ...authErrors } },
  },
  "/failover": {
    post: {
      summary: "Promote a standby now (the best safe candidate, or target): hold, choose, fence, promote, move, repoint",
      requestBody: failoverBody,
      responses: {
        "200": jsonBody(ref("FailoverRecord"), "Done: the record"),
        "400": error("Body not JSON, or target not a standby of this cluster"),
        "409": error("failover.policy = off, one is in progress, the primary is up and force is not set (use /switchover), or no safe candidate (record included); nothing was done to the primary"),
        "500": error("A step failed (record included)"),
        ...authErrors,
      },
    },
  },
  "/switchover": {
    post: {
      summary: "Planned switchover: new transactions wait, open ones finish, the primary is fenced, the target catches up and is promoted",
      requestBody: target,
      responses: {
        "200": jsonBody(ref("FailoverRecord"), "Done: the record"),
        "400": error("Body not JSON, or target not a standby of this cluster"),
        "409": error("Policy off, primary down, in progress, no safe candidate, or open transactions outlived drain_timeout_secs (nothing changed)"),
        "500": error("A step failed (record included)"),
        ...authErrors,
      },
    },
  },
  "/failovers": {
    get: {
      summary: "Failover history (newest first), what is running, the alarm, the switchover buffer",
      responses: {
        "200": jsonBody(
          {
            type: "object",
            properties: {
              policy: { enum: ["auto", "manual", "off"] },
              provider: { type: "string" },
              epoch: int,
              primary: { type: "string" },
              in_progress: { oneOf: [ref("FailoverRecord"), { type: "null" }] },
              alarm: { type: ["string", "null"] },
              fleet: { type: ["object", "null"], description: "Under [coordination]: leader, whether this proxy leads, the fleet's last failover record" },
              buffer: { type: "object" },
              failovers: { type: "array", items: ref("FailoverRecord") },
            },
          },
          "History and state",
        ),
        ...authErrors,
      },
    },
  },
  "/fleet": {
    get: {
      summary: "The fleet of proxies coordinated through etcd ([coordination] backend etcd): leader, epoch, the last failover record, followers' reports of the primary down, shared state, each proxy's heartbeat (version, view)",
      responses: {
        "200": jsonBody(
          {
            type: "object",
            properties: {
              backend: { enum: ["none", "etcd"] },
              self: { type: "string" },
              leader: { type: ["string", "null"] },
              leader_admin_url: { type: ["string", "null"] },
              is_leader: { type: "boolean" },
              etcd: { type: "object" },
              degraded: { type: ["string", "null"] },
              epoch: int,
              failover: { type: ["object", "null"] },
              primary_down_reports: {
                type: "array",
                description: "Proxies whose heartbeat says the primary is down, and what the leader's own probe of it found since (none on a follower)",
                items: {
                  type: "object",
                  properties: { proxy: { type: "string" }, node: { type: "string" }, since: { type: "string" }, probe: { enum: ["none", "pending", "answered", "failed"] } },
                },
              },
              shared: { type: "object" },
              proxies: { type: "array", items: { type: "object" } },
            },
          },
          "The fleet as this proxy sees it",
        ),
        ...authErrors,
      },
    },
  },
  "/alarms": {
    get: {
      summary: "Raised alarms, critical first: the cluster's (no primary, no safe failover candidate, synchronous layout that would hang, nodes down, paused) and those other parts raise (Patroni unreachable...)",
      responses: {
        "200": jsonBody(
          {
            type: "object",
            properties: {
              alarms: {
                type: "array",
                items: {
                  type: "object",
                  properties: { key: { type: "string" }, severity: { enum: ["critical", "warning"] }, title: { type: "string" }, detail: { type: "string" }, since: { type: "string", format: "date-time" } },
                },
              },
            },
          },
          "Alarms",
        ),
        ...authErrors,
      },
    },
  },
  "/history": {
    get: {
      summary: "The last hour, one point per step: requests per second, latency p50/p95/p99 (ms, from sampled requests) and errors by SQLSTATE",
      responses: {
        "200": jsonBody(
          {
            type: "object",
            properties: {
              step_ms: int,
              span_ms: int,
              latency_sample_every: int,
              now: { type: "string", format: "date-time" },
              points: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    t: { type: "integer", description: "end of the step, ms since the epoch" },
                    qps: { type: "number" },
                    p50_ms: { type: ["number", "null"] },
                    p95_ms: { type: ["number", "null"] },
                    p99_ms: { type: ["number", "null"] },
                    timed: int,
                    errors: { type: "object", additionalProperties: int },
                  },
                },
              },
            },
          },
          "History, oldest first",
        ),
        ...authErrors,
      },
    },
  },
  "/topology/primary": {
    post: {
      summary: "Provider manual: the operator names the primary (no promotion is done)",
      requestBody: { required: true, content: { "application/json": { schema: { type: "object", required: ["node"], properties: { node: { type: "string" } } } } } },
      responses: {
        "200": jsonBody({ type: "object", properties: { primary: { type: "string" }, epoch: int } }, "Primary set"),
        "400": error("Unknown node or bad body"),
        "409": error("The provider is not manual"),
        ...authErrors,
      },
    },
  },
  "/topology/events": {
    post: {
      summary: "Provider heliosdb: an orchestrator pushes one event or {events: [...]}; the batch is validated whole, then applied in order",
      requestBody: { required: true, content: { "application/json": { schema: { oneOf: [ref("TopologyEvent"), { type: "object", properties: { events: { type: "array", items: ref("TopologyEvent"), maxItems: 1000 } } }] } } } },
      responses: {
        "200": jsonBody({ type: "object", properties: { applied: int, primary: { type: "string" }, epoch: int } }, "Applied"),
        "400": error("An invalid event (message names its index and field); nothing applied"),
        "409": error("The provider is not heliosdb"),
        ...authErrors,
      },
    },
  },
  "/reload": {
    post: {
      summary: "Re-read the config file; on any error the running configuration stays",
      responses: {
        "200": jsonBody({ type: "object", properties: { status: { const: "reloaded" } } }, "Applied"),
        "400": error("The new config is invalid (message names file, line and key)"),
        ...authErrors,
      },
    },
  },
};

/** The OpenAPI path items of the routes the running modules added ("GET /queries" -> doc). */
function modulePaths(routes: ReadonlyMap<string, ModuleRoute>): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [key, { doc }] of routes) {
    const [method, path] = key.split(" ") as [string, string];
    const parameters = Object.entries(doc.query ?? {}).map(([name, description]) => ({ name, in: "query", required: false, description, schema: { type: "string" } }));
    (out[path] ??= {})[method.toLowerCase()] = {
      summary: doc.summary,
      tags: ["modules"],
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(doc.body !== undefined ? { requestBody: { required: false, content: { "application/json": { schema: doc.body } } } } : {}),
      responses: {
        "200": jsonBody({ type: "object" }, doc.returns),
        "400": error("A parameter or the body is invalid (the message names it)"),
        ...authErrors,
      },
    };
  }
  return out;
}

export function openApiDocument(moduleRoutes: ReadonlyMap<string, ModuleRoute>): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "HeliosProxy admin API",
      version: VERSION,
      description:
        "Served on [proxy] admin_address. Bearer tokens come from HELIOSPROXY_ADMIN_TOKEN (everything) and " +
        "HELIOSPROXY_READ_TOKEN (GET only); they are required when the address is beyond loopback and checked whenever set. " +
        "Errors are JSON: {error, message}. Unknown routes answer 404, wrong methods 405.",
    },
    servers: [{ url: "/" }],
    security: [{ bearer: [] }, {}],
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } }, schemas },
    paths: { ...paths, ...modulePaths(moduleRoutes) },
  };
}
