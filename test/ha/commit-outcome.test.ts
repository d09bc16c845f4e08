// Commit-outcome resolution (HA "Did my COMMIT land?", RELIABILITY B12): server connections cut around COMMIT and writes by a fault relay.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type pg from "pg";
import { pgClient, rejection } from "../support/clients.ts";
import { FaultRelay, type FaultRule } from "../support/fault-relay.ts";
import { PG_PORT, startProxy, type RunningProxy } from "../support/proxy.ts";

interface Recovery {
  outcome: string;
  sqlstate: string;
  xid: string;
  reason: string;
}

let relay: FaultRelay;
let proxy: RunningProxy;
let direct: pg.Client;
const tables: string[] = [];

beforeAll(async () => {
  relay = await FaultRelay.start(PG_PORT);
  proxy = await startProxy({
    mode: "transaction",
    nodes: [{ host: "127.0.0.1", port: relay.port }],
    toml: "[transaction_replay]\nenabled = true\n",
  });
  direct = await pgClient(PG_PORT);
}, 30000);

afterAll(async () => {
  for (const t of tables) await direct.query(`DROP FUNCTION IF EXISTS ${t}_add(text); DROP TABLE IF EXISTS ${t}`);
  await direct?.end();
  await proxy?.stop();
  await relay?.close();
}, 30000);

/** A fresh table created directly on PostgreSQL. */
async function freshTable(tag: string): Promise<string> {
  const name = `commit_outcome_${tag}_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
  await direct.query(`CREATE TABLE ${name} (v text)`);
  tables.push(name);
  return name;
}

/** Rows with value `v`, counted directly on PostgreSQL. */
async function rows(table: string, v: string): Promise<number> {
  const r = await direct.query(`SELECT count(*)::int AS n FROM ${table} WHERE v = $1`, [v]);
  return (r.rows[0] as { n: number }).n;
}

/** The latest recovery of the proxy session `session` (GET /journal), waiting for it to be recorded. */
async function recoveryOf(session: number): Promise<Recovery> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${proxy.adminPort}/journal?session=${session}`);
    const body = (await res.json()) as { recent: Recovery[] };
    if (body.recent.length > 0) return body.recent[0]!;
    if (Date.now() > deadline) throw new Error(`no recovery recorded for session ${session}\n${proxy.output()}`);
    await Bun.sleep(20);
  }
}

/** A client of the proxy; its processID is the proxy's session id. */
type ProxyClient = pg.Client & { processID: number; asyncErrors: Error[] };

/** The connection still answers, and a new transaction on it commits. */
async function stillUsable(c: pg.Client, table: string): Promise<void> {
  expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  await c.query("BEGIN");
  await c.query(`INSERT INTO ${table} VALUES ('after')`);
  expect((await c.query("COMMIT")).command).toBe("COMMIT");
  expect(await rows(table, "after")).toBe(1);
}

/** What a cut leaves behind. */
interface Expected {
  /** Rows 'x' in the table after the cut, and still after a new transaction on the connection. */
  rows: number;
  outcome: "committed" | "replayed" | "unknown" | "rolled_back" | "refused";
  /** SQLSTATE of the recovery: "" when the client got its statement's reply. */
  sqlstate: string;
}

/**
 * A fresh table and proxy client; `run` sends the statements, calling `arm` where the relay is to
 * apply `rule` once. Then: the rule fired, the table holds `expected.rows` rows 'x', the recovery
 * recorded for the session matches, the connection goes on, and no error came outside a query.
 */
async function cut(
  tag: string,
  rule: FaultRule,
  expected: Expected,
  run: (c: ProxyClient, table: string, arm: (o?: { backendLingers?: boolean }) => void) => Promise<void>,
): Promise<Recovery> {
  const t = await freshTable(tag);
  const c = (await pgClient(proxy.port, { connectionTimeoutMillis: 15000 })) as ProxyClient;
  try {
    await run(c, t, (o) => relay.armOnce(rule, o));
    expect(relay.fired.at(-1)).toBe(rule);
    expect(await rows(t, "x")).toBe(expected.rows);
    const rec = await recoveryOf(c.processID);
    expect(rec.outcome).toBe(expected.outcome);
    expect(rec.sqlstate).toBe(expected.sqlstate);
    await stillUsable(c, t);
    expect(await rows(t, "x")).toBe(expected.rows);
    expect(c.asyncErrors).toEqual([]);
    return rec;
  } finally {
    await c.end();
  }
}

/** BEGIN and one INSERT of 'x'. */
async function beginInsert(c: pg.Client, table: string): Promise<void> {
  await c.query("BEGIN");
  await c.query(`INSERT INTO ${table} VALUES ('x')`);
}

test("cut after COMMIT reached the server: the COMMIT succeeds once, resolved as committed", async () => {
  const rec = await cut("after_commit", "cut-after-commit", { rows: 1, outcome: "committed", sqlstate: "" }, async (c, t, arm) => {
    await beginInsert(c, t);
    arm();
    expect((await c.query("COMMIT")).command).toBe("COMMIT");
  });
  expect(rec.xid).toMatch(/^[1-9]\d*$/);
}, 30000);

