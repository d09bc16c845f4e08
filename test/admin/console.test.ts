// SQL admin console through the proxy port: PgBouncer-compatible SHOW output, PAUSE/RESUME/KILL/RECONNECT/RELOAD, admin vs stats users.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { PG_HOST, PG_PORT, psql, startProxy, type RunningProxy } from "../support/proxy.ts";

const T = 30_000;
const STATS_USER = "statsuser";
const PLAIN_USER = "helios_console_plain";
const SECRET = "hunter2-health-secret";

let proxy: RunningProxy;

type Row = Record<string, unknown>;
type PgError = Error & { code?: string };

/** The parts of node-postgres these tests use. */
interface QueryResult {
  command: string;
  rowCount: number | null;
  rows: Row[];
  fields: { name: string; dataTypeID: number }[];
}

interface Client {
  connect(): Promise<void>;
  query(sql: string, values?: unknown[]): Promise<QueryResult>;
  /** Several statements in one query string: one result each. */
  queryMany(sql: string): Promise<QueryResult[]>;
  end(): Promise<void>;
  on(event: "error", fn: (e: PgError) => void): void;
  on(event: "notice", fn: (n: { message: string; detail?: string }) => void): void;
  asyncErrors: PgError[];
}

async function connect(port: number, database: string, user = "postgres"): Promise<Client> {
  const c = new pg.Client({ host: PG_HOST, port, user, database, connectionTimeoutMillis: 10_000 }) as unknown as Client;
  c.queryMany = (sql) => c.query(sql) as unknown as Promise<QueryResult[]>;
  c.asyncErrors = [];
  c.on("error", (e) => c.asyncErrors.push(e));
  await c.connect();
  return c;
}

/** Run statements on PostgreSQL itself (not through the proxy). */
async function direct(sql: string, values: unknown[] = []): Promise<QueryResult> {
  const c = await connect(PG_PORT, "postgres");
  try {
    return await c.query(sql, values);
  } finally {
    await c.end();
  }
}

/** Open a console session, run `fn`, close it. */
async function withConsole<R>(fn: (c: Client) => Promise<R>, user = "postgres", db = "pgbouncer"): Promise<R> {
  const c = await connect(proxy.port, db, user);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const admin = (sql: string) => withConsole((c) => c.query(sql));

async function rejection(p: Promise<unknown>): Promise<PgError> {
  try {
    await p;
  } catch (e) {
    return e as PgError;
  }
  throw new Error("expected an error");
}

async function settles(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await Bun.sleep(ms);
  return done;
}

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(50);
  }
  return cond();
}

/** How many of these backend pids PostgreSQL still has. */
const alive = async (pids: number[]) => Number((await direct("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)", [pids])).rows[0].n);

const testPools = async (): Promise<Row[]> => (await admin("SHOW POOLS")).rows.filter((r) => r.database === "test");

beforeAll(async () => {
  for (const role of [STATS_USER, PLAIN_USER]) {
    const exists = await direct("SELECT 1 FROM pg_roles WHERE rolname = $1", [role]);
    if (exists.rowCount === 0) await direct(`CREATE ROLE ${role} LOGIN`);
  }
  proxy = await startProxy({
    maxConnections: 8,
    toml: `[auth]\nadmin_users = ["postgres"]\nstats_users = ["${STATS_USER}"]\n[health]\npassword = "${SECRET}"\n[query_analytics]\nshow_limit = 7`,
  });
}, T);

afterAll(async () => {
  await proxy?.stop();
  for (const role of [STATS_USER, PLAIN_USER]) await direct(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
});

const POOL_COLUMNS = ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
  "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode", "node"];
const SOCKET_COLUMNS = ["type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port", "connect_time",
  "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls", "application_name", "prepared_statements", "id"];

