// The pool on its own, in-process against the machine's PostgreSQL: lease and release, the wait queue in order, wait timeouts, idle timeouts, lifetimes, pause, recycle, permanent login failures, what release checks.

import { afterEach, expect, test } from "bun:test";
import { Pool, type PoolSettings, type PoolShared, type PoolWaiter } from "../../src/server/pool.ts";
import { ServerState, type ServerConnection } from "../../src/server/connection.ts";
import type { LoginError } from "../../src/server/login.ts";
import { runQuery } from "../../src/server/query-runner.ts";
import { clock } from "../../src/util/clock.ts";

const SETTINGS: PoolSettings = { minConnections: 0, maxConnections: 2, idleTimeoutMs: 0, lifetimeMs: 0, connectTimeoutMs: 5000, waitTimeoutMs: 0 };
const pools: Pool[] = [];

function pool(settings: Partial<PoolSettings> = {}, database = "test"): Pool {
  const shared: PoolShared = { creds: { user: "postgres", database, password: null }, serverParams: null, passthrough: "unknown", firstLogin: null, trustProbe: null };
  const p = new Pool(database, "postgres", { host: "127.0.0.1", port: 5432, name: "node1" }, shared, { ...SETTINGS, ...settings });
  pools.push(p);
  return p;
}

afterEach(() => {
  for (const p of pools.splice(0)) p.closeAll("test over");
  clock.now = performance.now();
});

/** A waiter that records what the pool told it. */
function waiter(): PoolWaiter & { leased: ServerConnection[]; failed: LoginError[]; settled: Promise<void> } {
  let done!: () => void;
  const w = {
    leased: [] as ServerConnection[],
    failed: [] as LoginError[],
    waitingSince: 0,
    settled: new Promise<void>((r) => (done = r)),
    serverLeased(s: ServerConnection) {
      w.leased.push(s);
      done();
    },
    serverFailed(e: LoginError) {
      w.failed.push(e);
      done();
    },
  };
  return w;
}

/** Bounded wait for a waiter's answer. */
async function answered(w: { settled: Promise<void> }, ms = 5000): Promise<void> {
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms));
  await Promise.race([w.settled, timeout]);
}

test("lease: an empty pool queues the client and opens a server for it; a released server is reused before a new one opens", async () => {
  const p = pool();
  const w = waiter();
  expect(p.acquire(w)).toBeNull();
  expect(p.counts()).toMatchObject({ waiting: 1, connecting: 1, total: 1 });
  await answered(w);
  const s = w.leased[0]!;
  expect([s.state, p.counts().active, p.counts().waiting]).toEqual([ServerState.Active, 1, 0]);
  p.release(s);
  expect([s.state, p.idle.length, p.stats.xactCount]).toEqual([ServerState.Idle, 1, 1]);
  expect(p.acquire(waiter())).toBe(s);
  expect(p.counts()).toMatchObject({ idle: 0, active: 1, total: 1 });
});

test("wait queue: at max_connections clients wait in arrival order and each release serves the longest waiting", async () => {
  const p = pool({ maxConnections: 1 });
  const [a, b, c] = [waiter(), waiter(), waiter()];
  for (const w of [a, b, c]) expect(p.acquire(w)).toBeNull();
  await answered(a);
  expect([p.counts().total, p.waiting]).toEqual([1, 2]);
  const s = a.leased[0]!;
  p.release(s);
  expect([b.leased[0], c.leased.length]).toEqual([s, 0]);
  p.release(s);
  expect(c.leased[0]).toBe(s);
  expect(p.stats.waitCount).toBe(3);
  // A client that leaves the queue is never called back.
  const d = waiter();
  const e = waiter();
  p.acquire(d);
  p.acquire(e);
  p.forget(d);
  p.release(s);
  expect([d.leased.length, e.leased[0]]).toEqual([0, s]);
});

test("wait timeout: a client waiting longer than wait_timeout gets 08006 naming the limit; others keep their place", async () => {
  const p = pool({ maxConnections: 1, waitTimeoutMs: 50 });
  const holder = waiter();
  p.acquire(holder);
  await answered(holder);
  const late = waiter();
  p.acquire(late);
  const now = performance.now();
  p.tick(now + 10);
  expect(late.failed).toHaveLength(0);
  const fresh = waiter();
  p.acquire(fresh);
  fresh.waitingSince = now + 40;
  p.tick(now + 80);
  expect(late.failed.map((e) => [e.code, e.message])).toEqual([["08006", "no server connection available within wait_timeout (0.05 s)"]]);
  expect([fresh.failed.length, p.waiting]).toEqual([0, 1]);
});

