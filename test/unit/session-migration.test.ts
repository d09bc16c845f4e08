// Session state kept for migration: statement tracking, cursor positions, advisory keys and the restore plan.

import { describe, expect, test } from "bun:test";
import { ADVISORY_LOCKS_SQL, migrationRelevant, SessionMigration, type CursorState } from "../../src/cluster/ha/session-migration.ts";

const fresh = (...sql: string[]) => {
  const m = new SessionMigration();
  for (const s of sql) m.applied(s);
  return m;
};
const summary = (m: SessionMigration) => m.summary() as { prepared: string[]; channels: string[]; cursors: { name: string }[]; temporaryObjects: boolean };
const cursorOf = (m: SessionMigration, name: string): CursorState => {
  for (const s of m.restorePlan()) if (s.kind === "cursor" && s.cursor.name === name) return s.cursor;
  throw new Error(`no cursor ${name}`);
};
const rowsCrc = (...rows: string[]) => rows.reduce((crc, r) => Bun.hash.crc32(r, crc), 0);

describe("prepared statements", () => {
  test("PREPARE with and without types; the text is kept as written", () => {
    const m = fresh("PREPARE q1 AS SELECT 1", "prepare Q2 (int, text) as select $1, $2", 'PREPARE "Mixed" AS SELECT 3');
    expect(summary(m).prepared).toEqual(["q1", "q2", "Mixed"]);
    expect(m.restorePlan()).toEqual([
      { kind: "exec", sql: "PREPARE q1 AS SELECT 1" },
      { kind: "exec", sql: "prepare Q2 (int, text) as select $1, $2" },
      { kind: "exec", sql: 'PREPARE "Mixed" AS SELECT 3' },
    ]);
  });

  test("PREPARE TRANSACTION is not a prepared statement", () => {
    expect(fresh("PREPARE TRANSACTION 'gid1'").empty).toBe(true);
    expect(summary(fresh("PREPARE transaction AS SELECT 1")).prepared).toEqual(["transaction"]);
  });

  test("DEALLOCATE name, DEALLOCATE PREPARE name, quoted names, ALL", () => {
    const m = fresh("PREPARE a AS SELECT 1", "PREPARE b AS SELECT 2", 'PREPARE "C" AS SELECT 3', "PREPARE d AS SELECT 4");
    m.applied("DEALLOCATE A");
    m.applied("deallocate prepare b");
    m.applied('DEALLOCATE "c"'); // not the same name as "C"
    expect(summary(m).prepared).toEqual(["C", "d"]);
    m.applied('DEALLOCATE "C"');
    expect(summary(m).prepared).toEqual(["d"]);
    m.applied("DEALLOCATE PREPARE ALL");
    expect(m.empty).toBe(true);
    const n = fresh("PREPARE prepare AS SELECT 1", "PREPARE x AS SELECT 1");
    n.applied("DEALLOCATE prepare");
    expect(summary(n).prepared).toEqual(["x"]);
    n.applied("DEALLOCATE ALL");
    expect(n.empty).toBe(true);
  });
});

describe("LISTEN / UNLISTEN", () => {
  test("channels folded or quoted, UNLISTEN one and *", () => {
    const m = fresh("LISTEN Jobs", 'LISTEN "Jobs"', "listen other");
    expect(summary(m).channels).toEqual(["jobs", "Jobs", "other"]);
    expect(m.restorePlan()).toEqual([
      { kind: "exec", sql: 'LISTEN "jobs"' },
      { kind: "exec", sql: 'LISTEN "Jobs"' },
      { kind: "exec", sql: 'LISTEN "other"' },
    ]);
    m.applied("UNLISTEN JOBS");
    expect(summary(m).channels).toEqual(["Jobs", "other"]);
    m.applied("UNLISTEN *");
    expect(m.empty).toBe(true);
  });

  test("a double quote inside a name is doubled when quoting", () => {
    expect(fresh('LISTEN "a""b"').restorePlan()).toEqual([{ kind: "exec", sql: 'LISTEN "a""b"' }]);
  });
});

