// Transaction-pooling fidelity with 2 servers and many clients: session state (E4), prepared statements (E5, C11), pinning.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { PG_PORT, pgClient, pgjs, rejection } from "../support/clients.ts";
import * as F from "../support/frames.ts";
import { parity, type Step } from "../support/wire.ts";

const T = 30_000;
const SCHEMA = "clients_fid_a";
const STARTUP_SCHEMA = "clients_fid_s";
const MARKER = "clients_fid_marker";
const PROBE =
  "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS sp, current_setting('statement_timeout') AS st, " +
  "current_setting('application_name') AS app, current_setting('TimeZone') AS tz";

interface Probe {
  pid: number;
  sp: string;
  st: string;
  app: string;
  tz: string;
}
type Settings = Omit<Probe, "pid">;

const settings = ({ pid: _pid, ...rest }: Probe): Settings => rest;

let tx: RunningProxy;
let cache5: RunningProxy;
let DEFAULTS: Settings;

/** Open `n` node-postgres clients on `port`. */
const clients = (port: number, n: number, extra: Partial<pg.ClientConfig> = {}) => Promise.all(Array.from({ length: n }, () => pgClient(port, extra)));
const endAll = (cs: pg.Client[]) => Promise.all(cs.map((c) => c.end().catch(() => {})));

/**
 * Run `sql` on `c` twice, on the two different server connections of a 2-server pool: each time a
 * holder keeps the other server busy inside a transaction. Returns both rows.
 */
type Holder = pg.Client | ReturnType<typeof pgjs>;
const exec = (h: Holder, sql: string) => ("query" in h ? h.query(sql) : h.unsafe(sql));

async function onBothServers(c: pg.Client | (() => Promise<Probe>), holders: Holder[], sql = PROBE): Promise<Probe[]> {
  const [h0, h1] = holders as [Holder, Holder];
  const run = typeof c === "function" ? c : async () => (await c.query(sql)).rows[0] as Probe;
  await exec(h0, "BEGIN");
  const a = await run();
  await exec(h1, "BEGIN");
  await exec(h0, "COMMIT");
  const b = await run();
  await exec(h1, "COMMIT");
  expect(a.pid).not.toBe(b.pid);
  return [a, b];
}

beforeAll(async () => {
  const d = await pgClient(PG_PORT);
  await d.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${STARTUP_SCHEMA} CASCADE;
    CREATE SCHEMA ${SCHEMA}; CREATE SCHEMA ${STARTUP_SCHEMA};
    CREATE TABLE ${SCHEMA}.${MARKER} (who text); INSERT INTO ${SCHEMA}.${MARKER} VALUES ('a');
    CREATE TABLE ${STARTUP_SCHEMA}.${MARKER} (who text); INSERT INTO ${STARTUP_SCHEMA}.${MARKER} VALUES ('startup');`);
  DEFAULTS = settings((await d.query(PROBE)).rows[0]);
  await d.end();
  [tx, cache5] = await Promise.all([
    startProxy({ mode: "transaction", maxConnections: 2 }),
    startProxy({ mode: "transaction", maxConnections: 2, poolExtra: "prepared_statements_per_server = 5" }),
  ]);
  // One login first, so the tests below start from a pool that has met its server.
  for (const p of [tx, cache5]) {
    const c = await pgClient(p.port);
    await c.query("SELECT 1");
    await c.end();
  }
});

test("C3: 20 clients logging in at once to a fresh pool never open more than max_connections servers", async () => {
  const fresh = await startProxy({ mode: "transaction", maxConnections: 2 });
  try {
    const cs = await clients(fresh.port, 20);
    try {
      const pids = new Set<number>();
      await Promise.all(
        cs.map(async (c: pg.Client) => {
          for (let i = 0; i < 5; i++) pids.add((await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
        }),
      );
      expect(pids.size).toBeLessThanOrEqual(2);
    } finally {
      await endAll(cs);
    }
  } finally {
    await fresh.stop();
  }
}, T);

afterAll(async () => {
  await Promise.all([tx?.stop(), cache5?.stop()]);
  const d = await pgClient(PG_PORT);
  await d.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${STARTUP_SCHEMA} CASCADE`);
  await d.end();
});

