// Real drivers (pg, postgres.js, psql, psycopg) × pool modes × simple/extended/prepared protocols through the proxy.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { pgClient, pgjs, psqlRaw, psycopg, rejection } from "../support/clients.ts";
import * as F from "../support/frames.ts";
import { login } from "../support/wire.ts";

const MODES = ["session", "transaction", "statement"] as const;
const UNICODE = "héllo wörld ☃ 🐘 ünïcødé";
const BYTEA = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x0a, 0x5c]);
const BIG = "abcdefghij€".repeat(100000).slice(0, 1024 * 1024);
const BIG_INT = "9007199254740993"; // not representable as a JS number: must come back exact
const TABLE = "clients_matrix_t";
const T = 30_000;
const POOL = 4;

const VALUES_SQL = "SELECT $1::int4 AS i, $2::int4 AS neg, $3::int8 AS big, $4::text AS t, $5::text AS n, $6::bytea AS b, $7::text AS large";
const VALUES = [42, -7, BIG_INT, UNICODE, null, BYTEA, BIG];
const LITERAL_SQL = `SELECT 42::int4 AS i, -7::int4 AS neg, ${BIG_INT}::int8 AS big, '${UNICODE}'::text AS t, NULL::text AS n, '\\x${BYTEA.toString("hex")}'::bytea AS b, '${BIG}'::text AS large`;

function expectValues(r: Record<string, unknown>) {
  expect(r.i).toBe(42);
  expect(r.neg).toBe(-7);
  expect(String(r.big)).toBe(BIG_INT);
  expect(r.t).toBe(UNICODE);
  expect(r.n).toBeNull();
  expect(Buffer.from(r.b as Uint8Array).equals(BYTEA)).toBe(true);
  expect((r.large as string).length).toBe(BIG.length);
  expect(r.large === BIG).toBe(true);
}

beforeAll(async () => {
  const c = await pgClient(5432);
  await c.query(`DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (id int PRIMARY KEY, note text)`);
  await c.end();
});

afterAll(async () => {
  const c = await pgClient(5432);
  await c.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await c.end();
});

