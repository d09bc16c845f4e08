// What the byte-level scan finds in SQL text (session effects), and how SessionState records settings.

import { expect, test } from "bun:test";
import { Effect, scanEffects } from "../../src/sql/session-effects.ts";
import { SessionState } from "../../src/sql/session-state.ts";

const fx = (sql: string) => {
  const b = new TextEncoder().encode(sql);
  return scanEffects(b, 0, b.length);
};
const has = (sql: string, e: Effect) => (fx(sql) & e) !== 0;

test("code the proxy cannot see into is hidden", () => {
  for (const sql of [
    "DO $$BEGIN SET search_path = x; END$$",
    "CALL p()",
    "select my_func(1)",
    `SELECT "pg_try_advisory_lock"(1)`,
    `select "count"(1)`,
    "select myschema.count(1)",
    "select set_config('app.' || 'x', '1', false)",
    "select set_config($1, 'x', false)",
    "EXECUTE stmt",
    "CREATE TABLE t (a int)",
    "ALTER TABLE t ADD b int",
    "SELECT * FROM f(1)",
    "insert into t values (nextval('s'))",
    "SELECT (1) + f(2)",
    "SELECT count(*) FROM t WHERE (a) IN (1) AND f(a)",
  ]) expect([sql, has(sql, Effect.Hidden)]).toEqual([sql, true]);
});

test("plain statements are not", () => {
  for (const sql of [
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
    "insert into public.t (a, b) values (1, now())",
    "UPDATE t SET a = a + 1 WHERE id IN (SELECT id FROM u WHERE x = ANY($1))",
    "WITH x (a) AS (SELECT count(*) FROM t) SELECT coalesce(a, 0)::numeric(10, 2) FROM x",
    "select pg_catalog.current_setting('search_path')",
    "select 'DO f()' as \"x(\"",
    "select set_config('app.tenant', '7', true)",
    "BEGIN",
    "SELECT pg_advisory_xact_lock(1)",
    "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
    "SELECT i FROM generate_series(1, 3) g(i)",
    "SELECT * FROM (VALUES (1, 2)) AS v (a, b)",
    "SELECT CAST(a AS numeric(10, 2)) FROM t",
  ]) expect([sql, has(sql, Effect.Hidden)]).toEqual([sql, false]);
});

test("temporary tables and locks by any spelling pin", () => {
  for (const sql of ["SELECT 1 INTO TEMP t", "select * into temporary table t from u", "CREATE TABLE pg_temp.t (a int)", `SELECT "pg_advisory_lock"(1)`, "select pg_catalog.pg_advisory_lock(1)", "CREATE LOCAL TEMP TABLE t (a int)"]) {
    expect([sql, has(sql, Effect.Pin)]).toEqual([sql, true]);
  }
  expect(has("SELECT 1 INTO t", Effect.Pin)).toBe(false);
});

test("SET through comments and set_config with constants are settings", () => {
  expect(has("SET/**/search_path = x", Effect.SetGuc)).toBe(true);
  expect(has("select set_config('app.tenant', '7', false)", Effect.SetGuc)).toBe(true);
  expect(has("select set_config('app.tenant', '7', false)", Effect.Hidden)).toBe(false);
  expect(fx("select set_config('app.tenant', $1, false)")).toBe(Effect.SetGucParam);
  expect(fx("select set_config('app.tenant', $1, true)")).toBe(Effect.None);
});

test("SessionState follows PostgreSQL's RESET ALL, SESSION AUTHORIZATION and set_config", () => {
  const s = new SessionState(new Map());
  const base = s.key;
  expect(s.record("SET ROLE x")).toBe(true);
  expect(s.record("RESET ALL")).toBe(true);
  expect(s.applySql(true)).toBe("SET ROLE x;");
  expect(s.record("SET SESSION AUTHORIZATION y")).toBe(true);
  expect(s.applySql(true)).toBe("SET SESSION AUTHORIZATION y;");
  expect(s.record("RESET SESSION AUTHORIZATION")).toBe(true);
  expect(s.key).toBe(base);
  expect(s.record("SET/**/search_path = x")).toBe(true);
  expect(s.record("SET -- c\n app.tenant = '1'")).toBe(true);
  expect(s.record("select set_config('app.tenant', 'it''s', false)")).toBe(true);
  expect(s.record("select set_config('session_authorization', 'z', false)")).toBe(true);
  expect(s.applySql(true)).toBe(`SET/**/search_path = x;SET "app.tenant" TO 'it''s';SET "session_authorization" TO 'z';`);
  expect(s.record("select set_config('a.b', '1', true)")).toBe(true);
  expect(s.record("select set_config('a.b', now()::text, false)")).toBe(false);
  s.resetAll();
  expect(s.key).toBe(base);
});
