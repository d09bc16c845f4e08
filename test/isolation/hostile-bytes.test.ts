// Hostile bytes side by side with PostgreSQL: startup and message length limits, repeated SSLRequest, memory bounded.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as F from "../support/frames.ts";
import * as W from "../support/wire.ts";
import { rssKb } from "../support/pg-instance.ts";
import { PG_PORT, startProxy, type RunningProxy } from "../support/proxy.ts";

const USER = { user: "postgres", database: "test" };
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy({ mode: "transaction", maxConnections: 4 });
});

afterAll(async () => {
  W.RawConn.destroyAll();
  await proxy.stop();
});

/** A 3.0 startup packet of exactly `size` bytes, padded through a long application_name. */
function startupOfSize(size: number): Uint8Array {
  const pad = size - F.startup({ ...USER, application_name: "" }).length;
  return F.startup({ ...USER, application_name: "x".repeat(pad) });
}

/** Send `data` to `port` and collect the reply until close (or 2 s). */
const send = (port: number, data: Uint8Array) => W.exchange(port, data, { timeoutMs: 2000, until: (m) => m.some((x) => x.type === "Z") });

describe("startup packet length, as PostgreSQL (10,000 + 4)", () => {
  test("10,004 bytes: both log in", async () => {
    const packet = startupOfSize(10004);
    expect(packet.length).toBe(10004);
    for (const port of [PG_PORT, proxy.port]) {
      const r = await send(port, packet);
      expect(r.messages.at(-1)?.type).toBe("Z");
      expect(F.errors(r.messages)).toEqual([]);
    }
  });

  test("10,005 bytes: PostgreSQL refuses the packet; the proxy says 08P01 and closes before any session", async () => {
    const packet = startupOfSize(10005);
    const direct = await send(PG_PORT, packet);
    expect(direct.closed).toBe(true);
    expect(direct.messages.some((m) => m.type === "Z")).toBe(false);
    const viaProxy = await send(proxy.port, packet);
    expect(viaProxy.closed).toBe(true);
    expect(F.types(viaProxy.messages)).toBe("E");
    const e = F.errorFields(viaProxy.messages[0]!.body);
    expect([e.severity, e.code, e.message]).toEqual(["FATAL", "08P01", "invalid length of startup packet"]);
  });
});

describe("second SSLRequest after 'N'", () => {
  test("FATAL 0A000 from both", async () => {
    const codes: string[] = [];
    for (const port of [PG_PORT, proxy.port]) {
      const c = await W.RawConn.open(port);
      await c.sendSslRequest();
      expect(await c.sslAnswer()).toBe("N");
      await c.sendSslRequest();
      expect(await c.sslAnswer()).toBe("E");
      const e = F.errorFields((await c.next())!.body);
      expect(e.severity).toBe("FATAL");
      expect(e.message).toContain("unsupported frontend protocol 1234.5679");
      codes.push(e.code);
      expect(await c.waitClosed(2000)).toBe(true);
    }
    expect(codes).toEqual(["0A000", "0A000"]);
  });
});

describe("declared message length over the limit after login", () => {
  test("Q of length 0x7FFFFFFF then 48 MiB streamed: 08P01 and closed at once, RSS within +50 MB", async () => {
    const pid = proxy.proc.pid;
    // Warm the paths the check itself uses, then take the baseline.
    await W.queryOnce(proxy.port, "select 1");
    const before = rssKb(pid);
    const { conn } = await W.login(proxy.port, USER);
    await conn.send(F.concat([0x51], F.int32(0x7fffffff), new Uint8Array(1024)));
    const chunk = new Uint8Array(1 << 20).fill(0x61);
    const t0 = performance.now();
    for (let i = 0; i < 48 && !conn.closed; i++) await conn.send(chunk);
    expect(await conn.waitClosed(2000)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2000);
    const got = conn.take();
    expect(F.types(got)).toBe("E");
    const e = F.errorFields(got[0]!.body);
    expect([e.severity, e.code]).toEqual(["FATAL", "08P01"]);
    expect(e.message).toContain("limits.max_message_bytes");
    expect(rssKb(pid) - before).toBeLessThan(50 * 1024);
    // The proxy still serves others.
    expect(F.firstColumn(await W.queryOnce(proxy.port, "select 42"))).toEqual(["42"]);
  });

  test("a configured lower cap refuses a Query over it and passes one under it", async () => {
    await using small = await startProxy({ toml: "[limits]\nmax_message_bytes = 65536" });
    const { conn } = await W.login(small.port, USER);
    const under = `select length('${"y".repeat(60000)}')`;
    expect(F.firstColumn(await conn.query(under))).toEqual(["60000"]);
    await conn.send(F.query(`select '${"z".repeat(70000)}'`));
    expect(await conn.waitClosed(2000)).toBe(true);
    const e = F.errors(conn.take());
    expect(e.map((x) => [x.severity, x.code])).toEqual([["FATAL", "08P01"]]);
  });
});

describe("startup parameters PostgreSQL refuses", () => {
  /** Login outcome and error of `params` on `port`: "ok" or "<SQLSTATE> <message>". */
  async function outcome(port: number, params: Record<string, string>): Promise<string> {
    const { conn, login } = await W.tryLogin(port, { ...USER, ...params });
    conn.destroy();
    return login.ok ? "ok" : `${login.error?.code} ${login.error?.message}`;
  }

  for (const [name, params] of [
    ["an unknown parameter", { zz: "v" }],
    ["an unknown setting in options", { options: "-c zz_nope=1" }],
    ["an unknown --setting in options", { options: "--zz-nope=1" }],
  ] as const) {
    test(`${name}: FATAL 42704 from both, same message`, async () => {
      const direct = await outcome(PG_PORT, params);
      expect(direct).toStartWith("42704 unrecognized configuration parameter");
      expect(await outcome(proxy.port, params)).toBe(direct);
    });
  }

  for (const [name, params] of [
    ["a custom prefix.name setting", { "helios.tenant": "7" }],
    ["an uncommon real setting", { enable_hashjoin: "off", options: "-c geqo_threshold=13" }],
  ] as const) {
    test(`${name}: both log in`, async () => {
      expect(await outcome(PG_PORT, params)).toBe("ok");
      expect(await outcome(proxy.port, params)).toBe("ok");
    });
  }

  test("replication=database: refused with 42501 naming replication (the proxy relays no replication protocol)", async () => {
    const r = await outcome(proxy.port, { replication: "database" });
    expect(r).toStartWith("42501 replication connections are not supported");
    expect(await outcome(proxy.port, { replication: "false" })).toBe("ok");
    expect(await outcome(proxy.port, { replication: "maybe" })).toBe('22023 invalid value for parameter "replication": "maybe"');
  });
});
