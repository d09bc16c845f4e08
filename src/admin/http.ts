// Admin HTTP API on [proxy] admin_address: health, nodes, topology, pools, metrics, drain, pause, reload, dashboard.

import type { ProxyContext } from "../core/context.ts";
import type { NodeView } from "../cluster/cluster.ts";
import type { SyncReport } from "../cluster/sync-watch.ts";
import { parseAddress } from "../config/schema.ts";
import { configRows } from "../config/load.ts";
import { constantTimeEqual } from "../protocol/secrets.ts";
import { log } from "../util/log.ts";
import { isPaused, pause, resume, waitUntilIdle } from "../core/pause.ts";
import type { createMetrics } from "./metrics.ts";
import { DASHBOARD_HTML } from "./dashboard.ts";
import { openApiDocument } from "./openapi.ts";
import { failoversView, primaryChange, pushEvents, readJsonBody, setPrimary } from "./ha-routes.ts";
import { CLUSTER_ALARM_PREFIX, clusterAlarms } from "./alarms-view.ts";
import { HISTORY_SPAN_MS, MetricHistory } from "./history.ts";
import { LATENCY_SAMPLE_EVERY } from "../util/latency.ts";

export type ReloadResult = { ok: boolean; error?: string };

export interface AdminOptions {
  /** Re-read and apply the config file (POST /reload). Defaults to ctx.reload. */
  reload?: () => Promise<ReloadResult>;
  /** Where HELIOSPROXY_ADMIN_TOKEN / HELIOSPROXY_READ_TOKEN are read (default: process.env). */
  env?: Record<string, string | undefined>;
}

export interface AdminServer {
  readonly port: number;
  readonly url: string;
  stop(): void;
}

/** Longest wait a drain or pause request may ask for, seconds. */
const MAX_WAIT_SECS = 300;

type Handler = (r: AdminRequest) => Response | Promise<Response>;

interface Route {
  method: "GET" | "POST";
  /** Path segments; ":id" captures one. */
  segments: string[];
  /** Served without a token: static content or a bare yes/no, no proxy state in it (decided per request). */
  public?: () => boolean;
  handler: Handler;
}

interface AdminRequest {
  req: Request;
  url: URL;
  params: Record<string, string>;
}

/** Who may do what: tokens from the environment, enforced when set or when bound beyond loopback. */
interface Security {
  adminToken: string;
  readToken: string;
  enforced: boolean;
  loopback: boolean;
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" };

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", { status, headers: { ...JSON_HEADERS, ...headers } });
}

const reply = (r: { status: number; body: unknown }): Response => json(r.status, r.body);

function fail(status: number, error: string, message: string, headers: Record<string, string> = {}): Response {
  return json(status, { error, message }, headers);
}

// ---- views -------------------------------------------------------------------------------

export type NodeState = "up" | "down" | "draining";

export function nodeState(n: NodeView): NodeState {
  return n.health === "down" ? "down" : n.drained ? "draining" : "up";
}

function poolCountsByNode(ctx: ProxyContext): Map<string, { active: number; idle: number; connecting: number; waiting: number; total: number }> {
  const out = new Map<string, { active: number; idle: number; connecting: number; waiting: number; total: number }>();
  for (const n of ctx.cluster.snapshot()) out.set(n.name, { active: 0, idle: 0, connecting: 0, waiting: 0, total: 0 });
  for (const p of ctx.clientPools()) {
    const acc = out.get(p.node);
    if (acc === undefined) continue;
    const c = p.counts();
    acc.active += c.active;
    acc.idle += c.idle;
    acc.connecting += c.connecting;
    acc.waiting += c.waiting;
    acc.total += c.total;
  }
  return out;
}