describe("E4: no session-state bleed in transaction mode", () => {
  test("SETs follow their client to every backend and never reach another client", async () => {
    const [a, b, h0, h1] = await clients(tx.port, 4);
    try {
      await a.query(`SET search_path = ${SCHEMA}, public`);
      await a.query("SET statement_timeout = '4321ms'");
      await a.query("SET application_name = 'fid_a'");
      await a.query("SET TIME ZONE 'Asia/Tokyo'");
      const mine: Settings = { sp: `${SCHEMA}, public`, st: "4321ms", app: "fid_a", tz: "Asia/Tokyo" };
      const pidsA = new Set<number>();
      const pidsB = new Set<number>();
      for (let i = 0; i < 3; i++) {
        for (const r of await onBothServers(a, [h0!, h1!])) {
          pidsA.add(r.pid);
          expect(settings(r)).toEqual(mine);
        }
        for (const r of await onBothServers(b!, [h0!, h1!])) {
          pidsB.add(r.pid);
          expect(settings(r)).toEqual(DEFAULTS);
        }
      }
      expect(pidsA.size).toBe(2);
      expect([...pidsB].sort()).toEqual([...pidsA].sort());
      // The settings are live, not just reported: unqualified names resolve in A's schema only.
      for (let i = 0; i < 4; i++) {
        expect((await a!.query(`SELECT who FROM ${MARKER}`)).rows).toEqual([{ who: "a" }]);
        expect((await rejection(b!.query(`SELECT who FROM ${MARKER}`))).code).toBe("42P01");
      }
      // statement_timeout is enforced on both backends for A, on neither for B.
      await a!.query("SET statement_timeout = '100ms'");
      const [h0b, h1b] = [h0!, h1!];
      await h0b.query("BEGIN");
      expect((await rejection(a!.query("SELECT pg_sleep(0.5)"))).code).toBe("57014");
      await h1b.query("BEGIN");
      await h0b.query("COMMIT");
      expect((await rejection(a!.query("SELECT pg_sleep(0.5)"))).code).toBe("57014");
      expect((await b!.query("SELECT pg_sleep(0.2)::text AS s")).rows).toEqual([{ s: "" }]);
      await h1b.query("COMMIT");
    } finally {
      await endAll([a!, b!, h0!, h1!]);
    }
  }, T);

  test("16 clients with their own settings, concurrently on 2 servers, each always see their own", async () => {
    const cs = await clients(tx.port, 16);
    try {
      const pids = new Set<number>();
      await Promise.all(
        cs.map(async (c: pg.Client, k: number) => {
          await c.query(`SET application_name = 'fid_many_${k}'`);
          await c.query(`SET statement_timeout = '${1001 + k}ms'`);
          if (k % 2 === 0) await c.query(`SET search_path = ${SCHEMA}, public`);
          for (let i = 0; i < 25; i++) {
            const r: Probe = (await c.query(PROBE)).rows[0];
            pids.add(r.pid);
            expect(r.app).toBe(`fid_many_${k}`);
            expect(r.st).toBe(`${1001 + k}ms`);
            expect(r.sp).toBe(k % 2 === 0 ? `${SCHEMA}, public` : DEFAULTS.sp);
            expect(r.tz).toBe(DEFAULTS.tz);
          }
        }),
      );
      expect(pids.size).toBe(2);
    } finally {
      await endAll(cs);
    }
  }, T);

  test("RESET, RESET ALL and DISCARD ALL are honoured on every backend", async () => {
    const [a, h0, h1] = await clients(tx.port, 3);
    try {
      await a!.query(`SET search_path = ${SCHEMA}, public`);
      await a!.query("SET statement_timeout = '4321ms'");
      await a!.query("SET application_name = 'fid_reset'");
      await a!.query("SET TIME ZONE 'Asia/Tokyo'");
      await a!.query("RESET statement_timeout");
      await a!.query("RESET TIME ZONE");
      for (const r of await onBothServers(a!, [h0!, h1!])) {
        expect(settings(r)).toEqual({ sp: `${SCHEMA}, public`, st: DEFAULTS.st, app: "fid_reset", tz: DEFAULTS.tz });
      }
      await a!.query("RESET ALL");
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual(DEFAULTS);
      await a!.query("SET application_name = 'fid_discard'");
      await a!.query("DISCARD ALL");
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual(DEFAULTS);
    } finally {
      await endAll([a!, h0!, h1!]);
    }
  }, T);

  test("SET in a rolled-back or failed transaction and SET LOCAL do not stick; SET in a committed one does", async () => {
    const [a, h0, h1] = await clients(tx.port, 3);
    try {
      // Committed inside a transaction: sticks.
      await a!.query("BEGIN");
      await a!.query("SET application_name = 'fid_committed'");
      await a!.query("COMMIT");
      const committed = { ...DEFAULTS, app: "fid_committed" };
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual(committed);

      await a!.query("BEGIN");
      await a!.query(`SET search_path = ${SCHEMA}`);
      await a!.query("ROLLBACK");
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual(committed);

      await a!.query("BEGIN");
      await a!.query("SET application_name = 'fid_failed'");
      expect((await rejection(a!.query("SELECT 1/0"))).code).toBe("22012");
      await a!.query("ROLLBACK");
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual(committed);

      // One Query message is one implicit transaction: the error undoes the SET before it.
      expect((await rejection(a!.query("SET application_name = 'fid_multi'; SELECT 1/0"))).code).toBe("22012");
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual(committed);

      await a!.query("BEGIN");
      await a!.query("SET LOCAL statement_timeout = '777ms'");
      expect((await a!.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("777ms");
      await a!.query("COMMIT");
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual(committed);
    } finally {
      await endAll([a!, h0!, h1!]);
    }
  }, T);

  test("SET undone by ROLLBACK TO SAVEPOINT does not stick; SET before the savepoint does", async () => {
    const [a, h0, h1] = await clients(tx.port, 3);
    try {
      await a!.query("BEGIN");
      await a!.query("SET application_name = 'fid_before_savepoint'");
      await a!.query("SAVEPOINT sp1");
      await a!.query("SET application_name = 'fid_savepoint'");
      await a!.query("SET statement_timeout = '999ms'");
      await a!.query("ROLLBACK TO SAVEPOINT sp1");
      expect((await a!.query("SHOW application_name")).rows[0].application_name).toBe("fid_before_savepoint");
      await a!.query("COMMIT");
      for (const r of await onBothServers(a!, [h0!, h1!])) expect(settings(r)).toEqual({ ...DEFAULTS, app: "fid_before_savepoint" });
    } finally {
      await endAll([a!, h0!, h1!]);
    }
  }, T);

  test("startup parameters (application_name, options=-c ...) follow the client", async () => {
    const a = await pgClient(tx.port, { application_name: "fid_startup", options: `-c search_path=${STARTUP_SCHEMA} -c statement_timeout=2345` });
    const [b, h0, h1] = await clients(tx.port, 3);
    try {
      for (let i = 0; i < 2; i++) {
        for (const r of await onBothServers(a, [h0!, h1!])) {
          expect(settings(r)).toEqual({ sp: STARTUP_SCHEMA, st: "2345ms", app: "fid_startup", tz: DEFAULTS.tz });
        }
        for (const r of await onBothServers(b!, [h0!, h1!])) expect(settings(r)).toEqual(DEFAULTS);
      }
      expect((await a.query(`SELECT who FROM ${MARKER}`)).rows).toEqual([{ who: "startup" }]);
      // A SET on top of a startup value, then RESET: back to the startup value, not the server default.
      await a.query("SET application_name = 'fid_override'");
      for (const r of await onBothServers(a, [h0!, h1!])) expect(r.app).toBe("fid_override");
      await a.query("RESET application_name");
      for (const r of await onBothServers(a, [h0!, h1!])) expect(r.app).toBe("fid_startup");
    } finally {
      await endAll([a, b!, h0!, h1!]);
    }
  }, T);

  test("a SET sent as a named prepared statement (postgres.js) follows its client and no other", async () => {
    // Only postgres.js clients (same startup parameters): only their SETs tell them apart.
    const [a, b, h0, h1] = Array.from({ length: 4 }, () => pgjs(tx.port, { max: 1, prepare: true }));
    try {
      const probe = (sql: ReturnType<typeof pgjs>) => async () => (await sql.unsafe(PROBE, [], { prepare: true }))[0] as unknown as Probe;
      const base = settings(await probe(b!)());
      expect(base.app).toBe("postgres.js");
      await a!`SET application_name = 'fid_pgjs_set'`;
      await a!`SET statement_timeout = '3210ms'`;
      for (let round = 0; round < 2; round++) {
        for (const r of await onBothServers(probe(b!), [h0!, h1!])) expect(settings(r)).toEqual(base);
        for (const r of await onBothServers(probe(a!), [h0!, h1!])) expect(settings(r)).toEqual({ ...base, app: "fid_pgjs_set", st: "3210ms" });
      }
    } finally {
      await Promise.all([a, b, h0, h1].map((x) => x!.end()));
    }
  }, T);
});

describe("E5: prepared statements are transparent across server connections", () => {
  test("20 clients preparing shared and private names execute interleaved on 2 servers", async () => {
    const cs = await clients(tx.port, 20);
    try {
      const pids = new Set<number>();
      await Promise.all(
        cs.map(async (c: pg.Client, k: number) => {
          for (let i = 0; i < 25; i++) {
            // Same name, same text in every client.
            expect((await c.query({ name: "fid_shared", text: "SELECT $1::int4 + 1 AS v", values: [i] })).rows).toEqual([{ v: i + 1 }]);
            // A private name.
            expect((await c.query({ name: `fid_own_${k}`, text: `SELECT $1::int4 * ${k + 2} AS v, '${k}'::text AS who`, values: [i] })).rows).toEqual([
              { v: i * (k + 2), who: String(k) },
            ]);
            // Same name, different text in every client.
            expect((await c.query({ name: "fid_same_name", text: `SELECT $1::text || ':${k}' AS v`, values: [String(i)] })).rows).toEqual([{ v: `${i}:${k}` }]);
            pids.add((await c.query({ name: "fid_pid", text: "SELECT pg_backend_pid() AS pid" })).rows[0].pid);
          }
        }),
      );
      expect(pids.size).toBe(2);
    } finally {
      await endAll(cs);
    }
  }, T);

  test("DEALLOCATE, DEALLOCATE ALL and DISCARD ALL are respected (node-postgres, same as direct)", async () => {
    async function scenario(port: number): Promise<unknown[]> {
      const c = await pgClient(port);
      const out: unknown[] = [];
      const step = async (q: pg.QueryConfig | string) => {
        try {
          const r = await c.query(q);
          out.push(r.rows.length > 0 ? r.rows : r.command);
        } catch (e) {
          out.push((e as { code?: string }).code);
        }
      };
      try {
        const q = (name: string, v: number) => ({ name, text: "SELECT $1::int4 * 2 AS v", values: [v] });
        await step(q("fid_d1", 1));
        await step("DEALLOCATE fid_d1");
        await step(q("fid_d1", 2)); // node-postgres only Binds: the statement is gone
        await step(q("fid_d2", 3));
        await step(q("fid_d3", 4));
        await step("DEALLOCATE ALL");
        await step(q("fid_d2", 5));
        await step(q("fid_d3", 6));
        await step(q("fid_d4", 7));
        await step("DISCARD ALL");
        await step(q("fid_d4", 8));
        await step(q("fid_d5", 9));
        await step("DEALLOCATE PREPARE fid_d5");
        await step(q("fid_d5", 10));
        await step("DEALLOCATE fid_never_prepared");
        await step("SELECT 'alive' AS s");
        return out;
      } finally {
        await c.end();
      }
    }
    const viaProxy = await scenario(tx.port);
    expect(viaProxy).toEqual([
      [{ v: 2 }],
      "DEALLOCATE",
      "26000",
      [{ v: 6 }],
      [{ v: 8 }],
      "DEALLOCATE",
      "26000",
      "26000",
      [{ v: 14 }],
      "DISCARD",
      "26000",
      [{ v: 18 }],
      "DEALLOCATE",
      "26000",
      "26000",
      [{ s: "alive" }],
    ]);
    expect(viaProxy).toEqual(await scenario(PG_PORT));
  }, T);

  test("protocol-level duplicate (42P05), unknown (26000), Close and DEALLOCATE: same replies as PostgreSQL", async () => {
    const steps = (): Step[] => [
      { send: [F.parse("s1", "SELECT $1::int4 + 1", [23]), F.sync()] },
      { send: [F.bind("", "s1", ["41"]), F.execute(), F.sync()] },
      { send: [F.parse("s1", "SELECT 2"), F.sync()] },
      { send: [F.bind("", "s1", ["1"]), F.execute(), F.sync()] },
      { send: [F.bind("", "nope", []), F.execute(), F.sync()] },
      { send: [F.describe("S", "nope"), F.sync()] },
      { send: [F.query("DEALLOCATE s1")] },
      { send: [F.bind("", "s1", ["1"]), F.execute(), F.sync()] },
      { send: [F.parse("s2", "SELECT 'two'"), F.parse("s3", "SELECT 'three'"), F.describe("S", "s3"), F.sync()] },
      { send: [F.query("DEALLOCATE ALL")] },
      { send: [F.bind("", "s2"), F.execute(), F.sync()] },
      { send: [F.bind("", "s3"), F.execute(), F.sync()] },
      { send: [F.parse("s4", "SELECT 4"), F.sync()] },
      { send: [F.query("DISCARD ALL")] },
      { send: [F.bind("", "s4"), F.execute(), F.sync()] },
      { send: [F.parse("s5", "SELECT 5"), F.close("S", "s5"), F.close("S", "s5"), F.sync()] },
      { send: [F.bind("", "s5"), F.execute(), F.sync()] },
      // Reusing a name after it was freed is fine.
      { send: [F.parse("s1", "SELECT 'again'"), F.bind("", "s1"), F.execute(), F.sync()] },
    ];
    const { proxy, direct } = await parity(tx.port, steps);
    expect(proxy).toEqual(direct);
    expect(proxy.map((s) => s.filter((m) => m.startsWith("E:")))).toEqual([
      [],
      [],
      ["E:42P05"],
      [],
      ["E:26000"],
      ["E:26000"],
      [],
      ["E:26000"],
      [],
      [],
      ["E:26000"],
      ["E:26000"],
      [],
      [],
      ["E:26000"],
      [],
      ["E:26000"],
      [],
    ]);
    expect(proxy[1]).toEqual(["2", 'D:["42"]', "C:SELECT 1", "Z:I"]);
    expect(proxy[3]).toEqual(["2", 'D:["2"]', "C:SELECT 1", "Z:I"]); // the duplicate Parse left s1 as it was
    expect(proxy[17]).toEqual(["1", "2", 'D:["again"]', "C:SELECT 1", "Z:I"]);
  }, T);

  test("postgres.js prepare:true: 500 queries from 20 connections on a pool of 2", async () => {
    const sql = pgjs(tx.port, { max: 20, prepare: true });
    try {
      const results = await Promise.all(
        Array.from({ length: 500 }, (_, i) => sql.unsafe(`SELECT $1::int4 + ${i % 10} AS v, $2::text AS t`, [i, `q${i}`], { prepare: true })),
      );
      results.forEach((r, i) => expect(r[0] as unknown).toEqual({ v: i + (i % 10), t: `q${i}` }));
      const errors = await Promise.all(Array.from({ length: 20 }, (_, i) => sql`SELECT ${i}::int4 / 0`.catch((e) => e.code)));
      expect(errors).toEqual(Array(20).fill("22012"));
      const again = await Promise.all(Array.from({ length: 100 }, (_, i) => sql.unsafe(`SELECT $1::int4 + ${i % 10} AS v, $2::text AS t`, [i, "x"], { prepare: true })));
      again.forEach((r, i) => expect(r[0]!.v).toBe(i + (i % 10)));
    } finally {
      await sql.end();
    }
  }, T);

  test("statement cache limit 5 per server: 20 statements on one client, evicted and re-prepared", async () => {
    const [a, b] = await clients(cache5.port, 2);
    try {
      const q = (j: number, v: number) => ({ name: `fid_lru_${j}`, text: `SELECT $1::int4 + ${j * 100} AS v`, values: [v] });
      for (let j = 0; j < 20; j++) expect((await a!.query(q(j, 1))).rows[0].v).toBe(j * 100 + 1);
      for (let j = 19; j >= 0; j--) expect((await a!.query(q(j, 2))).rows[0].v).toBe(j * 100 + 2);
      await Promise.all(
        [a!, b!].map(async (c, k) => {
          for (let round = 0; round < 3; round++) {
            for (let j = 0; j < 20; j++) {
              const jj = (j * 7 + k * 3 + round) % 20;
              expect((await c.query(q(jj, round))).rows[0].v).toBe(jj * 100 + round);
            }
          }
        }),
      );
      // The server keeps at most 5 of them.
      for (let i = 0; i < 4; i++) {
        const n = (await a!.query("SELECT count(*)::int AS n FROM pg_prepared_statements")).rows[0].n;
        expect(n).toBeLessThanOrEqual(5);
      }
    } finally {
      await endAll([a!, b!]);
    }
  }, T);

  test("statement cache limit 5: eviction inside failing pipelines (C11), same replies as PostgreSQL", async () => {
    const N = 20;
    const prepare: Step = {
      send: [...Array.from({ length: N }, (_, j) => F.parse(`c11_${j}`, `SELECT $1::int4 + ${j * 100}`, [23])), F.parse("c11_div", "SELECT 100 / $1::int4", [23]), F.sync()],
    };
    const run = (order: number[], failAt: number, arg: string): Step => {
      const msgs: Uint8Array[] = [];
      order.forEach((j, i) => {
        if (i === failAt) msgs.push(F.bind("", "c11_div", ["0"]), F.execute());
        msgs.push(F.bind("", `c11_${j}`, [arg]), F.execute());
      });
      msgs.push(F.sync());
      return { send: msgs };
    };
    const fwd = Array.from({ length: N }, (_, j) => j);
    const rev = [...fwd].reverse();
    const steps = (): Step[] => [
      prepare,
      run(fwd, 3, "1"),
      run(fwd, -1, "2"),
      run(rev, 0, "3"),
      run(rev, -1, "4"),
      run(fwd, 15, "5"),
      run([0, 5, 10, 15, 19, 1, 6, 11, 16, 2], 2, "6"),
      run(fwd, -1, "7"),
      run(rev, -1, "8"),
      { send: [F.query("SELECT 'in sync'")] },
    ];
    const { proxy, direct } = await parity(cache5.port, steps);
    expect(proxy).toEqual(direct);
    const okRows = (arg: number, order: number[]) => order.map((j) => `D:["${j * 100 + arg}"]`);
    expect(proxy[2]!.filter((m) => m.startsWith("D:"))).toEqual(okRows(2, fwd));
    expect(proxy[1]!.filter((m) => m.startsWith("E:") || m.startsWith("Z:"))).toEqual(["E:22012", "Z:I"]);
    expect(proxy[8]!.filter((m) => m.startsWith("D:"))).toEqual(okRows(8, rev));
    expect(proxy[9]).toEqual(["T", 'D:["in sync"]', "C:SELECT 1", "Z:I"]);
  }, T);
});

describe("session state that pins a client to its server works in transaction mode", () => {
  test("SQL PREPARE / EXECUTE / DEALLOCATE", async () => {
    const [a, b, c] = await clients(tx.port, 3);
    try {
      await a!.query("PREPARE fid_p (int) AS SELECT $1 * 10 AS v, pg_backend_pid() AS pid");
      const pids = new Set<number>();
      const noise = Promise.all(
        [b!, c!].map(async (x) => {
          for (let i = 0; i < 30; i++) await x.query("SELECT 1");
        }),
      );
      for (let i = 0; i < 30; i++) {
        const r = (await a!.query(`EXECUTE fid_p(${i})`)).rows[0];
        expect(r.v).toBe(i * 10);
        pids.add(r.pid);
      }
      await noise;
      expect(pids.size).toBe(1);
      expect((await rejection(b!.query("EXECUTE fid_p(1)"))).code).toBe("26000");
      expect((await rejection(a!.query("PREPARE fid_p (int) AS SELECT 1"))).code).toBe("42P05");
      await a!.query("DEALLOCATE fid_p");
      expect((await rejection(a!.query("EXECUTE fid_p(1)"))).code).toBe("26000");
    } finally {
      await endAll([a!, b!, c!]);
    }
  }, T);

  test("temporary tables stay with their client and vanish with it", async () => {
    const [a, b, c] = await clients(tx.port, 3);
    try {
      await a!.query("CREATE TEMP TABLE fid_tmp (x int)");
      const noise = Promise.all(
        [b!, c!].map(async (x) => {
          for (let i = 0; i < 30; i++) await x.query("SELECT 1");
        }),
      );
      for (let i = 1; i <= 30; i++) {
        await a!.query("INSERT INTO fid_tmp VALUES ($1)", [i]);
        expect((await a!.query("SELECT sum(x)::int AS s FROM fid_tmp")).rows[0].s).toBe((i * (i + 1)) / 2);
      }
      await noise;
      expect((await rejection(b!.query("SELECT * FROM fid_tmp"))).code).toBe("42P01");
    } finally {
      await endAll([a!, b!, c!]);
    }
    // The server a pinned client leaves is reset before anyone else gets it.
    const fresh = await clients(tx.port, 2);
    try {
      for (const f of fresh) for (let i = 0; i < 3; i++) expect((await rejection(f.query("SELECT * FROM fid_tmp"))).code).toBe("42P01");
    } finally {
      await endAll(fresh);
    }
  }, T);

  test("the servers of pinned clients that leave are reset and handed on without delay", async () => {
    // Both servers of the pool get pinned (temp table, LISTEN), then their clients leave.
    const [a, b] = await clients(tx.port, 2);
    await a!.query("CREATE TEMP TABLE fid_tmp_leave (x int)");
    await b!.query("LISTEN fid_leave");
    const pinned = new Set([(await a!.query("SELECT pg_backend_pid() AS pid")).rows[0].pid, (await b!.query("SELECT pg_backend_pid() AS pid")).rows[0].pid]);
    expect(pinned.size).toBe(2);
    await endAll([a!, b!]);
    const started = performance.now();
    const c = await pgClient(tx.port);
    try {
      const pid = (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      expect(performance.now() - started).toBeLessThan(1500);
      // The reset server was reused (not thrown away and replaced), and it is clean.
      expect(pinned.has(pid)).toBe(true);
      expect((await rejection(c.query("SELECT * FROM fid_tmp_leave"))).code).toBe("42P01");
      expect((await c.query("SELECT count(*)::int AS n FROM pg_listening_channels()")).rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
  }, T);

  test("pinning statements sent as named prepared statements pin too (temp table, advisory lock)", async () => {
    const [a, b, h] = await clients(tx.port, 3);
    try {
      await a!.query({ name: "fid_named_tmp", text: "CREATE TEMP TABLE fid_named_tmp (x int)" });
      await a!.query({ name: "fid_named_lock", text: "SELECT 1 AS ok FROM (SELECT pg_advisory_lock($1)) l", values: [7_525_252] });
      const pids = new Set<number>();
      for (let i = 0; i < 3; i++) {
        // Another client holds a server in a transaction, then lets go: A must not move.
        await h!.query("BEGIN");
        pids.add((await a!.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
        expect((await a!.query("SELECT count(*)::int AS n FROM fid_named_tmp")).rows).toEqual([{ n: 0 }]);
        await h!.query("COMMIT");
        pids.add((await a!.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
        expect((await a!.query("SELECT count(*)::int AS n FROM fid_named_tmp")).rows).toEqual([{ n: 0 }]);
      }
      expect(pids.size).toBe(1);
      expect((await b!.query("SELECT pg_try_advisory_lock($1) AS got", [7_525_252])).rows[0].got).toBe(false);
      expect((await a!.query("SELECT pg_advisory_unlock($1) AS released", [7_525_252])).rows[0].released).toBe(true);
    } finally {
      await endAll([a!, b!, h!]);
    }
  }, T);

  test("session advisory locks: held across transactions, exclusive, released by unlock and by disconnect", async () => {
    const KEY = 7_424_242;
    const [a, b] = await clients(tx.port, 2);
    try {
      expect((await a!.query("SELECT 1 AS ok FROM (SELECT pg_advisory_lock($1)) l", [KEY])).rows[0].ok).toBe(1);
      for (let i = 0; i < 5; i++) {
        await a!.query("SELECT $1::int4 AS i", [i]);
        expect((await b!.query("SELECT pg_try_advisory_lock($1) AS got", [KEY])).rows[0].got).toBe(false);
      }
      expect((await a!.query("SELECT pg_advisory_unlock($1) AS released", [KEY])).rows[0].released).toBe(true);
      expect((await b!.query("SELECT pg_try_advisory_lock($1) AS got", [KEY])).rows[0].got).toBe(true);
      expect((await a!.query("SELECT pg_try_advisory_lock($1) AS got", [KEY])).rows[0].got).toBe(false);
      expect((await b!.query("SELECT pg_advisory_unlock($1) AS released", [KEY])).rows[0].released).toBe(true);
      // A lock held by a client that leaves is released with it.
      expect((await a!.query("SELECT 1 AS ok FROM (SELECT pg_advisory_lock($1)) l", [KEY])).rows[0].ok).toBe(1);
      await a!.end();
      let got = false;
      for (let i = 0; i < 50 && !got; i++) {
        got = (await b!.query("SELECT pg_try_advisory_lock($1) AS got", [KEY])).rows[0].got;
        if (!got) await Bun.sleep(100);
      }
      expect(got).toBe(true);
      expect((await b!.query("SELECT pg_advisory_unlock($1) AS released", [KEY])).rows[0].released).toBe(true);
    } finally {
      await endAll([a!, b!]);
    }
  }, T);

  test("WITH HOLD cursors keep their position across transactions", async () => {
    const [a, b, c] = await clients(tx.port, 3);
    try {
      await a!.query("DECLARE fid_cur CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 12) g");
      const seen: number[] = [];
      for (let i = 0; i < 4; i++) {
        await Promise.all([b!.query("SELECT 1"), c!.query("BEGIN").then(() => c!.query("COMMIT"))]);
        seen.push(...(await a!.query("FETCH 3 FROM fid_cur")).rows.map((r: { g: number }) => r.g));
      }
      expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
      expect((await a!.query("FETCH 3 FROM fid_cur")).rowCount).toBe(0);
      expect((await rejection(b!.query("FETCH 1 FROM fid_cur"))).code).toBe("34000");
      await a!.query("CLOSE fid_cur");
      expect((await rejection(a!.query("FETCH 1 FROM fid_cur"))).code).toBe("34000");
    } finally {
      await endAll([a!, b!, c!]);
    }
  }, T);
});
