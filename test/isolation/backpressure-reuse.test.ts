// A server paused for a slow reader goes back to the pool reading: the next client on a 1-server pool never waits on an answered server.

import { afterAll, beforeAll, expect, test } from "bun:test";
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

test("slow reader of multi-MiB results and a quick client on one server: every quick query answered promptly", async () => {
  const slow = await W.login(proxy.port, USER);
  const quick = await W.login(proxy.port, USER);
  let done = false;
  const latencies: number[] = [];
  const quickLoop = (async () => {
    while (!done) {
      const t0 = performance.now();
      // Bounded: a server handed on paused would leave this unanswered.
      const r = await quick.conn.roundTrip(F.query("select 1"), 1, 15000);
      latencies.push(performance.now() - t0);
      expect(F.firstColumn(r)).toEqual(["1"]);
    }
  })();
  // Results of 1 KiB rows growing from 2 MiB in 256 KiB steps, each read 250 ms late.
  for (let kib = 2048; kib <= 7168; kib += 256) {
    slow.conn.socket.pause();
    await slow.conn.send(F.query(`select repeat('x', 1000) from generate_series(1, ${kib})`));
    await Bun.sleep(250);
    slow.conn.socket.resume();
    const r = await slow.conn.untilReady(1, 15000);
    expect(r.filter((m) => m.type === "D").length).toBe(kib);
    slow.conn.take();
  }
  done = true;
  await quickLoop;
  expect(latencies.length).toBeGreaterThan(0);
  // Each quick query waited at most for one slow result to be read, never for a server that had answered.
  expect(Math.max(...latencies)).toBeLessThan(5000);
  slow.conn.quit();
  quick.conn.quit();
}, 60000);
