// Read/write split on a real primary + 2 standbys: writes only on the primary, reads spread per strategy (pg, postgres.js, psql).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pg from "pg";
import postgres from "postgres";
import { psql, type RunningProxy } from "../support/proxy.ts";
import { startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";

const DB = "app";
const cluster = usePgCluster({ databases: [DB] });

let primaryPort = 0;
let standbyPorts: number[] = [];

beforeAll(async () => {
  const c = cluster();
  primaryPort = c.primary().port;
  standbyPorts = c.standbys().map((s) => s.port);
  await c.setup("CREATE TABLE items (id serial PRIMARY KEY, v text); INSERT INTO items (v) VALUES ('seed'); CREATE SEQUENCE ticket", DB);
});

async function pgClient(port: number): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: DB, connectionTimeoutMillis: 10000 });
  await c.connect();
  return c;
}

function pgjs(port: number, max = 1) {
  return postgres({ host: "127.0.0.1", port, user: "postgres", database: DB, max, onnotice: () => {}, connect_timeout: 10 });
}

/** Backend port → how many times it answered. */
function tally(ports: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of ports) m.set(p, (m.get(p) ?? 0) + 1);
  return m;
}

async function psqlValues(port: number, sql: string): Promise<number[]> {
  const r = await psql(port, ["-At", "-v", "ON_ERROR_STOP=1", "-c", sql], { db: DB });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return r.stdout.split("\n").filter((l) => /^\d+$/.test(l)).map(Number);
}

describe("writes and transactions go to the primary", () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startClusterProxy(cluster(), { strategy: "round_robin" });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  test("INSERT ... RETURNING inet_server_port() answers from the primary (pg, postgres.js, psql)", async () => {
    const c = await pgClient(proxy.port);
    const sql = pgjs(proxy.port);
    try {
      const ports: number[] = [];
      for (let i = 0; i < 10; i++) {
        ports.push((await c.query("INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port() AS p", [`pg${i}`])).rows[0].p);
        ports.push((await c.query(`INSERT INTO items (v) VALUES ('simple${i}') RETURNING inet_server_port() AS p`)).rows[0].p);
        ports.push((await sql`INSERT INTO items (v) VALUES (${`js${i}`}) RETURNING inet_server_port() AS p`)[0]!.p);
      }
      ports.push(...(await psqlValues(proxy.port, "INSERT INTO items (v) VALUES ('psql') RETURNING inet_server_port()")));
      expect([...tally(ports)]).toEqual([[primaryPort, 31]]);
    } finally {
      await c.end();
      await sql.end();
    }
  });

  test("FOR UPDATE, data-modifying CTEs, nextval() and explicit BEGIN run on the primary", async () => {
    const c = await pgClient(proxy.port);
    const sql = pgjs(proxy.port);
    try {
      const cases = [
        "SELECT inet_server_port() AS p FROM items WHERE id = 1 FOR UPDATE",
        "SELECT inet_server_port() AS p FROM items WHERE id = 1 FOR SHARE",
        "WITH ins AS (INSERT INTO items (v) VALUES ('cte') RETURNING id) SELECT inet_server_port() AS p FROM ins",
        "WITH del AS (DELETE FROM items WHERE v = 'nothing' RETURNING id) SELECT inet_server_port() AS p",
        "SELECT nextval('ticket') AS n, inet_server_port() AS p",
        "SELECT inet_server_port() AS p, txid_current() AS x",
      ];
      for (let round = 0; round < 3; round++) {
        for (const q of cases) {
          expect({ q, p: (await c.query(q)).rows[0].p }).toEqual({ q, p: primaryPort });
          expect({ q, p: (await sql.unsafe(q))[0]!.p }).toEqual({ q, p: primaryPort });
        }
      }
      // Every statement of an explicit read-write transaction, on one backend: the primary's.
      for (let i = 0; i < 4; i++) {
        await c.query("BEGIN");
        const inside = [(await c.query("SELECT inet_server_port() AS p")).rows[0].p, (await c.query("SELECT inet_server_port() AS p FROM items LIMIT 1")).rows[0].p];
        await c.query("COMMIT");
        expect(inside).toEqual([primaryPort, primaryPort]);
      }
      const tx = await sql.begin(async (t) => [(await t`SELECT inet_server_port() AS p`)[0]!.p, (await t`SELECT count(*)::int AS n, inet_server_port() AS p FROM items`)[0]!.p]);
      expect(tx).toEqual([primaryPort, primaryPort]);
      expect(await psqlValues(proxy.port, "BEGIN; SELECT inet_server_port(); SELECT inet_server_port(); COMMIT;")).toEqual([primaryPort, primaryPort]);
    } finally {
      await c.end();
      await sql.end();
    }
  });

  test("pipelined on one connection: a write right behind a read that went to a standby still runs on the primary", async () => {
    const sql = pgjs(proxy.port, 1);
    try {
      for (let i = 0; i < 10; i++) {
        const [r, w, r2] = await Promise.all([
          sql`SELECT inet_server_port() AS p`,
          sql`INSERT INTO items (v) VALUES ('pipelined') RETURNING inet_server_port() AS p`,
          sql`SELECT inet_server_port() AS p`,
        ]);
        expect(standbyPorts.concat(primaryPort)).toContain(r[0]!.p);
        expect(w[0]!.p).toBe(primaryPort);
        expect(standbyPorts.concat(primaryPort)).toContain(r2[0]!.p);
      }
    } finally {
      await sql.end();
    }
  });

  test("a standby never saw a write: the rows all came through the primary and replicated", async () => {
    const c = cluster();
    const n = await c.psql(c.primary(), "SELECT count(*) FROM items", { db: DB });
    // The async standby catches up within moments; both standbys then hold exactly the primary's rows.
    for (const s of c.standbys()) {
      let seen = "";
      for (let i = 0; i < 100 && seen !== n; i++) {
        seen = await c.psql(s, "SELECT count(*) FROM items", { db: DB });
        if (seen !== n) await Bun.sleep(50);
      }
      expect({ node: s.name, rows: seen }).toEqual({ node: s.name, rows: n });
    }
  });
});

