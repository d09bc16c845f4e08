// Admin console commands that change state: PAUSE, RESUME, KILL, RECONNECT, RELOAD, and the pause state they share.

import type { ProxyContext } from "../core/context.ts";
import { errorResponse } from "../protocol/errors.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import type { MessageWriter } from "../protocol/writer.ts";
import type { Pool } from "../server/pool.ts";
import { log } from "../util/log.ts";
import { CONSOLE_DATABASES, ConsoleErrors, writeNotice } from "./console-wire.ts";

/** Databases paused by PAUSE db or KILL db (the whole proxy: ctx.paused). */
interface PauseState {
  readonly databases: Set<string>;
  sweeper: ReturnType<typeof setInterval> | null;
}

const pauseStates = new WeakMap<ProxyContext, PauseState>();

function pauseState(ctx: ProxyContext): PauseState {
  let s = pauseStates.get(ctx);
  if (s === undefined) {
    s = { databases: new Set(), sweeper: null };
    pauseStates.set(ctx, s);
  }
  return s;
}

/** How often pools that appear while paused are paused too, and how often PAUSE checks for busy servers. */
const SWEEP_MS = 100;
const POLL_MS = 20;

/** Pools serving clients (not the proxy's own auth_query pools), optionally of one database. */
export function clientPools(ctx: ProxyContext, db: string | null = null): Pool[] {
  const out: Pool[] = [];
  for (const g of ctx.groups.values()) if (db === null || g.database === db) out.push(...g.pools.values());
  return out;
}

export function knownDatabase(ctx: ProxyContext, db: string): boolean {
  for (const g of ctx.groups.values()) if (g.database === db) return true;
  return false;
}

export function databasePaused(ctx: ProxyContext, db: string): boolean {
  return ctx.paused || pauseState(ctx).databases.has(db);
}

export function anythingPaused(ctx: ProxyContext): boolean {
  return ctx.paused || pauseState(ctx).databases.size > 0;
}

/**
 * While anything is paused, pools created after the PAUSE (a new user of a paused database) are
 * paused as well and their idle servers closed.
 */
function sweep(ctx: ProxyContext): void {
  const st = pauseState(ctx);
  if (!anythingPaused(ctx)) {
    if (st.sweeper !== null) clearInterval(st.sweeper);
    st.sweeper = null;
    return;
  }
  for (const p of clientPools(ctx)) {
    if (!databasePaused(ctx, p.database)) continue;
    if (!p.paused) p.pause();
    if (p.idle.length > 0) p.closeIdle("paused by admin");
  }
}

function startSweeper(ctx: ProxyContext): void {
  const st = pauseState(ctx);
  if (st.sweeper !== null) return;
  st.sweeper = setInterval(() => sweep(ctx), SWEEP_MS);
  (st.sweeper as { unref?: () => void }).unref?.();
}

/** A database argument that must name a database the proxy has pools for. */
function checkDatabase(ctx: ProxyContext, cmd: string, db: string): void {
  if (CONSOLE_DATABASES.has(db)) throw ConsoleErrors.consoleDatabase(cmd, db);
  if (!knownDatabase(ctx, db)) throw ConsoleErrors.noSuchDatabase(db);
}

/**
 * PAUSE [db], as PgBouncer: new transactions wait; the command returns once every server of the
 * paused pools has finished its transaction and been closed (so PostgreSQL can be restarted).
 * Waits at most proxy.shutdown_timeout_secs, then says how many servers are still busy.
 */
export async function pause(ctx: ProxyContext, db: string | null, who: string, w: MessageWriter): Promise<void> {
  const st = pauseState(ctx);
  if (db !== null) checkDatabase(ctx, "PAUSE", db);
  if (ctx.paused || (db !== null && st.databases.has(db))) throw ConsoleErrors.state(db === null ? "the proxy is already paused" : `database "${db}" is already paused`);
  if (db === null) ctx.paused = true;
  else st.databases.add(db);
  log.info(db === null ? "PAUSE issued" : `PAUSE "${db}" issued`, { user: who });
  for (const p of clientPools(ctx, db)) {
    p.pause();
    p.recycle("paused by admin");
  }
  startSweeper(ctx);
  const waitSecs = Math.max(1, ctx.config.proxy.shutdown_timeout_secs);
  const deadline = performance.now() + waitSecs * 1000;
  for (;;) {
    // RESUME from another console ends the wait.
    if (db === null ? !ctx.paused : !st.databases.has(db)) return;
    const busy = clientPools(ctx, db).reduce((n, p) => n + p.counts().active, 0);
    if (busy === 0) break;
    if (performance.now() >= deadline) {
      writeNotice(
        w,
        `PAUSE: ${busy} server connection(s) still in a transaction after ${waitSecs} s`,
        "they are closed when their transactions end; new transactions wait for RESUME",
        "WARNING",
      );
      return;
    }
    await Bun.sleep(POLL_MS);
  }
  for (const p of clientPools(ctx, db)) p.closeIdle("paused by admin");
}

