// Abusive and heavy clients (RELIABILITY C7-C9): slowloris, connection floods, a slow reader of a large result.

import { describe, expect, test } from "bun:test";
import net from "node:net";
import pg from "pg";
import { configText, freePort, startProxyWithConfig, writeConfig } from "../support/proxy.ts";
import { rssKb } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { RawConn } from "../support/wire.ts";
import { usePgInstance } from "../support/pg-fixture.ts";

const fx = usePgInstance({ databases: ["c7", "c8", "c9"] });
const proxyWith = (toml: string, maxConnections = 5) => fx.proxyWith({ maxConnections, toml });

async function backendCount(db: string): Promise<number> {
  const r = await fx.monitor.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = $1", [db]);
  return r.rows[0].n;
}

/** Outcome of one raw login: "ok", a SQLSTATE, or "closed"/"error" without one; plus when it was decided. */
async function rawLogin(port: number, db: string): Promise<{ c: RawConn | null; outcome: string; ms: number }> {
  const t0 = performance.now();
  let c: RawConn;
  try {
    c = await RawConn.start(port, { user: "postgres", database: db });
  } catch {
    return { c: null, outcome: "connect-error", ms: performance.now() - t0 };
  }
  try {
    const r = await c.login("postgres", null, 15000);
    return { c, outcome: r.ok ? "ok" : (r.error?.code ?? "closed"), ms: performance.now() - t0 };
  } catch {
    return { c, outcome: "timeout", ms: performance.now() - t0 };
  }
}

describe("C7 slowloris", () => {
  test("200 sockets trickling a startup packet are closed at login_timeout, use no backend, and do not block others", async () => {
    const port = freePort();
    const adminPort = freePort();
    const config = configText(port, adminPort, { maxConnections: 5, nodes: [{ host: "127.0.0.1", port: fx.inst.port }] });
    const slow = await startProxyWithConfig(writeConfig(config.replace("[proxy]\n", "[proxy]\nlogin_timeout_secs = 2\n")), port, adminPort);
    fx.adopt(slow);

    const packet = F.startup({ user: "postgres", database: "c7" });
    const t0 = performance.now();
    const closedAfter: number[] = [];
    const sockets = await Promise.all(
      Array.from(
        { length: 200 },
        () =>
          new Promise<net.Socket>((resolve) => {
            const s = net.connect(port, "127.0.0.1", () => resolve(s));
            let sent = 0;
            const timer = setInterval(() => {
              if (sent < packet.length && !s.destroyed) s.write(packet.subarray(sent, ++sent));
            }, 1000);
            s.on("error", () => {});
            s.on("close", () => {
              clearInterval(timer);
              closedAfter.push(performance.now() - t0);
            });
          }),
      ),
    );
    // Meanwhile a normal client logs in and queries without delay.
    await Bun.sleep(500);
    const t1 = performance.now();
    const normal = new pg.Client({ host: "127.0.0.1", port, database: "c7", user: "postgres" });
    await normal.connect();
    expect((await normal.query("SELECT 7 AS seven")).rows[0].seven).toBe(7);
    expect(performance.now() - t1).toBeLessThan(2000);
    await normal.end();

    const deadline = performance.now() + 6000;
    while (closedAfter.length < 200 && performance.now() < deadline) await Bun.sleep(100);
    for (const s of sockets) s.destroy();
    expect(closedAfter.length).toBe(200);
    expect(Math.min(...closedAfter)).toBeGreaterThan(1800);
    expect(Math.max(...closedAfter)).toBeLessThan(4000);
    // Only the normal client's server was opened.
    expect(await backendCount("c7")).toBeLessThanOrEqual(1);
  }, 30000);
});

