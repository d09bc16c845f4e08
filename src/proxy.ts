// Starting and stopping the proxy: listener, upkeep timer, timeouts, signals, reload.

import type { HeliosConfig } from "./config/types.ts";
import { ProxyContext, bufferSettings, serverPassword, statelessSet, type TlsMaterial } from "./core/context.ts";
import { listenClients } from "./client/listener.ts";
import { clientsOf } from "./client/registry.ts";
import { prewarmVerifiers } from "./client/auth.ts";
import type { ClientSession } from "./client/session.ts";
import { Errors, errorResponse } from "./protocol/errors.ts";
import { TxStatus } from "./protocol/codes.ts";
import type { ServerConnection } from "./server/connection.ts";
import { log } from "./util/log.ts";
import { clock } from "./util/clock.ts";
import { HealthChecker, type HealthOptions } from "./cluster/health.ts";
import type { TopologyProvider } from "./cluster/topology.ts";
import { PatroniProvider } from "./cluster/providers/patroni.ts";
import { Cluster, type ClusterEvent, type NodeView } from "./cluster/cluster.ts";
import type { NodeEntry } from "./config/types.ts";
import { QueryClassifier, loadParser } from "./sql/classify.ts";
import { makeBalancer } from "./router/balancers.ts";
import { startAdmin } from "./admin/http.ts";
import { AdminConsole } from "./admin/console.ts";
import { FailoverController } from "./cluster/failover.ts";
import { startModules } from "./core/module-host.ts";
import { withNode } from "./cluster/node-sql.ts";
import { ReplicationConnection } from "./server/replication-stream.ts";
import { applyReload, busyServers, nodeLost, nodeUsable, primaryMoved } from "./server/pool-reactions.ts";
import { restartOnlyChanges } from "./config/restart-keys.ts";
import { configureLogging } from "./util/log.ts";
import { Fleet } from "./cluster/coordination/fleet.ts";
import { pause, resume } from "./core/pause.ts";

export interface RunningProxy {
  ctx: ProxyContext;
  port: number;
  stop(): Promise<void>;
}

function loadTls(cfg: HeliosConfig): TlsMaterial | null {
  const t = cfg.tls;
  if (t.mode === "disable" || !t.cert_file || !t.key_file) return null;
  const fs = require("node:fs") as typeof import("node:fs");
  return {
    cert: fs.readFileSync(t.cert_file, "utf8"),
    key: fs.readFileSync(t.key_file, "utf8"),
    ...(t.ca_file ? { ca: fs.readFileSync(t.ca_file, "utf8"), requestCert: true, rejectUnauthorized: false } : {}),
  };
}

/** What the probes decide: roles only under the `postgres` provider, health under all but `heliosdb` (whose orchestrator says). */
function healthOptions(cfg: HeliosConfig): HealthOptions {
  const provider = cfg.topology.provider;
  return { learnRoles: provider === "postgres", decideHealth: provider !== "heliosdb", confirmIntervalSecs: cfg.failover.confirm_interval_secs };
}

/** The provider that follows a topology kept elsewhere (none for postgres, where probes decide, or manual). */
function topologyProvider(ctx: ProxyContext, cfg: HeliosConfig): TopologyProvider | null {
  if (cfg.topology.provider === "patroni") return new PatroniProvider(ctx.cluster, cfg.topology, ctx.alarms);
  return null;
}

/** Health-check the configured nodes, follow the topology provider and react to cluster events. */
function watchCluster(ctx: ProxyContext, cfg: HeliosConfig): { health: HealthChecker; provider: TopologyProvider | null } {
  const health = new HealthChecker(ctx.cluster, cfg.health, (name) => ctx.endpoint(ctx.cluster.node(name)!), healthOptions(cfg));
  ctx.health = health;
  ctx.cluster.subscribe((e) => onClusterEvent(ctx, e));
  health.start();
  const provider = topologyProvider(ctx, cfg);
  provider?.start();
  return { health, provider };
}