describe("cursors", () => {
  test("only WITH HOLD cursors are kept", () => {
    const m = fresh(
      "DECLARE plain CURSOR FOR SELECT 1",
      "DECLARE nohold CURSOR WITHOUT HOLD FOR SELECT 1",
      "DECLARE Held BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1",
    );
    expect(summary(m).cursors.map((c) => c.name)).toEqual(["held"]);
    expect(m.restorePlan()).toEqual([{
      kind: "cursor", declare: "DECLARE Held BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1", fetch: null, move: null,
      cursor: { name: "held", declare: "DECLARE Held BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1", position: 0, crc: 0, rowsSeen: 0, verifiable: true, unknownPosition: false },
    }]);
  });

  test("CLOSE name (folded and quoted) and CLOSE ALL", () => {
    const m = fresh("DECLARE a CURSOR WITH HOLD FOR SELECT 1", 'DECLARE "B" CURSOR WITH HOLD FOR SELECT 1', "DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    m.applied("CLOSE A");
    m.applied("CLOSE b");
    expect(summary(m).cursors.map((c) => c.name)).toEqual(["B", "c"]);
    m.applied('CLOSE "B"');
    expect(summary(m).cursors.map((c) => c.name)).toEqual(["c"]);
    m.applied("CLOSE ALL");
    expect(m.empty).toBe(true);
  });

  test("forward FETCHes chain the crc and are restored by one verified FETCH", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g");
    expect(m.crcSeed("FETCH 2 FROM c")).toBe(0);
    const first = rowsCrc("r1", "r2");
    expect(m.cursorMoved("FETCH 2 FROM c", 2, first, 2)).toBe(true);
    expect(m.crcSeed("FETCH NEXT IN c")).toBe(first);
    const next = Bun.hash.crc32("r3", m.crcSeed("FETCH NEXT IN c"));
    expect(m.cursorMoved("FETCH NEXT IN c", 1, next, 1)).toBe(true);
    const all = Bun.hash.crc32("r4", next);
    expect(m.cursorMoved("fetch forward all from C", 1, all, 1)).toBe(true);
    expect(all).toBe(rowsCrc("r1", "r2", "r3", "r4"));
    const [step] = m.restorePlan();
    expect(step).toEqual({
      kind: "cursor", declare: "DECLARE c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g",
      fetch: 'FETCH FORWARD 4 FROM "c"', move: null,
      cursor: { name: "c", declare: "DECLARE c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g", position: 4, crc: all, rowsSeen: 4, verifiable: true, unknownPosition: false },
    });
  });

  test("every forward form counts the tag's rows", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    for (const sql of ["FETCH c", "FETCH FROM c", "FETCH NEXT c", "FETCH FORWARD c", "FETCH FORWARD 3 IN c", "FETCH 2 c", "FETCH ALL FROM c", "FETCH +1 FROM c", "FETCH BACKWARD -2 FROM c"]) {
      expect(m.cursorMoved(sql, 1, 0, 1)).toBe(true);
    }
    expect(cursorOf(m, "c")).toMatchObject({ position: 9, rowsSeen: 9, verifiable: true, unknownPosition: false });
  });

  test("MOVE skips rows: restored by MOVE FORWARD, not verified", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    m.cursorMoved("FETCH 2 FROM c", 2, 77, 2);
    expect(m.cursorMoved("MOVE FORWARD 5 IN c", 5, m.crcSeed("MOVE FORWARD 5 IN c"), 0)).toBe(true);
    expect(cursorOf(m, "c")).toMatchObject({ position: 7, rowsSeen: 2, crc: 77, verifiable: true });
    const step = m.restorePlan()[0]!;
    expect(step.kind === "cursor" && [step.fetch, step.move]).toEqual([null, 'MOVE FORWARD 7 IN "c"']);
  });

  test("a tag count below the request (end of rows) is what counts", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    m.cursorMoved("FETCH 100 FROM c", 3, 5, 3);
    m.cursorMoved("FETCH 100 FROM c", 0, 5, 0);
    expect(cursorOf(m, "c")).toMatchObject({ position: 3, rowsSeen: 3, verifiable: true });
  });

  test("RELATIVE n > 0 skips to the n-th row; past the end the position is unknown", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    m.cursorMoved("MOVE RELATIVE 3 IN c", 1, 0, 0);
    expect(cursorOf(m, "c")).toMatchObject({ position: 3, verifiable: true, unknownPosition: false });
    m.cursorMoved("FETCH RELATIVE 2 FROM c", 1, 9, 1);
    expect(cursorOf(m, "c")).toMatchObject({ position: 5, rowsSeen: 1, verifiable: true, unknownPosition: false });
    m.cursorMoved("MOVE RELATIVE 5 IN c", 0, 0, 0);
    expect(cursorOf(m, "c")).toMatchObject({ unknownPosition: true });
  });

  test("re-fetching the current row (RELATIVE 0, FORWARD 0, 0) ends verification but keeps the position", () => {
    for (const sql of ["FETCH RELATIVE 0 FROM c", "FETCH FORWARD 0 FROM c", "FETCH 0 FROM c", "FETCH BACKWARD 0 FROM c"]) {
      const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
      m.cursorMoved("FETCH 2 FROM c", 2, 1, 2);
      m.cursorMoved(sql, 1, 2, 1);
      expect(cursorOf(m, "c")).toMatchObject({ position: 2, rowsSeen: 3, verifiable: false, unknownPosition: false });
    }
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    m.cursorMoved("FETCH 2 FROM c", 2, 1, 2);
    m.cursorMoved("MOVE 0 IN c", 0, 1, 0);
    expect(cursorOf(m, "c")).toMatchObject({ position: 2, verifiable: true });
  });

  test("ABSOLUTE and FIRST set the position and end verification", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    m.cursorMoved("FETCH 4 FROM c", 4, 1, 4);
    m.cursorMoved("FETCH ABSOLUTE 2 FROM c", 1, 2, 1);
    expect(cursorOf(m, "c")).toMatchObject({ position: 2, rowsSeen: 5, verifiable: false, unknownPosition: false });
    const step = m.restorePlan()[0]!;
    expect(step.kind === "cursor" && [step.fetch, step.move]).toEqual([null, 'MOVE FORWARD 2 IN "c"']);
    m.cursorMoved("FETCH FIRST FROM c", 1, 3, 1);
    expect(cursorOf(m, "c")).toMatchObject({ position: 1, verifiable: false, unknownPosition: false });
    m.cursorMoved("MOVE ABSOLUTE 0 IN c", 0, 3, 0);
    expect(cursorOf(m, "c")).toMatchObject({ position: 0, unknownPosition: false });
    m.cursorMoved("MOVE ABSOLUTE 99 IN c", 0, 3, 0); // past the end
    expect(cursorOf(m, "c")).toMatchObject({ unknownPosition: true });
    m.cursorMoved("MOVE ABSOLUTE 3 IN c", 1, 3, 0); // known again
    expect(cursorOf(m, "c")).toMatchObject({ position: 3, unknownPosition: false, verifiable: false });
    m.cursorMoved("MOVE ABSOLUTE -1 IN c", 1, 3, 0);
    expect(cursorOf(m, "c")).toMatchObject({ unknownPosition: true });
  });

  test("backward and end-relative moves make the position unknown: no fetch, no move, and a blocker", () => {
    for (const sql of ["FETCH PRIOR FROM c", "FETCH LAST FROM c", "FETCH BACKWARD FROM c", "FETCH BACKWARD 2 FROM c", "FETCH BACKWARD ALL FROM c", "FETCH -1 FROM c", "FETCH FORWARD -1 FROM c", "FETCH RELATIVE -1 FROM c", "MOVE BACKWARD 1 IN c"]) {
      const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
      m.cursorMoved("FETCH 3 FROM c", 3, 1, 3);
      expect(m.cursorMoved(sql, 1, 1, 1)).toBe(true);
      expect(cursorOf(m, "c")).toMatchObject({ verifiable: false, unknownPosition: true });
      const step = m.restorePlan()[0]!;
      expect(step.kind === "cursor" && [step.fetch, step.move]).toEqual([null, null]);
      expect(m.blocker()).toBe('cursor "c" was moved to a position that cannot be restored');
    }
  });

  test("untracked cursors and non-FETCH texts are ignored", () => {
    const m = fresh("DECLARE c CURSOR FOR SELECT 1", 'DECLARE "C" CURSOR WITH HOLD FOR SELECT 1');
    expect(m.cursorMoved("FETCH 1 FROM c", 1, 1, 1)).toBe(false);
    expect(m.cursorMoved("SELECT 1", 1, 1, 1)).toBe(false);
    expect(m.crcSeed("FETCH 1 FROM nope")).toBe(0);
    expect(m.cursorMoved('FETCH 1 FROM "C"', 1, 1, 1)).toBe(true);
    expect(cursorOf(m, "C")).toMatchObject({ position: 1, rowsSeen: 1 });
  });

  test("the first FETCH of a multi-statement text, past comments", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    expect(m.cursorMoved("/* FETCH 9 FROM c */ SELECT 1; -- x\n FETCH 2 FROM c; FETCH 5 FROM c", 2, 0, 2)).toBe(true);
    expect(cursorOf(m, "c")).toMatchObject({ position: 2 });
  });

  test("a cursor declared with $n parameters cannot be re-created from its text", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t WHERE id = $1");
    expect(m.blocker()).toBe('cursor "c" was declared with parameters');
    expect(fresh("DECLARE c CURSOR WITH HOLD FOR SELECT '$1', $$ $1 $$").blocker()).toBe("");
  });

  test("quoting in generated FETCH / MOVE", () => {
    const m = fresh('DECLARE "My ""Cur""" CURSOR WITH HOLD FOR SELECT 1');
    m.cursorMoved('FETCH 2 FROM "My ""Cur"""', 2, 3, 2);
    const step = m.restorePlan()[0]!;
    expect(step.kind === "cursor" && step.fetch).toBe('FETCH FORWARD 2 FROM "My ""Cur"""');
  });
});

