// Read/write classification with the real PostgreSQL parser.

import { beforeAll, expect, test } from "bun:test";
import { QueryClassifier, loadParser } from "../../src/sql/classify.ts";

let c: QueryClassifier;
beforeAll(async () => {
  await loadParser();
  c = new QueryClassifier(["my_report"]);
});

const reads = [
  "select 1",
  "SELECT abalance FROM pgbench_accounts WHERE aid = 5",
  "with x as (select 1) select * from x",
  "select count(*), max(a) from t group by b",
  "show search_path",
  "begin read only",
  "start transaction isolation level serializable, read only",
  "explain select * from t",
  "select my_report(1)",
  "/* comment */ select lower('A')",
];
const writes = [
  "insert into t values (1)",
  "update t set a = 1",
  "delete from t",
  "SELECT * FROM t FOR UPDATE",
  "select * from t for share",
  "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
  "select nextval('s')",
  "select my_func(1)",
  "select * into t2 from t",
  "begin",
  "set search_path = x",
  "listen chan",
  "explain analyze delete from t",
  "select 1; insert into t values (1)",
  "create table q (a int)",
  "not sql at all",
];

test.each(reads)("read: %s", (q) => expect(c.isWrite(q)).toBe(false));
test.each(writes)("write: %s", (q) => expect(c.isWrite(q)).toBe(true));

test("results are cached by text", () => {
  const before = { ...c.stats };
  c.isWrite("select cache_probe from cache_probe_table");
  c.isWrite("select cache_probe from cache_probe_table");
  expect(c.stats.misses - before.misses).toBe(1);
  expect(c.stats.hits - before.hits).toBe(1);
});

test("queries differing only in literals share one cache entry", () => {
  const before = { ...c.stats };
  for (let i = 0; i < 50; i++) expect(c.isWrite(`SELECT abalance FROM literal_probe WHERE aid = ${i * 7919}`)).toBe(false);
  for (let i = 0; i < 5; i++) expect(c.isWrite(`SELECT * FROM t WHERE s = 'v${i}''q' AND d = $x$${i}$x$ AND e = E'\\'${i}'`)).toBe(false);
  expect(c.stats.misses - before.misses).toBe(2);
});

test("masking literals never changes the verdict", () => {
  expect(c.isWrite("select 'insert into t values (1)'")).toBe(false);
  expect(c.isWrite("select 1 from t for update")).toBe(true);
  expect(c.isWrite('select "1col" from t')).toBe(false);
  expect(c.isWrite("select nextval('s1')")).toBe(true);
});

test("spacing, comments and hints share the cache entry too (the key is the normalised text)", () => {
  const before = { ...c.stats };
  expect(c.isWrite("SELECT v FROM spacing_probe WHERE k = 1")).toBe(false);
  expect(c.isWrite("SELECT v\n  FROM spacing_probe -- c\n WHERE k = 2;")).toBe(false);
  expect(c.isWrite("/*+ route=standby */ SELECT v /* x */ FROM spacing_probe WHERE k = -3")).toBe(false);
  expect(c.stats.misses - before.misses).toBe(1);
  // Keywords decide, so a different statement kind is a different entry.
  expect(c.isWrite("SELECT v FROM spacing_probe WHERE k = 1 FOR UPDATE")).toBe(true);
  expect(c.stats.misses - before.misses).toBe(2);
});