function round(x: number | null, digits = 3): number | null {
  if (x === null) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function nodeJson(n: NodeView, pools?: ReturnType<typeof poolCountsByNode>, sync?: SyncReport) {
  const sr = sync?.nodes[n.name];
  return {
    id: n.name,
    host: n.host,
    port: n.port,
    role: n.role,
    state: nodeState(n),
    drained: n.drained,
    sync: n.sync,
    weight: n.weight,
    lag_bytes: n.lagBytes,
    lag_seconds: round(n.lagSeconds),
    latency_ms: round(n.latencyMs),
    last_error: n.lastError || null,
    pools: pools?.get(n.name) ?? { active: 0, idle: 0, connecting: 0, waiting: 0, total: 0 },
    synchronous_standby_names: sr?.synchronous_standby_names ?? null,
    application_name: sr?.application_name ?? null,
    sync_after_promotion: sr?.after_promotion ?? null,
  };
}

function healthView(ctx: ProxyContext, startedAt: number): { ok: boolean; body: Record<string, unknown> } {
  const reasons: string[] = [];
  if (ctx.shuttingDown) reasons.push("proxy is shutting down");
  const nodes = ctx.cluster.snapshot();
  const primary = nodes.find((n) => n.role === "primary");
  if (primary === undefined) reasons.push("no node is primary");
  else if (primary.health === "down") reasons.push(`primary ${primary.name} is down${primary.lastError ? `: ${primary.lastError}` : ""}`);
  const count = (s: NodeState) => nodes.filter((n) => nodeState(n) === s).length;
  // Degraded still serves (200): traffic goes on, but this proxy cannot take part in fleet decisions.
  const degraded = ctx.fleet?.degraded() ?? null;
  const body = {
    status: reasons.length > 0 ? "unavailable" : degraded !== null ? "degraded" : "ok",
    reasons,
    ...(ctx.fleet ? { degraded: degraded === null ? [] : [degraded], fleet_leader: ctx.fleet.leader()?.name ?? null } : {}),
    primary: primary?.name ?? null,
    paused: isPaused(ctx),
    nodes: { total: nodes.length, up: count("up"), down: count("down"), draining: count("draining") },
    clients: ctx.clientCount,
    uptime_seconds: Math.round((performance.now() - startedAt) / 1000),
    synchronous_replication: syncSummary(ctx),
  };
  return { ok: reasons.length === 0, body };
}

/** Layout problems that would stop a promoted standby from committing, and the SyncRep alarm (they do not make /health fail). */
function syncSummary(ctx: ProxyContext) {
  const r = ctx.failover?.sync.report();
  if (r === undefined) return null;
  return { mode: r.mode, problems: r.problems, alarm: r.alarm || null, waiting: r.waiting, waits_ended: r.waits_ended };
}

/**
 * Ready for traffic (GET /readyz): not shutting down, and writes have a primary that is up, or
 * reads may go to a standby that is up (read_write_split). The listener is bound before the admin API.
 */
export function isReady(ctx: ProxyContext): boolean {
  if (ctx.shuttingDown) return false;
  const nodes = ctx.cluster.snapshot();
  if (nodes.some((n) => n.role === "primary" && n.health === "up")) return true;
  return ctx.config.load_balancer.read_write_split && nodes.some((n) => n.role === "standby" && n.health === "up" && !n.fenced && !n.drained);
}

/** A probe answer: status code and one word, nothing else about the proxy. */
function probe(ok: boolean, word: string): Response {
  return new Response(`${ok ? "ok" : word}\n`, { status: ok ? 200 : 503, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });
}

function topologyView(ctx: ProxyContext) {
  const nodes = ctx.cluster.snapshot();
  return {
    primary: nodes.find((n) => n.role === "primary")?.name ?? null,
    standbys: nodes.filter((n) => n.role === "standby" && !n.fenced).map((n) => n.name),
    fenced: nodes.filter((n) => n.fenced).map((n) => n.name),
    version: ctx.cluster.version,
    epoch: ctx.cluster.epoch,
    provider: ctx.config.topology.provider,
    nodes: nodes.map((n) => ({
      id: n.name,
      host: n.host,
      port: n.port,
      role: n.role,
      sync: n.sync,
      state: nodeState(n),
      fenced: n.fenced,
      timeline: n.status?.timeline ?? null,
      wal_lsn: n.status?.walLsn ?? null,
      lag_bytes: n.lagBytes,
      lag_seconds: round(n.lagSeconds),
    })),
  };
}

function poolsView(ctx: ProxyContext, startedAt: number) {
  const pools = [];
  for (const p of ctx.clientPools()) {
    const c = p.counts();
    const s = p.stats;
    pools.push({
      database: p.database,
      user: p.user,
      node: p.node,
      mode: ctx.userEntry(p.user)?.pool_mode || ctx.config.pool.mode,
      paused: p.paused,
      clients: p.clients,
      active: c.active,
      idle: c.idle,
      connecting: c.connecting,
      waiting: c.waiting,
      total: c.total,
      xact_count: s.xactCount,
      query_count: s.queryCount,
      bytes_in: s.bytesIn,
      bytes_out: s.bytesOut,
      wait_count: s.waitCount,
      avg_wait_us: s.waitCount > 0 ? Math.round(s.totalWaitUs / s.waitCount) : 0,
      max_wait_us: Math.round(s.maxWaitUs),
    });
  }
  // A monotonic sample time, so rates come out right whatever the reader's clock does.
  return { uptime_ms: round(performance.now() - startedAt), pools };
}

/** Leased servers on `node` made before its last recycle (the drain): in-flight work that must finish. */
function inFlight(ctx: ProxyContext, node: string): number {
  let n = 0;
  for (const p of ctx.allPools()) {
    if (p.node !== node) continue;
    for (const s of p.all) if (s.generation !== p.generation) n++;
  }
  return n;
}

// ---- handlers ----------------------------------------------------------------------------

function parseWait(url: URL): number | Response {
  const raw = url.searchParams.get("wait");
  if (raw === null) return 0;
  const secs = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(secs) || secs < 0 || secs > MAX_WAIT_SECS)
    return fail(400, "bad_request", `wait: expected seconds between 0 and ${MAX_WAIT_SECS}, got ${JSON.stringify(raw)}`);
  return secs;
}