describe("C8 connection flood", () => {
  test("2,000 logins against max_client_conn = 500: the excess is refused fast with 53300 and nothing leaks", async () => {
    const proxy = await proxyWith("[limits]\nmax_client_conn = 500");
    const warm = await rawLogin(proxy.port, "c8");
    expect(warm.outcome).toBe("ok");
    warm.c!.destroy();
    await Bun.sleep(50);

    // Churn first: 1,000 sockets that send a startup packet and hang up at once.
    for (let wave = 0; wave < 4; wave++) {
      await Promise.all(
        Array.from(
          { length: 250 },
          () =>
            new Promise<void>((resolve) => {
              const s = net.connect(proxy.port, "127.0.0.1", () => {
                s.write(F.startup({ user: "postgres", database: "c8" }));
                s.destroy();
              });
              s.on("error", () => resolve());
              s.on("close", () => resolve());
            }),
        ),
      );
    }

    // Then 2,000 logins that stay connected, in quick waves.
    const results: Awaited<ReturnType<typeof rawLogin>>[] = [];
    for (let wave = 0; wave < 8; wave++) {
      results.push(...(await Promise.all(Array.from({ length: 250 }, () => rawLogin(proxy.port, "c8")))));
    }
    const outcomes = new Map<string, number>();
    for (const r of results) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
    expect(Object.fromEntries(outcomes)).toEqual({ ok: 500, "53300": 1500 });
    const refusedMs = results.filter((r) => r.outcome === "53300").map((r) => r.ms).sort((a, b) => a - b);
    expect(refusedMs[Math.floor(refusedMs.length * 0.95)]!).toBeLessThan(2000);
    for (const r of results) r.c?.destroy();

    // Every slot came back: 500 logins succeed again and each can query.
    await Bun.sleep(300);
    const again = await Promise.all(Array.from({ length: 500 }, () => rawLogin(proxy.port, "c8")));
    expect(again.filter((r) => r.outcome === "ok").length).toBe(500);
    const q = await again[0]!.c!.simpleQuery("SELECT 8");
    expect(q.rows).toEqual([["8"]]);
    for (const r of again) r.c?.destroy();
  }, 60000);
});

describe("C9 slow reader of a large result", () => {
  test("100 MB read with pauses: proxy memory stays bounded (backpressure) and every DataRow byte arrives", async () => {
    const proxy = await proxyWith("", 1);
    const c = await RawConn.start(proxy.port, { user: "postgres", database: "c9" });
    expect((await c.login("postgres", null)).ok).toBe(true);
    expect((await c.simpleQuery("SELECT repeat('x', 1000) FROM generate_series(1, 100)")).rows.length).toBe(100);
    const pid = proxy.proc.pid;
    const base = rssKb(pid);
    const rows = 100000;
    c.reader.keepDataRows = false;
    c.reader.dataRows = 0;
    c.reader.dataRowBytes = 0;
    c.socket.pause();
    await c.send(F.query(`SELECT repeat('x', 1000) FROM generate_series(1, ${rows})`));
    // Not reading at all: the proxy must stop reading from the server rather than buffer the result.
    let pausedPeak = base;
    for (let i = 0; i < 4; i++) {
      await Bun.sleep(400);
      pausedPeak = Math.max(pausedPeak, rssKb(pid));
    }
    // Then read in short bursts with pauses until the result is complete.
    let peak = pausedPeak;
    const done = c.until("Z", 60000);
    const t0 = performance.now();
    while (c.reader.dataRows < rows && performance.now() - t0 < 40000) {
      c.socket.resume();
      await Bun.sleep(2);
      c.socket.pause();
      await Bun.sleep(20);
      peak = Math.max(peak, rssKb(pid));
    }
    c.socket.resume();
    const tail = await done;
    expect(tail.some((m) => m.type === "E")).toBe(false);
    expect(c.reader.dataRows).toBe(rows);
    // 'D', length, column count, value length, 1,000 bytes.
    expect(c.reader.dataRowBytes).toBe(rows * (1 + 4 + 2 + 4 + 1000));
    expect((pausedPeak - base) / 1024).toBeLessThan(16);
    // Streaming churns buffers the GC reclaims late: allow for that, far below what holding the result would take.
    expect((peak - base) / 1024).toBeLessThan(150);
    c.destroy();
  }, 60000);
});
