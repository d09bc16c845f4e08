// The connection state machines on their own: every allowed transition taken, every impossible one refused (logged, counted, state unchanged).

import { afterEach, expect, spyOn, test } from "bun:test";
import { ServerConnection, ServerState, SERVER_STATE_NAMES } from "../../src/server/connection.ts";
import { Pool, type PoolShared } from "../../src/server/pool.ts";
import { log } from "../../src/util/log.ts";
import { transitionBugs } from "../../src/util/state-bugs.ts";

const errors = spyOn(log, "error").mockImplementation(() => {});
afterEach(() => errors.mockClear());

/** Run `f` and return the refused transitions it logged as [from, to] pairs, checking the counter moved by as many. */
function refusedDuring(kind: "client" | "server", f: () => void): [string, string][] {
  const before = transitionBugs[kind];
  errors.mockClear();
  f();
  const lines = errors.mock.calls.filter((c) => c[0] === "bug: impossible state transition refused" && (c[1] as { connection: string }).connection === kind);
  expect(transitionBugs[kind] - before).toBe(lines.length);
  return lines.map((c) => [(c[1] as { from: string }).from, (c[1] as { to: string }).to]);
}

// ---- server connections -------------------------------------------------------------------

const owner = { serverClosed() {} };
const endpoint = { host: "127.0.0.1", port: 5432, name: "node1" };

test("server: a connection not logged in is neither leased nor parked; closing is allowed once", () => {
  const s = new ServerConnection(endpoint, owner);
  expect(s.state).toBe(ServerState.Connecting);
  expect(refusedDuring("server", () => expect([s.lease(), s.park()]).toEqual([false, false]))).toEqual([
    ["connecting", "active"],
    ["connecting", "idle"],
  ]);
  expect(s.state).toBe(ServerState.Connecting);
  expect(refusedDuring("server", () => s.close("test"))).toEqual([]);
  expect(s.state).toBe(ServerState.Closed);
  expect(refusedDuring("server", () => expect([s.lease(), s.park()]).toEqual([false, false]))).toEqual([
    ["closed", "active"],
    ["closed", "idle"],
  ]);
  expect(s.state).toBe(ServerState.Closed);
});

test("server: a logged-in connection goes idle -> active -> idle through its pool; a double lease or release is refused", async () => {
  const shared: PoolShared = { creds: { user: "postgres", database: "postgres", password: null }, serverParams: null, passthrough: "unknown", firstLogin: null, trustProbe: null };
  const p = new Pool("postgres", "postgres", endpoint, shared, { minConnections: 0, maxConnections: 1, idleTimeoutMs: 0, lifetimeMs: 0, connectTimeoutMs: 5000, waitTimeoutMs: 0 });
  try {
    const s = (await p.spawn())!;
    expect([s.state, p.idle.length]).toEqual([ServerState.Idle, 1]);
    expect(refusedDuring("server", () => expect(p.acquire({ waitingSince: 0, serverLeased() {}, serverFailed() {} })).toBe(s))).toEqual([]);
    expect(s.state).toBe(ServerState.Active);
    expect(refusedDuring("server", () => expect(s.lease()).toBe(false))).toEqual([["active", "active"]]);
    expect(s.state).toBe(ServerState.Active);
    expect(refusedDuring("server", () => p.release(s))).toEqual([]);
    expect([s.state, p.idle.length]).toEqual([ServerState.Idle, 1]);
    expect(refusedDuring("server", () => expect(s.park()).toBe(false))).toEqual([["idle", "idle"]]);
    // A server given back twice is a bug: refused, and closed rather than parked twice.
    p.idle.length = 0;
    expect(refusedDuring("server", () => p.release(s))).toEqual([["idle", "idle"]]);
    expect([s.state, p.idle.length]).toEqual([ServerState.Closed, 0]);
  } finally {
    p.closeAll("test over");
  }
});

test("server: state names cover the enum", () => {
  expect(SERVER_STATE_NAMES.length).toBe(ServerState.Closed + 1);
});
