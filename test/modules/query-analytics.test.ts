// Query analytics through a real proxy: figures checked against pg_stat_statements for the same workload, GET /queries, SHOW QUERIES, slow log, N+1, reset.

import { beforeAll, expect, test } from "bun:test";
import { pgClient, pgjs } from "../support/clients.ts";
import { usePgInstance } from "../support/pg-fixture.ts";
import { waitFor } from "../support/pg-instance.ts";
import { BUN, configText, freePort, psql, writeConfig, type RunningProxy } from "../support/proxy.ts";

const fx = usePgInstance(
  {
    databases: ["app"],
    conf: { shared_preload_libraries: "'pg_stat_statements'", "pg_stat_statements.track": "'top'", "pg_stat_statements.track_utility": "on" },
  },
  async (inst) => {
    // In the monitor's database; the view shows every database's statements.
    await inst.psql("CREATE EXTENSION pg_stat_statements", { db: "postgres" });
    await inst.psql(
      [
        "CREATE ROLE reporter LOGIN",
        "CREATE TABLE items (id int PRIMARY KEY, name text, category text, price int)",
        "INSERT INTO items SELECT i, 'item ' || i, (ARRAY['a','b','c'])[1 + i % 3], i FROM generate_series(1, 30) i",
        "CREATE TABLE events (id serial PRIMARY KEY, item_id int, note text)",
        "GRANT SELECT ON items TO reporter",
      ].join("; "),
      { db: "app" },
    );
  },
);

const ANALYTICS = `[auth]\nmethod = "trust"\nadmin_users = ["postgres"]\n[query_analytics]\nslow_query_ms = 200\nn_plus_one_threshold = 10\nn_plus_one_window_ms = 1000\n`;

let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await fx.proxyWith({ toml: ANALYTICS });
});

type Json = Record<string, any>;

async function api(p: RunningProxy, method: "GET" | "POST", path: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(`http://127.0.0.1:${p.adminPort}${path}`, { method });
  return { status: res.status, body: (await res.json()) as Json };
}

const queries = async (p: RunningProxy, qs = "limit=1000"): Promise<Json[]> => (await api(p, "GET", `/queries?${qs}`)).body.queries as Json[];

/** BackendKeyData's process id as the client got it: the proxy's session id. */
const pidOf = (c: object): number => (c as { processID: number }).processID;

const connect = (port: number, user = "postgres", applicationName = "qa-workload") => pgClient(port, { database: "app", user, application_name: applicationName });

/**
 * pg_stat_statements of database app by (user, query text): calls, rows, times. PostgreSQL keys by
 * parse tree, so a statement sent with literals (Const) and the same text sent with parameters
 * (Param) are two rows with one text there; the proxy keys by text: the rows are summed.
 */
async function pgss(): Promise<Map<string, Json>> {
  const r = await fx.monitor.query(
    `SELECT r.rolname AS "user", s.query, s.calls::int AS calls, s.rows::int AS rows, s.total_exec_time, s.min_exec_time, s.max_exec_time
       FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname = 'app'`,
  );
  const out = new Map<string, Json>();
  for (const row of r.rows) {
    const key = `${row.user} ${row.query}`;
    const had = out.get(key);
    out.set(
      key,
      had === undefined
        ? row
        : {
            ...had,
            calls: had.calls + row.calls,
            rows: had.rows + row.rows,
            total_exec_time: had.total_exec_time + row.total_exec_time,
            min_exec_time: Math.min(had.min_exec_time, row.min_exec_time),
            max_exec_time: Math.max(had.max_exec_time, row.max_exec_time),
          },
    );
  }
  return out;
}

