// Backend faults (RELIABILITY B1-B5): PostgreSQL restarts, outages, blackholes, resets and terminated backends.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import pg from "pg";
import { freePort, startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, waitFor, type PgInstance } from "../support/pg-instance.ts";
import { pgClient } from "../support/clients.ts";

let inst: PgInstance;
const proxies: RunningProxy[] = [];

beforeAll(async () => {
  inst = await startPgInstance({ databases: ["b1", "b2", "b4", "b5"] });
}, 60000);

afterAll(async () => {
  for (const p of proxies) await p.stop();
  await inst?.destroy();
}, 60000);

async function proxyFor(port: number, poolExtra = "", toml = ""): Promise<RunningProxy> {
  const p = await startProxy({
    maxConnections: 5,
    nodes: [{ host: "127.0.0.1", port }],
    poolExtra: poolExtra || "wait_timeout_secs = 10\nconnect_timeout_secs = 2",
    toml,
  });
  proxies.push(p);
  return p;
}

const client = (port: number, database: string) => pgClient(port, { database, connectionTimeoutMillis: 15000 });

/** SQLSTATE of a failure, or "conn" for a connection-level error without one. */
function failureKind(e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (typeof err.code === "string" && /^[0-9A-Z]{5}$/.test(err.code)) return err.code;
  return "conn";
}

/** Backend pids of the proxy's server connections to `db` (the fixture's psql connects to "postgres"). */
async function backendPids(db: string): Promise<number[]> {
  const out = await inst.psql(`SELECT pid FROM pg_stat_activity WHERE datname = '${db}' AND backend_type = 'client backend' ORDER BY pid`);
  return out === "" ? [] : out.split("\n").map(Number);
}

/** A TCP relay in front of PostgreSQL that can reset every connection it carries. */
class ResetRelay {
  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly pairs: Set<[net.Socket, net.Socket]>,
  ) {}

  static async start(targetPort: number): Promise<ResetRelay> {
    const pairs = new Set<[net.Socket, net.Socket]>();
    const server = net.createServer((front) => {
      const back = net.connect(targetPort, "127.0.0.1");
      const pair: [net.Socket, net.Socket] = [front, back];
      pairs.add(pair);
      front.pipe(back);
      back.pipe(front);
      const drop = () => {
        pairs.delete(pair);
        front.destroy();
        back.destroy();
      };
      front.on("error", drop).on("close", drop);
      back.on("error", drop).on("close", drop);
    });
    const port = freePort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
    return new ResetRelay(server, port, pairs);
  }

  get open(): number {
    return this.pairs.size;
  }

  /** Send RST to the proxy side of every carried connection and close the PostgreSQL side. */
  resetAll(): number {
    const n = this.pairs.size;
    for (const [front, back] of [...this.pairs]) {
      front.resetAndDestroy();
      back.destroy();
    }
    this.pairs.clear();
    return n;
  }

  close(): void {
    this.resetAll();
    this.server.close();
  }
}

describe("B1 PostgreSQL restart under load", () => {
  test("in-flight requests fail with 57P01 or a connection error; later queries succeed without restarting the proxy", async () => {
    const proxy = await proxyFor(inst.port);
    const idle = await client(proxy.port, "b1");
    expect((await idle.query("SELECT 1 AS one")).rows[0].one).toBe(1);

    let running = true;
    let restartedAt = Infinity;
    const failures: string[] = [];
    const successAfterRestart = new Array<number>(8).fill(0);
    const worker = async (i: number) => {
      let c: pg.Client | null = null;
      while (running) {
        try {
          c ??= await client(proxy.port, "b1");
          await c.query("SELECT pg_sleep(0.02)");
          if (performance.now() > restartedAt) successAfterRestart[i]!++;
        } catch (e) {
          failures.push(failureKind(e));
          await c?.end().catch(() => {});
          c = null;
        }
      }
      await c?.end().catch(() => {});
    };
    const workers = Array.from({ length: 8 }, (_, i) => worker(i));
    await Bun.sleep(700);
    await inst.restart("fast");
    restartedAt = performance.now();
    // Until every worker has had queries answered again (bounded; the assertions below say if not).
    const end = Date.now() + 10_000;
    while (successAfterRestart.some((n) => n < 3) && Date.now() < end) await Bun.sleep(25);
    running = false;
    await Promise.all(workers);

    for (const f of failures) expect(["57P01", "57P03", "08006", "08001", "08003", "conn"]).toContain(f);
    expect(failures.length).toBeLessThanOrEqual(8);
    for (const n of successAfterRestart) expect(n).toBeGreaterThan(0);
    // A client that was idle during the restart keeps working: its next query gets a fresh server.
    expect((await idle.query("SELECT 2 AS two")).rows[0].two).toBe(2);
    await idle.end();
    const fresh = await client(proxy.port, "b1");
    expect((await fresh.query("SELECT 3 AS three")).rows[0].three).toBe(3);
    await fresh.end();
    expect(proxy.proc.exitCode).toBeNull();
  }, 30000);
});