describe("temporary objects", () => {
  const temps = [
    "CREATE TEMP TABLE t (a int)",
    "create temporary table t (a int)",
    "CREATE GLOBAL TEMPORARY TABLE t (a int)",
    "CREATE LOCAL TEMP TABLE t AS SELECT 1",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
    "CREATE TEMP SEQUENCE s",
    "CREATE TABLE pg_temp.t (a int)",
    'CREATE TABLE "pg_temp".t (a int)',
    "CREATE SEQUENCE pg_temp_3.s",
    "SELECT 1 AS a INTO TEMP t",
    "SELECT * INTO TEMPORARY TABLE t FROM x",
    "SELECT * INTO LOCAL TEMP t FROM x",
    "SELECT 1 INTO pg_temp.t",
    "WITH q AS (SELECT 1 AS a) SELECT a INTO TEMP t FROM q",
  ];
  for (const sql of temps) {
    test(sql, () => {
      const m = fresh(sql);
      expect(m.blocker()).toBe("the session holds temporary tables");
      expect(m.empty).toBe(false);
      expect(migrationRelevant(sql).tracked).toBe(true);
    });
  }

  const notTemps = [
    "CREATE TABLE t (a int)",
    "CREATE TEMP TABLE t (a int) ON COMMIT DROP",
    "CREATE TABLE temp (a int)",
    "SELECT 'CREATE TEMP TABLE x'",
    "SELECT 1 -- INTO TEMP t",
    "INSERT INTO temp VALUES (1)",
    "WITH q AS (SELECT 1) INSERT INTO temp SELECT * FROM q",
    "DO $$ BEGIN CREATE TEMP TABLE t (a int); END $$",
  ];
  for (const sql of notTemps) {
    test(`not: ${sql}`, () => {
      expect(fresh(sql).empty).toBe(true);
      expect(migrationRelevant(sql).tracked).toBe(false);
    });
  }

  test("DISCARD TEMP / TEMPORARY clear the flag; DISCARD PLANS does nothing", () => {
    const m = fresh("CREATE TEMP TABLE t (a int)", "LISTEN x");
    m.applied("DISCARD PLANS");
    expect(summary(m).temporaryObjects).toBe(true);
    m.applied("DISCARD TEMP");
    expect(m.blocker()).toBe("");
    expect(summary(m)).toMatchObject({ temporaryObjects: false, channels: ["x"] });
    m.applied("CREATE TEMP TABLE t (a int)");
    m.applied("DISCARD TEMPORARY");
    expect(m.blocker()).toBe("");
  });
});