test("cut before COMMIT reached the server: the transaction is replayed and commits once", async () => {
  await cut("before_commit", "cut-before-commit", { rows: 1, outcome: "replayed", sqlstate: "" }, async (c, t, arm) => {
    await beginInsert(c, t);
    arm();
    expect((await c.query("COMMIT")).command).toBe("COMMIT");
  });
}, 30000);

test("cut before COMMIT while the old backend lives on: it is ended, the transaction replayed and committed once", async () => {
  await cut("lingering", "cut-before-commit", { rows: 1, outcome: "replayed", sqlstate: "" }, async (c, t, arm) => {
    await beginInsert(c, t);
    arm({ backendLingers: true });
    const started = performance.now();
    expect((await c.query("COMMIT")).command).toBe("COMMIT");
    // Settled by ending the old backend, not by waiting for it to notice the broken link.
    expect(performance.now() - started).toBeLessThan(2500);
  });
}, 30000);

test("COMMIT and its xid read lost together: 08007, nothing committed, the connection goes on", async () => {
  await cut("commit_chunk", "cut-at-commit-chunk", { rows: 0, outcome: "unknown", sqlstate: "08007" }, async (c, t, arm) => {
    // A write through a function called from a SELECT: the transaction id is only read just before the COMMIT.
    await direct.query(`CREATE FUNCTION ${t}_add(x text) RETURNS void LANGUAGE sql AS $$ INSERT INTO ${t} VALUES (x) $$`);
    await c.query("BEGIN");
    await c.query(`SELECT ${t}_add('x')`);
    arm();
    expect((await rejection(c.query("COMMIT"))).code).toBe("08007");
  });
}, 30000);

test("autocommit INSERT cut after it committed: 08007 (unknown), the row is there once, no retry", async () => {
  await cut("autocommit", "cut-after-write", { rows: 1, outcome: "unknown", sqlstate: "08007" }, async (c, t, arm) => {
    arm();
    expect((await rejection(c.query(`INSERT INTO ${t} VALUES ('x')`))).code).toBe("08007");
  });
}, 30000);

test("INSERT inside an open transaction cut: replayed silently, COMMIT leaves the row once", async () => {
  await cut("open_tx", "cut-after-write", { rows: 1, outcome: "replayed", sqlstate: "" }, async (c, t, arm) => {
    await c.query("BEGIN");
    arm();
    const ins = await c.query(`INSERT INTO ${t} VALUES ('x')`);
    expect(ins.command).toBe("INSERT");
    expect(ins.rowCount).toBe(1);
    expect((await c.query("COMMIT")).command).toBe("COMMIT");
  });
}, 30000);

test("ROLLBACK cut before it reached the server: the client gets ROLLBACK, nothing is written", async () => {
  await cut("rollback", "cut-before-rollback", { rows: 0, outcome: "rolled_back", sqlstate: "" }, async (c, t, arm) => {
    await beginInsert(c, t);
    arm();
    expect((await c.query("ROLLBACK")).command).toBe("ROLLBACK");
  });
}, 30000);

test("ROLLBACK of a transaction already refused, cut too: the client still gets ROLLBACK", async () => {
  await cut("refused_rollback", "cut-before-rollback", { rows: 0, outcome: "rolled_back", sqlstate: "" }, async (c, t, arm) => {
    await c.query("BEGIN");
    await c.query("SELECT now()");
    relay.armOnce("cut-after-write");
    // now() makes the transaction unsafe to run again: the cut INSERT is refused.
    const refused = await rejection(c.query(`INSERT INTO ${t} VALUES ('x')`));
    expect(refused.code).toBe("40001");
    expect(refused.message).toContain("now");
    arm();
    expect((await c.query("ROLLBACK")).command).toBe("ROLLBACK");
  });
}, 30000);

test("the refusal itself cut on its way: the client still gets the 40001, its transaction failed, ROLLBACK goes on", async () => {
  await cut("refusal_cut", "cut-before-refusal", { rows: 0, outcome: "refused", sqlstate: "40001" }, async (c, t, arm) => {
    await c.query("BEGIN");
    await c.query("SELECT now()");
    relay.armOnce("cut-after-write");
    relay.thenArm("cut-before-refusal");
    const refused = await rejection(c.query(`INSERT INTO ${t} VALUES ('x')`));
    expect(refused.code).toBe("40001");
    expect(refused.message).toContain("now");
    expect(relay.fired.slice(-2)).toEqual(["cut-after-write", "cut-before-refusal"]);
    expect((await rejection(c.query("SELECT 1"))).code).toBe("25P02");
    expect((await c.query("ROLLBACK")).command).toBe("ROLLBACK");
    void arm;
  });
}, 30000);