describe("B2 backend down at connect, back within 1 s", () => {
  test("a query on a warm pool waits and succeeds inside wait_timeout", async () => {
    const proxy = await proxyFor(inst.port);
    const c = await client(proxy.port, "b2");
    await c.query("SELECT 1");
    await inst.stop("fast");
    const back = Bun.sleep(600).then(() => inst.start());
    const t0 = performance.now();
    // A new login needs no server in transaction mode; its query waits for the backend.
    const late = await client(proxy.port, "b2");
    const [r1, r2] = await Promise.all([c.query("SELECT 'again' AS v"), late.query("SELECT 'late' AS v")]);
    const took = performance.now() - t0;
    await back;
    expect(r1.rows[0].v).toBe("again");
    expect(r2.rows[0].v).toBe("late");
    expect(took).toBeGreaterThan(400);
    expect(took).toBeLessThan(10000);
    await c.end();
    await late.end();
  }, 30000);
});

describe("B3 backend blackholed", () => {
  test("a backend that accepts and never answers: connect_timeout fires and the client gets an 08 error first", async () => {
    const sockets: { end(): void }[] = [];
    const hole = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void sockets.push(s), data() {} } });
    try {
      const proxy = await proxyFor(hole.port, "wait_timeout_secs = 10\nconnect_timeout_secs = 1");
      const t0 = performance.now();
      const err = await client(proxy.port, "b3").then(
        () => null,
        (e) => e as { code?: string },
      );
      const took = performance.now() - t0;
      expect(err).not.toBeNull();
      expect(err!.code).toMatch(/^08/);
      expect(took).toBeGreaterThan(800);
      expect(took).toBeLessThan(5000);
      expect(sockets.length).toBeGreaterThan(0);
    } finally {
      for (const s of sockets) s.end();
      hole.stop(true);
    }
  }, 20000);

  test("a port that refuses connections: the client gets an 08 error within wait_timeout", async () => {
    const proxy = await proxyFor(freePort(), "wait_timeout_secs = 1\nconnect_timeout_secs = 1");
    const t0 = performance.now();
    const err = await client(proxy.port, "b3").then(
      () => null,
      (e) => e as { code?: string },
    );
    expect(err).not.toBeNull();
    expect(err!.code).toMatch(/^08/);
    expect(performance.now() - t0).toBeLessThan(3000);
  }, 20000);
});

describe("B4 RST on pooled connections", () => {
  test("reset idle servers are detected and replaced; an in-flight reset costs that one client one error", async () => {
    const relay = await ResetRelay.start(inst.port);
    try {
      const proxy = await proxyFor(relay.port);
      // One login first: the pool learns its server parameters before the others log in.
      const clients = [await client(proxy.port, "b4")];
      clients.push(...(await Promise.all([1, 2].map(() => client(proxy.port, "b4")))));
      // Three servers in the pool: run three overlapping queries.
      await Promise.all(clients.map((c) => c.query("SELECT pg_sleep(0.2)")));
      // Three pooled servers (plus, possibly, the health checker's connection).
      expect(relay.open).toBeGreaterThanOrEqual(3);
      expect(relay.resetAll()).toBeGreaterThanOrEqual(3);
      await Bun.sleep(200);
      let errors = 0;
      for (let round = 0; round < 3; round++) {
        for (const c of clients) {
          await c.query("SELECT 1").catch(() => errors++);
        }
      }
      expect(errors).toBeLessThanOrEqual(1);

      // Reset while a query is running: only that client sees an error, and it says the server was lost.
      const busy = clients[0]!.query("SELECT pg_sleep(2)").then(
        () => null,
        (e) => e as { code?: string },
      );
      await Bun.sleep(300);
      relay.resetAll();
      const err = await busy;
      expect(err).not.toBeNull();
      expect(["08006", "08003", "conn"]).toContain(failureKind(err));
      for (const c of clients.slice(1)) expect((await c.query("SELECT 5 AS five")).rows[0].five).toBe(5);
      const again = await client(proxy.port, "b4");
      expect((await again.query("SELECT 6 AS six")).rows[0].six).toBe(6);
      await again.end();
      for (const c of clients) await c.end().catch(() => {});
    } finally {
      relay.close();
    }
  }, 30000);
});

describe("B5 pg_terminate_backend on idle pooled connections", () => {
  test("no client sees an error and the pool opens new servers", async () => {
    const proxy = await proxyFor(inst.port);
    const clients = [await client(proxy.port, "b5")];
    clients.push(...(await Promise.all([1, 2, 3].map(() => client(proxy.port, "b5")))));
    await Promise.all(clients.map((c) => c.query("SELECT pg_sleep(0.2)")));
    const before = await backendPids("b5");
    expect(before.length).toBe(4);
    const killed = await inst.psql(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'b5' AND state = 'idle'`);
    expect(Number(killed)).toBe(4);
    await waitFor("terminated backends to exit", async () => (await backendPids("b5")).length === 0, 5000);
    await Bun.sleep(100);
    for (let round = 0; round < 3; round++) {
      const rows = await Promise.all(clients.map((c, i) => c.query(`SELECT ${i} AS i, pg_backend_pid() AS pid`)));
      rows.forEach((r, i) => {
        expect(r.rows[0].i).toBe(i);
        expect(before).not.toContain(r.rows[0].pid);
      });
    }
    for (const c of clients) await c.end();
  }, 30000);
});