function drainHandler(ctx: ProxyContext, drained: boolean): Handler {
  return async ({ url, params }) => {
    const id = params.id!;
    const wait = drained ? parseWait(url) : 0;
    if (wait instanceof Response) return wait;
    if (!ctx.cluster.setDrained(id, drained)) return fail(404, "not_found", `no node named ${JSON.stringify(id)}`);
    log.info(drained ? `node ${id} drained via admin API` : `node ${id} back in rotation via admin API`);
    const fleet = ctx.fleet ? { fleet: await ctx.fleet.shareDrain(id, drained) } : {};
    const deadline = performance.now() + wait * 1000;
    while (wait > 0 && inFlight(ctx, id) > 0 && performance.now() < deadline && ctx.cluster.node(id)?.drained) await Bun.sleep(50);
    const left = inFlight(ctx, id);
    const node = nodeJson(ctx.cluster.node(id)!, poolCountsByNode(ctx));
    return json(200, drained ? { node, in_flight: left, complete: left === 0, ...fleet } : { node, ...fleet });
  };
}

/** The alarm list as of now: the cluster's derived ones brought up to date, then every raised one. */
function alarmsView(ctx: ProxyContext) {
  ctx.alarms.reconcile(CLUSTER_ALARM_PREFIX, clusterAlarms(ctx));
  return { alarms: ctx.alarms.list().map((a) => ({ ...a, since: new Date(a.since).toISOString() })) };
}