/** Whether a reload changes which nodes there are or how to reach them. */
function nodesDiffer(current: readonly NodeView[], next: readonly NodeEntry[]): boolean {
  const key = (n: { name: string; host: string; port: number; role: string; sync: boolean; weight: number }) =>
    `${n.name}|${n.host}|${n.port}|${n.role}|${n.sync}|${n.weight}`;
  return current.map(key).join("\n") !== next.map(key).join("\n");
}

/**
 * The pools follow the event (server/pool-reactions.ts), the failover controller hears about its
 * primary, then the modules' onServerEvent hooks see it.
 */
function onClusterEvent(ctx: ProxyContext, e: ClusterEvent): void {
  const isPrimary = (e.type === "NodeDown" || e.type === "NodeUp") && ctx.cluster.primary().name === e.node;
  // Hold requests for a lost primary before its waiters are routed again (they then wait in the buffer).
  if (e.type === "NodeDown" && isPrimary) ctx.failover?.primaryDown(e.node, e.reason);
  if (isPrimary || e.type === "PrimaryChanged") ctx.fleet?.viewChanged();
  if (e.type === "PrimaryChanged") {
    ctx.failover?.primaryChanged(e);
    primaryMoved(ctx.allPools(), ctx.pools, e.from, `primary moved to ${e.to} (epoch ${e.epoch})`);
    log.warn(`primary is now ${e.to} (was ${e.from}; epoch ${e.epoch}): ${e.reason}`);
    ctx.failover?.awaitWritablePrimary(`waiting for ${e.to} to finish its promotion`);
  } else if (e.type === "PrimaryNotWritable") {
    ctx.failover?.awaitWritablePrimary(`primary ${e.node} reports it is in recovery`);
  } else if (e.type === "NodeDown" || (e.type === "NodeDrained" && e.drained)) {
    nodeLost(ctx.allPools(), e.node, e.type === "NodeDown" ? "node down" : "node drained");
  } else if (e.type === "NodeUp" || e.type === "NodeDrained") {
    const n = ctx.cluster.node(e.node);
    nodeUsable(ctx.allPools(), e.node, n !== undefined && n.health === "up" && !n.drained);
    if (e.type === "NodeUp" && isPrimary) ctx.failover?.primaryUp(e.node);
  }
  ctx.serverEvent?.(e);
}

function makeFailover(ctx: ProxyContext): FailoverController {
  return new FailoverController({
    cluster: () => ctx.cluster,
    settings: () => ctx.config.failover,
    health: () => ctx.health,
    buffer: ctx.buffer,
    endpoint: (n) => ctx.endpoint(n),
    creds: () => {
      const h = ctx.config.health;
      return { user: h.user, database: h.database, password: h.password || null };
    },
    timeoutSecs: () => ctx.config.health.check_timeout_secs,
    busyServers: (node) => busyServers(ctx.allPools(), node),
    fleet: () => ctx.fleet,
    endRequest: (node, pid, code, message) => endRequestOn(ctx, node, pid, code, message),
  });
}

/** The client whose server is backend `pid` on `node` gets FATAL `code` and its connection closes (the server is closed, never cancelled). */
function endRequestOn(ctx: ProxyContext, node: string, pid: number, code: string, message: string): boolean {
  for (const s of clientsOf(ctx)) {
    if (s.server === null || s.server.pid !== pid || s.server.endpoint.name !== node) continue;
    s.fatal(errorResponse({ severity: "FATAL", code, message }));
    return true;
  }
  return false;
}

/**
 * A request still running on a fenced old primary (its postmaster died or it cannot be reached:
 * a reachable one had its backends ended) is cut failover.buffer_timeout_secs after it started:
 * the server connection closes, so the client gets 08006 or transaction replay recovers it.
 */
function cutOnFencedNode(ctx: ProxyContext, s: ClientSession, now: number): boolean {
  const server = s.server!;
  const node = ctx.cluster.node(server.endpoint.name);
  if (node === undefined || !node.fenced || s.requestStartedAt === 0) return false;
  if (now - s.requestStartedAt <= ctx.config.failover.buffer_timeout_secs * 1000) return false;
  log.warn("a request on the fenced old primary did not finish; closing its server connection", { node: node.name, pid: server.pid });
  ctx.failover?.countCut();
  const reason = `no answer from the fenced old primary ${node.name} within failover.buffer_timeout_secs`;
  const lessee = server.lessee;
  server.close(reason);
  lessee?.serverLost(server, reason);
  return true;
}