/** RESUME [db]: waiting transactions get servers again. Without a database everything resumes. */
export function resume(ctx: ProxyContext, db: string | null, who: string): void {
  const st = pauseState(ctx);
  if (db === null) {
    // Every pool, so that pools paused by other means (the HTTP API) resume too.
    const pools = [...ctx.allPools()];
    if (!anythingPaused(ctx) && !pools.some((p) => p.paused)) throw ConsoleErrors.state("the proxy is not paused");
    ctx.paused = false;
    st.databases.clear();
    for (const p of pools) if (p.paused) p.resume();
  } else {
    if (!st.databases.has(db)) {
      if (ctx.paused) throw ConsoleErrors.state(`the whole proxy is paused; RESUME without a database resumes it`);
      checkDatabase(ctx, "RESUME", db);
      throw ConsoleErrors.state(`database "${db}" is not paused`);
    }
    st.databases.delete(db);
    if (!ctx.paused) for (const p of clientPools(ctx, db)) p.resume();
  }
  log.info(db === null ? "RESUME issued" : `RESUME "${db}" issued`, { user: who });
  sweep(ctx);
}

function killedError(db: string): Uint8Array {
  return errorResponse({
    severity: "FATAL",
    code: SqlState.AdminShutdown,
    message: `terminating connection: database "${db}" was killed by an administrator`,
  });
}

/**
 * KILL [db], as PgBouncer: close the database's clients (FATAL 57P01) and server connections at
 * once, and leave the database paused: clients that come back wait until RESUME.
 */
export function kill(ctx: ProxyContext, db: string | null, who: string, w: MessageWriter): void {
  const st = pauseState(ctx);
  if (db !== null) checkDatabase(ctx, "KILL", db);
  const dbs = db === null ? [...new Set(clientPools(ctx).map((p) => p.database))] : [db];
  log.info(db === null ? "KILL issued" : `KILL "${db}" issued`, { user: who });
  for (const d of dbs) st.databases.add(d);
  const pools = clientPools(ctx, db);
  for (const p of pools) p.pause();
  let clients = 0;
  for (const s of [...ctx.sessions]) {
    if (s.console !== null || s.closed || !dbs.includes(s.database)) continue;
    s.fatal(killedError(s.database));
    clients++;
  }
  let servers = 0;
  for (const p of pools) {
    servers += p.all.size;
    p.closeAll("killed by admin");
  }
  startSweeper(ctx);
  writeNotice(w, `KILL: closed ${clients} client and ${servers} server connection(s)`, `${dbs.length === 1 ? `database "${dbs[0]}" stays` : "the databases stay"} paused until RESUME`);
}

/** RECONNECT [db]: idle servers close now, busy ones when their transactions end; new ones are made on demand. */
export function reconnect(ctx: ProxyContext, db: string | null, who: string): void {
  if (db !== null) checkDatabase(ctx, "RECONNECT", db);
  log.info(db === null ? "RECONNECT issued" : `RECONNECT "${db}" issued`, { user: who });
  for (const p of ctx.allPools()) if (db === null || p.database === db) p.recycle("RECONNECT by admin");
}

const SECRET_KEY = /(password|passwd|secret|token|api_?key|private_?key|credential)/i;

/** A config error's lines, without the offending value when the key holds a secret. */
function redactConfigError(message: string): string {
  return message
    .split("\n")
    .map((line) => (SECRET_KEY.test(line.split(": ").slice(0, -1).join(": ")) ? line.replace(/, got .*$/, "") : line))
    .join("\n");
}

/** RELOAD: re-read and apply the config file (validated first; on error the running config stays). */
export async function reload(ctx: ProxyContext, who: string): Promise<void> {
  log.info("RELOAD issued", { user: who });
  const r = await ctx.reload();
  if (!r.ok) throw ConsoleErrors.reloadFailed(redactConfigError(r.error ?? "unknown error"));
}