function buildRoutes(ctx: ProxyContext, reload: () => Promise<ReloadResult>, startedAt: number, history: MetricHistory): Route[] {
  // Built on the first scrape: a proxy nobody scrapes pays nothing for it.
  let metrics: ReturnType<typeof createMetrics> | null = null;
  const route = (method: Route["method"], path: string, handler: Handler, isPublic?: () => boolean): Route => ({
    method,
    segments: path.split("/").filter(Boolean),
    handler,
    public: isPublic,
  });
  const always = () => true;
  return [
    route("GET", "/", () => new Response(DASHBOARD_HTML, { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } }), always),
    route("GET", "/openapi.json", () => json(200, openApiDocument(ctx.moduleRoutes)), always),
    // Orchestrator probes: no token, and nothing in the answer but ok or not.
    route("GET", "/livez", () => probe(true, "ok"), always),
    route("GET", "/readyz", () => probe(isReady(ctx), "not ready"), always),
    route("GET", "/health", () => {
      const h = healthView(ctx, startedAt);
      return json(h.ok ? 200 : 503, h.body);
    }),
    route("GET", "/nodes", () => {
      const counts = poolCountsByNode(ctx);
      const sync = ctx.failover?.sync.report();
      return json(200, { nodes: ctx.cluster.snapshot().map((n) => nodeJson(n, counts, sync)) });
    }),
    route("GET", "/nodes/:id", ({ params }) => {
      const n = ctx.cluster.node(params.id!);
      return n ? json(200, nodeJson(n, poolCountsByNode(ctx), ctx.failover?.sync.report())) : fail(404, "not_found", `no node named ${JSON.stringify(params.id)}`);
    }),
    route("GET", "/topology", () => json(200, topologyView(ctx))),
    route("GET", "/pools", () => json(200, poolsView(ctx, startedAt))),
    route("GET", "/config", () => json(200, { settings: configRows(ctx.config) })),
    route(
      "GET",
      "/metrics",
      async () => {
        // prom-client is loaded on the first scrape: a proxy nobody scrapes does not carry it.
        metrics ??= (await import("./metrics.ts")).createMetrics(ctx);
        let text = await metrics.metrics();
        for (const render of ctx.moduleMetrics) text += render();
        return new Response(text, { headers: { "content-type": metrics.contentType, "cache-control": "no-store" } });
      },
      // [proxy] metrics_public: scrapers without a token (read per request, so a reload applies it).
      () => ctx.config.proxy.metrics_public,
    ),
    route("POST", "/nodes/:id/drain", drainHandler(ctx, true)),
    route("POST", "/nodes/:id/undrain", drainHandler(ctx, false)),
    // As the console's PAUSE and RESUME (core/pause.ts), but repeating one is not an error.
    route("POST", "/pause", async ({ url }) => {
      const wait = parseWait(url);
      if (wait instanceof Response) return wait;
      if (pause(ctx, null)) log.info("proxy paused via admin API");
      const fleet = ctx.fleet ? { fleet: await ctx.fleet.sharePause(true) } : {};
      const busy = await waitUntilIdle(ctx, null, wait * 1000);
      return json(200, { paused: isPaused(ctx), pools: [...ctx.clientPools()].length, busy, complete: busy === 0, ...fleet });
    }),
    route("POST", "/resume", async () => {
      if (resume(ctx, null)) log.info("proxy resumed via admin API");
      const fleet = ctx.fleet ? { fleet: await ctx.fleet.sharePause(false) } : {};
      return json(200, { paused: false, pools: [...ctx.clientPools()].length, ...fleet });
    }),
    route("GET", "/fleet", () => (ctx.fleet ? json(200, ctx.fleet.view()) : json(200, { backend: "none", proxies: [] }))),
    route("POST", "/failover", async ({ req }) => reply(await primaryChange(ctx, "failover", await readJsonBody(req), req.headers))),
    route("POST", "/switchover", async ({ req }) => reply(await primaryChange(ctx, "switchover", await readJsonBody(req), req.headers))),
    route("GET", "/failovers", () => reply(failoversView(ctx))),
    route("GET", "/alarms", () => json(200, alarmsView(ctx))),
    route("GET", "/history", () =>
      json(200, { step_ms: history.stepMs, span_ms: HISTORY_SPAN_MS, latency_sample_every: LATENCY_SAMPLE_EVERY, now: new Date().toISOString(), points: history.list() }),
    ),
    route("POST", "/topology/primary", async ({ req }) => reply(await setPrimary(ctx, await readJsonBody(req)))),
    route("POST", "/topology/events", async ({ req }) => reply(pushEvents(ctx, await readJsonBody(req)))),
    route("POST", "/reload", async () => {
      const r = await reload();
      return r.ok ? json(200, { status: "reloaded" }) : fail(400, "invalid_config", r.error ?? "reload failed");
    }),
  ];
}

// ---- routing and auth --------------------------------------------------------------------

/** Match the path against the table: the route, its params, or the methods the path allows. */
function match(routes: Route[], method: string, segs: string[]): { route: Route; params: Record<string, string> } | { allow: string[] } | null {
  const allow: string[] = [];
  for (const r of routes) {
    if (r.segments.length !== segs.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < segs.length && ok; i++) {
      const want = r.segments[i]!;
      if (want.startsWith(":")) params[want.slice(1)] = segs[i]!;
      else ok = want === segs[i];
    }
    if (!ok) continue;
    if (r.method === method || (method === "HEAD" && r.method === "GET")) return { route: r, params };
    allow.push(r.method);
  }
  return allow.length > 0 ? { allow } : null;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

function security(address: string, env: Record<string, string | undefined>): Security {
  const host = parseAddress(address)?.host ?? "";
  const adminToken = env.HELIOSPROXY_ADMIN_TOKEN?.trim() ?? "";
  const readToken = env.HELIOSPROXY_READ_TOKEN?.trim() ?? "";
  const loopback = isLoopbackHost(host);
  return { adminToken, readToken, loopback, enforced: !loopback || adminToken !== "" || readToken !== "" };
}

/** Null when the request may go on; otherwise the refusal. */
function authorize(req: Request, url: URL, route: Route, sec: Security): Response | null {
  if (route.method === "POST") {
    // A page on another origin must not drive a loopback admin API through the operator's browser.
    const origin = req.headers.get("origin");
    if (origin !== null && origin !== `${url.protocol}//${req.headers.get("host") ?? ""}`)
      return fail(403, "forbidden", "cross-origin requests are refused");
  }
  if (route.public?.()) return null;
  if (!sec.enforced) {
    // Open on loopback; a foreign Host header means DNS rebinding, not an operator.
    const hostHeader = (req.headers.get("host") ?? "").replace(/:\d+$/, "");
    return isLoopbackHost(hostHeader) ? null : fail(403, "forbidden", `host ${JSON.stringify(hostHeader)} is not a loopback name`);
  }
  const challenge = { "www-authenticate": 'Bearer realm="heliosproxy"' };
  if (sec.adminToken === "" && sec.readToken === "")
    return fail(401, "unauthorized", "the admin API is bound beyond loopback: set HELIOSPROXY_ADMIN_TOKEN (and HELIOSPROXY_READ_TOKEN for read-only access)", challenge);
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.get("authorization") ?? "");
  if (m === null) return fail(401, "unauthorized", "missing token: send Authorization: Bearer <token>", challenge);
  const isAdmin = sec.adminToken !== "" && constantTimeEqual(m[1]!, sec.adminToken);
  const isRead = sec.readToken !== "" && constantTimeEqual(m[1]!, sec.readToken);
  if (!isAdmin && !isRead) return fail(401, "unauthorized", "invalid token", challenge);
  if (route.method === "POST" && !isAdmin) return fail(403, "forbidden", "this token is read-only; POST needs the admin token");
  return null;
}

