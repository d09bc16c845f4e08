// Byte-stream splitting, large messages and pipelines through the proxy: RELIABILITY A15–A17.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import * as F from "../support/frames.ts";
import * as W from "../support/wire.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";

const USER = { user: "postgres", database: "test" };
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy({ mode: "transaction", maxConnections: 4 });
});

afterAll(async () => {
  W.RawConn.destroyAll();
  await proxy.stop();
});

/** Replies as comparable text: type letter and body bytes in hex. */
function dump(msgs: F.BackendMessage[]): string[] {
  return msgs.map((m) => `${m.type}:${Buffer.from(m.body).toString("hex")}`);
}

const count = (msgs: F.BackendMessage[], type: string) => msgs.filter((m) => m.type === type).length;

/** Log in, send `script` as told, and read through `readies` ReadyForQuery messages. */
async function run(script: Uint8Array, readies: number, o: W.SendOptions = {}): Promise<F.BackendMessage[]> {
  const { conn } = await W.login(proxy.port, USER);
  await conn.send(script, o);
  const r = await conn.untilReady(readies, 15000);
  conn.quit();
  return r;
}

/** 100 messages: 20 extended round trips (P/B/E/S) and 20 simple queries, interleaved. */
function script100(): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 20; i++) {
    parts.push(F.parse("", "select $1::int * 2 as doubled"), F.bind("", "", [String(i)]), F.execute(), F.sync());
    parts.push(F.query(i % 5 === 4 ? `select 1/0 -- ${i}` : `select ${i} as n, repeat('x', ${i * 7})`));
  }
  return F.concat(...parts);
}

/** A deterministic split of `n` bytes into pieces of 1..max bytes. */
function cuts(n: number, max: number, seed: number): number[] {
  const out: number[] = [];
  let s = seed;
  for (let p = 0; ; ) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    p += 1 + ((s >>> 16) % max);
    if (p >= n) return out;
    out.push(p);
  }
}

describe("A15 the same bytes however they are split", () => {
  test("100 messages in one segment and in random pieces give identical replies", async () => {
    const script = script100();
    const whole = await run(script, 40);
    expect(count(whole, "Z")).toBe(40);
    expect(count(whole, "E")).toBe(4);
    expect(F.firstColumn(whole.filter((m) => m.type === "D").slice(0, 2))).toEqual(["0", "0"]);
    for (const seed of [1, 2]) {
      const pieces = await run(script, 40, { splitAt: cuts(script.length, 64, seed), delayMs: 1 });
      expect(dump(pieces)).toEqual(dump(whole));
    }
  });

  test("a short extended-protocol script sent byte by byte gives identical replies", async () => {
    const script = F.concat(
      F.parse("s1", "select $1::text || '!' as shout"),
      F.bind("", "s1", ["hey"]),
      F.describe("P"),
      F.execute(),
      F.parse("", "select 1/0"),
      F.bind("", "", []),
      F.execute(),
      F.sync(),
      F.bind("", "s1", ["again"]),
      F.execute(),
      F.sync(),
      F.query("select 'end'"),
    );
    const whole = await run(script, 3);
    expect(F.types(whole)).toBe("12TDC1EZ2DCZTDCZ");
    const bytewise = await run(script, 3, { chunkSize: 1, delayMs: 1 });
    expect(dump(bytewise)).toEqual(dump(whole));
  });

  test("a query split in two at every byte boundary", async () => {
    const script = F.concat(F.query("select 'split' as w"), F.parse("", "select 2"), F.bind("", ""), F.execute(), F.sync());
    const { conn } = await W.login(proxy.port, USER);
    const expected = dump(await conn.roundTrip(script, 2));
    for (let k = 1; k < script.length; k++) {
      await conn.send(script, { splitAt: [k], delayMs: 2 });
      expect(dump(await conn.untilReady(2))).toEqual(expected);
    }
    conn.quit();
  });
});

