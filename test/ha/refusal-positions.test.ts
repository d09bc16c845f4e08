// A replay refusal arriving on a Parse, a Bind, an Execute, a simple Query or a Sync alone leaves the client in a failed transaction: its COMMIT/END (simple or extended) is answered ROLLBACK, never COMMIT, and nothing is written.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type pg from "pg";
import { pgClient } from "../support/clients.ts";
import { FaultRelay } from "../support/fault-relay.ts";
import * as F from "../support/frames.ts";
import { PG_PORT, startProxy, type RunningProxy } from "../support/proxy.ts";
import { login, type RawConn } from "../support/wire.ts";

let relay: FaultRelay;
let proxy: RunningProxy;
let direct: pg.Client;
const table = `refusal_positions_${process.pid}`;

beforeAll(async () => {
  relay = await FaultRelay.start(PG_PORT);
  proxy = await startProxy({ mode: "transaction", nodes: [{ host: "127.0.0.1", port: relay.port }], toml: "[transaction_replay]\nenabled = true\n" });
  direct = await pgClient(PG_PORT);
  await direct.query(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (v text, at timestamptz)`);
}, 30000);

afterAll(async () => {
  await direct?.query(`DROP TABLE IF EXISTS ${table}`);
  await direct?.end();
  await proxy?.stop();
  await relay?.close();
}, 30000);

const types = (msgs: Buffer[]) => msgs.map((m) => String.fromCharCode(m[0]!)).join("");
const has = (msgs: Buffer[], type: string, text: string) => msgs.some((m) => m[0] === type.charCodeAt(0) && m.toString("utf8").includes(text));

/** The request in flight when the server connection is cut, and how the relay knows its write. */
interface Position {
  name: string;
  /** Sent (and answered) after the INSERT, before the cut. */
  prepare?: Uint8Array;
  request: Uint8Array;
  when: (msgs: Buffer[]) => boolean;
}

const POSITIONS: Position[] = [
  // pgbench -M prepared: the first END is parsed on its own, its Bind/Execute follow.
  { name: "Parse", request: F.concat(F.parse("s_end", "END"), F.sync()), when: (m) => has(m, "P", "END") },
  { name: "Bind", prepare: F.concat(F.parse("s_end", "END"), F.sync()), request: F.concat(F.bind("", "s_end"), F.sync()), when: (m) => has(m, "B", "s_end") || (types(m).includes("B") && !types(m).includes("P") && !types(m).includes("E")) },
  { name: "Execute", request: F.concat(F.parse("", `INSERT INTO ${table} VALUES ('y', now())`), F.bind("", ""), F.execute(), F.sync()), when: (m) => has(m, "P", "'y'") },
  { name: "Query", request: F.query(`INSERT INTO ${table} VALUES ('y', now())`), when: (m) => has(m, "Q", "'y'") },
  { name: "Sync alone", request: F.sync(), when: (m) => types(m) === "S" },
];

const FINISH = {
  simple: () => F.query("END"),
  extended: () => F.concat(F.parse("", "COMMIT"), F.bind("", ""), F.execute(), F.sync()),
};

async function rowsFor(tag: string): Promise<number> {
  const r = await direct.query(`SELECT count(*)::int AS n FROM ${table} WHERE v IN ($1, 'y')`, [tag]);
  return (r.rows[0] as { n: number }).n;
}

/** Each message's type, ReadyForQuery with its status, CommandComplete with its tag, errors with their SQLSTATE. */
function brief(msgs: F.BackendMessage[]): string[] {
  return msgs.filter((m) => "ZCE".includes(m.type)).map((m) => (m.type === "Z" ? `Z${F.readyStatus(m)}` : m.type === "C" ? `C:${F.commandTag(m)}` : `E:${F.errors([m])[0]!.code}`));
}

async function scenario(p: Position, finish: keyof typeof FINISH): Promise<void> {
  const tag = `${p.name}-${finish}`;
  const { conn } = await login(proxy.port);
  const c: RawConn = conn;
  try {
    expect(brief(await c.query("BEGIN"))).toEqual(["C:BEGIN", "ZT"]);
    // now(): the transaction cannot be replayed, so the cut is answered with a refusal.
    expect(brief(await c.query(`INSERT INTO ${table} VALUES ('${tag}', now())`))).toEqual(["C:INSERT 0 1", "ZT"]);
    if (p.prepare) expect(brief(await c.roundTrip(p.prepare)).at(-1)).toBe("ZT");
    const fired = relay.fired.length;
    relay.armOnce("cut-at-chunk", { when: p.when });
    const refused = brief(await c.roundTrip(p.request, 1, 15000));
    expect(relay.fired.length).toBe(fired + 1);
    // The refusal fails the transaction, as an error inside one does on PostgreSQL.
    expect(refused.at(-1)).toBe("ZE");
    expect(refused.some((r) => r.startsWith("E:"))).toBe(true);
    const ended = brief(await c.roundTrip(FINISH[finish](), 1, 15000));
    expect(ended).not.toContain("C:COMMIT");
    expect(ended.includes("C:ROLLBACK") || ended.some((r) => r.startsWith("E:"))).toBe(true);
    // A failed transaction's extended COMMIT may meet an error first; the client's ROLLBACK ends it.
    if (ended.at(-1) !== "ZI") expect(brief(await c.query("ROLLBACK"))).toEqual(["C:ROLLBACK", "ZI"]);
    expect(await rowsFor(tag)).toBe(0);
    // The connection goes on.
    expect(brief(await c.query("SELECT 1"))).toEqual(["C:SELECT 1", "ZI"]);
  } finally {
    c.quit();
  }
}

for (const p of POSITIONS) {
  test(`refusal on ${p.name}: the transaction stays failed, END and extended COMMIT answer ROLLBACK, nothing written`, async () => {
    await scenario(p, "simple");
    await scenario(p, "extended");
  }, 60000);
}
