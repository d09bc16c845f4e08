// OpenAPI 3.1 description of the admin HTTP API, served at GET /openapi.json.

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
      status: { enum: ["ok", "unavailable"] },
      reasons: { type: "array", items: { type: "string" } },
      primary: { type: ["string", "null"] },
      paused: { type: "boolean" },
      nodes: { type: "object", properties: { total: int, up: int, down: int, draining: int } },
      clients: int,
      uptime_seconds: int,
    },
  },
  Topology: {
    type: "object",
    required: ["primary", "standbys", "nodes"],
    properties: {
      primary: { type: ["string", "null"] },
      standbys: { type: "array", items: { type: "string" } },
      version: { type: "integer", description: "Bumped on every cluster change" },
      nodes: { type: "array", items: { type: "object" } },
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
  "/metrics": {
    get: { summary: "Prometheus text exposition", responses: { "200": { description: "Metrics", content: { "text/plain": {} } }, ...authErrors } },
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

export function openApiDocument(): Record<string, unknown> {
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
    paths,
  };
}
