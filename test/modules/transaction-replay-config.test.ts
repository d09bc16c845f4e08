// Transaction replay settings and admin surface: config defaults and errors (key and line), GET /journal and its session filter, SHOW JOURNAL and SHOW RECOVERIES.

import { beforeAll, expect, test } from "bun:test";
import { DEFAULT_REPLAY_SETTINGS, DEFAULT_VOLATILE_FUNCTIONS, ReplayRegistry, type JournalView, type RecoveryRecord } from "../../src/cluster/ha/replay-registry.ts";
import { ConfigError, moduleSettings, parseConfig } from "../../src/config/load.ts";
import { moduleFor } from "../../src/modules/index.ts";
import { journalReport, showJournal, showRecoveries, type TransactionReplaySettings } from "../../src/modules/transaction-replay/index.ts";
import { pgClient } from "../support/clients.ts";
import { adminApi } from "../support/pg-cluster.ts";
import { usePgInstance } from "../support/pg-fixture.ts";
import { psql, type RunningProxy } from "../support/proxy.ts";

const BASE = `[proxy]\nlisten_address = "127.0.0.1:6432"\nadmin_address = "127.0.0.1:9090"\n[[nodes]]\nhost = "127.0.0.1"\n`;
/** Line of the n-th line of a section appended to BASE (5 lines). */
const at = (n: number) => n + 5;

/** The first issue of a config that must fail: "line|key|detail". */
function failure(section: string): string {
  try {
    parseConfig(BASE + section, "tr.toml");
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const i = e.issues[0]!;
    return `${i.line}|${i.key}|${i.detail}`;
  }
  throw new Error("config was accepted");
}

/** The settings of a section, checked as the loader checks it. */
const configure = (section: Record<string, unknown>) => moduleSettings("transaction_replay", section) as TransactionReplaySettings;

const bad = (key: string, value: string) => failure(`[transaction_replay]\n${key} = ${value}\n`);

test("defaults: a present section is enabled with the documented values", () => {
  expect(moduleFor("transaction_replay")?.feature).toBe("ha-tr");
  expect(configure({})).toEqual({ enabled: true, replay: DEFAULT_REPLAY_SETTINGS });
  expect(DEFAULT_REPLAY_SETTINGS).toEqual({
    maxJournalBytes: 1048576,
    maxAttempts: 5,
    maxReplaySecs: 30,
    volatileFunctions: DEFAULT_VOLATILE_FUNCTIONS,
    journalParameters: false,
    retain: 100,
    retryConflicts: false,
  });
  const c = parseConfig(`${BASE}[transaction_replay]\nenabled = true\n`, "tr.toml");
  expect(c.modules.transaction_replay).toMatchObject({ enabled: true, max_attempts: 5, retain: 100 });
  expect(configure({ enabled: false }).enabled).toBe(false);
});

test("every key is read; function names are lower-cased", () => {
  const s = configure({
    max_journal_bytes: 1024,
    max_attempts: 100,
    max_replay_secs: 0.5,
    volatile_functions: ["NextVal", "my_func_2", "_x"],
    journal_parameters: true,
    retain: 0,
    retry_conflicts: true,
  });
  expect(s).toEqual({
    enabled: true,
    replay: { maxJournalBytes: 1024, maxAttempts: 100, maxReplaySecs: 0.5, volatileFunctions: ["nextval", "my_func_2", "_x"], journalParameters: true, retain: 0, retryConflicts: true },
  });
  expect(configure({ volatile_functions: [] }).replay.volatileFunctions).toEqual([]);
});

