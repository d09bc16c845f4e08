// Wire-level fidelity through the proxy: ReadyForQuery parity (E7, A21), pipelines (A17), COPY (E9, A18), LISTEN/NOTIFY (E11).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { PG_PORT, pgClient, pgjs, psqlRaw } from "../support/clients.ts";
import * as F from "../support/frames.ts";
import { login, parity, type LoggedIn, type Step } from "../support/wire.ts";

const T = 30_000;
const MODES = ["session", "transaction", "statement"] as const;
type Mode = (typeof MODES)[number];
const COPYIN = "clients_proto_copyin";
const UNIQ = "clients_proto_uniq";
const BULK = "clients_proto_bulk";

const proxies = {} as Record<Mode, RunningProxy>;
const endAll = (cs: pg.Client[]) => Promise.all(cs.map((c) => c.end().catch(() => {})));

beforeAll(async () => {
  const d = await pgClient(PG_PORT);
  await d.query(`DROP TABLE IF EXISTS ${COPYIN}, ${UNIQ}, ${BULK};
    CREATE TABLE ${COPYIN} (id int, txt text);
    CREATE TABLE ${UNIQ} (id int UNIQUE DEFERRABLE INITIALLY IMMEDIATE);
    CREATE TABLE ${BULK} (id int, txt text);`);
  await d.end();
  const started = await Promise.all(MODES.map((mode) => startProxy({ mode, maxConnections: 2 })));
  MODES.forEach((m, i) => (proxies[m] = started[i]!));
  // One login first, so every pool has met its server before the tests.
  for (const m of MODES) {
    const c = await pgClient(proxies[m].port);
    await c.query("SELECT 1");
    await c.end();
  }
});

afterAll(async () => {
  await Promise.all(MODES.map((m) => proxies[m]?.stop()));
  const d = await pgClient(PG_PORT);
  await d.query(`DROP TABLE IF EXISTS ${COPYIN}, ${UNIQ}, ${BULK}`);
  await d.end();
});

/** Parse + Bind + Execute of an unnamed statement with no parameters. */
const pbe = (sql: string) => [F.parse("", sql), F.bind("", ""), F.execute()];