describe("SHOW", () => {
  test("SHOW POOLS through psql: PgBouncer's columns, counts of a client holding a transaction open", async () => {
    const holder = await connect(proxy.port, "test");
    const idle = await connect(proxy.port, "test");
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1");
      await idle.query("SELECT 1");
      const r = await psql(proxy.port, ["-A", "-F", "|", "-c", "SHOW POOLS"], { db: "pgbouncer" });
      expect(r.code).toBe(0);
      const [header, ...lines] = r.stdout.trim().split("\n");
      expect(header!.split("|")).toEqual(POOL_COLUMNS);
      const row = lines.map((l) => l.split("|")).find((f) => f[0] === "test" && f[1] === "postgres")!;
      const v = Object.fromEntries(POOL_COLUMNS.map((c, i) => [c, row[i]]));
      expect(v).toMatchObject({ cl_active: "2", cl_waiting: "0", sv_active: "1", sv_idle: "1", sv_login: "0", maxwait: "0", pool_mode: "transaction", node: "node1" });

      // The holder's client row links to an active server whose row links back.
      const clients = (await admin("SHOW CLIENTS")).rows.filter((c) => c.database === "test");
      const servers = (await admin("SHOW SERVERS")).rows.filter((s) => s.database === "test");
      expect(clients.map((c) => c.state).sort()).toEqual(["active", "idle"]);
      const linked = clients.find((c) => c.state === "active")!;
      const server = servers.find((s) => s.ptr === linked.link)!;
      expect(server).toMatchObject({ type: "S", state: "active", link: linked.ptr, addr: PG_HOST, port: String(PG_PORT) });
      const pid = (await holder.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      expect(server.remote_pid).toBe(String(pid));

      await holder.query("COMMIT");
      const after = (await testPools())[0]!;
      expect(after).toMatchObject({ cl_active: "2", sv_active: "0", sv_idle: "2" });
    } finally {
      await holder.end();
      await idle.end();
    }
  }, T);

  test("column names and types of SHOW CLIENTS, SERVERS, STATS, DATABASES, NODES, CONFIG", async () => {
    const r = await withConsole((c) => c.queryMany("SHOW CLIENTS; SHOW SERVERS; SHOW STATS; SHOW DATABASES; SHOW NODES; SHOW CONFIG"));
    const names = r.map((x) => x.fields.map((f) => f.name));
    expect(names[0]).toEqual(SOCKET_COLUMNS);
    expect(names[1]).toEqual([...SOCKET_COLUMNS, "node"]);
    // PgBouncer 1.23's full set, in its order.
    expect(names[2]).toEqual(["database", "total_server_assignment_count", "total_xact_count", "total_query_count", "total_received", "total_sent",
      "total_xact_time", "total_query_time", "total_wait_time", "total_client_parse_count", "total_server_parse_count", "total_bind_count",
      "avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time", "avg_query_time",
      "avg_wait_time", "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"]);
    expect(names[3]).toEqual(["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool_size",
      "server_lifetime", "pool_mode", "load_balance_hosts", "max_connections", "current_connections", "max_client_connections",
      "current_client_connections", "paused", "disabled"]);
    expect(names[4]).toEqual(["name", "host", "port", "role", "state", "lag_bytes", "lag_seconds", "latency_ms", "sync", "weight", "fenced", "timeline"]);
    expect(names[5]).toEqual(["key", "value", "default", "changeable"]);
    // Counters are int8, names text.
    const stats = r[2]!.fields;
    expect(stats.find((f) => f.name === "database")!.dataTypeID).toBe(25);
    expect(stats.find((f) => f.name === "total_query_count")!.dataTypeID).toBe(20);
    expect(r[4]!.rows[0]).toMatchObject({ name: "node1", host: PG_HOST, port: String(PG_PORT), role: "primary", state: "up", fenced: "no" });
  }, T);

  test("SHOW STATS counts the transactions, queries and bytes of a database", async () => {
    const before = (await admin("SHOW STATS")).rows.find((r) => r.database === "test");
    const c = await connect(proxy.port, "test");
    for (let i = 0; i < 5; i++) await c.query("SELECT 1");
    await c.end();
    const after = (await admin("SHOW STATS")).rows.find((r) => r.database === "test")!;
    const n = (r: Row | undefined, k: string) => Number(r?.[k] ?? 0);
    expect(n(after, "total_query_count") - n(before, "total_query_count")).toBeGreaterThanOrEqual(5);
    expect(n(after, "total_xact_count") - n(before, "total_xact_count")).toBeGreaterThanOrEqual(5);
    expect(n(after, "total_received")).toBeGreaterThan(n(before, "total_received"));
    expect(n(after, "total_sent")).toBeGreaterThan(n(before, "total_sent"));
  }, T);

  test("SHOW STATS times queries and transactions (microseconds) and counts Parse and Bind", async () => {
    const n = (r: Row | undefined, k: string) => Number(r?.[k] ?? 0);
    const stats = async () => (await admin("SHOW STATS")).rows.find((r) => r.database === "test");
    const before = await stats();
    const c = await connect(proxy.port, "test");
    try {
      // One transaction of at least 200 ms, one query of at least 100 ms in it.
      await c.query("BEGIN");
      await c.query("SELECT pg_sleep(0.1)");
      await c.query("SELECT pg_sleep(0.1)");
      await c.query("COMMIT");
      // Three extended-protocol queries: node-postgres sends Parse, Bind, Execute, Sync for each.
      for (let i = 0; i < 3; i++) await c.query("SELECT $1::int AS v", [i]);
    } finally {
      await c.end();
    }
    const after = (await stats())!;
    const d = (k: string) => n(after, k) - n(before, k);
    expect(d("total_xact_time")).toBeGreaterThanOrEqual(200_000);
    expect(d("total_query_time")).toBeGreaterThanOrEqual(200_000);
    // Query time is inside transaction time (the COMMIT's and the extended queries' own included in both).
    expect(d("total_query_time")).toBeLessThanOrEqual(d("total_xact_time"));
    expect(d("total_client_parse_count")).toBe(3);
    expect(d("total_bind_count")).toBe(3);
    expect(d("total_server_parse_count")).toBeGreaterThanOrEqual(3);
    const parts = await withConsole((x) => x.queryMany("SHOW STATS_TOTALS; SHOW STATS_AVERAGES"));
    const partNames = ["database", "server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent", "xact_time",
      "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"];
    expect(parts.map((p) => p.fields.map((f) => f.name))).toEqual([partNames, partNames]);
    expect(Number(parts[0]!.rows.find((r) => r.database === "test")!.xact_time)).toBe(n(after, "total_xact_time"));
  }, T);

  test("SHOW CONFIG masks secrets and reports defaults", async () => {
    const r = await admin("SHOW CONFIG");
    const byKey = new Map(r.rows.map((x) => [x.key, x]));
    expect(byKey.get("health.password")).toMatchObject({ value: "********", default: "" });
    expect(byKey.get("pool.max_connections")).toMatchObject({ value: "8", default: "20", changeable: "yes" });
    expect(byKey.get("proxy.listen_address")!.changeable).toBe("no");
    // Module settings, with the defaults their schema declares; they apply at start.
    expect(byKey.get("query_analytics.show_limit")).toMatchObject({ value: "7", default: "20", changeable: "no" });
    expect(byKey.get("query_analytics.n_plus_one_threshold")).toMatchObject({ value: "10", default: "10" });
    expect(JSON.stringify(r.rows)).not.toContain(SECRET);
  }, T);

  test("SHOW VERSION, LISTS, STATE, USERS, HELP; case, semicolons and several statements", async () => {
    await withConsole(async (c) => {
      const notices: string[] = [];
      c.on("notice", (n) => notices.push(`${n.message}\n${n.detail ?? ""}`));
      const r = await c.queryMany("show version; Show State;;SHOW lists;");
      expect(r[0]!.rows[0].version).toMatch(/^HeliosProxy \d+\.\d+\.\d+/);
      expect(r[1]!.rows).toContainEqual({ key: "paused", value: "no" });
      expect(r[2]!.rows.map((x) => x.list)).toContain("pools");
      expect((await c.query("SHOW USERS")).rows.map((x) => x.name)).toContain("postgres");
      await c.query("SHOW HELP");
      expect(notices.join("\n")).toContain("PAUSE [<db>]");
      expect((await c.query("SET client_encoding = 'UTF8'")).command).toBe("SET");
    });
  }, T);
});