/** The workload, through the proxy: simple and extended protocol, several literals per shape, errors, two users. */
async function workload(port: number): Promise<string[]> {
  const c = await connect(port);
  const codes: string[] = [];
  for (let i = 1; i <= 12; i++) await c.query(`SELECT id, name FROM items WHERE id = ${i}`);
  for (let i = 0; i < 4; i++) await c.query(`SELECT category, count(*) FROM items GROUP BY category HAVING count(*) > ${i * 4}`);
  for (const cat of ["a", "b", "c", "a", "zz", "b", "a"]) await c.query({ text: "SELECT name FROM items WHERE category = $1 ORDER BY id", values: [cat] });
  for (let i = 0; i < 5; i++) await c.query({ name: "cheap_items", text: "SELECT id FROM items WHERE price < $1 LIMIT 3", values: [2 + i] });
  for (let i = 0; i < 6; i++) await c.query(`INSERT INTO events (item_id, note) VALUES (${i}, 'note ${i}')`);
  for (let i = 0; i < 4; i++) await c.query({ text: "INSERT INTO events (item_id, note) VALUES ($1, $2)", values: [10 + i, `x${i}`] });
  for (let i = 1; i <= 3; i++) {
    await c.query("BEGIN");
    await c.query(`UPDATE items SET price = price + ${i} WHERE category = 'a'`);
    await c.query("COMMIT");
  }
  await c.query("DELETE FROM events WHERE item_id >= 11 RETURNING id");
  // Two of these five fail on the primary key: errors, and calls PostgreSQL does not count.
  for (const id of [101, 102, 1, 103, 2]) await c.query(`INSERT INTO items (id, name, category, price) VALUES (${id}, 'new', 'n', 1)`).catch((e: { code: string }) => codes.push(e.code));
  await c.query("SELECT point(1, 2) <-> point(4, 6) AS d");
  await c.query("SELECT point(0, 0) <-> point(3, 4) AS d");
  await c.query("SHOW work_mem");
  await c.query("CREATE TABLE IF NOT EXISTS scratch (a int)");
  await c.query("CREATE TABLE IF NOT EXISTS scratch (a int)");
  await c.query("SELECT 1 AS a; SELECT 2 AS b");
  await c.end();
  const r = await connect(port, "reporter");
  for (let i = 1; i <= 3; i++) await r.query(`SELECT id, name FROM items WHERE id = ${i}`);
  await r.end();
  // postgres.js: named statements, described before the first execution.
  const sql = pgjs(port, { database: "app" });
  for (let i = 1; i <= 3; i++) await sql`SELECT name FROM items WHERE id = ${i}`;
  await sql.end();
  return codes;
}

