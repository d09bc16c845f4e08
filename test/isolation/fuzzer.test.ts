// Isolation fuzzer: victims and polluters share 2 server connections in transaction pooling; no state crosses, nothing breaks.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { pgClient } from "../support/clients.ts";
import { POLLUTIONS, PROBE_SQL, createFixtures, deallocateOthers, leaks, type Expected, type Probe } from "./probe.ts";

/** Run time in seconds: ISOLATION_FUZZ_SECONDS, default 30, bounded to [1, 600]. */
const SECONDS = Math.min(600, Math.max(1, Number(process.env.ISOLATION_FUZZ_SECONDS ?? "30") || 30));
const VICTIMS = 6;
const POLLUTERS = 4;
/** No single request may take longer than this (a hang is a broken statement, not a stuck test). */
const OP_LIMIT_MS = 15_000;

let proxy: RunningProxy;

beforeAll(async () => {
  await createFixtures();
  proxy = await startProxy({ mode: "transaction", maxConnections: 2 });
});

afterAll(async () => {
  await proxy?.stop();
});

function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${OP_LIMIT_MS} ms`)), OP_LIMIT_MS);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/** Ways to change state that need more than one simple Query: through protocol-level statements, by reading the proxy's names. */
const EXTRA: { name: string; run: (c: pg.Client) => Promise<unknown>; pins?: boolean }[] = [
  { name: "DEALLOCATE the proxy's names", run: (c) => deallocateOthers(c) },
  { name: "set_config with a parameter", run: (c) => c.query("SELECT set_config('app.tenant', $1, false)", ["11"]) },
  { name: "named set_config with a parameter", run: (c) => c.query({ name: "pol_sc", text: "SELECT set_config('app.tenant', $1, false)", values: ["12"] }) },
  { name: "named SET", run: (c) => c.query({ name: "pol_set", text: "SET search_path TO ext_polluted" }) },
  { name: "named DO", run: (c) => c.query({ name: "pol_do", text: "DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; PERFORM set_config('role', 'hp_iso_x', false); END$$" }) },
];

const ACTIONS = [
  ...POLLUTIONS.map((p) => ({ name: p.name, run: (c: pg.Client) => c.query(p.sql), pins: p.pins === true })),
  ...EXTRA.map((e) => ({ ...e, pins: e.pins === true })),
];

interface Tally {
  probes: number;
  statements: number;
  leaks: string[];
  broken: string[];
  actions: Map<string, number>;
}

async function victimLoop(i: number, deadline: number, t: Tally): Promise<void> {
  const want: Expected = { user: "postgres", searchPath: `v${i}_path, public`, statementTimeout: `${30 + i}s`, app: `victim${i}`, mine: `v${i}` };
  const shared = { name: "victim_shared", text: "SELECT $1::int + 1 AS n" };
  const own = { name: `victim_own_${i}`, text: `SELECT $1::int + ${100 + i} AS n` };
  const connect = async () => {
    const c = await pgClient(proxy.port, { application_name: want.app });
    await c.query(`SET hp_iso.victim = 'v${i}'; SET search_path = v${i}_path, public; SET statement_timeout = '${30 + i}s'`);
    return c;
  };
  let c = await connect();
  const probe = async (extended: boolean) => {
    const r = extended ? await c.query(`${PROBE_SQL} WHERE $1::int = 1`, [1]) : await c.query(PROBE_SQL);
    t.probes++;
    for (const l of leaks(r.rows[0] as Probe, want)) t.leaks.push(`victim ${i}: ${l}`);
  };
  const statements = async () => {
    const k = Math.floor(Math.random() * 1000);
    const a = (await c.query({ ...shared, values: [k] })).rows[0].n;
    const b = (await c.query({ ...own, values: [k] })).rows[0].n;
    t.statements += 2;
    if (a !== k + 1 || b !== k + 100 + i) t.broken.push(`victim ${i}: named statements answered ${a}, ${b} for ${k}`);
  };
  try {
    while (performance.now() < deadline) {
      const roll = Math.random();
      try {
        if (roll < 0.3) await bounded(probe(roll < 0.15), "probe");
        else if (roll < 0.6) await bounded(statements(), "named statements");
        else if (roll < 0.98) {
          await bounded(
            (async () => {
              await c.query("BEGIN");
              await statements();
              await probe(roll < 0.8);
              await c.query("COMMIT");
            })(),
            "transaction",
          );
        } else {
          await c.end();
          c = await connect();
        }
      } catch (e) {
        const err = e as { code?: string; message: string };
        t.broken.push(`victim ${i}: ${err.code ?? ""} ${err.message}`);
        await c.end().catch(() => {});
        c = await connect();
      }
    }
  } finally {
    await c.end().catch(() => {});
  }
}

async function polluterLoop(j: number, deadline: number, t: Tally): Promise<void> {
  let c = await pgClient(proxy.port, { application_name: `polluter${j}` });
  // Round robin from a different start per polluter: every way is tried, in changing company.
  let n = j * 7;
  try {
    while (performance.now() < deadline) {
      const a = ACTIONS[n++ % ACTIONS.length]!;
      const inTx = Math.random() < 0.3;
      try {
        await bounded(
          (async () => {
            if (inTx) await c.query("BEGIN");
            await a.run(c).catch(() => {});
            if (inTx) await c.query("COMMIT").catch(() => {});
          })(),
          a.name,
        );
        t.actions.set(a.name, (t.actions.get(a.name) ?? 0) + 1);
      } catch (e) {
        t.broken.push(`polluter ${j} (${a.name}): ${(e as Error).message}`);
      }
      // A pinned polluter leaves so the pool's 2 servers stay shared; others sometimes leave too.
      if (a.pins || Math.random() < 0.2) {
        await c.end().catch(() => {});
        c = await pgClient(proxy.port, { application_name: `polluter${j}` });
      }
    }
  } finally {
    await c.end().catch(() => {});
  }
}

test(
  `${VICTIMS} victims and ${POLLUTERS} polluters on 2 servers for ${SECONDS} s: no leaks, no broken statements`,
  async () => {
    const t: Tally = { probes: 0, statements: 0, leaks: [], broken: [], actions: new Map() };
    const deadline = performance.now() + SECONDS * 1000;
    await Promise.all([
      ...Array.from({ length: VICTIMS }, (_, i) => victimLoop(i, deadline, t)),
      ...Array.from({ length: POLLUTERS }, (_, j) => polluterLoop(j, deadline, t)),
    ]);
    const actions = [...t.actions.values()].reduce((a, b) => a + b, 0);
    console.log(`isolation fuzzer: ${SECONDS} s, ${t.probes} probes, ${t.statements} named statements, ${actions} polluting actions of ${t.actions.size} kinds, ${t.leaks.length} leaks, ${t.broken.length} broken`);
    expect(t.leaks.slice(0, 20)).toEqual([]);
    expect(t.broken.slice(0, 20)).toEqual([]);
    expect(t.probes).toBeGreaterThan(SECONDS * 5);
    // Every way to pollute was tried.
    if (actions >= ACTIONS.length) expect(ACTIONS.filter((a) => !t.actions.has(a.name)).map((a) => a.name)).toEqual([]);
  },
  SECONDS * 1000 + 60_000,
);