describe("E7 / A21: ReadyForQuery status and replies match PostgreSQL (transaction mode)", () => {
  test("login burst: same message types and reported parameters as PostgreSQL", async () => {
    const viaProxy = await login(proxies.transaction.port);
    const direct = await login(PG_PORT);
    try {
      const shape = (l: LoggedIn) => F.summarize(l.messages).filter((t, i, all) => t !== "S" || all[i - 1] !== "S");
      expect(shape(viaProxy)).toEqual(["R", "S", "K", "Z:I"]);
      expect(shape(viaProxy)).toEqual(shape(direct));
      const names = (l: LoggedIn) =>
        l.messages
          .filter((m) => m.type === "S")
          .map((m) => new TextDecoder().decode(m.body.subarray(0, m.body.indexOf(0))))
          .sort();
      expect(names(viaProxy)).toEqual(names(direct));
    } finally {
      viaProxy.conn.quit();
      direct.conn.quit();
    }
  }, T);

  test("simple and extended protocol: transaction blocks, errors, savepoints, portals", async () => {
    const steps = (): Step[] => [
      { send: [F.query("BEGIN")] },
      { send: [F.query("SELECT 1")] },
      { send: [F.query("SELECT 1/0")] },
      { send: [F.query("SELECT 1")] },
      { send: [F.query("ROLLBACK")] },
      { send: [F.query("ROLLBACK")] },
      { send: [F.query("BEGIN; SELECT 2; COMMIT")] },
      { send: [F.query("BEGIN; SELECT 1/0; COMMIT")] },
      { send: [F.query("ROLLBACK")] },
      { send: [F.query("")] },
      { send: [F.query("SAVEPOINT x")] },
      { send: [F.query("BEGIN"), F.query("SAVEPOINT a"), F.query("SELECT 1/0"), F.query("ROLLBACK TO a"), F.query("SELECT 'ok'"), F.query("COMMIT")], ready: 6 },
      { send: [...pbe("BEGIN"), F.sync()] },
      { send: [...pbe("SELECT 1/0"), F.sync()] },
      { send: [...pbe("SELECT 1"), F.sync()] },
      { send: [F.query("COMMIT")] },
      { send: [...pbe("BEGIN"), ...pbe("SELECT 1"), F.sync()] },
      { send: [...pbe("COMMIT"), F.sync()] },
      { send: [...pbe("SELECT 1"), ...pbe("SELECT 1/0"), ...pbe("SELECT 3"), F.sync()] },
      { send: [F.parse("", "SELECT g FROM generate_series(1, 5) g"), F.bind("", ""), F.execute("", 2), F.execute("", 2), F.execute("", 2), F.sync()] },
      { send: [F.parse("", "SELECT $1::int4 AS a"), F.describe("S", ""), F.bind("", "", ["5"]), F.describe("P", ""), F.execute(), F.sync()] },
      { send: [...pbe("SELECT 'flushed'"), F.flush()], until: "C" },
      { send: [F.sync()] },
      { send: [F.query("SELECT 'end'")] },
    ];
    const { proxy, direct } = await parity(proxies.transaction.port, steps);
    expect(proxy).toEqual(direct);
    const statuses = proxy.map((s) => s.filter((m) => m.startsWith("Z:")).join(""));
    expect(statuses).toEqual([
      "Z:T", "Z:T", "Z:E", "Z:E", "Z:I", "Z:I", "Z:I", "Z:E", "Z:I", "Z:I", "Z:I",
      "Z:TZ:TZ:EZ:TZ:TZ:I",
      "Z:T", "Z:E", "Z:E", "Z:I", "Z:T", "Z:I", "Z:I", "Z:I", "Z:I", "", "Z:I", "Z:I",
    ]);
    expect(proxy[3]).toEqual(["E:25P02", "Z:E"]);
    expect(proxy[5]).toEqual(["N:25P01", "C:ROLLBACK", "Z:I"]);
    expect(proxy[15]).toEqual(["C:ROLLBACK", "Z:I"]);
    expect(proxy[19]).toEqual(["1", "2", 'D:["1"]', 'D:["2"]', "s", 'D:["3"]', 'D:["4"]', "s", 'D:["5"]', "C:SELECT 1", "Z:I"]);
  }, T);

  test("a server is never released while its client is in a transaction (T) or a failed one (E)", async () => {
    const port = proxies.transaction.port;
    const { conn: raw } = await login(port);
    const others = await Promise.all(Array.from({ length: 4 }, () => pgClient(port)));
    try {
      expect(F.summarize(await raw.query("BEGIN"))).toEqual(["C:BEGIN", "Z:T"]);
      const pid = F.summarize(await raw.query("SELECT pg_backend_pid()"))[1];
      await Promise.all(others.map(async (c: pg.Client) => {
        for (let i = 0; i < 10; i++) expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
      }));
      expect(F.summarize(await raw.query("SELECT pg_backend_pid()"))[1]).toBe(pid);
      expect(F.summarize(await raw.query("SELECT 1/0"))).toEqual(["E:22012", "Z:E"]);
      await Promise.all(others.map(async (c: pg.Client) => {
        for (let i = 0; i < 10; i++) expect((await c.query("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);
      }));
      expect(F.summarize(await raw.query("SELECT 1"))).toEqual(["E:25P02", "Z:E"]);
      expect(F.summarize(await raw.query("ROLLBACK"))).toEqual(["C:ROLLBACK", "Z:I"]);
      expect(F.summarize(await raw.query("SELECT 'after'"))).toEqual(["T", 'D:["after"]', "C:SELECT 1", "Z:I"]);
    } finally {
      raw.quit();
      await endAll(others);
    }
  }, T);
});

describe("A17: pipelines", () => {
  test("50 Parse/Bind/Execute/Sync in one write: results in order, one ReadyForQuery each", async () => {
    const steps = (): Step[] => [
      { send: Array.from({ length: 50 }, (_, i) => [...pbe(`SELECT ${i} * 2`), F.sync()]).flat(), ready: 50 },
      { send: [...Array.from({ length: 50 }, (_, i) => F.parse(`pipe_${i}`, `SELECT $1::int4 + ${i}`)), F.sync()] },
      { send: Array.from({ length: 50 }, (_, i) => [F.bind("", `pipe_${i}`, [String(i * 1000)]), F.execute(), F.sync()]).flat(), ready: 50 },
      { send: Array.from({ length: 1000 }, (_, i) => [F.bind("", `pipe_${i % 50}`, ["0"]), F.execute(), F.sync()]).flat(), ready: 1000 },
      { send: [F.query("SELECT 'in sync'")] },
    ];
    const { proxy, direct } = await parity(proxies.transaction.port, steps);
    expect(proxy).toEqual(direct);
    expect(proxy[0]!.filter((m) => m.startsWith("D:"))).toEqual(Array.from({ length: 50 }, (_, i) => `D:["${i * 2}"]`));
    expect(proxy[0]!.filter((m) => m === "Z:I").length).toBe(50);
    expect(proxy[2]!.filter((m) => m.startsWith("D:"))).toEqual(Array.from({ length: 50 }, (_, i) => `D:["${i * 1001}"]`));
    expect(proxy[3]!.filter((m) => m.startsWith("D:"))).toEqual(Array.from({ length: 1000 }, (_, i) => `D:["${i % 50}"]`));
    expect(proxy[4]).toEqual(["T", 'D:["in sync"]', "C:SELECT 1", "Z:I"]);
  }, T);

  test("an error mid-pipeline skips to Sync, one ReadyForQuery per Sync, the session stays in sync", async () => {
    for (const mode of MODES) {
      const steps = (): Step[] => [
        // 50 Syncs, the 25th request fails: only it is lost.
        { send: Array.from({ length: 50 }, (_, i) => [...pbe(i === 24 ? "SELECT 1/0" : `SELECT ${i}`), F.sync()]).flat(), ready: 50 },
        // One Sync around ten requests, the fifth fails: the rest up to Sync is skipped.
        { send: [...Array.from({ length: 10 }, (_, i) => pbe(i === 4 ? "SELECT 1/0" : `SELECT ${i}`)).flat(), F.sync()] },
        // A named statement whose Parse fails, then used in the same pipeline and the next one.
        { send: [F.parse("bad_stmt", "SELECT * FROM clients_proto_no_such_table"), F.bind("", "bad_stmt"), F.execute(), F.sync(), F.bind("", "bad_stmt"), F.execute(), F.sync()], ready: 2 },
        { send: [F.parse("bad_stmt", "SELECT 'now it exists'"), F.bind("", "bad_stmt"), F.execute(), F.sync()] },
        { send: [F.query("SELECT 'in sync'")] },
      ];
      const { proxy, direct } = await parity(proxies[mode].port, steps);
      expect(proxy).toEqual(direct);
      expect(proxy[0]!.filter((m) => m.startsWith("Z:"))).toEqual(Array(50).fill("Z:I"));
      expect(proxy[0]!.filter((m) => m.startsWith("E:"))).toEqual(["E:22012"]);
      expect(proxy[0]!.filter((m) => m.startsWith("D:")).length).toBe(49);
      expect(proxy[1]!.filter((m) => m.startsWith("D:"))).toEqual(['D:["0"]', 'D:["1"]', 'D:["2"]', 'D:["3"]']);
      expect(proxy[1]!.slice(-2)).toEqual(["E:22012", "Z:I"]);
      expect(proxy[2]).toEqual(["E:42P01", "Z:I", "E:26000", "Z:I"]);
      expect(proxy[3]).toEqual(["1", "2", 'D:["now it exists"]', "C:SELECT 1", "Z:I"]);
      expect(proxy[4]).toEqual(["T", 'D:["in sync"]', "C:SELECT 1", "Z:I"]);
    }
  }, T);

  test("postgres.js pipelining 300 queries on one connection with one failure: results in order", async () => {
    const sql = pgjs(proxies.transaction.port, { max: 1 });
    try {
      const settled = await Promise.allSettled(
        Array.from({ length: 300 }, (_, i) => (i === 150 ? sql`SELECT ${i}::int4 / 0 AS v` : sql`SELECT ${i}::int4 AS v, pg_backend_pid() AS pid`)),
      );
      settled.forEach((r, i) => {
        if (i === 150) {
          expect(r.status).toBe("rejected");
          expect((r as PromiseRejectedResult).reason.code).toBe("22012");
        } else {
          expect(r.status).toBe("fulfilled");
          expect((r as PromiseFulfilledResult<readonly { v?: unknown }[]>).value[0]!.v).toBe(i);
        }
      });
      const [after] = await sql`SELECT 'fine'::text AS v`;
      expect(after!.v).toBe("fine");
    } finally {
      await sql.end();
    }
  }, T);
});

/** Five clients at once on a pool of two servers: each gets a server in turn, promptly. */
async function fiveMoreClients(port: number): Promise<void> {
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 5 }, async (_, i) => {
      const c = await pgClient(port);
      try {
        return (await c.query("SELECT $1::int4 AS i", [i])).rows[0].i;
      } finally {
        await c.end();
      }
    }),
  );
  expect(results).toEqual([0, 1, 2, 3, 4]);
  expect(performance.now() - started).toBeLessThan(3000);
}