for (const mode of MODES) {
  describe(`${mode} pooling`, () => {
    let proxy: RunningProxy;
    beforeAll(async () => {
      proxy = await startProxy({ mode, maxConnections: POOL });
    });
    afterAll(async () => {
      await proxy.stop();
    });

    test("pg: simple, extended and named prepared queries round-trip values", async () => {
      const c = await pgClient(proxy.port);
      try {
        // Simple protocol: no parameters, everything in the text.
        expectValues((await c.query(LITERAL_SQL)).rows[0]);
        // Extended protocol, unnamed statement.
        expectValues((await c.query(VALUES_SQL, VALUES)).rows[0]);
        // Named prepared statement: parsed once, executed many times.
        for (let i = 0; i < 3; i++) expectValues((await c.query({ name: "matrix_values", text: VALUES_SQL, values: VALUES })).rows[0]);
        for (let i = 0; i < 50; i++) {
          const r = await c.query({ name: "matrix_small", text: "SELECT $1::int4 * 2 AS v, $2::text AS t", values: [i, UNICODE] });
          expect(r.rows).toEqual([{ v: i * 2, t: UNICODE }]);
        }
        // Many rows in one result.
        const many = await c.query({ name: "matrix_many", text: "SELECT g, md5(g::text) AS h FROM generate_series(1, $1::int) g", values: [10000] });
        expect(many.rowCount).toBe(10000);
        expect(many.rows[9999]).toEqual({ g: 10000, h: new Bun.CryptoHasher("md5").update("10000").digest("hex") });
        // Errors keep their SQLSTATE in every protocol.
        expect((await rejection(c.query("SELECT 1/0"))).code).toBe("22012");
        expect((await rejection(c.query("SELECT $1::int4", ["x"]))).code).toBe("22P02");
        expect((await rejection(c.query({ name: "matrix_bad", text: "SELECT $1::int4 / 0", values: [1] }))).code).toBe("22012");
        expect((await c.query({ name: "matrix_small", text: "SELECT $1::int4 * 2 AS v, $2::text AS t", values: [5, "x"] })).rows[0].v).toBe(10);
      } finally {
        await c.end();
      }
    }, T);

    test("pg: concurrent clients with named statements each get their own results", async () => {
      const clients = await Promise.all([0, 1, 2].map(() => pgClient(proxy.port)));
      try {
        await Promise.all(
          clients.map(async (c: pg.Client, k: number) => {
            for (let i = 0; i < 40; i++) {
              const r = await c.query({ name: `matrix_c${k}`, text: `SELECT $1::int4 + ${k * 1000} AS v`, values: [i] });
              expect(r.rows[0].v).toBe(i + k * 1000);
              const s = await c.query({ name: "matrix_shared", text: "SELECT $1::text || '!' AS v", values: [`${k}:${i}`] });
              expect(s.rows[0].v).toBe(`${k}:${i}!`);
            }
          }),
        );
      } finally {
        await Promise.all(clients.map((c: pg.Client) => c.end()));
      }
    }, T);

    test("postgres.js prepare:true and prepare:false round-trip values", async () => {
      for (const prepare of [true, false]) {
        const sql = pgjs(proxy.port, { prepare });
        try {
          for (let i = 0; i < 3; i++) {
            const [r] = await sql`SELECT ${42}::int4 AS i, ${-7}::int4 AS neg, ${BIG_INT}::int8 AS big, ${UNICODE}::text AS t, ${null}::text AS n, ${BYTEA}::bytea AS b, ${BIG}::text AS large`;
            expectValues(r!);
          }
          const rows = await Promise.all(Array.from({ length: 100 }, (_, i) => sql`SELECT ${i}::int4 * 3 AS v`));
          expect(rows.map((r) => r[0]!.v)).toEqual(Array.from({ length: 100 }, (_, i) => i * 3));
          expect((await rejection(sql`SELECT ${1}::int4 / 0`)).code).toBe("22012");
          const [after] = await sql`SELECT ${"still fine"}::text AS v`;
          expect(after!.v).toBe("still fine");
          // Simple protocol through postgres.js.
          const simple = await sql.unsafe(LITERAL_SQL);
          expectValues(simple[0]!);
        } finally {
          await sql.end();
        }
      }
    }, T);

    test("psql: values, errors and multi-statement scripts", async () => {
      const r = await psqlRaw(proxy.port, ["-At", "-F", "|", "-P", "null=<NULL>", "-c", `SELECT 42, -7, ${BIG_INT}::int8, '${UNICODE}', NULL::text, '\\x${BYTEA.toString("hex")}'::bytea`]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`42|-7|${BIG_INT}|${UNICODE}|<NULL>|\\x${BYTEA.toString("hex")}\n`);
      // 1 MB of text in the query, and back.
      const big = await psqlRaw(proxy.port, ["-At", "-f", "-"], { input: `SELECT '${BIG}'::text;\n` });
      expect(big.code).toBe(0);
      expect(big.stdout === `${BIG}\n`).toBe(true);
      // Several statements in one Query message.
      const multi = await psqlRaw(proxy.port, ["-At", "-c", "SELECT 1; SELECT 2; SELECT 'three'"]);
      expect(multi.stdout).toBe("1\n2\nthree\n");
      const err = await psqlRaw(proxy.port, ["-At", "-v", "VERBOSITY=verbose", "-v", "ON_ERROR_STOP=1", "-c", "SELECT 1/0"]);
      expect(err.code).not.toBe(0);
      expect(err.stderr).toContain("22012");
    }, T);

    test("psycopg: simple execute, server-side binding, prepare=True and pipeline mode", async () => {
      const r = (await psycopg("matrix", proxy.port)) as Record<string, any>;
      const expected = { row: [42, UNICODE, null, { hex: BYTEA.toString("hex") }], big_len: BIG.length, big_ok: true };
      expect(r.simple).toEqual(expected);
      expect(r.params).toEqual(expected);
      expect(r.prepared).toEqual([0, 1, 2, 3, 4].map((i) => [i * 2, true]));
      expect(r.prepared_big).toEqual(expected);
      expect(r.pipeline).toEqual(Array.from({ length: 60 }, (_, i) => i + 1000));
      expect(r.pipeline_error).toEqual({ sqlstate: "22012", first: "before", after: "skipped" });
      expect(r.recovered).toEqual(["recovered", 7]);
      expect(r.tx_status).toBe("IDLE");
      expect(r.pipeline_segments).toEqual({ sqlstate: "42P01", first: 1, then: "ok" });
      expect(r.pipeline_prepared).toEqual(Array.from({ length: 20 }, (_, i) => i * 3));
    }, T);

    test("a server goes to the next client promptly after the previous client leaves", async () => {
      // Clients that leave with session state (session mode) or an open transaction (transaction
      // mode) make the proxy reset the server before reuse; the pool must not stall meanwhile.
      const pids = new Set<number>();
      for (let i = 0; i < POOL * 2; i++) {
        const started = performance.now();
        const c = await pgClient(proxy.port);
        if (mode === "transaction") await c.query("BEGIN");
        pids.add((await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
        const elapsed = performance.now() - started;
        await c.end();
        expect(elapsed).toBeLessThan(1500);
      }
      expect(pids.size).toBeLessThanOrEqual(POOL);
    }, T);

    if (mode !== "statement") {
      test("transactions commit and roll back across drivers", async () => {
        const base = MODES.indexOf(mode) * 1000;
        const c = await pgClient(proxy.port);
        const sql = pgjs(proxy.port);
        try {
          await c.query("BEGIN");
          await c.query(`INSERT INTO ${TABLE} VALUES ($1, 'rolled back')`, [base + 1]);
          await c.query("ROLLBACK");
          await c.query("BEGIN");
          await c.query(`INSERT INTO ${TABLE} VALUES ($1, 'committed')`, [base + 2]);
          expect((await rejection(c.query("SELECT 1/0"))).code).toBe("22012");
          expect((await rejection(c.query("SELECT 1"))).code).toBe("25P02");
          await c.query("ROLLBACK");
          await sql.begin(async (tx) => {
            await tx`INSERT INTO ${sql(TABLE)} VALUES (${base + 3}, 'pgjs')`;
          });
          const r = await psqlRaw(proxy.port, ["-At", "-v", "ON_ERROR_STOP=1"], {
            input: `BEGIN;\nINSERT INTO ${TABLE} VALUES (${base + 4}, 'psql');\nCOMMIT;\nSELECT id FROM ${TABLE} WHERE id BETWEEN ${base} AND ${base + 999} ORDER BY id;\n`,
          });
          expect(r.code).toBe(0);
          expect(r.stdout).toBe(`${base + 3}\n${base + 4}\n`);
          const t = await psycopg("transaction", proxy.port);
          expect(t).toEqual({ value: 42, ok: true });
        } finally {
          await c.end();
          await sql.end();
        }
      }, T);
    } else {
      test("multi-statement transactions are refused with 0A000; single statements work", async () => {
        // Raw protocol: what exactly the client sees.
        const { conn: raw } = await login(proxy.port);
        await raw.send(F.query("BEGIN"));
        const msgs: string[] = [];
        let errorMsg: Record<string, string> = {};
        for (;;) {
          const m = await raw.next();
          if (m === null) break;
          msgs.push(F.summarize([m])[0]!);
          if (m.type === "E") errorMsg = F.errorFields(m.body).fields;
        }
        expect(errorMsg.C).toBe("0A000");
        expect(msgs).toContain("E:0A000");
        expect(raw.closed).toBe(true);

        // node-postgres.
        const c = await pgClient(proxy.port);
        const began = await c.query("BEGIN").then(
          () => null,
          (e: { code?: string }) => e,
        );
        const next = await c.query("SELECT 1").then(
          () => null,
          (e: { code?: string }) => e,
        );
        const codes = [began?.code, next?.code, ...c.asyncErrors.map((e: any) => e.code)];
        expect(codes).toContain("0A000");
        await c.end().catch(() => {});

        // postgres.js.
        // postgres.js (queries pipelined on one connection): BEGIN succeeds, the proxy's 0A000
        // reaches a query still in flight, and nothing after BEGIN runs.
        const sql = pgjs(proxy.port);
        const settled = await Promise.allSettled([
          sql.unsafe("BEGIN"),
          sql`INSERT INTO ${sql(TABLE)} VALUES (9002, 'never')`,
          sql`SELECT 2 AS two`,
        ]);
        expect(settled.map((x) => x.status)).toEqual(["fulfilled", "rejected", "rejected"]);
        expect(settled.map((x) => (x.status === "rejected" ? (x.reason as { code?: string }).code : "ok"))).toContain("0A000");
        await sql.end();
        const check = await pgClient(proxy.port);
        expect((await check.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id = 9002`)).rows[0].n).toBe(0);
        await check.end();

        // psql, statement by statement.
        const p = await psqlRaw(proxy.port, ["-At", "-v", "VERBOSITY=verbose", "-c", "BEGIN", "-c", "SELECT 1", "-c", "COMMIT"]);
        expect(p.code).not.toBe(0);
        expect(p.stderr).toContain("0A000");

        // psycopg in its default (non-autocommit) mode opens a transaction block. libpq reads the
        // proxy's error after BEGIN's ReadyForQuery as a connection failure: with the proxy's
        // message when it reads it before noticing the close, without it otherwise.
        const t = (await psycopg("transaction", proxy.port)) as Record<string, unknown>;
        expect(t.ok).toBe(false);
        expect(t.error).toBe("OperationalError");
        expect(t.message).toMatch(/transaction blocks are not allowed in statement pooling mode|server closed the connection unexpectedly/);

        // One Query holding a whole transaction ends idle: allowed; single statements work.
        const ok = await psqlRaw(proxy.port, ["-At", "-c", `BEGIN; INSERT INTO ${TABLE} VALUES (9001, 'stmt'); COMMIT; SELECT note FROM ${TABLE} WHERE id = 9001`]);
        expect(ok.code).toBe(0);
        expect(ok.stdout).toBe("stmt\n");
        const c2 = await pgClient(proxy.port);
        try {
          expect((await c2.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
          expect((await c2.query("SELECT $1::int4 AS v", [5])).rows).toEqual([{ v: 5 }]);
        } finally {
          await c2.end();
        }
      }, T);
    }
  });
}