describe("DISCARD ALL", () => {
  test("clears everything, advisory locks and the temp flag included", () => {
    const m = fresh("PREPARE p AS SELECT 1", "LISTEN ch", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "CREATE TEMP TABLE t (a int)");
    m.setAdvisoryLocks([["0", "5", "1", "ExclusiveLock"]]);
    expect(m.empty).toBe(false);
    m.applied("discard all");
    expect(m.empty).toBe(true);
    expect(m.blocker()).toBe("");
    expect(m.restorePlan()).toEqual([]);
  });
});

describe("statement scanning", () => {
  test("several statements in one text, stray semicolons", () => {
    const m = fresh(";; PREPARE a AS SELECT 1; LISTEN x ;\n DECLARE c CURSOR WITH HOLD FOR SELECT 1;;");
    expect(summary(m)).toMatchObject({ prepared: ["a"], channels: ["x"], cursors: [{ name: "c" }] });
    expect(m.restorePlan()[0]).toEqual({ kind: "exec", sql: "PREPARE a AS SELECT 1" });
  });

  test("keywords in comments, strings, dollar quotes and quoted identifiers do not count", () => {
    const m = fresh(
      "-- LISTEN a\nSELECT 'LISTEN b; PREPARE c AS SELECT 1'",
      "/* PREPARE d AS SELECT 1; /* nested */ LISTEN e; */ SELECT 1",
      "SELECT $$; LISTEN f; $$, $t$ ; DECLARE g CURSOR WITH HOLD FOR SELECT 1 $t$",
      'SELECT 1 AS "; LISTEN h"',
      "SELECT E'\\'; LISTEN i; '",
    );
    expect(m.empty).toBe(true);
  });

  test("a semicolon in a string inside a PREPARE body stays in its text", () => {
    const m = fresh("PREPARE p AS SELECT ';' || $1; LISTEN z");
    expect(m.restorePlan()).toEqual([{ kind: "exec", sql: "PREPARE p AS SELECT ';' || $1" }, { kind: "exec", sql: 'LISTEN "z"' }]);
  });

  test("a BEGIN ATOMIC body is one statement", () => {
    const sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; LISTEN nope; END; LISTEN yes";
    expect(summary(fresh(sql)).channels).toEqual(["yes"]);
  });

  test("comments before the first keyword", () => {
    expect(summary(fresh("/* x */ -- y\n LISTEN a")).channels).toEqual(["a"]);
  });

  test("other statements are ignored", () => {
    expect(fresh("SELECT 1", "SET search_path = x", "BEGIN", "COMMIT", "UPDATE t SET a = 1", "DECLARE").empty).toBe(true);
  });
});