describe("PAUSE / RESUME / RELOAD", () => {
  test("PAUSE closes the servers and holds new queries; RESUME lets them finish", async () => {
    const c = await connect(proxy.port, "test");
    try {
      await c.query("SELECT 1");
      await withConsole(async (con) => {
        expect((await con.query("PAUSE test")).command).toBe("PAUSE");
        expect((await con.query("SHOW SERVERS")).rows.filter((s) => s.database === "test")).toEqual([]);
        const q = c.query("SELECT 42 AS x");
        expect(await settles(q, 400)).toBe(false);
        expect((await testPools())[0]).toMatchObject({ cl_waiting: "1" });
        expect((await con.query("SHOW DATABASES")).rows.find((d) => d.name === "test")!.paused).toBe("1");
        expect((await con.query("RESUME test")).command).toBe("RESUME");
        expect((await q).rows[0].x).toBe(42);
      });
    } finally {
      await c.end();
    }
  }, T);

  test("PAUSE waits for a transaction in progress to end", async () => {
    const c = await connect(proxy.port, "test");
    try {
      await c.query("BEGIN");
      await c.query("SELECT 1");
      await withConsole(async (con) => {
        const paused = con.query("PAUSE");
        expect(await settles(paused, 400)).toBe(false);
        await c.query("SELECT 2"); // the open transaction keeps its server
        await c.query("COMMIT");
        expect((await paused).command).toBe("PAUSE");
        expect((await con.query("SHOW STATE")).rows).toContainEqual({ key: "paused", value: "yes" });
        await con.query("RESUME");
      });
      expect((await c.query("SELECT 3 AS x")).rows[0].x).toBe(3);
    } finally {
      await c.end();
    }
  }, T);

  test("B15: PAUSE/RESUME and RELOAD loops under a pgbench load: zero failures", async () => {
    const dir = mkdtempSync(join(tmpdir(), "helios-console-"));
    const script = join(dir, "tx.sql");
    writeFileSync(script, "BEGIN;\nSELECT 1;\nSELECT pg_backend_pid();\nCOMMIT;\n");
    const bench = Bun.spawn(["pgbench", "-n", "-h", PG_HOST, "-p", String(proxy.port), "-U", "postgres", "-f", script, "-c", "4", "-j", "2", "-T", "4", "test"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = Promise.all([new Response(bench.stdout).text(), new Response(bench.stderr).text()]);
    let loops = 0;
    // PAUSE disconnects every server (as PgBouncer's does), so each round costs new server logins; the
    // next PAUSE waits until transactions went through after the RESUME (bounded), or a loop faster
    // than a busy machine's logins would starve the clients by design and prove nothing.
    const xacts = async (con: Client) => Number((await con.query("SHOW STATS")).rows.find((r) => r.database === "test")?.total_xact_count ?? 0);
    await withConsole(async (con) => {
      await Bun.sleep(300);
      while (bench.exitCode === null) {
        await con.query("PAUSE");
        await Bun.sleep(30);
        await con.query("RESUME");
        await con.query("RELOAD");
        const resumedAt = await xacts(con);
        const deadline = performance.now() + 2000;
        while (bench.exitCode === null && performance.now() < deadline && (await xacts(con)) < resumedAt + 4) await Bun.sleep(10);
        loops++;
      }
    });
    const code = await bench.exited;
    const text = (await out).join("\n");
    expect(code).toBe(0);
    expect(loops).toBeGreaterThanOrEqual(5);
    expect(Number(/number of transactions actually processed: (\d+)/.exec(text)?.[1])).toBeGreaterThan(50);
    expect(/number of failed transactions: (\d+)/.exec(text)?.[1]).toBe("0");
  }, T);
});

describe("RECONNECT and KILL", () => {
  test("RECONNECT closes idle servers (pg_stat_activity) and new ones are made on demand", async () => {
    const cs = await Promise.all([0, 1, 2].map(() => connect(proxy.port, "test")));
    try {
      await Promise.all(cs.map((c) => c.query("BEGIN")));
      await Promise.all(cs.map((c) => c.query("SELECT 1")));
      await Promise.all(cs.map((c) => c.query("COMMIT")));
      const pids = (await admin("SHOW SERVERS")).rows.filter((s) => s.database === "test").map((s) => Number(s.remote_pid));
      expect(pids.length).toBeGreaterThanOrEqual(3);
      expect(await alive(pids)).toBe(pids.length);
      expect((await admin("RECONNECT test")).command).toBe("RECONNECT");
      expect(await waitFor(async () => (await alive(pids)) === 0)).toBe(true);
      expect((await cs[0]!.query("SELECT 5 AS x")).rows[0].x).toBe(5);
    } finally {
      await Promise.all(cs.map((c) => c.end()));
    }
  }, T);

  test("KILL closes the database's clients with an error and its servers; clients that return wait for RESUME", async () => {
    const victim = await connect(proxy.port, "test");
    const other = await connect(proxy.port, "postgres");
    await victim.query("SELECT 1");
    await other.query("SELECT 1");
    const pids = (await admin("SHOW SERVERS")).rows.filter((s) => s.database === "test").map((s) => Number(s.remote_pid));
    await withConsole(async (con) => {
      expect((await con.query("KILL test")).command).toBe("KILL");
      expect(await waitFor(async () => victim.asyncErrors.length > 0)).toBe(true);
      expect(victim.asyncErrors[0]!.code).toBe("57P01");
      expect(victim.asyncErrors[0]!.message).toContain('database "test" was killed');
      expect((await con.query("SHOW CLIENTS")).rows.filter((c) => c.database === "test")).toEqual([]);
      expect((await con.query("SHOW SERVERS")).rows.filter((s) => s.database === "test")).toEqual([]);
      expect(await waitFor(async () => (await alive(pids)) === 0)).toBe(true);
      // Other databases are untouched.
      expect((await other.query("SELECT 6 AS x")).rows[0].x).toBe(6);
      const back = await connect(proxy.port, "test");
      try {
        const q = back.query("SELECT 7 AS x");
        expect(await settles(q, 300)).toBe(false);
        await con.query("RESUME test");
        expect((await q).rows[0].x).toBe(7);
      } finally {
        await back.end();
      }
    });
    await victim.end().catch(() => {});
    await other.end();
  }, T);
});

describe("authorisation and bad input (D7)", () => {
  test("a stats user can SHOW but not PAUSE, KILL, RELOAD, RESUME, RECONNECT, SHUTDOWN or SUSPEND (42501)", async () => {
    await withConsole(async (c) => {
      expect((await c.query("SHOW POOLS")).rows.length).toBeGreaterThan(0);
      for (const cmd of ["PAUSE", "PAUSE test", "KILL test", "RELOAD", "RESUME", "RECONNECT", "SHUTDOWN", "SUSPEND", "SET pool_mode = session"]) {
        const e = await rejection(c.query(cmd));
        expect({ cmd, code: e.code }).toEqual({ cmd, code: "42501" });
      }
      expect((await c.query("SHOW STATE")).rows).toContainEqual({ key: "paused", value: "no" });
      expect((await c.query("SHOW VERSION")).rows.length).toBe(1);
    }, STATS_USER);
  }, T);

  test("bad input is an ERROR with a SQLSTATE and the session stays usable", async () => {
    await withConsole(async (c) => {
      const cases: [string, string, RegExp?][] = [
        ["FROBNICATE now", "42601", /FROBNICATE/],
        ["SHOW nonsense", "42601", /nonsense/],
        ["SHOW", "42601"],
        ["PAUSE no_such_db", "3D000", /no_such_db/],
        ["KILL no_such_db", "3D000"],
        ["RECONNECT no_such_db", "3D000"],
        ["KILL test extra", "42601"],
        ["PAUSE pgbouncer", "3D000", /admin console/],
        [`PAUSE "${"x".repeat(100)}"`, "42622"],
        ['PAUSE "unterminated', "42601"],
        ["RESUME", "55000", /not paused/],
        ["RESUME test", "55000", /not paused/],
        ["RELOAD now", "42601"],
        ["SUSPEND", "0A000"],
        ["SHOW MEM", "0A000", /SHOW MEM is not supported/],
        ["SHOW FDS", "0A000", /SHOW FDS is not supported/],
        ["SHOW DNS_HOSTS", "0A000", /SHOW DNS_HOSTS is not supported/],
        ["SHOW DNS_ZONES", "0A000"],
        ["SHUTDOWN", "0A000"],
        ["SET pool_mode = session", "0A000"],
        ["SELECT 1", "42601"],
        ["SHOW VERSION; BOGUS; SHOW STATE", "42601", /BOGUS/],
      ];
      for (const [sql, code, message] of cases) {
        const e = await rejection(c.query(sql));
        expect({ sql, code: e.code }).toEqual({ sql, code });
        if (message) expect(e.message).toMatch(message);
      }
      const empty = await c.query("");
      expect(empty.rows ?? []).toEqual([]);
      expect((await c.query("SHOW VERSION")).rows.length).toBe(1);
    });
    // The proxy still serves ordinary clients.
    const r = await psql(proxy.port, ["-Atc", "select 8"]);
    expect(r.stdout.trim()).toBe("8");
  }, T);

  test("a user in neither admin_users nor stats_users cannot log in to the console", async () => {
    for (const db of ["pgbouncer", "heliosproxy"]) {
      const e = await rejection(connect(proxy.port, db, PLAIN_USER));
      expect(e.code).toBe("42501");
      expect(e.message).toContain("not allowed to use the admin console");
    }
    const r = await psql(proxy.port, ["-c", "SHOW POOLS"], { db: "heliosproxy", user: PLAIN_USER });
    expect(r.code).not.toBe(0);
    // The same user may still use ordinary databases.
    const ok = await psql(proxy.port, ["-Atc", "select current_user"], { user: PLAIN_USER });
    expect(ok.stdout.trim()).toBe(PLAIN_USER);
  }, T);
});