test("bad values name transaction_replay.<key>, its line and what was expected", () => {
  expect(bad("enabled", '"yes"')).toBe(`${at(2)}|transaction_replay.enabled|expected true or false, got "yes"`);
  expect(bad("max_journal_bytes", "1023")).toBe(`${at(2)}|transaction_replay.max_journal_bytes|expected an integer >= 1024, got 1023`);
  expect(bad("max_journal_bytes", "2048.5")).toBe(`${at(2)}|transaction_replay.max_journal_bytes|expected an integer >= 1024, got 2048.5`);
  expect(bad("max_attempts", "0")).toBe(`${at(2)}|transaction_replay.max_attempts|expected an integer in 1..100, got 0`);
  expect(bad("max_attempts", "101")).toBe(`${at(2)}|transaction_replay.max_attempts|expected an integer in 1..100, got 101`);
  expect(bad("max_replay_secs", "0")).toBe(`${at(2)}|transaction_replay.max_replay_secs|expected a number > 0 and <= 3600, got 0`);
  expect(bad("max_replay_secs", '"30s"')).toBe(`${at(2)}|transaction_replay.max_replay_secs|expected a number > 0 and <= 3600, got "30s"`);
  expect(bad("volatile_functions", '"now"')).toBe(`${at(2)}|transaction_replay.volatile_functions|expected an array of strings, got "now"`);
  expect(bad("volatile_functions", '["now", 3]')).toBe(`${at(2)}|transaction_replay.volatile_functions|expected an array of strings, got an array`);
  const [line, key, detail] = bad("volatile_functions", '["now", "public.f"]').split("|");
  expect(Number(line)).toBe(at(2));
  expect(key).toMatch(/^transaction_replay\.volatile_functions(\.1|\[1\])$/);
  expect(detail).toBe('expected a function name of letters, digits and _, got "public.f"');
  expect(bad("volatile_functions", '["1abc"]')).toContain('expected a function name of letters, digits and _, got "1abc"');
  expect(bad("journal_parameters", "1")).toBe(`${at(2)}|transaction_replay.journal_parameters|expected true or false, got 1`);
  expect(bad("retry_conflicts", '"no"')).toBe(`${at(2)}|transaction_replay.retry_conflicts|expected true or false, got "no"`);
  expect(bad("retain", "-1")).toBe(`${at(2)}|transaction_replay.retain|expected an integer in 0..10000, got -1`);
  expect(bad("retain", "10001")).toBe(`${at(2)}|transaction_replay.retain|expected an integer in 0..10000, got 10001`);
  expect(failure(`[transaction_replay]\nretain = 5\nmax_attempt = 3\n`)).toBe(
    `${at(3)}|transaction_replay.max_attempt|unknown key (did you mean max_attempts?)`,
  );
});

const view = (session: number, replayable = true): JournalView => ({
  session,
  user: "app",
  database: "shop",
  bytes: 120,
  xid: "",
  replayable,
  reason: replayable ? "" : "called nextval()",
  statements: [{ sql: "BEGIN", param_count: 0, replies: 1, done: true }],
});

const record = (session: number, outcome: RecoveryRecord["outcome"], at: string): RecoveryRecord => ({
  at,
  session,
  user: "app",
  database: "shop",
  outcome,
  sqlstate: outcome === "refused" ? "40001" : "",
  reason: "",
  from: "node1",
  to: "node2",
  replayed: 2,
  in_flight: 1,
  xid: "",
  attempts: 1,
  duration_ms: 12.5,
  statements: [],
  conflicts: [],
});

