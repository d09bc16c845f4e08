// Commit-outcome resolution (HA "Did my COMMIT land?", RELIABILITY B12): server connections cut around COMMIT and writes by a fault relay.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type pg from "pg";
import { pgClient, rejection } from "../support/clients.ts";
import { FaultRelay } from "../support/fault-relay.ts";
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
  for (const t of tables) await direct.query(`DROP TABLE IF EXISTS ${t}`);
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
async function client(): Promise<pg.Client & { processID: number; asyncErrors: Error[] }> {
  return (await pgClient(proxy.port, { connectionTimeoutMillis: 15000 })) as pg.Client & { processID: number; asyncErrors: Error[] };
}

/** The connection still answers, and a new transaction on it commits. */
async function stillUsable(c: pg.Client, table: string): Promise<void> {
  expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  await c.query("BEGIN");
  await c.query(`INSERT INTO ${table} VALUES ('after')`);
  expect((await c.query("COMMIT")).command).toBe("COMMIT");
  expect(await rows(table, "after")).toBe(1);
}

test("cut after COMMIT reached the server: the COMMIT succeeds once, resolved as committed", async () => {
  const t = await freshTable("after_commit");
  const c = await client();
  try {
    await c.query("BEGIN");
    await c.query(`INSERT INTO ${t} VALUES ('x')`);
    relay.armOnce("cut-after-commit");
    const r = await c.query("COMMIT");
    expect(r.command).toBe("COMMIT");
    expect(relay.fired.at(-1)).toBe("cut-after-commit");
    expect(await rows(t, "x")).toBe(1);
    const rec = await recoveryOf(c.processID);
    expect(rec.outcome).toBe("committed");
    expect(rec.sqlstate).toBe("");
    expect(rec.xid).toMatch(/^[1-9]\d*$/);
    await stillUsable(c, t);
    expect(await rows(t, "x")).toBe(1);
    expect(c.asyncErrors).toEqual([]);
  } finally {
    await c.end();
  }
}, 30000);

test("cut before COMMIT reached the server: the transaction is replayed and commits once", async () => {
  const t = await freshTable("before_commit");
  const c = await client();
  try {
    await c.query("BEGIN");
    await c.query(`INSERT INTO ${t} VALUES ('x')`);
    relay.armOnce("cut-before-commit");
    const r = await c.query("COMMIT");
    expect(r.command).toBe("COMMIT");
    expect(relay.fired.at(-1)).toBe("cut-before-commit");
    expect(await rows(t, "x")).toBe(1);
    const rec = await recoveryOf(c.processID);
    expect(rec.outcome).toBe("replayed");
    expect(rec.sqlstate).toBe("");
    await stillUsable(c, t);
    expect(await rows(t, "x")).toBe(1);
    expect(c.asyncErrors).toEqual([]);
  } finally {
    await c.end();
  }
}, 30000);

test("cut before COMMIT while the old backend lives on: it is ended, the transaction replayed and committed once", async () => {
  const t = await freshTable("lingering");
  const c = await client();
  try {
    await c.query("BEGIN");
    await c.query(`INSERT INTO ${t} VALUES ('x')`);
    relay.armOnce("cut-before-commit", { backendLingers: true });
    const started = performance.now();
    const r = await c.query("COMMIT");
    expect(r.command).toBe("COMMIT");
    // Settled by ending the old backend, not by waiting for it to notice the broken link.
    expect(performance.now() - started).toBeLessThan(2500);
    expect(await rows(t, "x")).toBe(1);
    const rec = await recoveryOf(c.processID);
    expect(rec.outcome).toBe("replayed");
    await stillUsable(c, t);
    expect(await rows(t, "x")).toBe(1);
    expect(c.asyncErrors).toEqual([]);
  } finally {
    await c.end();
  }
}, 30000);

test("COMMIT and its xid read lost together: 08007, nothing committed, the connection goes on", async () => {
  const t = await freshTable("commit_chunk");
  const c = await client();
  try {
    await c.query("BEGIN");
    await c.query(`INSERT INTO ${t} VALUES ('x')`);
    relay.armOnce("cut-at-commit-chunk");
    const err = await rejection(c.query("COMMIT"));
    expect(err.code).toBe("08007");
    expect(relay.fired.at(-1)).toBe("cut-at-commit-chunk");
    expect(await rows(t, "x")).toBe(0);
    const rec = await recoveryOf(c.processID);
    expect(rec.outcome).toBe("unknown");
    expect(rec.sqlstate).toBe("08007");
    await stillUsable(c, t);
    expect(await rows(t, "x")).toBe(0);
    expect(c.asyncErrors).toEqual([]);
  } finally {
    await c.end();
  }
}, 30000);

test("autocommit INSERT cut after it committed: 08007 (unknown), the row is there once, no retry", async () => {
  const t = await freshTable("autocommit");
  const c = await client();
  try {
    relay.armOnce("cut-after-write");
    const err = await rejection(c.query(`INSERT INTO ${t} VALUES ('x')`));
    expect(err.code).toBe("08007");
    expect(relay.fired.at(-1)).toBe("cut-after-write");
    expect(await rows(t, "x")).toBe(1);
    const rec = await recoveryOf(c.processID);
    expect(rec.outcome).toBe("unknown");
    expect(rec.sqlstate).toBe("08007");
    await stillUsable(c, t);
    expect(await rows(t, "x")).toBe(1);
    expect(c.asyncErrors).toEqual([]);
  } finally {
    await c.end();
  }
}, 30000);

test("INSERT inside an open transaction cut: replayed silently, COMMIT leaves the row once", async () => {
  const t = await freshTable("open_tx");
  const c = await client();
  try {
    await c.query("BEGIN");
    relay.armOnce("cut-after-write");
    const ins = await c.query(`INSERT INTO ${t} VALUES ('x')`);
    expect(ins.command).toBe("INSERT");
    expect(ins.rowCount).toBe(1);
    expect(relay.fired.at(-1)).toBe("cut-after-write");
    expect((await c.query("COMMIT")).command).toBe("COMMIT");
    expect(await rows(t, "x")).toBe(1);
    const rec = await recoveryOf(c.processID);
    expect(rec.outcome).toBe("replayed");
    expect(rec.sqlstate).toBe("");
    await stillUsable(c, t);
    expect(await rows(t, "x")).toBe(1);
    expect(c.asyncErrors).toEqual([]);
  } finally {
    await c.end();
  }
}, 30000);
