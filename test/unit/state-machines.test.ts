// The connection state machines on their own: every allowed transition taken, every impossible one refused (logged, counted, state unchanged).

import { afterEach, expect, spyOn, test } from "bun:test";
import { ServerConnection, ServerState, SERVER_STATE_NAMES } from "../../src/server/connection.ts";
import { ClientSession } from "../../src/client/session.ts";
import { CLIENT_STATE_NAMES, ClientState } from "../../src/client/client-state.ts";
import { parseConfig } from "../../src/config/load.ts";
import { ProxyContext } from "../../src/core/context.ts";
import { queryMessage } from "../../src/protocol/messages.ts";
import { errorFields } from "../../src/protocol/errors.ts";
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
    const s = (await p.spawn()) as ServerConnection;
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

// ---- client sessions ---------------------------------------------------------------------

/** The specification: every edge the client state machine has. Any pair not listed is impossible. */
const CLIENT_SPEC = `
  startup -> auth, closed
  auth -> idle, console, closed
  idle -> leased, waiting_pool, waiting_replay, held, closed
  leased -> idle, recovering, closed
  waiting_pool -> leased, idle, closed
  waiting_replay -> idle, closed
  held -> idle, closed
  recovering -> idle, leased, closed
  console -> closed
  closed ->
`;

const allowed = new Set(
  CLIENT_SPEC.trim()
    .split("\n")
    .flatMap((line) => {
      const [from, tos] = line.split("->").map((x) => x.trim());
      return tos!.split(",").filter((to) => to.trim() !== "").map((to) => `${from} -> ${to.trim()}`);
    }),
);

const ctx = new ProxyContext(parseConfig(`[[nodes]]\nhost = "127.0.0.1"\nport = 5432\n`, "t.toml"));
const fakeSocket = { remoteAddress: "127.0.0.1", remotePort: 40000, write: () => 0, end() {}, pause() {}, resume() {} };

/** A session that has no socket behind it, put straight into `state` (only the machine is under test). */
function sessionIn(state: ClientState): ClientSession {
  const s = new ClientSession(ctx, fakeSocket as never);
  (s as unknown as { current: ClientState }).current = state;
  return s;
}

const STATES = CLIENT_STATE_NAMES.map((_, i) => i as ClientState);

test("client: state names cover the enum and the specification names only them", () => {
  expect(CLIENT_STATE_NAMES.length).toBe(ClientState.Closed + 1);
  for (const edge of allowed) for (const name of edge.split(" -> ")) expect(CLIENT_STATE_NAMES).toContain(name);
});

test("client: every allowed transition is taken, silently", () => {
  let taken = 0;
  for (const from of STATES) {
    for (const to of STATES) {
      if (!allowed.has(`${CLIENT_STATE_NAMES[from]} -> ${CLIENT_STATE_NAMES[to]}`)) continue;
      const s = sessionIn(from);
      expect(refusedDuring("client", () => expect(s.enter(to)).toBe(true))).toEqual([]);
      expect(s.state).toBe(to);
      taken++;
    }
  }
  expect(taken).toBe(allowed.size);
  expect(taken).toBe(24);
});

test("client: every other transition is refused: one error line with both states, one count, the state unchanged", () => {
  let refused = 0;
  for (const from of STATES) {
    for (const to of STATES) {
      const [a, b] = [CLIENT_STATE_NAMES[from]!, CLIENT_STATE_NAMES[to]!];
      if (allowed.has(`${a} -> ${b}`)) continue;
      const s = sessionIn(from);
      expect(refusedDuring("client", () => expect(s.enter(to)).toBe(false))).toEqual([[a, b]]);
      expect(s.state).toBe(from);
      refused++;
    }
  }
  expect(refused).toBe(STATES.length * STATES.length - 24);
});

test("client: a pool's, the switchover buffer's or a recovery's answer reaching a session in another state is refused", () => {
  const given: unknown[] = [];
  const server = { owner: { release: (x: unknown) => given.push(x) } } as unknown as ServerConnection;
  // A server for a session that is not waiting for one goes straight back to its pool.
  const idle = sessionIn(ClientState.Idle);
  expect(refusedDuring("client", () => idle.serverLeased(server))).toEqual([["idle", "leased"]]);
  expect([idle.state, idle.server, given]).toEqual([ClientState.Idle, null, [server]]);
  // A closed session gives it back too, without a bug: the pool may answer after the client left.
  const closed = sessionIn(ClientState.Closed);
  expect(refusedDuring("client", () => closed.serverLeased(server))).toEqual([]);
  expect([closed.state, given.length]).toEqual([ClientState.Closed, 2]);
  const leased = sessionIn(ClientState.Leased);
  expect(refusedDuring("client", () => leased.released())).toEqual([["leased", "idle"]]);
  expect(refusedDuring("client", () => leased.reroute())).toEqual([["leased", "idle"]]);
  expect(refusedDuring("client", () => leased.endRecovery())).toEqual([["leased", "idle"]]);
  expect(leased.state).toBe(ClientState.Leased);
});

test("client: SHOW-facing views follow the state", () => {
  const waiting = [ClientState.WaitingPool, ClientState.WaitingReplay, ClientState.Held, ClientState.Recovering];
  for (const st of STATES) {
    const s = sessionIn(st);
    expect([CLIENT_STATE_NAMES[st], s.waiting]).toEqual([CLIENT_STATE_NAMES[st], waiting.includes(st)]);
    expect([CLIENT_STATE_NAMES[st], s.loggedIn]).toEqual([CLIENT_STATE_NAMES[st], st !== ClientState.Startup && st !== ClientState.Auth && st !== ClientState.Closed]);
  }
});

test("client: a full switchover buffer refuses a request at once: the session goes held -> idle and the client hears 53300 and ReadyForQuery", async () => {
  const full = new ProxyContext(parseConfig(`[failover]\nbuffer_max_clients = 0\n[[nodes]]\nhost = "127.0.0.1"\nport = 5432\n`, "t.toml"));
  const written: Uint8Array[] = [];
  const sock = { ...fakeSocket, write: (b: Uint8Array) => (written.push(b.slice()), b.length) };
  const s = new ClientSession(full, sock as never);
  (s as unknown as { current: ClientState }).current = ClientState.Idle;
  full.buffer.hold("failover from node1");
  expect(refusedDuring("client", () => s.onData(sock as never, queryMessage("SELECT 1")))).toEqual([]);
  await Bun.sleep(0);
  expect(s.state).toBe(ClientState.Idle);
  const reply = Buffer.concat(written);
  expect(String.fromCharCode(reply[0]!)).toBe("E");
  expect(errorFields(reply, 5, reply.readInt32BE(1) + 1).code).toBe("53300");
  expect(String.fromCharCode(reply[reply.readInt32BE(1) + 1]!)).toBe("Z");
});