test("journal report and console rows: open journals, recent recoveries newest first, filtered by session", () => {
  const reg = new ReplayRegistry({ ...DEFAULT_REPLAY_SETTINGS, retain: 2 });
  reg.sessions.add({ journalView: () => view(7) });
  reg.sessions.add({ journalView: () => view(8, false) });
  reg.sessions.add({ journalView: () => null });
  reg.record(record(7, "migrated", "2024-01-01T00:00:00.000Z"));
  reg.record(record(8, "replayed", "2024-01-01T00:00:01.000Z"));
  reg.record(record(7, "refused", "2024-01-01T00:00:02.000Z"));
  const all = journalReport(reg, null);
  expect(all.settings).toEqual({
    max_journal_bytes: 1048576,
    max_attempts: 5,
    max_replay_secs: 30,
    volatile_functions: DEFAULT_VOLATILE_FUNCTIONS,
    journal_parameters: false,
    retain: 2,
    retry_conflicts: false,
  });
  expect(all.counts).toEqual({ replayed: 1, committed: 0, rolled_back: 0, migrated: 1, refused: 1, unknown: 0, closed: 0, retried: 0 });
  expect(all.open.map((j) => j.session)).toEqual([7, 8]);
  expect(all.recent.map((r) => r.outcome)).toEqual(["refused", "replayed"]);
  const seven = journalReport(reg, 7);
  expect(seven.open.map((j) => j.session)).toEqual([7]);
  expect(seven.recent.map((r) => r.outcome)).toEqual(["refused"]);
  expect(journalReport(reg, 9)).toMatchObject({ open: [], recent: [] });
  expect(showJournal(reg.open()).rows).toEqual([
    [7, "app", "shop", 1, 120, "", "yes", ""],
    [8, "app", "shop", 1, 120, "", "no", "called nextval()"],
  ]);
  expect(showRecoveries(reg.records).rows[0]).toEqual([7, "2024-01-01T00:00:02.000Z", "refused", "40001", "", "node1", "node2", 2, 1, 1, "", 12.5]);
  // A replay that met deadlocks says which, in order (as GET /journal's `conflicts`).
  reg.record({ ...record(9, "refused", "2024-01-01T00:00:03.000Z"), attempts: 3, conflicts: ["40P01", "40001"] });
  expect(showRecoveries(reg.records).rows[0]!.slice(8, 11)).toEqual([1, 3, "40P01,40001"]);
});

// ---- through a running proxy ----------------------------------------------------------------

const fx = usePgInstance({ databases: ["app"] });
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await fx.proxyWith({ toml: `[auth]\nmethod = "trust"\nadmin_users = ["postgres"]\n[transaction_replay]\nenabled = true\nmax_attempts = 3\nretain = 50\n` });
});

test("GET /journal: settings as configured, zero counts, nothing open or recent when idle", async () => {
  const r = await adminApi(proxy, "GET", "/journal");
  expect(r.status).toBe(200);
  expect(r.body).toEqual({
    settings: {
      max_journal_bytes: 1048576,
      max_attempts: 3,
      max_replay_secs: 30,
      volatile_functions: [...DEFAULT_VOLATILE_FUNCTIONS],
      journal_parameters: false,
      retain: 50,
      retry_conflicts: false,
    },
    counts: { replayed: 0, committed: 0, rolled_back: 0, migrated: 0, refused: 0, unknown: 0, closed: 0, retried: 0 },
    open: [],
    recent: [],
  });
});

test("GET /journal?session=: only that session's journals; a bad id is 400", async () => {
  const c = await pgClient(proxy.port, { database: "app" });
  try {
    await c.query("BEGIN");
    await c.query("SELECT 1");
    const pid = (c as unknown as { processID: number }).processID;
    const mine = await adminApi(proxy, "GET", `/journal?session=${pid}`);
    expect(mine.status).toBe(200);
    expect(Object.keys(mine.body)).toEqual(["settings", "counts", "open", "recent"]);
    expect((mine.body.open as JournalView[]).every((j) => j.session === pid)).toBe(true);
    const other = await adminApi(proxy, "GET", `/journal?session=${pid + 1_000_000}`);
    expect(other.body.open).toEqual([]);
    expect(other.body.recent).toEqual([]);
    await c.query("COMMIT");
  } finally {
    await c.end();
  }
  const badId = await adminApi(proxy, "GET", "/journal?session=abc");
  expect(badId.status).toBe(400);
  expect(badId.body.message).toBe('session: expected a session id, got "abc"');
});

test("SHOW JOURNAL and SHOW RECOVERIES in the admin console", async () => {
  const journal = await psql(proxy.port, ["-A", "-F", "|", "-c", "SHOW JOURNAL"], { db: "heliosproxy" });
  expect(journal.stderr).toBe("");
  expect(journal.code).toBe(0);
  expect(journal.stdout.split("\n")[0]).toBe("session|user|database|statements|bytes|xid|replayable|reason");
  const rec = await psql(proxy.port, ["-A", "-F", "|", "-c", "SHOW RECOVERIES"], { db: "heliosproxy" });
  expect(rec.code).toBe(0);
  expect(rec.stdout).toBe("session|at|outcome|sqlstate|reason|from|to|replayed|in_flight|attempts|conflicts|duration_ms\n(0 rows)\n");
});