/** Is this server's backend waiting for a synchronous standby (as the primary's last probe saw it)? */
function waitsOnSyncRep(ctx: ProxyContext, server: ServerConnection): boolean {
  const primary = ctx.cluster.primary();
  return primary.name === server.endpoint.name && (primary.status?.syncWaiters ?? []).some((w) => w.pid === server.pid);
}

/** Client-side timeouts, checked on every upkeep tick. */
function sweepClients(ctx: ProxyContext, now: number): void {
  const t = ctx.config.timeouts;
  const queryMs = t.query_timeout_secs * 1000;
  const idleTxMs = t.idle_in_transaction_timeout_secs * 1000;
  const idleMs = t.client_idle_timeout_secs * 1000;
  const loginMs = ctx.config.proxy.login_timeout_secs * 1000;
  for (const s of clientsOf(ctx)) {
    if (!s.loggedIn) {
      if (!s.closed && now - s.connectedAt > loginMs) s.fatal(Errors.loginTimeout());
      continue;
    }
    const busy = s.server !== null && s.server.owed > 0;
    if (busy) {
      if (cutOnFencedNode(ctx, s, now)) continue;
      // A commit waiting for a synchronous standby is never cancelled (it would become visible unreplicated): sync_wait_timeout_secs ends it.
      if (queryMs > 0 && s.requestStartedAt > 0 && now - s.requestStartedAt > queryMs && !waitsOnSyncRep(ctx, s.server!)) {
        s.requestStartedAt = now; // one cancel per timeout period
        s.forwardCancel();
      }
      continue;
    }
    const idleFor = now - s.lastActivity;
    if (s.txStatus !== TxStatus.Idle) {
      if (idleTxMs > 0 && idleFor > idleTxMs) s.fatal(Errors.idleInTransactionTimeout());
    } else if (idleMs > 0 && idleFor > idleMs) s.fatal(Errors.clientIdleTimeout());
  }
}

