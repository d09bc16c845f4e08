// Admin console commands that change state: PAUSE, RESUME, KILL, RECONNECT, RELOAD (pausing itself is core/pause.ts).

import type { ProxyContext } from "../core/context.ts";
import { clientsOf } from "../client/registry.ts";
import { ClientState } from "../client/client-state.ts";
import { errorResponse } from "../protocol/errors.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import type { MessageWriter } from "../protocol/writer.ts";
import { isPaused, pause as pausePools, resume as resumePools, waitUntilIdle } from "../core/pause.ts";
import { log } from "../util/log.ts";
import { CONSOLE_DATABASES, ConsoleErrors, writeNotice } from "./console-wire.ts";

function knownDatabase(ctx: ProxyContext, db: string): boolean {
  for (const g of ctx.groups.values()) if (g.database === db) return true;
  return false;
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
  if (db !== null) checkDatabase(ctx, "PAUSE", db);
  if (!pausePools(ctx, db)) throw ConsoleErrors.state(db === null ? "the proxy is already paused" : `database "${db}" is already paused`);
  log.info(db === null ? "PAUSE issued" : `PAUSE "${db}" issued`, { user: who });
  const waitSecs = Math.max(1, ctx.config.proxy.shutdown_timeout_secs);
  // RESUME from another console ends the wait.
  const busy = await waitUntilIdle(ctx, db, waitSecs * 1000);
  if (busy > 0)
    writeNotice(
      w,
      `PAUSE: ${busy} server connection(s) still in a transaction after ${waitSecs} s`,
      "they are closed when their transactions end; new transactions wait for RESUME",
      "WARNING",
    );
}

/** RESUME [db]: waiting transactions get servers again. Without a database everything resumes. */
export function resume(ctx: ProxyContext, db: string | null, who: string): void {
  if (!resumePools(ctx, db)) {
    if (db === null) throw ConsoleErrors.state("the proxy is not paused");
    if (isPaused(ctx)) throw ConsoleErrors.state(`the whole proxy is paused; RESUME without a database resumes it`);
    checkDatabase(ctx, "RESUME", db);
    throw ConsoleErrors.state(`database "${db}" is not paused`);
  }
  log.info(db === null ? "RESUME issued" : `RESUME "${db}" issued`, { user: who });
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
  if (db !== null) checkDatabase(ctx, "KILL", db);
  const dbs = db === null ? [...new Set([...ctx.clientPools()].map((p) => p.database))] : [db];
  log.info(db === null ? "KILL issued" : `KILL "${db}" issued`, { user: who });
  for (const d of dbs) pausePools(ctx, d);
  const pools = [...ctx.clientPools(db)];
  let clients = 0;
  for (const s of [...clientsOf(ctx)]) {
    if (s.state === ClientState.Console || s.closed || !dbs.includes(s.database)) continue;
    s.fatal(killedError(s.database));
    clients++;
  }
  let servers = 0;
  for (const p of pools) {
    servers += p.all.size;
    p.closeAll("killed by admin");
  }
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
