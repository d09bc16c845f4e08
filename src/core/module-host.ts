// Starts the feature modules a config enables and gathers their hooks, admin routes and console SHOWs for the query path.

import type { HeliosConfig } from "../config/types.ts";
import { moduleFor } from "../modules/index.ts";
import { log } from "../util/log.ts";
import type { Cluster, ClusterEvent } from "../cluster/cluster.ts";
import type { StartupHook } from "./startup-hooks.ts";
import { CommitTracker } from "./commit-positions.ts";
import type { RecoveryRecord, ReplayRegistry } from "../cluster/ha/replay-registry.ts";
import type { TapFactory } from "./request-tap.ts";
import type { Hooks, ModuleHost, NodeInfo, ReplicationLink, QueryCtx, RouteDoc, QueryDecision, ResultCtx, SessionCtx, ShowResult } from "./hooks.ts";

export type RouteHandler = (req: Request, url: URL) => Response | Promise<Response>;
/** A module's admin route: its handler and its OpenAPI description. */
export interface ModuleRoute {
  readonly handler: RouteHandler;
  readonly doc: RouteDoc;
}

/** The hooks of every started module, in config order. Null on the context when no module has query or result hooks. */
export interface QueryHooks {
  readonly onQuery: readonly ((q: QueryCtx) => void | QueryDecision)[];
  readonly onResult: readonly ((r: ResultCtx) => void)[];
  readonly onClose: readonly ((s: SessionCtx) => void)[];
  /** Some onResult hook reads its query's text: each request's text is kept for it. */
  readonly resultText: boolean;
}

export interface StartedModules {
  hooks: QueryHooks | null;
  /** onStartup hooks in module order; null when no module has one. */
  startup: StartupHook[] | null;
  /** Hands a cluster event to every module's onServerEvent (a module that throws is logged, the others still see it). */
  serverEvent: ((e: ClusterEvent) => void) | null;
  /** Set when a module asked for commit positions. */
  commits: CommitTracker | null;
  /** Set when a module turned on the transaction journal. */
  replay: ReplayRegistry | null;
  /** Set when a module taps every session's requests (ha-tr). */
  tap: TapFactory | null;
  routes: Map<string, ModuleRoute>;
  shows: Map<string, () => ShowResult>;
  /** Prometheus text the modules add to GET /metrics. */
  metrics: (() => string)[];
  names: string[];
}

/** "GET /queries" */
export const routeKey = (method: string, path: string): string => `${method} ${path}`;

/** Configure and start every module section of `cfg` that has an implementation in this build and is not `enabled = false`. */
export async function startModules(
  cfg: HeliosConfig,
  cluster: () => Cluster,
  catalogQuery?: (database: string, sql: string, params?: string[]) => Promise<(string | null)[][]>,
  replicationConnection?: (database: string) => Promise<ReplicationLink>,
): Promise<StartedModules> {
  const routes = new Map<string, ModuleRoute>();
  const shows = new Map<string, () => ShowResult>();
  const onQuery: QueryHooks["onQuery"][number][] = [];
  const onResult: QueryHooks["onResult"][number][] = [];
  const onClose: QueryHooks["onClose"][number][] = [];
  const onStartup: StartupHook[] = [];
  const onServerEvent: ((e: ClusterEvent) => void)[] = [];
  const onRecovery: ((r: RecoveryRecord) => void)[] = [];
  const metrics: (() => string)[] = [];
  const names: string[] = [];
  let resultText = false;
  let commits: CommitTracker | null = null;
  let replay: ReplayRegistry | null = null;
  let tap: TapFactory | null = null;
  const host: ModuleHost = {
    tapRequests(factory, registry) {
      if (tap !== null) throw new Error("only one module may tap requests");
      tap = factory;
      replay = registry;
    },
    trackCommits() {
      return (commits ??= new CommitTracker());
    },
    addRoute(method, path, doc, handler) {
      routes.set(routeKey(method, path), { handler, doc });
    },
    addShow(name, show) {
      shows.set(name.toLowerCase(), show);
    },
    addMetrics(render) {
      metrics.push(render);
    },
    ...(catalogQuery !== undefined ? { catalogQuery } : {}),
    ...(replicationConnection !== undefined ? { replicationConnection } : {}),
    nodes(): readonly NodeInfo[] {
      return cluster()
        .snapshot()
        .map((n) => ({ name: n.name, role: n.role, up: n.health === "up", lagBytes: n.lagBytes, lagSeconds: n.lagSeconds }));
    },
  };
  for (const [section, raw] of Object.entries(cfg.modules)) {
    const mod = moduleFor(section);
    if (mod === undefined) continue;
    if (raw.enabled === false) continue;
    const settings = mod.configure ? mod.configure(raw) : raw;
    const hooks: Hooks = await mod.start(settings, host);
    names.push(section);
    // Closures rather than bound functions: a call through a bound function is not inlined on the request path.
    if (hooks.onQuery) onQuery.push((q) => hooks.onQuery!(q));
    if (hooks.onResult) onResult.push((r) => hooks.onResult!(r));
    if (hooks.onResult && hooks.resultReadsText !== false) resultText = true;
    if (hooks.onClose) onClose.push(hooks.onClose.bind(hooks));
    if (hooks.onStartup) onStartup.push(hooks.onStartup.bind(hooks));
    if (hooks.onServerEvent) onServerEvent.push(hooks.onServerEvent.bind(hooks));
    if (hooks.onRecovery) onRecovery.push(hooks.onRecovery.bind(hooks));
    log.info(`module ${mod.name} ${mod.version} started`);
  }
  // Whichever module started first, the recoveries of the tapping module's registry reach every onRecovery.
  // (Set by tapRequests during a module's start: a cast, since the checker cannot see assignments in callbacks.)
  const registry = replay as ReplayRegistry | null;
  if (registry !== null && onRecovery.length > 0)
    registry.onRecord((r) => {
      for (const hook of onRecovery) {
        try {
          hook(r);
        } catch (err) {
          log.error("a module's onRecovery hook threw", { error: err });
        }
      }
    });
  const any = onQuery.length + onResult.length + onClose.length > 0;
  const serverEvent = (e: ClusterEvent): void => {
    for (const hook of onServerEvent) {
      try {
        hook(e);
      } catch (err) {
        log.error(`a module's onServerEvent hook threw on ${e.type}`, { error: err });
      }
    }
  };
  return {
    hooks: any ? { onQuery, onResult, onClose, resultText } : null,
    startup: onStartup.length > 0 ? onStartup : null,
    serverEvent: onServerEvent.length > 0 ? serverEvent : null,
    commits,
    replay,
    tap,
    routes,
    shows,
    metrics,
    names,
  };
}