describe("E9: COPY", () => {
  const OUT_SQL =
    "SELECT g, md5(g::text), repeat(chr(233), g % 40), CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.5 END, E'tab\\there\\\\' FROM generate_series(1, 60000) g";

  test("COPY TO STDOUT through the proxy is byte-identical to direct (text, csv, binary; every mode)", async () => {
    const direct = await psqlRaw(PG_PORT, ["-c", `COPY (${OUT_SQL}) TO STDOUT`]);
    expect(direct.code).toBe(0);
    expect(direct.bytes.length).toBeGreaterThan(2_500_000);
    for (const mode of MODES) {
      const viaProxy = await psqlRaw(proxies[mode].port, ["-c", `COPY (${OUT_SQL}) TO STDOUT`]);
      expect(viaProxy.code).toBe(0);
      expect(viaProxy.bytes.length).toBe(direct.bytes.length);
      expect(Buffer.from(viaProxy.bytes).equals(Buffer.from(direct.bytes))).toBe(true);
    }
    for (const opts of ["(FORMAT csv, HEADER)", "(FORMAT binary)"]) {
      const d = await psqlRaw(PG_PORT, ["-c", `COPY (${OUT_SQL}) TO STDOUT WITH ${opts}`]);
      const p = await psqlRaw(proxies.transaction.port, ["-c", `COPY (${OUT_SQL}) TO STDOUT WITH ${opts}`]);
      expect(p.code).toBe(0);
      expect(p.bytes.length).toBe(d.bytes.length);
      expect(Buffer.from(p.bytes).equals(Buffer.from(d.bytes))).toBe(true);
    }
  }, T);

  test("COPY FROM STDIN of 100k rows arrives intact", async () => {
    const rows = Array.from({ length: 100_000 }, (_, i) => `${i + 1}\trow-${i + 1}-é☃`);
    const r = await psqlRaw(proxies.transaction.port, ["-v", "ON_ERROR_STOP=1", "-c", `COPY ${BULK} FROM STDIN`], { input: rows.join("\n") + "\n" });
    expect(r.code).toBe(0);
    const c = await pgClient(proxies.transaction.port);
    try {
      const got = (await c.query(`SELECT count(*)::int AS n, sum(id)::text AS s, md5(string_agg(txt, ',' ORDER BY id)) AS h FROM ${BULK}`)).rows[0];
      const expected = new Bun.CryptoHasher("md5").update(rows.map((l) => l.split("\t")[1]).join(",")).digest("hex");
      expect(got).toEqual({ n: 100_000, s: String((100_000 * 100_001) / 2), h: expected });
    } finally {
      await c.end();
    }
  }, T);

  for (const mode of MODES) {
    test(`A18 (${mode} mode): COPY FROM failing before and after CopyDone, same replies as PostgreSQL, server released cleanly`, async () => {
      const steps = (): Step[] => [
        // The client aborts before CopyDone.
        { send: [F.query(`COPY ${COPYIN} FROM STDIN`)], until: "G" },
        { send: [F.copyData("1\tone\n2\ttwo\n"), F.copyFail("client gave up")] },
        // The server rejects a row mid-stream; the client still sends the rest and CopyDone.
        { send: [F.query(`COPY ${COPYIN} FROM STDIN`)], until: "G" },
        { send: [F.copyData("3\tthree\nxx\tbad\n"), F.copyData("5\tfive\n"), F.copyDone()] },
        // The failure comes after CopyDone (deferred unique check at the end of the statement).
        { send: [F.query(`COPY ${UNIQ} FROM STDIN`)], until: "G" },
        { send: [F.copyData("1\n2\n"), F.copyData("1\n"), F.copyDone()] },
        // Extended protocol: error in the data, then CopyDone and Sync.
        { send: [F.parse("", `COPY ${COPYIN} FROM STDIN`), F.bind("", ""), F.execute()], until: "G" },
        { send: [F.copyData("7\tseven\n8\n"), F.copyDone(), F.sync()] },
        // Extended protocol: CopyFail, then Sync.
        { send: [F.parse("", `COPY ${COPYIN} FROM STDIN`), F.bind("", ""), F.execute()], until: "G" },
        { send: [F.copyData("8\teight\n"), F.copyFail("nope"), F.sync()] },
        // Nothing of the above was stored; a good COPY still works on the same connection.
        { send: [F.query(`SELECT count(*) FROM ${COPYIN} WHERE id < 100`)] },
        { send: [F.query(`SELECT count(*) FROM ${UNIQ}`)] },
        { send: [F.query(`COPY ${COPYIN} FROM STDIN`)], until: "G" },
        { send: [F.copyData("100\tok\n"), F.copyDone()] },
      ];
      const { proxy, direct } = await parity(proxies[mode].port, steps);
      expect(proxy).toEqual(direct);
      expect(proxy[1]).toEqual(["E:57014", "Z:I"]);
      expect(proxy[3]).toEqual(["E:22P02", "Z:I"]);
      expect(proxy[5]).toEqual(["E:23505", "Z:I"]);
      expect(proxy[7]).toEqual(["E:22P04", "Z:I"]);
      expect(proxy[9]).toEqual(["E:57014", "Z:I"]);
      expect(proxy[10]).toEqual(["T", 'D:["0"]', "C:SELECT 1", "Z:I"]);
      expect(proxy[11]).toEqual(["T", 'D:["0"]', "C:SELECT 1", "Z:I"]);
      expect(proxy[13]).toEqual(["C:COPY 1", "Z:I"]);
      await fiveMoreClients(proxies[mode].port);
    }, T);

    test(`A18 (${mode} mode): a client vanishing mid-COPY leaves no stuck server; 5 more clients get through`, async () => {
      const port = proxies[mode].port;
      for (const partial of [false, true]) {
        const { conn: raw } = await login(port);
        await raw.send(F.query(`COPY ${COPYIN} FROM STDIN`));
        expect((await raw.until("G")).map((m) => m.type)).toEqual(["G"]);
        const more = F.copyData("201\tnever\n");
        await raw.send(partial ? F.concat(F.copyData("200\tvanish\n"), more.subarray(0, 7)) : F.copyData("200\tvanish\n"));
        await Bun.sleep(20);
        raw.end();
      }
      const fresh = await pgClient(port);
      try {
        expect((await fresh.query(`SELECT count(*)::int AS n FROM ${COPYIN} WHERE id >= 200`)).rows).toEqual([{ n: 0 }]);
      } finally {
        await fresh.end();
      }
      await fiveMoreClients(port);
      // No backend is left inside the abandoned COPY.
      const d = await pgClient(PG_PORT);
      try {
        let stuck = -1;
        for (let i = 0; i < 30 && stuck !== 0; i++) {
          stuck = (await d.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'COPY ${COPYIN} FROM STDIN%' AND state <> 'idle'`)).rows[0].n;
          if (stuck !== 0) await Bun.sleep(100);
        }
        expect(stuck).toBe(0);
      } finally {
        await d.end();
      }
    }, T);
  }
});

describe("E11: LISTEN/NOTIFY", () => {
  async function collect(c: pg.Client): Promise<string[]> {
    const got: string[] = [];
    c.on("notification", (n: { channel: string; payload?: string }) => got.push(`${n.channel}:${n.payload}`));
    return got;
  }
  /** Wait until `n` notifications arrived (up to 2 s), then a little longer for any extra. */
  async function settle(got: string[], n: number) {
    for (let i = 0; i < 40 && got.length < n; i++) await Bun.sleep(50);
    await Bun.sleep(150);
  }
  /** Give a notification that must not come time to arrive anyway. */
  const quiet = () => Bun.sleep(300);

  for (const mode of ["session", "transaction"] as const) {
    test(`${mode} mode: notifications reach the listener, in order, and nobody else`, async () => {
      const port = proxies[mode].port;
      const [a, b] = [await pgClient(port), await pgClient(port)];
      const gotA = await collect(a);
      const gotB = await collect(b);
      try {
        await a.query("LISTEN fid_chan");
        // Transactions on other servers in between (transaction mode: B moves around, A stays).
        for (let i = 0; i < 3; i++) await b.query("SELECT 1");
        await b.query("NOTIFY fid_chan, 'one'");
        await b.query("SELECT pg_notify('fid_chan', 'two')");
        await b.query("BEGIN");
        await b.query("NOTIFY fid_chan, 'three'");
        await b.query("COMMIT");
        await b.query("BEGIN");
        await b.query("NOTIFY fid_chan, 'never'");
        await b.query("ROLLBACK");
        await a.query("SELECT 1"); // A may receive while idle or with its next reply
        await settle(gotA, 3);
        expect(gotA).toEqual(["fid_chan:one", "fid_chan:two", "fid_chan:three"]);
        expect(gotB).toEqual([]);
        await a.query("UNLISTEN fid_chan");
        await b.query("NOTIFY fid_chan, 'after unlisten'");
        await a.query("SELECT 1");
        await quiet();
        expect(gotA.length).toBe(3);
      } finally {
        await endAll([a, b]);
      }
    }, T);

    test(`${mode} mode: a listener's server, once reset for the next client, delivers nothing to it`, async () => {
      const port = proxies[mode].port;
      const a = await pgClient(port);
      await a.query("LISTEN fid_leftover");
      const pidA = (await a.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      await a.end();
      // Two clients hold both servers of the pool (session: for their session; transaction: inside
      // a transaction), so one of them has A's old server.
      const [c, d] = [await pgClient(port), await pgClient(port)];
      const gotC = await collect(c);
      const gotD = await collect(d);
      try {
        if (mode === "transaction") {
          await c.query("BEGIN");
          await d.query("BEGIN");
        }
        const pids = [(await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid, (await d.query("SELECT pg_backend_pid() AS pid")).rows[0].pid];
        expect(pids).toContain(pidA);
        await d.query("SELECT pg_notify('fid_leftover', 'stale')");
        if (mode === "transaction") await d.query("COMMIT");
        await c.query("SELECT 1");
        await d.query("SELECT 1");
        if (mode === "transaction") await c.query("COMMIT");
        await quiet();
        expect(gotC).toEqual([]);
        expect(gotD).toEqual([]);
        expect((await c.query("SELECT count(*)::int AS n FROM pg_listening_channels()")).rows[0].n).toBe(0);
        expect((await d.query("SELECT count(*)::int AS n FROM pg_listening_channels()")).rows[0].n).toBe(0);
      } finally {
        await endAll([c, d]);
      }
    }, T);
  }

  test("transaction mode: postgres.js listen() works through the proxy", async () => {
    const sql = pgjs(proxies.transaction.port, { max: 1 });
    const b = await pgClient(proxies.transaction.port);
    const got: string[] = [];
    try {
      await sql.listen("fid_pgjs", (payload) => got.push(payload));
      for (let i = 0; i < 3; i++) await b.query("SELECT pg_notify('fid_pgjs', $1)", [`p${i}`]);
      for (let i = 0; i < 40 && got.length < 3; i++) await Bun.sleep(50);
      expect(got).toEqual(["p0", "p1", "p2"]);
    } finally {
      await sql.end();
      await b.end();
    }
  }, T);
});

