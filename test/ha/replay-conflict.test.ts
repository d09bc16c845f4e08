// A transaction open when the primary is killed, whose replay on the new primary meets a deadlock or serialization failure: rolled back and run again from its start (max_attempts), else the client gets the conflict's SQLSTATE.

import { beforeAll, afterAll, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { pgClient, rejection } from "../support/clients.ts";
import { adminApi, startClusterProxy, usePgCluster, type ClusterNode } from "../support/pg-cluster.ts";
import { waitFor } from "../support/pg-instance.ts";
import type { RunningProxy } from "../support/proxy.ts";

const DB = "app";
const cluster = usePgCluster({ databases: [DB] });
let proxy: RunningProxy;
const opened: pg.Client[] = [];

beforeAll(async () => {
  const c = cluster();
  await c.setup("CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL); INSERT INTO acct VALUES (1, 0), (2, 0); CREATE TABLE entries (note text NOT NULL)", DB);
  // The promotion holds the failover (requests still held) until the test has taken its locks on the new primary.
  const script = join(c.baseDir, "promote-and-hold.sh");
  writeFileSync(
    script,
    [
      `psql -X -q -h "$2" -p "$3" -U postgres -d postgres -Atc 'SELECT pg_promote()' >/dev/null || exit 1`,
      `touch "${c.baseDir}/promoted-$1"`,
      "i=0",
      `while [ ! -f "${c.baseDir}/go-$1" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done`,
      "",
    ].join("\n"),
  );
  proxy = await startClusterProxy(c, {
    split: false,
    health: { interval: 0.5, timeout: 1, failureThreshold: 2 },
    toml: [
      "[failover]",
      'policy = "auto"',
      `promote_command = "sh ${script} %n %h %p"`,
      "promote_timeout_secs = 60",
      "[transaction_replay]",
      "enabled = true",
      "max_attempts = 3",
      "max_replay_secs = 60",
    ].join("\n"),
  });
}, 60_000);

afterAll(async () => {
  for (const c of opened) await c.end().catch(() => {});
  await proxy?.stop();
});

/** waitFor, with the proxy's output when it times out. */
function until<T>(what: string, check: () => Promise<T> | T, limitMs = 20_000): Promise<T> {
  return waitFor(what, check, limitMs, 10).catch((e: Error) => {
    throw new Error(`${e.message}\n${proxy.output().slice(-3000)}`);
  });
}

/** A client straight to `node` (not through the proxy). */
async function direct(node: ClusterNode): Promise<pg.Client> {
  const c = await pgClient(node.port, { host: node.host, database: DB });
  opened.push(c);
  return c;
}

/** The proxy's primary now. */
const primaryName = async (): Promise<string> => (await adminApi(proxy, "GET", "/failovers")).body.primary;

/**
 * Kill -9 the primary; returns the standby promote_command promoted, held before writes are
 * released: `release` lets the failover finish (the replays start then).
 */
async function killPrimary(): Promise<{ node: ClusterNode; release: () => void }> {
  const c = cluster();
  const old = await primaryName();
  const standbys = c.nodes.filter((n) => n.name !== old && c.running(n));
  await c.kill9(old);
  const node = await until("a standby promoted", () => standbys.find((n) => existsSync(join(c.baseDir, `promoted-${n.name}`))) ?? null);
  return { node: node!, release: () => writeFileSync(join(c.baseDir, `go-${node!.name}`), "") };
}

/** Poll `sql` on `admin` until it returns a row (bounded). */
const rowOn = (admin: pg.Client, what: string, sql: string, params: unknown[] = []) => until(what, async () => (await admin.query(sql, params)).rows.length > 0);

/** A backend on the admin's server waits for a lock while running exactly `query` (pg_locks: the lock not granted). */
const waitingIn = (admin: pg.Client, query: string) =>
  rowOn(admin, `a backend waiting in ${query}`, "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted AND a.query = $1", [query]);

/** The backend `pid` waits for a lock. */
const pidWaiting = (admin: pg.Client, pid: number) => rowOn(admin, `backend ${pid} waiting for a lock`, "SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted", [pid]);

/** The latest recovery of proxy session `session` (GET /journal). */
async function recoveryOf(session: number): Promise<Record<string, unknown>> {
  const recent = await until(`a recovery recorded for session ${session}`, async () => (await adminApi(proxy, "GET", `/journal?session=${session}`)).body.recent[0] ?? null);
  return recent as Record<string, unknown>;
}

const sessionOf = (c: pg.Client) => (c as unknown as { processID: number }).processID;

const A1 = 4343001;
const GATE = 4343002;
const A2 = 4343003;
const lockSql = (key: number) => `SELECT pg_advisory_xact_lock(${key})`;

test("the replay deadlocks on the new primary: it is rolled back and run again from the start, the client's COMMIT succeeds, every row once, the record shows the retry", async () => {
  const x = await pgClient(proxy.port, { database: DB, query_timeout: 60_000 });
  opened.push(x);
  // The replay is the deadlock's victim: it is the last to wait and checks first.
  await x.query("SET deadlock_timeout = '100ms'");
  await x.query("BEGIN");
  await x.query("INSERT INTO entries VALUES ('x')");
  for (const key of [A1, GATE, A2]) await x.query(lockSql(key));
  expect((await x.query("UPDATE acct SET v = v + 1 WHERE id = 1")).rowCount).toBe(1);

  const { node, release } = await killPrimary();
  // Sent while the session recovers: it waits for the replay.
  const commit = x.query("COMMIT").then(
    (r) => r.command,
    (e: Error & { code?: string }) => e.code ?? e.message,
  );
  // On the new primary before the replay: the gate is shut and y holds A2.
  const admin = await direct(node);
  const holder = await direct(node);
  const y = await direct(node);
  await holder.query("SELECT pg_advisory_lock($1)", [GATE]);
  await y.query("SET deadlock_timeout = '10s'");
  await y.query("BEGIN");
  await y.query(lockSql(A2));
  const yPid = (await y.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
  release();

  // The replay holds A1 and waits at the gate; y then waits for A1; the gate opens and the replay waits for A2: deadlock.
  await waitingIn(admin, lockSql(GATE));
  const yGotA1 = y.query(lockSql(A1));
  await pidWaiting(admin, yPid);
  await holder.query("SELECT pg_advisory_unlock($1)", [GATE]);
  // The replay was the victim: its A1 went to y, and its run again waits for y.
  await yGotA1;
  await waitingIn(admin, lockSql(A1));
  await y.query("INSERT INTO entries VALUES ('y')");
  await y.query("COMMIT");

  expect(await commit).toBe("COMMIT");
  expect((await admin.query("SELECT note, count(*)::int AS n FROM entries GROUP BY note ORDER BY note")).rows).toEqual([
    { note: "x", n: 1 },
    { note: "y", n: 1 },
  ]);
  expect((await admin.query("SELECT v FROM acct WHERE id = 1")).rows[0].v).toBe(1);
  const rec = await recoveryOf(sessionOf(x));
  expect(rec).toMatchObject({ outcome: "replayed", sqlstate: "", to: node.name, attempts: 2, conflicts: ["40P01"] });
  const failovers = (await adminApi(proxy, "GET", "/failovers")).body;
  expect(failovers.primary).toBe(node.name);
  expect(failovers.failovers[0]).toMatchObject({ kind: "failover", to: node.name, result: "done" });
  // The session goes on.
  expect((await x.query("SELECT v FROM acct WHERE id = 1")).rows[0].v).toBe(1);
}, 90_000);

const GATE2 = 4343004;
const GATED = lockSql(GATE2);

test("the replay meets a serialization failure on every run: after max_attempts (3) runs the client gets 40001, nothing of the transaction is applied, the record says so", async () => {
  const c = cluster();
  const now = c.node(await primaryName());
  // Failed over once already: the standby left streams from the new primary before it is killed in turn.
  const before = await direct(now);
  await rowOn(before, "a standby streaming from the primary", "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'");

  const x = await pgClient(proxy.port, { database: DB, query_timeout: 60_000 });
  opened.push(x);
  await x.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
  await x.query(GATED);
  expect((await x.query("UPDATE acct SET v = v + 1 WHERE id = 2")).rowCount).toBe(1);

  const { node, release } = await killPrimary();
  const commit = rejection(x.query("COMMIT"));
  const admin = await direct(node);
  const holders = [await direct(node)];
  await holders[0]!.query("SELECT pg_advisory_lock($1)", [GATE2]);
  release();

  // Each run takes its snapshot at the gate; row 2 changes and commits meanwhile, so its UPDATE fails. The next run's
  // gate is a session queued behind this run: the lock goes to it when the run fails.
  const runs = 3;
  for (let i = 0; i < runs; i++) {
    await waitingIn(admin, GATED);
    if (i < runs - 1) {
      const next = await direct(node);
      holders.push(next);
      void next.query("SELECT pg_advisory_lock($1)", [GATE2]);
      await rowOn(admin, "the next gate queued", "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted HAVING count(*) = 2", [GATE2]);
    }
    await admin.query("UPDATE acct SET v = v + 100 WHERE id = 2");
    await holders[i]!.query("SELECT pg_advisory_unlock($1)", [GATE2]);
  }

  const e = await commit;
  expect(e.code).toBe("40001");
  expect(e.message).toContain("could not serialize access");
  await x.query("ROLLBACK");
  expect((await admin.query("SELECT v FROM acct WHERE id = 2")).rows[0].v).toBe(300);
  const rec = await recoveryOf(sessionOf(x));
  expect(rec).toMatchObject({ outcome: "refused", sqlstate: "40001", to: node.name, attempts: 3, conflicts: ["40001", "40001", "40001"] });
  expect((await x.query("SELECT v FROM acct WHERE id = 2")).rows[0].v).toBe(300);
}, 90_000);