export async function startProxy(cfg: HeliosConfig, opts: { configPath: string }): Promise<RunningProxy> {
  const ctx = new ProxyContext(cfg);
  ctx.openConsole = (client) => new AdminConsole(ctx, client);
  ctx.tls = loadTls(cfg);
  prewarmVerifiers(ctx);
  ctx.failover = makeFailover(ctx);
  const modules = await startModules(cfg, () => ctx.cluster, (database, sql, params) => {
    const h = ctx.config.health;
    return withNode(ctx.primaryEndpoint(), { user: h.user, database, password: h.password || null }, h.check_timeout_secs * 1000, (db) => db.query(sql, params, h.check_timeout_secs * 1000));
  }, (database) => {
    const h = ctx.config.health;
    return ReplicationConnection.open(ctx.primaryEndpoint(), { user: h.user, database, password: h.password || null }, "heliosproxy-cache", h.check_timeout_secs * 1000);
  });
  ctx.hooks = modules.hooks;
  ctx.startupHooks = modules.startup;
  ctx.serverEvent = modules.serverEvent;
  ctx.commits = modules.commits;
  ctx.replay = modules.replay;
  ctx.tap = modules.tap;
  ctx.moduleRoutes = modules.routes;
  ctx.moduleShows = modules.shows;
  ctx.moduleMetrics = modules.metrics;
  if (ctx.splitting || ctx.replay !== null) await loadParser();
  let watch = watchCluster(ctx, cfg);
  if (cfg.coordination.backend === "etcd") {
    ctx.fleet = new Fleet(
      {
        cluster: () => ctx.cluster,
        config: () => ctx.config,
        failover: () => ctx.failover,
        setPaused: (paused) => (paused ? pause(ctx, null) : resume(ctx, null)),
        suspect: (node) => ctx.health?.probeNow(node) ?? Promise.resolve(true),
      },
      cfg.coordination,
    );
    await ctx.fleet.start();
  }
  const listener = listenClients(ctx, cfg.proxy.listen_address);
  const ticker = setInterval(() => {
    ctx.tick();
    ctx.failover?.tick();
    sweepClients(ctx, clock.now);
  }, 250);
  log.info(`listening on ${cfg.proxy.listen_address} (pool mode ${cfg.pool.mode})`);

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    if (stopping) return stopping;
    stopping = (async () => {
      ctx.shuttingDown = true;
      listener.stop(false);
      const deadline = performance.now() + cfg.proxy.shutdown_timeout_secs * 1000;
      // In-flight transactions finish; idle clients are told and closed.
      while (performance.now() < deadline) {
        for (const s of clientsOf(ctx)) {
          if (!s.loggedIn || s.server === null) s.fatal(Errors.shuttingDown());
        }
        if (clientsOf(ctx).size === 0) break;
        await Bun.sleep(50);
      }
      for (const s of clientsOf(ctx)) s.fatal(Errors.shuttingDown());
      clearInterval(ticker);
      watch.health.stop();
      watch.provider?.stop();
      await ctx.fleet?.stop();
      for (const p of ctx.allPools()) p.closeAll("proxy shutdown");
      listener.stop(true);
      admin.stop();
    })();
    return stopping;
  };

  const reload = async (): Promise<{ ok: boolean; error?: string }> => {
    if (!opts.configPath) return { ok: false, error: "no config file to reload" };
    try {
      const { loadConfig } = await import("./config/load.ts");
      const next = loadConfig(opts.configPath);
      // The running proxy keeps what it bound at start; say so for each such key the file changed.
      for (const change of restartOnlyChanges(ctx.config, next))
        log.warn(`reload: ${change} needs a restart; still using the old value`);
      // Keep serving on what is bound: the running values stay in the live config.
      next.proxy.listen_address = ctx.config.proxy.listen_address;
      next.proxy.admin_address = ctx.config.proxy.admin_address;
      next.coordination = ctx.config.coordination;
      configureLogging(next.proxy.log_level, next.proxy.log_format);
      ctx.config = next;
      ctx.buffer.settings = bufferSettings(next);
      ctx.tls = loadTls(next);
      ctx.classifier = new QueryClassifier(next.load_balancer.read_safe_functions);
      ctx.statelessFunctions = statelessSet(next);
      ctx.balancer = makeBalancer(next.load_balancer.strategy);
      if (ctx.splitting || ctx.replay !== null) await loadParser();
      if (nodesDiffer(ctx.cluster.snapshot(), next.nodes)) {
        // New node list: a new cluster view (drain marks kept by name) and health checker; pools follow.
        const drained = new Set(ctx.cluster.snapshot().filter((n) => n.drained).map((n) => n.name));
        watch.health.stop();
        watch.provider?.stop();
        ctx.cluster = new Cluster(next.nodes);
        for (const name of drained) ctx.cluster.setDrained(name, true);
        watch = watchCluster(ctx, next);
      } else {
        watch.health.reconfigure(next.health, healthOptions(next));
        if (JSON.stringify(next.topology) !== JSON.stringify(cfg.topology)) {
          watch.provider?.stop();
          watch.provider = topologyProvider(ctx, next);
          watch.provider?.start();
        }
      }
      cfg = next;
      applyReload(ctx.allPools(), {
        settings: (user) => ctx.poolSettings(ctx.userEntry(user)),
        password: (user) => {
          const entry = ctx.userEntry(user);
          return entry ? serverPassword(entry) : undefined;
        },
        endpoint: (name) => {
          const node = ctx.config.nodes.find((n) => n.name === name);
          return node && ctx.endpoint(node);
        },
      });
      log.info("configuration reloaded");
      return { ok: true };
    } catch (e) {
      log.error(`reload failed, keeping the running configuration: ${(e as Error).message}`);
      return { ok: false, error: (e as Error).message };
    }
  };
  ctx.reload = reload;
  const admin = startAdmin(ctx, { reload });

  if (opts.configPath) {
    process.on("SIGHUP", () => void reload());
    const onTerm = () => {
      log.info("shutting down");
      void stop().then(() => process.exit(0));
    };
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onTerm);
  }
  return { ctx, port: listener.port, stop };
}