describe("advisory locks", () => {
  test("the query", () => {
    expect(ADVISORY_LOCKS_SQL).toBe(
      "SELECT classid::text, objid::text, objsubid::text, mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted ORDER BY 1,2,3",
    );
  });

  test("bigint keys (positive, negative, minimum), two int4 keys, shared and exclusive", () => {
    // Rows as PostgreSQL 15 lists them after pg_advisory_lock(4294967297), (-9223372036854775808),
    // (-1), pg_advisory_lock_shared(-5, 7) and pg_advisory_lock(5, 2147483647).
    const m = new SessionMigration();
    m.setAdvisoryLocks([
      ["1", "1", "1", "ExclusiveLock"],
      ["2147483648", "0", "1", "ExclusiveLock"],
      ["4294967295", "4294967295", "1", "ExclusiveLock"],
      ["4294967291", "7", "2", "ShareLock"],
      ["5", "2147483647", "2", "ExclusiveLock"],
      ["0", "42", "1", "ShareLock"],
    ]);
    expect(m.restorePlan()).toEqual([
      { kind: "lock", sql: "SELECT pg_try_advisory_lock(4294967297)", lock: { key1: "4294967297", key2: null, shared: false } },
      { kind: "lock", sql: "SELECT pg_try_advisory_lock(-9223372036854775808)", lock: { key1: "-9223372036854775808", key2: null, shared: false } },
      { kind: "lock", sql: "SELECT pg_try_advisory_lock(-1)", lock: { key1: "-1", key2: null, shared: false } },
      { kind: "lock", sql: "SELECT pg_try_advisory_lock_shared(-5, 7)", lock: { key1: "-5", key2: "7", shared: true } },
      { kind: "lock", sql: "SELECT pg_try_advisory_lock(5, 2147483647)", lock: { key1: "5", key2: "2147483647", shared: false } },
      { kind: "lock", sql: "SELECT pg_try_advisory_lock_shared(42)", lock: { key1: "42", key2: null, shared: true } },
    ]);
    expect((m.summary() as { advisoryLocks: unknown }).advisoryLocks).toEqual([
      { key1: "4294967297", key2: null, shared: false },
      { key1: "-9223372036854775808", key2: null, shared: false },
      { key1: "-1", key2: null, shared: false },
      { key1: "-5", key2: "7", shared: true },
      { key1: "5", key2: "2147483647", shared: false },
      { key1: "42", key2: null, shared: true },
    ]);
  });

  test("replaced on each call; malformed rows skipped", () => {
    const m = new SessionMigration();
    m.setAdvisoryLocks([["0", "1", "1", "ExclusiveLock"]]);
    expect(m.empty).toBe(false);
    m.setAdvisoryLocks([[null, "1", "1", "ExclusiveLock"], ["x", "1", "1", "ExclusiveLock"], ["0", "1", "3", "ExclusiveLock"], ["0", "1", "1", "AccessShareLock"]]);
    expect(m.empty).toBe(true);
  });
});