test("idle timeout closes idle servers above min_connections only; lifetime closes old ones idle or on release", async () => {
  const p = pool({ maxConnections: 3, minConnections: 1, idleTimeoutMs: 1000, lifetimeMs: 60_000 });
  const ws = [waiter(), waiter(), waiter()];
  for (const w of ws) p.acquire(w);
  await Promise.all(ws.map((w) => answered(w)));
  const [s1, s2, s3] = ws.map((w) => w.leased[0]!);
  p.release(s1!);
  p.release(s2!);
  const t0 = clock.now;
  p.tick(t0 + 500);
  expect(p.counts().total).toBe(3);
  p.tick(t0 + 1500);
  // Two idle, past the idle timeout: the pool keeps min_connections (1) and s3 is busy, so both go.
  expect([p.counts().idle, p.counts().total]).toEqual([0, 1]);
  // s3 released after its lifetime: closed instead of parked.
  clock.now = s3!.createdAt + 60_001;
  p.release(s3!);
  expect([s3!.state, p.counts().total]).toEqual([ServerState.Closed, 0]);
});

test("pause: clients queue even with an idle server; resume hands it over", async () => {
  const p = pool();
  const first = waiter();
  p.acquire(first);
  await answered(first);
  const s = first.leased[0]!;
  p.release(s);
  p.pause();
  const w = waiter();
  expect(p.acquire(w)).toBeNull();
  expect([w.leased.length, p.idle.length]).toEqual([0, 1]);
  p.resume();
  expect(w.leased[0]).toBe(s);
});

test("recycle: idle servers close now, leased ones when released; waiters are routed again", async () => {
  const p = pool({ maxConnections: 2 });
  const [a, b] = [waiter(), waiter()];
  p.acquire(a);
  p.acquire(b);
  await Promise.all([answered(a), answered(b)]);
  p.release(a.leased[0]!);
  p.recycle("node down");
  expect([a.leased[0]!.state, p.idle.length]).toEqual([ServerState.Closed, 0]);
  const held = b.leased[0]!;
  p.release(held);
  expect(held.state).toBe(ServerState.Closed);
  let rerouted = 0;
  p.pause();
  p.acquire({ ...waiter(), reroute: () => void rerouted++ });
  p.rerouteWaiters();
  expect([rerouted, p.waiting]).toEqual([1, 0]);
});

test("a permanent login failure (no such database) fails every waiter with the server's SQLSTATE", async () => {
  const p = pool({}, "helios_no_such_db");
  const [a, b] = [waiter(), waiter()];
  p.acquire(a);
  p.acquire(b);
  await Promise.all([answered(a), answered(b)]);
  expect([a.failed[0]?.code, b.failed[0]?.code]).toEqual(["3D000", "3D000"]);
  expect(p.waiting).toBe(0);
  // The second login attempt (opened for the second waiter) fails the same way and leaves nothing behind.
  for (const until = performance.now() + 5000; p.counts().total > 0 && performance.now() < until; ) await Bun.sleep(10);
  expect([p.counts().total, p.lastError?.code]).toEqual([0, "3D000"]);
});

test("release with a forwarded cancel in flight: the server reaches the next waiter only once the cancel has landed", async () => {
  const p = pool({ maxConnections: 1 });
  const a = waiter();
  p.acquire(a);
  await answered(a);
  const s = a.leased[0]!;
  const b = waiter();
  expect(p.acquire(b)).toBeNull();
  const settled = s.cancelStarted();
  p.release(s);
  expect([b.leased.length, p.idle.length, s.cancelsInFlight]).toEqual([0, 0, 1]);
  settled();
  settled(); // twice counts once
  expect([b.leased[0], s.cancelsInFlight]).toEqual([s, 0]);
});

test("release of a server its client's backpressure paused: it reads again before anyone gets it", async () => {
  const p = pool({ maxConnections: 1 });
  const a = waiter();
  p.acquire(a);
  await answered(a);
  const s = a.leased[0]!;
  s.pauseReads();
  p.release(s);
  const b = waiter();
  expect(p.acquire(b)).toBe(s);
  // Reading: a query on it is answered.
  const r = await runQuery(s, "select 7", undefined, 3000);
  expect(r.rows).toEqual([["7"]]);
});
