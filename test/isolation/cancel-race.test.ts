// A cancel sent as its statement ends never reaches the next client's statement on that server (1,008 races: 16 pairs on pools of 1, each sweeping the 0-60 ms offsets once).

import { afterAll, expect, test } from "bun:test";
import * as F from "../support/frames.ts";
import * as W from "../support/wire.ts";
import { usePgInstance } from "../support/pg-fixture.ts";

const PAIRS = 16;
const ROUNDS = 63;
const USERS = Array.from({ length: PAIRS }, (_, i) => `racer${i}`);

const fx = usePgInstance({}, (inst) => inst.psql(USERS.map((u) => `CREATE ROLE ${u} LOGIN`).join("; ")));

afterAll(() => W.RawConn.destroyAll());

/** Fire a CancelRequest on its own connection (not awaited by the caller's timing). */
async function sendCancel(port: number, pid: number, secret: Uint8Array): Promise<void> {
  await W.exchange(port, F.cancelRequest(pid, secret), { timeoutMs: 2000 });
}

/**
 * One pair on its own one-server pool: A runs a short statement and sends its cancel around the
 * moment the statement ends; B has its next statement queued for the same server. Returns how
 * many times B's statement was cancelled (a cancel that was A's) and how many A's own were.
 */
async function race(port: number, user: string): Promise<{ foreign: number; own: number }> {
  const login = { user, database: "postgres" };
  const a = await W.login(port, login);
  const b = await W.login(port, login);
  let foreign = 0;
  let own = 0;
  for (let i = 0; i < ROUNDS; i++) {
    await a.conn.send(F.query("DO $$BEGIN RAISE NOTICE 'go'; PERFORM pg_sleep(0.05); END$$"));
    // B's next statement waits for the one server, which A has.
    await b.conn.send(F.query("select pg_sleep(0.012)"));
    await a.conn.until("N", 5000);
    // 0..60 ms after its first NOTICE: from inside the statement (the cancel path itself takes
    // some ms, a fork in PostgreSQL) to just after its end.
    await Bun.sleep(i % 61);
    const cancelled = sendCancel(port, a.pid, a.secret);
    const ra = await a.conn.untilReady(1, 10000);
    const rb = await b.conn.untilReady(1, 10000);
    await cancelled;
    if (F.errors(ra).some((e) => e.code === "57014")) own++;
    if (F.errors(rb).some((e) => e.code === "57014")) foreign++;
    expect(F.errors(rb).filter((e) => e.code !== "57014")).toEqual([]);
  }
  a.conn.quit();
  b.conn.quit();
  return { foreign, own };
}

test(`${PAIRS * ROUNDS} cancels sent as their statements end: 0 land on another client's statement`, async () => {
  const proxy = await fx.proxyWith({ mode: "transaction", maxConnections: 1 });
  const t0 = performance.now();
  const results = await Promise.all(USERS.map((u) => race(proxy.port, u)));
  const foreign = results.reduce((n, r) => n + r.foreign, 0);
  const own = results.reduce((n, r) => n + r.own, 0);
  console.log(`cancel race: ${PAIRS * ROUNDS} rounds in ${Math.round(performance.now() - t0)} ms, ${own} cancelled their own statement, ${foreign} another client's`);
  expect(foreign).toBe(0);
  // The cancels did reach running statements: the race was run, not missed.
  expect(own).toBeGreaterThan(0);
}, 60000);
