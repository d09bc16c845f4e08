// pgbench through transaction pooling: every query mode, reconnect-per-transaction, zero failures and the tpcb invariant.
// Runs are counted (-t per client), not timed: every transaction asked for must be processed, and a quiet machine finishes sooner.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { PG_PORT, pgClient, pgbench, run, tpcbBalances } from "../support/clients.ts";

const DB = "helios_clients_bench";
const T = 60_000;

const invariant = () => tpcbBalances(PG_PORT, DB);

describe("pgbench through transaction pooling", () => {
  let proxy: RunningProxy;

  beforeAll(async () => {
    const c = await pgClient(PG_PORT);
    const exists = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [DB]);
    if (exists.rowCount === 0) await c.query(`CREATE DATABASE ${DB}`);
    await c.end();
    const init = await run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", String(PG_PORT), "-U", "postgres", DB]);
    expect(init.code).toBe(0);
    proxy = await startProxy({ mode: "transaction", maxConnections: 4 });
  }, T);

  afterAll(async () => {
    await proxy?.stop();
  });

  for (const m of ["simple", "extended", "prepared"]) {
    test(`select-only, -M ${m}, 8 clients on 4 servers: no failed transactions`, async () => {
      const r = await pgbench(proxy.port, DB, ["-M", m, "-c", "8", "-j", "2", "-t", "500", "-S", "-n"]);
      expect(r.code).toBe(0);
      expect(r.failed).toBe(0);
      expect(r.processed).toBe(8 * 500);
      expect(r.output).toContain(`query mode: ${m}`);
    }, T);
  }

  test("tpcb-like, -M prepared: no failed transactions and balances stay consistent", async () => {
    const before = await invariant();
    // One thread per client: pgbench prepares with a blocking PQprepare, which would stall a
    // thread's other clients (holding servers mid-transaction) while it waits for a server.
    const r = await pgbench(proxy.port, DB, ["-M", "prepared", "-c", "8", "-j", "8", "-t", "100", "-n"]);
    expect(r.code).toBe(0);
    expect(r.failed).toBe(0);
    expect(r.processed).toBe(8 * 100);
    const after = await invariant();
    // Every processed transaction left exactly one history row.
    expect(after.n - before.n).toBe(r.processed);
    expect(after.a).toBe(after.h);
    expect(after.t).toBe(after.h);
    expect(after.b).toBe(after.h);
  }, T);

  test("reconnect per transaction (-C), tpcb-like -M extended: no failures, invariant holds", async () => {
    const before = await invariant();
    const r = await pgbench(proxy.port, DB, ["-C", "-M", "extended", "-c", "8", "-j", "2", "-t", "60", "-n"]);
    expect(r.code).toBe(0);
    expect(r.failed).toBe(0);
    expect(r.processed).toBe(8 * 60);
    const after = await invariant();
    expect(after.n - before.n).toBe(r.processed);
    expect(after.a).toBe(after.h);
    expect(after.t).toBe(after.h);
    expect(after.b).toBe(after.h);
  }, T);

  test("reconnect per transaction (-C), select-only -M prepared: no failures", async () => {
    const r = await pgbench(proxy.port, DB, ["-C", "-M", "prepared", "-c", "8", "-j", "2", "-t", "150", "-S", "-n"]);
    expect(r.code).toBe(0);
    expect(r.failed).toBe(0);
    expect(r.processed).toBe(8 * 150);
  }, T);
});
