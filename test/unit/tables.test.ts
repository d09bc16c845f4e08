// Tables touched, read by the lexer, checked against the relations the PostgreSQL parser (libpg-query) finds.

import { beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { loadModule, parseSync } from "libpg-query";
import { tablesTouched } from "../../src/sql/tables.ts";

beforeAll(async () => {
  await loadModule();
});

/** Relations named in the parse tree (RangeVar nodes), CTE names left out: the exact answer. */
function parserTables(sql: string): string[] {
  const out: string[] = [];
  const ctes = new Set<string>();
  const walk = (n: unknown): void => {
    if (n === null || typeof n !== "object") return;
    if (Array.isArray(n)) return n.forEach(walk);
    for (const [k, v] of Object.entries(n as Record<string, unknown>)) {
      const r = v as { relname?: string; schemaname?: string; catalogname?: string } | null;
      if (r && typeof r === "object" && typeof r.relname === "string") out.push([r.catalogname, r.schemaname, r.relname].filter(Boolean).join("."));
      if (k === "CommonTableExpr") ctes.add((v as { ctename: string }).ctename);
      walk(v);
    }
  };
  walk(parseSync(sql));
  return [...new Set(out)].filter((t) => !ctes.has(t)).sort();
}

const DML = [
  "SELECT a FROM t WHERE a = 1",
  "SELECT * FROM public.users u JOIN \"Orders\" o ON o.user_id = u.id LEFT JOIN s.items i USING (id) WHERE u.id = 1",
  "SELECT * FROM a, b x, (SELECT * FROM c) sub, d WHERE a.id = b.id",
  "SELECT * FROM generate_series(1, 10) g, t",
  "SELECT extract(epoch from ts), substring(b from 2 for 3) FROM t WHERE a IS DISTINCT FROM 3",
  "WITH x AS (SELECT * FROM t), y AS MATERIALIZED (SELECT * FROM x JOIN u ON true) SELECT * FROM y, z",
  "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
  "WITH d AS (DELETE FROM old_rows WHERE a < 5 RETURNING *) INSERT INTO archive SELECT * FROM d",
  "UPDATE accounts a SET balance = b.x FROM branches b WHERE a.bid = b.bid",
  "DELETE FROM t USING u, v WHERE t.a = u.a",
  "MERGE INTO target t USING source s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v",
  "INSERT INTO t (a) SELECT x FROM u ON CONFLICT (a) DO UPDATE SET a = excluded.a",
  "INSERT INTO u (a, x) VALUES (1, 2), (3, 4) RETURNING *",
  "SELECT * FROM ONLY parent, child * WHERE true",
  "SELECT a INTO newt FROM t",
  "TABLE t",
  "SELECT (SELECT max(a) FROM u), exists(SELECT 1 FROM v) FROM t",
  "SELECT * FROM t CROSS JOIN LATERAL (SELECT * FROM u WHERE u.a = t.a) l",
  "SELECT * FROM t FOR UPDATE OF t",
  "SELECT * FROM db.sch.tab",
  "COPY (SELECT * FROM t) TO STDOUT",
  "SELECT * FROM t1 JOIN t2 ON t1.a = t2.a, t3",
  "SELECT * FROM t WHERE a IN (SELECT a FROM u) AND b = ANY (ARRAY(SELECT b FROM v))",
  "SELECT * FROM \"My Table\" AS m(a, b), \"x\"\"y\"",
  "SELECT count(*), b FROM t JOIN u ON u.a = t.a WHERE u.x > 5 GROUP BY b HAVING count(*) > 1",
  "SELECT a, rank() OVER (PARTITION BY b ORDER BY a) FROM t",
  "SELECT * FROM t NATURAL FULL OUTER JOIN u RIGHT JOIN v ON true",
  "SELECT * FROM t /* FROM not_me */ WHERE b = 'FROM nor_me' AND c = $$ JOIN me_neither $$",
  "select * from T where a = (select min(a) from S)",
  "SELECT 1",
  "VALUES (1), (2)",
  "SELECT * FROM t WHERE x = 1 UNION SELECT * FROM u EXCEPT SELECT * FROM v",
  "TRUNCATE TABLE x, y",
  "LOCK TABLE ONLY z IN ACCESS EXCLUSIVE MODE",
  "CREATE TEMP TABLE IF NOT EXISTS tt (a int)",
  "ALTER TABLE s.q ADD COLUMN b int",
  "COPY t (a, b) FROM STDIN",
  "GRANT SELECT ON TABLE t TO bob",
  "REVOKE SELECT ON t FROM bob",
  "CREATE VIEW v AS SELECT * FROM base",
  "CREATE TABLE n AS SELECT * FROM o JOIN p USING (id)",
];

describe("agrees with the parser", () => {
  test.each(DML)("%p", (sql) => {
    expect([...tablesTouched(sql)].sort()).toEqual(parserTables(sql));
  });
});

describe("the lexer's own answers", () => {
  test.each<[string, string[]]>([
    // In order of appearance, without duplicates, quoted names exact.
    ['SELECT * FROM b JOIN a ON true JOIN "B" ON true JOIN b ON true', ["b", "a", "B"]],
    // Names the parser keeps as strings rather than relations.
    ["DROP TABLE IF EXISTS a, b CASCADE", ["a", "b"]],
    ["DROP VIEW IF EXISTS v1, v2", ["v1", "v2"]],
    ["REFRESH MATERIALIZED VIEW CONCURRENTLY mv", ["mv"]],
    ["CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY s.t (a)", ["s.t"]],
    ["REVOKE ALL ON a, b FROM c", ["a", "b"]],
    // Not tables.
    ["GRANT SELECT ON ALL TABLES IN SCHEMA x TO y", []],
    ["FETCH 5 FROM c", []],
    ["CREATE FUNCTION f() RETURNS TABLE (a int) AS $$ SELECT 1 FROM nope $$ LANGUAGE sql", []],
    ["SET search_path = a, b", []],
    // Several statements.
    ["BEGIN; UPDATE a SET x = 1; INSERT INTO b VALUES (1); COMMIT", ["a", "b"]],
    // Broken input does not throw.
    ["SELECT * FROM", []],
    ["SELECT * FROM (((", []],
    ["WITH x AS (", []],
    ["WITH x AS (SELECT 1), y", []],
    ["SELECT * FROM t.", ["t"]],
    ["", []],
  ])("%p", (sql, tables) => {
    expect(tablesTouched(sql)).toEqual(tables);
  });
});

test("fuzz: random statement fragments never throw or loop", () => {
  const piece = fc.constantFrom("select ", "from ", "join ", "into ", "update ", "table ", "with ", "as ", "using ",
    "delete ", "insert ", "(", ")", ",", ";", "t", "\"q\"", ".", "only ", "lateral ", "recursive ", "materialized ",
    "'s'", "$$d$$", "*", "on ", "view ", "truncate ", "copy ", "x ");
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), (parts) => {
      const names = tablesTouched(parts.join(""));
      for (const n of names) expect(typeof n).toBe("string");
    }),
    { numRuns: 5000 },
  );
});