describe("restore plan and summary", () => {
  test("PREPAREs, LISTENs, locks, cursors in this order", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "LISTEN ch", "PREPARE p AS SELECT 1");
    m.setAdvisoryLocks([["0", "9", "1", "ExclusiveLock"]]);
    m.cursorMoved("MOVE 3 IN c", 3, 0, 0);
    const plan = m.restorePlan();
    expect(plan.map((s) => s.kind)).toEqual(["exec", "exec", "lock", "cursor"]);
    expect(plan.map((s) => (s.kind === "cursor" ? s.move : s.sql))).toEqual([
      "PREPARE p AS SELECT 1", 'LISTEN "ch"', "SELECT pg_try_advisory_lock(9)", 'MOVE FORWARD 3 IN "c"',
    ]);
    expect(m.summary()).toEqual({
      prepared: ["p"],
      channels: ["ch"],
      advisoryLocks: [{ key1: "9", key2: null, shared: false }],
      cursors: [{ name: "c", position: 3, rowsSeen: 0, verifiable: true, unknownPosition: false }],
      temporaryObjects: false,
      blocker: "",
    });
  });

  test("plan steps are copies", () => {
    const m = fresh("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
    const step = m.restorePlan()[0]!;
    if (step.kind === "cursor") step.cursor.position = 99;
    expect(cursorOf(m, "c").position).toBe(0);
  });

  test("empty", () => {
    expect(new SessionMigration().empty).toBe(true);
    expect(new SessionMigration().blocker()).toBe("");
    expect(new SessionMigration().summary()).toEqual({ prepared: [], channels: [], advisoryLocks: [], cursors: [], temporaryObjects: false, blocker: "" });
  });
});

describe("migrationRelevant", () => {
  const none = { tracked: false, cursorMove: false, advisory: false };
  const cases: [string, { tracked: boolean; cursorMove: boolean; advisory: boolean }][] = [
    ["PREPARE p AS SELECT 1", { ...none, tracked: true }],
    ["DEALLOCATE p", { ...none, tracked: true }],
    ["LISTEN x", { ...none, tracked: true }],
    ["unlisten *", { ...none, tracked: true }],
    ["DECLARE c CURSOR WITH HOLD FOR SELECT 1", { ...none, tracked: true }],
    ["CLOSE c", { ...none, tracked: true }],
    ["DISCARD ALL", { ...none, tracked: true }],
    ["CREATE TEMP TABLE t (a int)", { ...none, tracked: true }],
    ["SELECT 1 INTO TEMP t", { ...none, tracked: true }],
    ["FETCH 10 FROM c", { ...none, cursorMove: true }],
    ["move forward 3 in c", { ...none, cursorMove: true }],
    ["SELECT pg_advisory_lock(1)", { ...none, advisory: true }],
    ["select PG_TRY_ADVISORY_LOCK_SHARED(1, 2)", { ...none, advisory: true }],
    ["SELECT pg_catalog.pg_advisory_unlock_all()", { ...none, advisory: true }],
    ["SELECT pg_advisory_unlock_shared(1)", { ...none, advisory: true }],
    ["SELECT 1; LISTEN a; FETCH c; SELECT pg_advisory_unlock(1)", { tracked: true, cursorMove: true, advisory: true }],
    ["SELECT 1", none],
    ["PREPARE TRANSACTION 'x'", none],
    ["DECLARE c CURSOR FOR SELECT 1", none],
    ["CREATE TABLE t (a int)", none],
    ["SELECT pg_advisory_xact_lock(1)", none],
    ["SELECT 'pg_advisory_lock(1)'", none],
    ["-- LISTEN x\nSELECT 1", none],
    ["/* FETCH 1 FROM c */ SELECT 1", none],
    ["SELECT $$ DISCARD ALL $$", none],
    ['SELECT 1 AS "LISTEN"', none],
    ["", none],
  ];
  for (const [sql, want] of cases) test(JSON.stringify(sql), () => expect(migrationRelevant(sql)).toEqual(want));
});