describe("reads go to the standbys", () => {
  test("round_robin: reads split between the standbys in the ratio of their weights (pg, postgres.js, psql)", async () => {
    const c = cluster();
    const [s1, s2] = [c.standbys()[0]!, c.standbys()[1]!];
    const proxy = await startClusterProxy(c, { strategy: "round_robin", weights: { [s1.name]: 3, [s2.name]: 1 } });
    const client = await pgClient(proxy.port);
    const sql = pgjs(proxy.port);
    try {
      const ports: number[] = [];
      for (let i = 0; i < 40; i++) ports.push((await client.query("SELECT inet_server_port() AS p")).rows[0].p);
      for (let i = 0; i < 40; i++) ports.push((await sql`SELECT inet_server_port() AS p`)[0]!.p);
      for (let i = 0; i < 8; i++) ports.push(...(await psqlValues(proxy.port, "SELECT inet_server_port()")));
      const t = tally(ports);
      expect(t.get(primaryPort)).toBeUndefined();
      expect((t.get(s1.port) ?? 0) + (t.get(s2.port) ?? 0)).toBe(88);
      // 3:1 → 66:22; allow a little for requests a driver makes on its own.
      expect(t.get(s1.port)!).toBeGreaterThanOrEqual(60);
      expect(t.get(s1.port)!).toBeLessThanOrEqual(70);
    } finally {
      await client.end();
      await sql.end();
      await proxy.stop();
    }
  });

  test("round_robin: read-only CTEs, SHOW and BEGIN READ ONLY transactions run on standbys", async () => {
    const proxy = await startClusterProxy(cluster(), { strategy: "round_robin" });
    const client = await pgClient(proxy.port);
    try {
      const reads = [
        "WITH x AS (SELECT count(*) FROM items) SELECT inet_server_port() AS p FROM x",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT inet_server_port() AS p FROM r LIMIT 1",
        "SELECT inet_server_port() AS p FROM items WHERE v = 'seed'",
        "SELECT pg_is_in_recovery() AS r, inet_server_port() AS p",
      ];
      const ports: number[] = [];
      for (const q of reads) for (let i = 0; i < 2; i++) ports.push((await client.query(q)).rows[0].p);
      expect((await client.query("SELECT pg_is_in_recovery() AS r")).rows[0].r).toBe(true);
      expect((await client.query("SHOW transaction_read_only")).rows[0].transaction_read_only).toBe("on");
      for (const begin of ["BEGIN READ ONLY", "START TRANSACTION READ ONLY", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"]) {
        for (let i = 0; i < 2; i++) {
          await client.query(begin);
          const a = (await client.query("SELECT inet_server_port() AS p")).rows[0].p;
          const b = (await client.query("SELECT inet_server_port() AS p FROM items LIMIT 1")).rows[0].p;
          await client.query("COMMIT");
          expect(a).toBe(b); // one backend for the whole transaction
          ports.push(a);
        }
      }
      const t = tally(ports);
      expect(t.get(primaryPort)).toBeUndefined();
      for (const p of standbyPorts) expect(t.get(p) ?? 0).toBeGreaterThan(0);
    } finally {
      await client.end();
      await proxy.stop();
    }
  });

  for (const strategy of ["least_connections", "latency"] as const) {
    test(`${strategy}: concurrent reads all land on standbys, never on the primary`, async () => {
      const proxy = await startClusterProxy(cluster(), { strategy });
      const clients = await Promise.all(Array.from({ length: 6 }, () => pgClient(proxy.port)));
      const sql = pgjs(proxy.port, 4);
      try {
        const ports: number[] = [];
        await Promise.all(
          clients.map(async (cl) => {
            for (let i = 0; i < 15; i++) ports.push((await cl.query("SELECT inet_server_port() AS p, pg_sleep(0.005)")).rows[0].p);
          }),
        );
        await Promise.all(Array.from({ length: 20 }, async () => ports.push((await sql`SELECT inet_server_port() AS p`)[0]!.p)));
        ports.push(...(await psqlValues(proxy.port, "SELECT inet_server_port()")));
        const t = tally(ports);
        expect(t.get(primaryPort)).toBeUndefined();
        expect(standbyPorts.reduce((n, p) => n + (t.get(p) ?? 0), 0)).toBe(111);
        // least_connections spreads concurrent load over equal standbys; latency may favour the faster one.
        if (strategy === "least_connections") for (const p of standbyPorts) expect(t.get(p) ?? 0).toBeGreaterThan(0);
      } finally {
        await Promise.all(clients.map((cl) => cl.end()));
        await sql.end();
        await proxy.stop();
      }
    });
  }

  test("split off: every read stays on the primary", async () => {
    const proxy = await startClusterProxy(cluster(), { split: false });
    const client = await pgClient(proxy.port);
    try {
      const ports: number[] = [];
      for (let i = 0; i < 10; i++) ports.push((await client.query("SELECT inet_server_port() AS p")).rows[0].p);
      expect([...tally(ports)]).toEqual([[primaryPort, 10]]);
    } finally {
      await client.end();
      await proxy.stop();
    }
  });
});
