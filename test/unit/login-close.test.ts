// A server connection closed by the proxy at each login step (connect, SSL, startup, SCRAM, parameters): the login settles at once and the pool's counts stay true.

import { afterEach, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { LoginError } from "../../src/server/login.ts";
import { Pool, type PoolSettings, type PoolWaiter } from "../../src/server/pool.ts";
import type { ServerConnection } from "../../src/server/connection.ts";
import { concat, cstr, int32, message } from "../support/frames.ts";

/** Where the fake server stops answering. */
type Step = "connect" | "ssl" | "startup" | "scram" | "params";

/** A fake PostgreSQL that goes silent at `step` (fake servers are for faults); `reached` resolves when it got there. */
function stallingServer(step: Step) {
  let reached!: () => void;
  const state = { open: 0, reached: new Promise<void>((r) => (reached = r)) };
  const listener: TCPSocketListener<{ got: number[]; first: boolean }> = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(sock) {
        state.open++;
        sock.data = { got: [], first: true };
      },
      close() {
        state.open--;
      },
      data(sock, chunk) {
        const d = sock.data;
        d.got.push(...chunk);
        // Whole messages only: the first is untyped (length word), the rest typed.
        for (;;) {
          const at = d.first ? 0 : 1;
          if (d.got.length < at + 4) return;
          const len = new DataView(Uint8Array.from(d.got.slice(at, at + 4)).buffer).getInt32(0);
          if (d.got.length < at + len) return;
          const type = d.first ? 0 : d.got[0]!;
          d.got.splice(0, at + len);
          d.first = false;
          answer(sock, type);
        }
      },
    },
  });
  function answer(sock: Socket<unknown>, type: number): void {
    if (type === 0 && step === "ssl") return reached(); // SSLRequest: no answer
    if (type === 0 && step === "startup") return reached(); // StartupMessage: no answer
    if (type === 0 && step === "scram") {
      sock.write(message("R", concat(int32(10), cstr("SCRAM-SHA-256"), [0])));
      return;
    }
    if (type === 0 && step === "params") {
      // Logged in, but no ReadyForQuery.
      sock.write(concat(message("R", int32(0)), message("S", concat(cstr("server_version"), cstr("17.0"))), message("K", concat(int32(42), int32(7)))));
      return reached();
    }
    if (type === "p".charCodeAt(0) && step === "scram") return reached(); // SASLInitialResponse: no answer
  }
  return { port: listener.port, state, stop: () => listener.stop(true) };
}

const SETTINGS: PoolSettings = { minConnections: 0, maxConnections: 2, idleTimeoutMs: 0, lifetimeMs: 0, connectTimeoutMs: 30_000, waitTimeoutMs: 0 };
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

function poolAt(port: number, step: Step): Pool {
  const shared = { creds: { user: "u", database: "d", password: "pw" }, serverParams: null, passthrough: "unknown" as const, firstLogin: null, trustProbe: null };
  const endpoint = { host: "127.0.0.1", port, name: "node1", ...(step === "ssl" ? { sslmode: "require" as const } : {}) };
  const p = new Pool("d", "u", endpoint, shared, SETTINGS);
  const failures: string[] = [];
  p.onBackendFailure = (r) => failures.push(r);
  cleanup.push(() => p.closeAll("test over"));
  return Object.assign(p, { failures });
}

/** `p` settled within `ms` (the connect timeout is 30 s: settling through it would fail here). */
function within<T>(p: Promise<T>, ms = 2000): Promise<T> {
  return Promise.race([p, Bun.sleep(ms).then(() => Promise.reject(new Error(`not settled within ${ms} ms`)))]);
}

const NONE = { idle: 0, active: 0, connecting: 0, waiting: 0, total: 0 };

for (const step of ["connect", "ssl", "startup", "scram", "params"] as Step[]) {
  test(`closed at ${step}: the login is rejected at once (08006, closed during login), the pool counts nothing, no failure is blamed on the server`, async () => {
    const fake = stallingServer(step);
    cleanup.push(fake.stop);
    const p = poolAt(fake.port, step) as Pool & { failures: string[] };
    const opened = p.spawn();
    expect(p.counts()).toEqual({ ...NONE, connecting: 1, total: 1 });
    if (step !== "connect") await within(fake.state.reached);
    p.closeAll("pool going away");
    const e = await within(opened);
    expect(e).toBeInstanceOf(LoginError);
    expect([(e as LoginError).code, (e as LoginError).message]).toEqual(["08006", "server connection closed during login: pool going away"]);
    expect(p.counts()).toEqual(NONE);
    expect([p.empty, p.lastError, p.failures]).toEqual([true, null, []]);
    // Nothing left open on the server side either (a connect that completes after the close is ended).
    for (let i = 0; i < 200 && fake.state.open > 0; i++) await Bun.sleep(10);
    expect(fake.state.open).toBe(0);
  });
}

test("a first login (tryLogin) whose server is closed while logging in returns the error instead of waiting", async () => {
  const fake = stallingServer("startup");
  cleanup.push(fake.stop);
  const p = poolAt(fake.port, "startup");
  const login = p.tryLogin(performance.now() + 30_000);
  await within(fake.state.reached);
  p.closeAll("killed by admin");
  const e = await within(login);
  expect(e?.code).toBe("08006");
  expect(p.counts()).toEqual(NONE);
});

test("a waiting client's server closed while logging in: the pool opens another for it, counts stay true", async () => {
  const fake = stallingServer("startup");
  cleanup.push(fake.stop);
  const p = poolAt(fake.port, "startup");
  const w: PoolWaiter = { waitingSince: 0, serverLeased() {}, serverFailed() {} };
  expect(p.acquire(w)).toBeNull();
  await within(fake.state.reached);
  const [first] = [...p.all] as ServerConnection[];
  first!.close("test");
  await Bun.sleep(0);
  expect(p.all.has(first!)).toBe(false);
  expect(p.counts()).toEqual({ ...NONE, connecting: 1, waiting: 1, total: 1 });
  p.forget(w);
});