/** Start the admin server on the configured admin_address. Throws when the address cannot be bound. */
export function startAdmin(ctx: ProxyContext, opts: AdminOptions = {}): AdminServer {
  const address = ctx.config.proxy.admin_address;
  const addr = parseAddress(address);
  if (!addr) throw new Error(`proxy.admin_address: cannot parse ${JSON.stringify(address)}`);
  const sec = security(address, opts.env ?? process.env);
  if (!sec.loopback && sec.adminToken === "" && sec.readToken === "")
    log.warn(`admin API on ${address} is beyond loopback and no HELIOSPROXY_ADMIN_TOKEN/HELIOSPROXY_READ_TOKEN is set: every request will be refused`);
  const startedAt = performance.now();
  // Kept whether or not anyone looks: a dashboard opened after an incident still shows it.
  const history = new MetricHistory(
    () => ctx.clientPools(),
    undefined,
    () => ctx.alarms.reconcile(CLUSTER_ALARM_PREFIX, clusterAlarms(ctx)),
  );
  history.start();
  const routes = buildRoutes(ctx, opts.reload ?? (() => ctx.reload()), startedAt, history);
  // Routes of feature modules (GET /queries...), under the same tokens.
  for (const [key, { handler }] of ctx.moduleRoutes) {
    const [method, path] = key.split(" ") as ["GET" | "POST", string];
    routes.push({ method, segments: path.split("/").filter(Boolean), handler: ({ req, url }) => handler(req, url) });
  }

  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    let segs: string[];
    try {
      segs = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    } catch {
      return fail(400, "bad_request", "malformed percent-encoding in the path");
    }
    const m = match(routes, req.method, segs);
    if (m === null) return fail(404, "not_found", `no route ${req.method} ${url.pathname}`);
    if ("allow" in m) return fail(405, "method_not_allowed", `${req.method} is not allowed on ${url.pathname}`, { allow: m.allow.join(", ") });
    const refused = authorize(req, url, m.route, sec);
    if (refused) return refused;
    const res = await m.route.handler({ req, url, params: m.params });
    return req.method === "HEAD" ? new Response(null, { status: res.status, headers: res.headers }) : res;
  };

  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: addr.host,
      port: addr.port,
      development: false,
      // A second proxy on the same address must fail to start, not share the port with this one.
      reusePort: false,
      maxRequestBodySize: 64 * 1024,
      async fetch(req) {
        try {
          return await handle(req);
        } catch (e) {
          log.error("admin request failed", { error: e, url: req.url });
          return fail(500, "internal_error", (e as Error).message);
        }
      },
      error(e) {
        return fail(500, "internal_error", e.message);
      },
    });
  } catch (e) {
    history.stop();
    throw new Error(`admin API cannot listen on ${address}: ${(e as Error).message}`);
  }
  log.info(`admin API on http://${address}/`);
  return {
    port: server.port ?? addr.port,
    url: `http://${address}/`,
    stop: () => {
      history.stop();
      void server.stop(true);
    },
  };
}
