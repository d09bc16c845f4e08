// Pausing pools, for the console's PAUSE/RESUME/KILL and the HTTP API's /pause and /resume: one state, one mechanism.

import type { ProxyContext } from "./context.ts";

/** What is paused: the whole proxy, and databases one by one (PAUSE db, KILL db). */
interface PauseState {
  proxy: boolean;
  readonly databases: Set<string>;
}

const states = new WeakMap<ProxyContext, PauseState>();

function state(ctx: ProxyContext): PauseState {
  let s = states.get(ctx);
  if (s === undefined) {
    s = { proxy: false, databases: new Set() };
    states.set(ctx, s);
  }
  return s;
}

/** How often waitUntilIdle looks at the busy servers. */
const POLL_MS = 20;

/** True while `db` is paused, or the whole proxy when `db` is null. */
export function isPaused(ctx: ProxyContext, db: string | null = null): boolean {
  const s = state(ctx);
  return s.proxy || (db !== null && s.databases.has(db));
}

/** True while the proxy or any database is paused. */
export function anythingPaused(ctx: ProxyContext): boolean {
  const s = state(ctx);
  return s.proxy || s.databases.size > 0;
}

/**
 * Pause the proxy (db null) or one database: new transactions wait for resume(); idle servers
 * close now and busy ones when their transactions end. Pools made later start paused (see
 * ProxyContext.nodePool). Returns false, changing nothing, when it was paused already.
 */
export function pause(ctx: ProxyContext, db: string | null): boolean {
  const s = state(ctx);
  if (isPaused(ctx, db)) return false;
  if (db === null) s.proxy = true;
  else s.databases.add(db);
  for (const p of ctx.clientPools(db)) {
    p.pause();
    p.recycle("paused by admin");
  }
  return true;
}

/** Servers of paused pools still in a transaction (db null: every database). */
function busy(ctx: ProxyContext, db: string | null): number {
  let n = 0;
  for (const p of ctx.clientPools(db)) if (isPaused(ctx, p.database)) n += p.counts().active;
  return n;
}

/**
 * Wait until the paused pools of `db` (null: of the paused proxy) have no server in a transaction,
 * at most `timeoutMs`; then close their idle servers. Returns how many are still busy (0 as well
 * when a resume ended the wait).
 */
export async function waitUntilIdle(ctx: ProxyContext, db: string | null, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (!isPaused(ctx, db)) return 0;
    const left = busy(ctx, db);
    if (left > 0 && performance.now() >= deadline) return left;
    if (left === 0) break;
    await Bun.sleep(POLL_MS);
  }
  for (const p of ctx.clientPools(db)) if (isPaused(ctx, p.database)) p.closeIdle("paused by admin");
  return 0;
}

/**
 * Resume the proxy (db null: everything, every pool) or one database. Returns false when there
 * was nothing to resume. A database stays held while the whole proxy is paused.
 */
export function resume(ctx: ProxyContext, db: string | null): boolean {
  const s = state(ctx);
  if (db === null) {
    const pools = [...ctx.allPools()];
    if (!anythingPaused(ctx) && !pools.some((p) => p.paused)) return false;
    s.proxy = false;
    s.databases.clear();
    for (const p of pools) if (p.paused) p.resume();
    return true;
  }
  if (!s.databases.delete(db)) return false;
  if (!s.proxy) for (const p of ctx.clientPools(db)) p.resume();
  return true;
}