test("per-query calls, rows and normalised text equal pg_stat_statements' for the same workload; latency figures are consistent", async () => {
  await fx.monitor.query("SELECT pg_stat_statements_reset()");
  expect((await api(proxy, "POST", "/queries/reset")).status).toBe(200);
  expect(await workload(proxy.port)).toEqual(["23505", "23505"]);
  const ours = (await queries(proxy)).filter((q) => q.database === "app");
  const theirs = await pgss();

  // Where the two legitimately differ:
  // 1. One simple Query with two statements is one request to the proxy and two statements to
  //    PostgreSQL, which also ignores column aliases: both are "SELECT $1 AS a" there.
  const multi = ours.find((q) => q.query === "SELECT $1 AS a; SELECT $2 AS b")!;
  expect([multi.calls, multi.rows, multi.intent]).toEqual([1, 1, "read"]);
  expect([theirs.get("postgres SELECT $1 AS a")?.calls, theirs.has("postgres SELECT $1 AS b")]).toEqual([2, false]);
  // 2. pg_stat_statements counts 0 rows for utility statements other than COPY/FETCH/SELECT INTO; the proxy counts the rows sent.
  const show = ours.find((q) => q.query === "SHOW work_mem")!;
  expect([show.rows, theirs.get("postgres SHOW work_mem")?.rows, show.intent]).toEqual([1, 0, "admin"]);
  // 3. Failed statements are not in pg_stat_statements; the proxy counts them as calls with errors.
  const dup = ours.find((q) => q.query === "INSERT INTO items (id, name, category, price) VALUES ($1, $2, $3, $4)")!;
  expect([dup.calls, dup.errors, dup.error_codes, dup.rows]).toEqual([5, 2, { "23505": 2 }, 3]);

  // 4. pg_stat_statements keeps the first text's layout (newlines, indentation); the proxy's text has
  //    whitespace runs collapsed. Only postgres.js' type query is written over several lines.
  const oneLine = (t: string) => t.replace(/\s+/g, " ").trim();
  const theirsOneLine = new Map([...theirs].map(([k, v]) => [oneLine(k), { ...v, key: k }]));
  const laidOut: string[] = [];

  const compared = ours.filter((q) => q !== multi && q !== show);
  for (const q of compared) {
    let p = theirs.get(`${q.user} ${q.query}`);
    if (p === undefined && (p = theirsOneLine.get(`${q.user} ${q.query}`)) !== undefined) laidOut.push(p.key);
    expect(p === undefined ? `missing in pg_stat_statements: ${q.user} ${q.query}` : "").toBe("");
    expect([q.query, q.calls - q.errors, q.rows]).toEqual([q.query, p!.calls, p!.rows]);
    // The proxy's clock runs around the server's: every figure is at least PostgreSQL's execution time.
    expect(q.total_ms + 0.001).toBeGreaterThanOrEqual(p!.total_exec_time);
    expect(q.max_ms + 0.001).toBeGreaterThanOrEqual(p!.max_exec_time);
    if (q.errors === 0) expect(q.min_ms + 0.001).toBeGreaterThanOrEqual(p!.min_exec_time);
  }
  expect(laidOut.map(oneLine)).toEqual([
    "postgres select b.oid, b.typarray from pg_catalog.pg_type a left join pg_catalog.pg_type b on b.oid = a.typelem where a.typcategory = $1 group by b.oid, b.typarray order by b.oid",
  ]);
  // Everything of the workload that PostgreSQL counted, the proxy counted too. Beyond 1 and 2 above,
  // PostgreSQL also saw the proxy's own statements on pooled server connections, which are not client
  // requests: startup parameters applied with SET when a server changes hands, RESET on return, and
  // DISCARD ALL after a transaction that ran code the proxy cannot see into (here the DDL).
  const ourKeys = new Set([...compared.map((q) => `${q.user} ${q.query}`), ...laidOut]);
  const onlyTheirs = [...theirs.keys()].filter((k) => !ourKeys.has(k)).sort();
  const internal = /^\w+ (SET (application_name|client_encoding) TO '[^']*'|RESET ALL|RESET SESSION AUTHORIZATION|DISCARD ALL)$/;
  expect(onlyTheirs.filter((k) => !internal.test(k))).toEqual(["postgres SELECT $1 AS a", "postgres SHOW work_mem"]);
  expect(onlyTheirs).toContain("postgres SET application_name TO 'qa-workload'");

  // The figures the workload implies, and the intent of each shape.
  const byText = (text: string, user = "postgres") => ours.find((q) => q.query === text && q.user === user)!;
  const expected: [string, string, number, number, string][] = [
    ["postgres", "SELECT id, name FROM items WHERE id = $1", 12, 12, "read"],
    ["reporter", "SELECT id, name FROM items WHERE id = $1", 3, 3, "read"],
    ["postgres", "SELECT category, count(*) FROM items GROUP BY category HAVING count(*) > $1", 4, 9, "analytics"],
    ["postgres", "SELECT name FROM items WHERE category = $1 ORDER BY id", 7, 60, "read"],
    ["postgres", "SELECT id FROM items WHERE price < $1 LIMIT $2", 5, 12, "read"],
    ["postgres", "INSERT INTO events (item_id, note) VALUES ($1, $2)", 10, 10, "write"],
    ["postgres", "UPDATE items SET price = price + $1 WHERE category = $2", 3, 30, "write"],
    ["postgres", "DELETE FROM events WHERE item_id >= $1 RETURNING id", 1, 3, "write"],
    ["postgres", "BEGIN", 3, 0, "transaction"],
    ["postgres", "COMMIT", 3, 0, "transaction"],
    ["postgres", "SELECT point($1, $2) <-> point($3, $4) AS d", 2, 2, "vector"],
    ["postgres", "CREATE TABLE IF NOT EXISTS scratch (a int)", 2, 0, "ddl"],
    ["postgres", "SELECT name FROM items WHERE id = $1", 3, 3, "read"],
  ];
  expect(expected.map(([u, t]) => { const q = byText(t, u); return q && [u, t, q.calls, q.rows, q.intent]; })).toEqual(expected);
  expect(byText("SELECT id, name FROM items WHERE id = $1").fingerprint).toBe(byText("SELECT id, name FROM items WHERE id = $1", "reporter").fingerprint);

  for (const q of ours) {
    expect(q.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(q.min_ms).toBeGreaterThan(0);
    expect(q.p50_ms).toBeGreaterThanOrEqual(q.min_ms);
    expect(q.p50_ms).toBeLessThanOrEqual(q.p95_ms);
    expect(q.p95_ms).toBeLessThanOrEqual(q.p99_ms);
    expect(q.p99_ms).toBeLessThanOrEqual(q.max_ms);
    expect(q.mean_ms).toBeGreaterThanOrEqual(q.min_ms - 0.001);
    expect(q.mean_ms).toBeLessThanOrEqual(q.max_ms + 0.001);
    expect(Math.abs(q.mean_ms * q.calls - q.total_ms)).toBeLessThanOrEqual(0.001 * q.calls + 0.001);
    expect(Date.parse(q.first_seen)).toBeLessThanOrEqual(Date.parse(q.last_seen));
  }
}, 60_000);

test("latency percentiles follow the durations: 18 short and 2 long calls", async () => {
  const c = await connect(proxy.port);
  for (let i = 0; i < 20; i++) await c.query({ text: "SELECT pg_sleep($1) AS timed", values: [i < 18 ? 0.02 : 0.12] });
  await c.end();
  const q = (await queries(proxy)).find((x) => x.query === "SELECT pg_sleep($1) AS timed")!;
  expect(q.calls).toBe(20);
  // p50: a short call (20 ms plus the round trip, within the 9% bucket); p95 and p99: rank 19 and 20, the long ones.
  expect(q.p50_ms).toBeGreaterThanOrEqual(19);
  expect(q.p50_ms).toBeLessThan(100);
  expect(q.p95_ms).toBeGreaterThanOrEqual(119 / 1.09);
  expect(q.p99_ms).toBeLessThanOrEqual(q.max_ms);
  expect(q.max_ms).toBeGreaterThanOrEqual(120);
  expect(q.min_ms).toBeGreaterThanOrEqual(20);
  expect(q.total_ms).toBeGreaterThanOrEqual(18 * 20 + 2 * 120);
});

test("GET /queries: sorted by total time by default, ?order=calls|mean|p99 and ?limit=N; bad parameters are 400", async () => {
  const all = await queries(proxy);
  expect(all.length).toBeGreaterThan(10);
  const desc = (xs: number[]) => xs.every((x, i) => i === 0 || xs[i - 1]! >= x);
  expect(desc(all.map((q) => q.total_ms))).toBe(true);
  for (const [order, field] of [["calls", "calls"], ["mean", "mean_ms"], ["p99", "p99_ms"], ["total", "total_ms"]] as const) {
    const r = await api(proxy, "GET", `/queries?order=${order}&limit=5`);
    expect(r.status).toBe(200);
    expect(r.body.order).toBe(order);
    expect(r.body.queries).toHaveLength(5);
    const vals = (r.body.queries as Json[]).map((q) => q[field] as number);
    expect(desc(vals)).toBe(true);
    // The top 5 are the 5 largest of all.
    expect(vals).toEqual(all.map((q) => q[field] as number).sort((a, b) => b - a).slice(0, 5));
  }
  const one = await api(proxy, "GET", "/queries?limit=1");
  expect(one.body.queries).toHaveLength(1);
  expect(one.body.queries[0].fingerprint).toBe(all[0]!.fingerprint);
  expect(Object.keys(one.body.queries[0]).slice(0, 13)).toEqual(["query", "fingerprint", "calls", "total_ms", "mean_ms", "min_ms", "max_ms", "p50_ms", "p95_ms", "p99_ms", "rows", "errors", "error_codes"]);
  expect([one.body.tracked, one.body.max_queries, one.body.evicted]).toEqual([all.length, 5000, 0]);
  for (const bad of ["limit=0", "limit=x", "limit=-3", "order=latency"]) {
    const r = await api(proxy, "GET", `/queries?${bad}`);
    expect([r.status, r.body.error]).toEqual([400, "bad_request"]);
    expect(r.body.message).toStartWith(bad.split("=")[0]!);
  }
});

test("SHOW QUERIES in the admin console: the same columns and order as GET /queries (top by total time)", async () => {
  const out = await psql(proxy.port, ["-A", "-F", "|", "-c", "SHOW QUERIES"], { db: "heliosproxy" });
  expect(out.stderr).toBe("");
  const lines = out.stdout.trim().split("\n");
  expect(lines[0]).toBe("query|fingerprint|calls|total_ms|mean_ms|p50_ms|p95_ms|p99_ms|rows|errors|intent|database|user");
  const rows = lines.slice(1, -1).map((l) => l.split("|"));
  const api20 = await queries(proxy, "limit=20");
  expect(lines.at(-1)).toBe(`(${api20.length} rows)`);
  expect(rows.map((r) => [r[1], Number(r[2]), Number(r[3]), r[10], r[11], r[12]])).toEqual(api20.map((q) => [q.fingerprint, q.calls, q.total_ms, q.intent, q.database, q.user]));
  // The console's own statements are not counted.
  expect((await queries(proxy)).some((q) => /SHOW QUERIES/i.test(q.query))).toBe(false);
});

test("slow-query log: one structured line with the normalised text (literals redacted) and who ran it; kept for GET /queries/slow", async () => {
  const c = await connect(proxy.port, "postgres", "slow-app");
  await c.query("SELECT pg_sleep(0.3), 'secret-literal' AS s");
  await c.query("SELECT 'fast' AS quick");
  const pid = pidOf(c);
  await c.end();
  const slow = (await api(proxy, "GET", "/queries/slow")).body;
  expect([slow.slow_query_ms, slow.slow_query_sample]).toEqual([200, 1]);
  const mine = (slow.queries as Json[]).filter((q) => q.application_name === "slow-app");
  expect(mine).toHaveLength(1);
  const s = mine[0]!;
  expect([s.query, s.rows, s.node, s.user, s.database, s.session_id, s.intent, s.error]).toEqual(["SELECT pg_sleep($1), $2 AS s", 1, "node1", "postgres", "app", pid, "read", null]);
  expect(s.duration_ms).toBeGreaterThanOrEqual(299);
  expect((slow.queries as Json[]).every((q) => q.duration_ms >= 200)).toBe(true);
  const line = await waitFor("the slow-query line", () => proxy.output().split("\n").find((l) => l.includes("slow query") && l.includes("application_name=slow-app")));
  expect(line).toContain('query="SELECT pg_sleep($1), $2 AS s"');
  expect(line).toMatch(/duration_ms=(\d+\.?\d*) rows=1 node=node1 user=postgres database=app application_name=slow-app session_id=\d+ fingerprint=[0-9a-f]{16} intent=read/);
  expect(proxy.output()).not.toContain("secret-literal");
});

test("N+1: the same query 15 times in one session within the window is one report with application_name; spaced or few calls are not", async () => {
  const orm = await connect(proxy.port, "postgres", "orm-app");
  const calm = await connect(proxy.port, "postgres", "calm-app");
  const text = "SELECT name, price FROM items WHERE id = $1";
  for (let i = 1; i <= 15; i++) await orm.query({ text, values: [i] });
  for (let i = 1; i <= 9; i++) await calm.query({ text, values: [i] });
  // Twelve calls 120 ms apart: never ten within one second.
  for (let i = 1; i <= 12; i++) {
    await calm.query({ text: "SELECT category FROM items WHERE id = $1", values: [i] });
    await Bun.sleep(120);
  }
  const body = (await api(proxy, "GET", "/queries/n-plus-one")).body;
  expect([body.enabled, body.threshold, body.window_ms]).toEqual([true, 10, 1000]);
  const reports = (body.reports as Json[]).filter((r) => r.application_name === "orm-app" || r.application_name === "calm-app");
  expect(reports.map((r) => [r.query, r.session_id, r.application_name, r.user, r.database, r.count, r.window_ms])).toEqual([[text, pidOf(orm), "orm-app", "postgres", "app", 15, 1000]]);
  expect(Date.parse(reports[0]!.first_at)).toBeLessThanOrEqual(Date.parse(reports[0]!.last_at));
  expect(body.detected).toBeGreaterThanOrEqual(1);
  const entry = (await queries(proxy)).find((q) => q.query === text)!;
  expect([entry.calls, entry.n_plus_one]).toEqual([24, 1]);
  // One warning for the episode.
  const warnings = proxy.output().split("\n").filter((l) => l.includes("N+1 query pattern") && l.includes(`session_id=${pidOf(orm)} `));
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toContain("application_name=orm-app");
  expect(warnings[0]).toContain("count=10 window_ms=1000");
  await orm.end();
  await calm.end();
  // Per-session state goes when the sessions close.
  await waitFor("sessions forgotten", async () => (await api(proxy, "GET", "/queries/n-plus-one")).body.tracked_sessions === 0);
}, 30_000);

test("POST /queries/reset empties the statistics, the slow log and the N+1 reports", async () => {
  expect((await queries(proxy)).length).toBeGreaterThan(0);
  const r = await api(proxy, "POST", "/queries/reset");
  expect(r.status).toBe(200);
  expect(r.body.status).toBe("reset");
  expect(r.body.queries).toBeGreaterThan(10);
  const after = await api(proxy, "GET", "/queries");
  expect([after.body.queries, after.body.tracked]).toEqual([[], 0]);
  const slow = (await api(proxy, "GET", "/queries/slow")).body;
  expect([slow.logged, slow.queries]).toEqual([0, []]);
  const n1 = (await api(proxy, "GET", "/queries/n-plus-one")).body;
  expect([n1.detected, n1.reports]).toEqual([0, []]);
  const c = await connect(proxy.port);
  await c.query("SELECT 42 AS answer");
  await c.end();
  expect((await queries(proxy)).map((q) => [q.query, q.calls])).toEqual([["SELECT $1 AS answer", 1]]);
});

test("log_parameters = true logs the client's text; slow_query_sample = 0 logs nothing; n_plus_one_threshold = 0 turns detection off", async () => {
  const verbose = await fx.proxyWith({ toml: `[query_analytics]\nslow_query_ms = 100\nlog_parameters = true\nn_plus_one_threshold = 0\n` });
  const c = await connect(verbose.port, "postgres", "verbose-app");
  await c.query("SELECT pg_sleep(0.15), 'secret-literal' AS s");
  for (let i = 0; i < 12; i++) await c.query("SELECT 1 AS one");
  await c.end();
  const line = await waitFor("the slow-query line", () => verbose.output().split("\n").find((l) => l.includes("slow query")));
  expect(line).toContain(`query="SELECT pg_sleep(0.15), 'secret-literal' AS s"`);
  expect((await api(verbose, "GET", "/queries/slow")).body.queries[0].query).toBe("SELECT pg_sleep(0.15), 'secret-literal' AS s");
  const n1 = (await api(verbose, "GET", "/queries/n-plus-one")).body;
  expect([n1.enabled, n1.detected, n1.reports]).toEqual([false, 0, []]);
  expect(verbose.output()).not.toContain("N+1");
  await verbose.stop();

  const sampled = await fx.proxyWith({ toml: `[query_analytics]\nslow_query_ms = 50\nslow_query_sample = 0\n` });
  const d = await connect(sampled.port);
  await d.query("SELECT pg_sleep(0.1)");
  await d.end();
  const slow = (await api(sampled, "GET", "/queries/slow")).body;
  expect([slow.logged, slow.queries]).toEqual([0, []]);
  expect((await queries(sampled)).map((q) => [q.query, q.calls])).toEqual([["SELECT pg_sleep($1)", 1]]);
  expect(sampled.output()).not.toContain("slow query");
  await sampled.stop();
}, 30_000);

test("max_queries bounds the entries: the least used go first, the busy one stays", async () => {
  const small = await fx.proxyWith({ toml: `[query_analytics]\nmax_queries = 20\nn_plus_one_threshold = 0\n` });
  const c = await connect(small.port);
  for (let i = 0; i < 5; i++) await c.query(`SELECT ${i} AS hot`);
  for (let i = 0; i < 40; i++) await c.query(`SELECT ${i} AS cold_${i}`);
  await c.end();
  const r = (await api(small, "GET", "/queries?limit=100")).body;
  expect(r.tracked).toBe(20);
  expect(r.queries).toHaveLength(20);
  expect(r.evicted).toBe(21); // 41 shapes into 20 places: 5% of 20, one at a time
  expect((r.queries as Json[]).find((q) => q.query === "SELECT $1 AS hot")?.calls).toBe(5);
  // The newest cold shapes are the ones kept.
  expect((r.queries as Json[]).filter((q) => q.query.includes("cold_")).map((q) => q.query).sort()).toEqual(
    Array.from({ length: 19 }, (_, i) => `SELECT $1 AS cold_${21 + i}`).sort(),
  );
  await small.stop();
});

test("config errors stop the proxy at load with file, line and key; enabled = false starts it without the module", async () => {
  const start = async (section: string) => {
    const config = writeConfig(configText(freePort(), freePort(), { toml: `[query_analytics]\n${section}\n` }));
    const proc = Bun.spawn([BUN, "src/cli/main.ts", "--config", config], { cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe" });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    return { code, stderr, line: configText(0, 0, { toml: "[query_analytics]" }).split("\n").length + 1 };
  };
  for (const [section, message] of [
    ["slow_query_sample = 2", "query_analytics.slow_query_sample: expected a number in 0..1, got 2"],
    ["max_queries = 0", "query_analytics.max_queries: expected an integer in 1..1000000, got 0"],
    ["n_plus_one_threshold = 1", "query_analytics.n_plus_one_threshold: expected 0 (off) or an integer >= 2, got 1"],
    ['log_parameters = "yes"', 'query_analytics.log_parameters: expected true or false, got "yes"'],
    ["slow_ms = 100", "query_analytics.slow_ms: unknown key (valid: enabled, max_queries,"],
  ] as const) {
    const r = await start(section);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`proxy.toml:${r.line}: ${message}`);
  }
  const off = await fx.proxyWith({ toml: "[query_analytics]\nenabled = false\n" });
  const c = await connect(off.port);
  await c.query("SELECT 1");
  await c.end();
  expect((await fetch(`http://127.0.0.1:${off.adminPort}/queries`)).status).toBe(404);
  const show = await psql(off.port, ["-c", "SHOW QUERIES"], { db: "heliosproxy" });
  expect(show.code).not.toBe(0);
  await off.stop();
}, 30_000);