describe("A16 large messages and long pipelines", () => {
  test("Bind with a 5 MB text parameter", async () => {
    const big = "abcdefghij".repeat(524288);
    const script = F.concat(F.parse("", "select length($1), md5($1)"), F.bind("", "", [big]), F.execute(), F.sync());
    const r = await run(script, 1);
    expect(F.types(r)).toBe("12DCZ");
    expect(F.dataRow(r[2]!)).toEqual([String(big.length), createHash("md5").update(big).digest("hex")]);
  });

  test("Parse and Query with 5 MB of SQL text", async () => {
    const lit = "y".repeat(5 * 1024 * 1024);
    const r = await run(F.concat(F.parse("", `select length('${lit}')`), F.bind("", ""), F.execute(), F.sync(), F.query(`select length('${lit}') + 1`)), 2);
    expect(F.types(r)).toBe("12DCZTDCZ");
    expect(F.firstColumn(r)).toEqual([String(lit.length), String(lit.length + 1)]);
  });

  test("an 8 MB result comes back whole", async () => {
    const r = await run(F.query("select repeat('z', 8000000)"), 1);
    expect(F.types(r)).toBe("TDCZ");
    expect(F.firstColumn(r)[0]!.length).toBe(8000000);
  });

  test("2000 named Parses in one write, then statements from both ends still run", async () => {
    const parses = Array.from({ length: 2000 }, (_, i) => F.parse(`s${i}`, `select ${i}::int + 1000000`));
    const { conn } = await W.login(proxy.port, USER);
    const r = await conn.roundTrip(F.concat(...parses, F.sync()), 1, 15000);
    expect(count(r, "1")).toBe(2000);
    expect(F.types(r.slice(2000))).toBe("Z");
    const use = await conn.roundTrip(
      F.concat(F.bind("", "s0"), F.execute(), F.bind("", "s1999"), F.execute(), F.bind("", "s777"), F.execute(), F.sync()),
    );
    expect(F.types(use)).toBe("2DC2DC2DCZ");
    expect(F.firstColumn(use)).toEqual(["1000000", "1001999", "1000777"]);
    conn.quit();
  });

  test("2000 unnamed Parse/Bind/Execute in one write, one Sync", async () => {
    const parts = Array.from({ length: 2000 }, (_, i) => F.concat(F.parse("", `select ${i}`), F.bind("", ""), F.execute()));
    const r = await run(F.concat(...parts, F.sync()), 1);
    expect(r.length).toBe(8001);
    expect(F.firstColumn(r)).toEqual(Array.from({ length: 2000 }, (_, i) => String(i)));
  });
});

describe("A17 an error inside an extended-protocol pipeline", () => {
  test("everything up to Sync is skipped, one ReadyForQuery, and the session stays in sync", async () => {
    const { conn } = await W.login(proxy.port, USER);
    const r = await conn.roundTrip(
      F.concat(
        F.extended("select 'before'"),
        F.parse("", "selec broken"),
        F.bind("", ""),
        F.execute(),
        F.extended("select 'skipped'"),
        F.sync(),
      ),
    );
    expect(F.types(r)).toBe("12DCEZ");
    expect(F.errors(r).map((e) => e.code)).toEqual(["42601"]);
    expect(F.readyStatus(r.at(-1)!)).toBe("I");
    for (let i = 0; i < 30; i++) {
      const ok = await conn.roundTrip(F.concat(F.extended("select $1::int", [String(i)]), F.sync()));
      expect(F.firstColumn(ok)).toEqual([String(i)]);
    }
    conn.quit();
  });

  test("three Syncs in one write: only the failing segment is skipped", async () => {
    const r = await run(
      F.concat(
        F.extended("select 1"),
        F.sync(),
        F.extended("select 1/0"),
        F.extended("select 'skipped'"),
        F.sync(),
        F.extended("select 3"),
        F.sync(),
      ),
      3,
    );
    expect(F.types(r)).toBe("12DCZ1EZ12DCZ");
    expect(F.errors(r).map((e) => e.code)).toEqual(["22012"]);
    expect(F.firstColumn(r)).toEqual(["1", "3"]);
  });

  test("an error inside an explicit transaction: ReadyForQuery 'E' until ROLLBACK", async () => {
    const { conn } = await W.login(proxy.port, USER);
    const r = await conn.roundTrip(F.concat(F.extended("begin"), F.extended("select 1/0"), F.extended("select 'skipped'"), F.sync()));
    expect(F.types(r)).toBe("12C1EZ");
    expect(F.readyStatus(r.at(-1)!)).toBe("E");
    const blocked = await conn.roundTrip(F.concat(F.extended("select 1"), F.sync()));
    expect(F.errors(blocked).map((e) => e.code)).toEqual(["25P02"]);
    expect(F.readyStatus(blocked.at(-1)!)).toBe("E");
    const back = await conn.roundTrip(F.query("rollback"));
    expect(F.readyStatus(back.at(-1)!)).toBe("I");
    expect(F.firstColumn(await conn.roundTrip(F.query("select 'clean'")))).toEqual(["clean"]);
    conn.quit();
  });
});
