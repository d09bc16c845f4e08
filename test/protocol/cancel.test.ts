// CancelRequest handling through the proxy with a one-connection pool: RELIABILITY A11.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as F from "../support/frames.ts";
import * as W from "../support/wire.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";

const USER = { user: "postgres", database: "test" };
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy({ mode: "transaction", maxConnections: 1 });
});

afterAll(async () => {
  W.RawConn.destroyAll();
  await proxy.stop();
});

/** Send a CancelRequest on its own connection; the proxy must close it without a byte. */
async function cancel(pid: number, secret: Uint8Array | number, o: { length?: number } = {}): Promise<void> {
  const r = await W.exchange(proxy.port, F.cancelRequest(pid, secret, o), { timeoutMs: 2000 });
  expect(r.bytes.length).toBe(0);
  expect(r.closed).toBe(true);
  expect(r.closedAfterMs!).toBeLessThan(1000);
}

/** Flip one bit of a key. */
function wrong(secret: Uint8Array, bit = 0): Uint8Array {
  const s = secret.slice();
  s[bit >> 3]! ^= 1 << (bit & 7);
  return s;
}

describe("A11 CancelRequest", () => {
  test("right key: the running query fails with 57014 and the session goes on", async () => {
    const a = await W.login(proxy.port, USER);
    await a.conn.send(F.query("select pg_sleep(10)"));
    await Bun.sleep(200);
    const t0 = performance.now();
    await cancel(a.pid, a.secret);
    const r = await a.conn.untilReady(1, 5000);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(F.errors(r).map((e) => [e.severity, e.code])).toEqual([["ERROR", "57014"]]);
    expect(F.readyStatus(r.at(-1)!)).toBe("I");
    expect(F.firstColumn(await a.conn.roundTrip(F.query("select 'after'")))).toEqual(["after"]);
    a.conn.quit();
  });

  test("wrong key or wrong pid: no reply, the query keeps running to its end", async () => {
    const a = await W.login(proxy.port, USER);
    const t0 = performance.now();
    // A forwarded cancel lands within milliseconds; 1.3 s after the last one is margin enough on a loaded machine.
    await a.conn.send(F.query("select pg_sleep(1.5), 'finished'"));
    await Bun.sleep(200);
    await cancel(a.pid, wrong(a.secret));
    await cancel(a.pid, wrong(a.secret, 31));
    await cancel(a.pid + 1, a.secret);
    const r = await a.conn.untilReady(1, 6000);
    expect(performance.now() - t0).toBeGreaterThan(1450);
    expect(F.errors(r)).toEqual([]);
    expect(F.dataRow(r.find((m) => m.type === "D")!)).toEqual(["", "finished"]);
    a.conn.quit();
  });

  test("bad lengths: closed, and the query not cancelled", async () => {
    const a = await W.login(proxy.port, USER);
    await a.conn.send(F.query("select pg_sleep(0.5), 'finished'"));
    await Bun.sleep(100);
    await cancel(a.pid, new Uint8Array(0)); // 12 bytes: no key at all
    await cancel(a.pid, a.secret, { length: 4 });
    // Over the startup packet limit: 08P01, as any packet that long.
    const huge = await W.exchange(proxy.port, F.cancelRequest(a.pid, a.secret, { length: 0x7fffffff }), { timeoutMs: 2000 });
    expect(F.errors(huge.messages).map((e) => e.code)).toEqual(["08P01"]);
    expect(huge.closed).toBe(true);
    await cancel(a.pid, new Uint8Array(300).fill(1)); // longer than any 3.2 key
    const r = await a.conn.untilReady(1, 3000);
    expect(F.errors(r)).toEqual([]);
    a.conn.quit();
  });

  test("100 concurrent wrong-key cancels never cancel another client's query", async () => {
    const a = await W.login(proxy.port, USER);
    const idle = await W.login(proxy.port, USER);
    await a.conn.send(F.query("select pg_sleep(1.5), 'finished'"));
    await Bun.sleep(150);
    await Promise.all(
      Array.from({ length: 100 }, (_, i) => {
        const pid = i % 3 === 0 ? a.pid : i % 3 === 1 ? idle.pid : a.pid + 1000 + i;
        const key = i % 3 === 2 ? a.secret : wrong(i % 3 === 0 ? a.secret : idle.secret, i % 32);
        return cancel(pid, key);
      }),
    );
    const r = await a.conn.untilReady(1, 5000);
    expect(F.errors(r)).toEqual([]);
    expect(F.dataRow(r.find((m) => m.type === "D")!)).toEqual(["", "finished"]);
    expect(F.firstColumn(await idle.conn.roundTrip(F.query("select 'idle ok'")))).toEqual(["idle ok"]);
    a.conn.quit();
    idle.conn.quit();
  });

  test("a cancel gets through while the pool is full and another client waits", async () => {
    const holder = await W.login(proxy.port, USER);
    const waiter = await W.login(proxy.port, USER);
    await holder.conn.send(F.query("select pg_sleep(10)"));
    await Bun.sleep(150);
    await waiter.conn.send(F.query("select 'waited'"));
    await Bun.sleep(150);
    expect(waiter.conn.messages.length - waiter.conn.cursor).toBe(0);
    const t0 = performance.now();
    await cancel(holder.pid, holder.secret);
    const r = await holder.conn.untilReady(1, 5000);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(F.errors(r).map((e) => e.code)).toEqual(["57014"]);
    expect(F.firstColumn(await waiter.conn.untilReady(1, 5000))).toEqual(["waited"]);
    holder.conn.quit();
    waiter.conn.quit();
  });

  test("protocol 3.2: the 32-byte key cancels, its 4-byte prefix does not", async () => {
    const a = await W.login(proxy.port, USER, { minor: 2 });
    expect(a.secret.length).toBe(32);
    await a.conn.send(F.query("select pg_sleep(10)"));
    await Bun.sleep(200);
    await cancel(a.pid, a.secret.subarray(0, 4));
    await cancel(a.pid, wrong(a.secret, 255));
    await Bun.sleep(300);
    expect(a.conn.messages.length - a.conn.cursor).toBe(0);
    await cancel(a.pid, a.secret);
    const r = await a.conn.untilReady(1, 5000);
    expect(F.errors(r).map((e) => e.code)).toEqual(["57014"]);
    a.conn.quit();
  });
});
