// Malformed and hostile client traffic against the running proxy: RELIABILITY A1–A6, A8–A10, A12–A14, A20.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import * as F from "../support/frames.ts";
import * as W from "../support/wire.ts";
import { PG_PORT, startProxy, type RunningProxy } from "../support/proxy.ts";

const USER = { user: "postgres", database: "test" };
const V3 = 196608;
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy({ mode: "transaction", maxConnections: 4 });
});

afterAll(async () => {
  W.RawConn.destroyAll();
  await proxy.stop();
});

/** Send `data` on a fresh connection: the proxy must close within 1 s having sent nothing. */
async function expectSilentClose(data: Uint8Array, o: W.SendOptions = {}): Promise<void> {
  const r = await W.exchange(proxy.port, data, { timeoutMs: 2000, ...o });
  expect(r.bytes.length).toBe(0);
  expect(r.closed).toBe(true);
  expect(r.closedAfterMs!).toBeLessThan(1000);
}

/** Send `data` on a fresh connection and expect exactly one FATAL with `code`, then a close. */
async function expectFatal(data: Uint8Array, code: string, message?: string | RegExp): Promise<F.ErrorFields> {
  const r = await W.exchange(proxy.port, data, { timeoutMs: 2000 });
  expect(F.types(r.messages)).toBe("E");
  const e = F.errorFields(r.messages[0]!.body);
  expect(e.severity).toBe("FATAL");
  expect(e.code).toBe(code);
  if (message !== undefined) expect(e.message).toMatch(message);
  expect(r.closed).toBe(true);
  expect(r.closedAfterMs!).toBeLessThan(1000);
  return e;
}

/** A 3.0 startup packet of exactly `size` bytes, padded through a long `options` setting. */
function startupOfSize(size: number): { packet: Uint8Array; padding: number } {
  const padding = size - F.startup({ ...USER, options: "-c helios.pad=" }).length;
  return { packet: F.startup({ ...USER, options: `-c helios.pad=${"x".repeat(padding)}` }), padding };
}

/** The proxy answers a plain query after whatever the test did. */
async function proxyStillServes(): Promise<void> {
  const r = await W.queryOnce(proxy.port, "select 40 + 2");
  expect(F.types(r)).toBe("TDCZ");
  expect(F.firstColumn(r)).toEqual(["42"]);
}

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

describe("A1 startup length out of range", () => {
  for (const len of [0, 4, 7, -1]) {
    test(`length ${len}: closed at once, nothing sent`, async () => {
      await expectSilentClose(F.int32(len));
      await expectSilentClose(F.concat(F.int32(len), F.int32(V3), F.cstr("user"), F.cstr("postgres")));
    });
  }
  for (const len of [0x7fffffff, 10005]) {
    test(`length ${len}: FATAL 08P01 and closed at once, before any body`, async () => {
      await expectFatal(F.int32(len), "08P01", "invalid length of startup packet");
      await expectFatal(F.concat(F.int32(len), F.int32(V3), F.cstr("user"), F.cstr("postgres")), "08P01", "invalid length of startup packet");
    });
  }
});

describe("A2 large startup packets", () => {
  for (const size of [4096, 9900, 10000, 10004]) {
    test(`${size}-byte startup logs in and its options apply`, async () => {
      const { packet, padding } = startupOfSize(size);
      expect(packet.length).toBe(size);
      const c = await W.RawConn.open(proxy.port);
      const login = await c.roundTrip(packet);
      expect(F.types(login)).toMatch(/^RS+KZ$/);
      const r = await c.roundTrip(F.query("select length(current_setting('helios.pad'))"));
      expect(F.firstColumn(r)).toEqual([String(padding)]);
      c.quit();
    });
  }

  test("10005-byte startup is refused with 08P01 (PostgreSQL takes 10,000 + 4)", async () => {
    await expectFatal(startupOfSize(10005).packet, "08P01", "invalid length of startup packet");
  });
});

describe("A3 truncated startup", () => {
  test("half a startup packet then EOF: silent close, no fd kept, proxy still serves", async () => {
    const pkt = F.startup(USER);
    const before = openFds(proxy.proc.pid);
    const results = await Promise.all(
      Array.from({ length: 40 }, () => W.exchange(proxy.port, pkt.subarray(0, 11), { endAfter: true, timeoutMs: 2000 })),
    );
    for (const r of results) {
      expect(r.bytes.length).toBe(0);
      expect(r.closed).toBe(true);
      expect(r.closedAfterMs!).toBeLessThan(1000);
    }
    let after = openFds(proxy.proc.pid);
    for (let i = 0; i < 40 && after > before; i++) {
      await Bun.sleep(50);
      after = openFds(proxy.proc.pid);
    }
    expect(after).toBeLessThanOrEqual(before);
    await proxyStillServes();
  });

  test("only the length word then EOF: silent close", async () => {
    const r = await W.exchange(proxy.port, F.startup(USER).subarray(0, 4), { endAfter: true });
    expect(r.bytes.length).toBe(0);
    expect(r.closed).toBe(true);
  });
});

describe("A4 startup layout", () => {
  test("missing user: FATAL 28000", async () => {
    await expectFatal(F.startup({ database: "test" }), "28000", "no PostgreSQL user name specified in startup packet");
  });

  test("empty user: FATAL 28000", async () => {
    await expectFatal(F.startup({ user: "", database: "test" }), "28000");
  });

  test("no final terminator: FATAL 08P01", async () => {
    await expectFatal(F.startup(USER, { terminator: false }), "08P01", "invalid startup packet layout: expected terminator as last byte");
  });

  test("only a protocol version (8 bytes): FATAL 08P01", async () => {
    await expectFatal(F.startup([], { terminator: false }), "08P01", "invalid startup packet layout: expected terminator as last byte");
  });

  test("last value without its NUL: FATAL 08P01", async () => {
    const body = F.concat(F.int32(V3), F.cstr("user"), "postgres");
    await expectFatal(F.untyped(body), "08P01", /invalid startup packet layout/);
  });
});

describe("A5 protocol versions", () => {
  test("2.0 and 4.0: FATAL 0A000", async () => {
    await expectFatal(F.startup(USER, { major: 2 }), "0A000", /unsupported frontend protocol 2\.0/);
    await expectFatal(F.startup(USER, { major: 4 }), "0A000", /unsupported frontend protocol 4\.0/);
  });

  test("3.0: no NegotiateProtocolVersion, a 4-byte cancel key", async () => {
    const { conn, messages, secret } = await W.login(proxy.port, USER);
    expect(F.types(messages)).toMatch(/^RS+KZ$/);
    expect(secret.length).toBe(4);
    expect(F.readyStatus(messages.at(-1)!)).toBe("I");
    conn.quit();
  });

  test("3.2: BackendKeyData carries a 32-byte key and queries work", async () => {
    const { conn, messages, secret } = await W.login(proxy.port, USER, { minor: 2 });
    expect(F.types(messages)).toMatch(/^RS+KZ$/);
    expect(secret.length).toBe(32);
    expect(F.firstColumn(await conn.roundTrip(F.query("select 1")))).toEqual(["1"]);
    conn.quit();
  });

  test("3.3: exactly one NegotiateProtocolVersion (3.2), then login proceeds", async () => {
    const { conn, messages, secret } = await W.login(proxy.port, USER, { minor: 3 });
    expect(F.types(messages)).toMatch(/^vRS+KZ$/);
    expect(F.negotiateProtocolVersion(messages[0]!)).toEqual({ minor: 2, options: [] });
    expect(secret.length).toBe(32);
    expect(F.firstColumn(await conn.roundTrip(F.query("select 1")))).toEqual(["1"]);
    conn.quit();
  });

  test("unknown _pq_ option: one NegotiateProtocolVersion naming it, then login proceeds", async () => {
    const { conn, messages } = await W.login(proxy.port, { ...USER, "_pq_.helios_x": "on" });
    expect(F.types(messages)).toMatch(/^vRS+KZ$/);
    expect(F.negotiateProtocolVersion(messages[0]!)).toEqual({ minor: 0, options: ["_pq_.helios_x"] });
    expect(F.firstColumn(await conn.roundTrip(F.query("select 1")))).toEqual(["1"]);
    conn.quit();
  });
});

describe("A6 plaintext injected after an SSL or GSS request", () => {
  const table = `helios_a6_${process.pid}`;

  beforeAll(async () => {
    const r = await W.queryOnce(PG_PORT, `drop table if exists ${table}; create table ${table} (v text)`);
    expect(F.errors(r)).toEqual([]);
  });

  afterAll(async () => {
    await W.queryOnce(PG_PORT, `drop table if exists ${table}`);
  });

  for (const [name, request] of [
    ["SSLRequest", F.sslRequest()],
    ["GSSENCRequest", F.gssencRequest()],
  ] as const) {
    test(`${name} + startup + INSERT in one write: FATAL 08P01, the INSERT never runs`, async () => {
      const injected = F.concat(request, F.startup(USER), F.query(`insert into ${table} values ('${name}')`));
      const r = await W.exchange(proxy.port, injected, { singleBytes: 1, timeoutMs: 2000 });
      const msgs = r.messages[0]?.type === "N" ? r.messages.slice(1) : r.messages;
      expect(F.types(msgs)).toBe("E");
      const e = F.errorFields(msgs[0]!.body);
      expect(e.severity).toBe("FATAL");
      expect(e.code).toBe("08P01");
      expect(e.message).toMatch(/^received unencrypted data after (SSL|GSSAPI encryption) request$/);
      expect(r.closed).toBe(true);
      await Bun.sleep(100);
      const rows = await W.queryOnce(PG_PORT, `select count(*) from ${table}`);
      expect(F.firstColumn(rows)).toEqual(["0"]);
    });
  }
});

describe("A8 GSSENCRequest", () => {
  test("answered 'N', then a startup logs in", async () => {
    const c = await W.RawConn.open(proxy.port);
    c.reader.expectSingleByte();
    await c.send(F.gssencRequest());
    expect(await c.waitFor((x) => x.messages.length > 0, 2000)).toBe(true);
    expect(F.types(c.take())).toBe("N");
    expect(F.types(await c.roundTrip(F.startup(USER)))).toMatch(/^RS+KZ$/);
    expect(F.firstColumn(await c.roundTrip(F.query("select 7")))).toEqual(["7"]);
    c.quit();
  });

  test("answered 'N', then an SSLRequest is answered 'N' (no TLS configured) and startup works", async () => {
    const c = await W.RawConn.open(proxy.port);
    c.reader.expectSingleByte();
    await c.send(F.gssencRequest());
    await c.waitFor((x) => x.messages.length >= 1, 2000);
    c.reader.expectSingleByte();
    await c.send(F.sslRequest());
    await c.waitFor((x) => x.messages.length >= 2, 2000);
    expect(F.types(c.take())).toBe("NN");
    expect(F.types(await c.roundTrip(F.startup(USER)))).toMatch(/^RS+KZ$/);
    c.quit();
  });
});

describe("A9/A10 non-PostgreSQL traffic", () => {
  test("direct TLS ClientHello (0x16 0x03 0x01 ...): closed at once, never read as a length", async () => {
    const hello = new Uint8Array(517);
    hello.set([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    await expectFatal(hello, "08P01", "invalid length of startup packet");
    await expectFatal(hello.subarray(0, 4), "08P01", "invalid length of startup packet");
  });

  test("HTTP request: closed at once", async () => {
    await expectFatal(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), "08P01", "invalid length of startup packet");
  });

  test("random bytes: closed at once", async () => {
    let seed = 0x2545f491;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24) & 0xff;
    for (let i = 0; i < 5; i++) {
      const junk = Uint8Array.from({ length: 4096 }, rand);
      junk[0] = (junk[0]! | 0x01) & 0x7f; // a first byte in 1..127: the length word is over the limit
      await expectFatal(junk, "08P01", "invalid length of startup packet");
    }
  });

  test("huge declared lengths and HTTP floods leave RSS where it was", async () => {
    const pid = proxy.proc.pid;
    const before = rssKb(pid);
    const http = new TextEncoder().encode("POST / HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n");
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        W.exchange(proxy.port, i % 2 ? http : F.concat(F.int32(0x7fffffff), new Uint8Array(65536)), { timeoutMs: 2000 }),
      ),
    );
    expect(rssKb(pid) - before).toBeLessThan(64 * 1024);
    await proxyStillServes();
  });
});

describe("A12 framing violations after login", () => {
  test("message length below 4: closed at once (at most a FATAL 08P01 first)", async () => {
    const { conn } = await W.login(proxy.port, USER);
    await conn.send(F.message("Q", "", { length: 3 }));
    expect(await conn.waitClosed(1000)).toBe(true);
    const got = conn.take();
    expect(got.length).toBeLessThanOrEqual(1);
    for (const e of F.errors(got)) expect([e.severity, e.code]).toEqual(["FATAL", "08P01"]);
    expect(F.types(got)).toMatch(/^E?$/);
  });

  for (const type of ["S", "E", "H", "X"]) {
    test(`'${type}' declaring 20000 bytes (over the per-type limit): closed without waiting for the body`, async () => {
      const { conn } = await W.login(proxy.port, USER);
      await conn.send(F.message(type, "", { length: 20000 }));
      expect(await conn.waitClosed(1000)).toBe(true);
      expect(F.types(conn.take())).toMatch(/^E?$/);
    });
  }

  test("unknown message type: FATAL 08P01 invalid frontend message type", async () => {
    const { conn } = await W.login(proxy.port, USER);
    await conn.send(F.message(1));
    expect(await conn.waitClosed(1000)).toBe(true);
    const got = conn.take();
    expect(F.types(got)).toBe("E");
    const e = F.errorFields(got[0]!.body);
    expect([e.severity, e.code, e.message]).toEqual(["FATAL", "08P01", "invalid frontend message type 1"]);
  });

  test("unknown message type mid-transaction (server attached): FATAL 08P01, the transaction is not left open", async () => {
    const { conn } = await W.login(proxy.port, USER);
    const marker = `helios-a12-${process.pid}`;
    expect(F.readyStatus((await conn.roundTrip(F.query(`begin; select '${marker}'`))).at(-1)!)).toBe("T");
    await conn.send(F.message("y"));
    expect(await conn.waitClosed(1000)).toBe(true);
    const e = F.errors(conn.take());
    expect(e.map((x) => [x.severity, x.code, x.message])).toEqual([["FATAL", "08P01", "invalid frontend message type 121"]]);
    await proxyStillServes();
    await Bun.sleep(200);
    const stuck = await W.queryOnce(PG_PORT, `select count(*) from pg_stat_activity where state = 'idle in transaction' and query like '%${marker}%'`);
    expect(F.firstColumn(stuck)).toEqual(["0"]);
  });
});

describe("A13 malformed Query bodies", () => {
  for (const [name, bytes] of [
    ["Query without NUL", F.query("select 1", { terminator: false })],
    ["Query with an empty body", F.message("Q")],
  ] as const) {
    test(`${name}: same reply as PostgreSQL (ERROR 08P01), connection usable, others unaffected`, async () => {
      const replies: F.BackendMessage[][] = [];
      for (const port of [PG_PORT, proxy.port]) {
        const { conn } = await W.login(port, USER);
        const other = port === proxy.port ? await W.login(port, USER) : null;
        const r = await conn.roundTrip(bytes, 1, 3000);
        replies.push(r);
        expect(F.firstColumn(await conn.roundTrip(F.query("select 'still here'")))).toEqual(["still here"]);
        if (other) {
          expect(F.firstColumn(await other.conn.roundTrip(F.query("select 'other'")))).toEqual(["other"]);
          other.conn.quit();
        }
        conn.quit();
      }
      const [direct, proxied] = replies;
      expect(F.types(proxied!)).toBe(F.types(direct!));
      expect(F.types(proxied!)).toBe("EZ");
      expect(F.errors(proxied!).map((e) => [e.severity, e.code])).toEqual([["ERROR", "08P01"]]);
      expect(F.errors(proxied!).map((e) => e.message)).toEqual(F.errors(direct!).map((e) => e.message));
    });
  }
});

describe("A14 messages out of place", () => {
  test("PasswordMessage before startup: closed at once (PostgreSQL silently, the proxy after an 08P01)", async () => {
    await expectFatal(F.password("secret"), "08P01", "invalid length of startup packet");
    const direct = await W.exchange(PG_PORT, F.password("secret"), { timeoutMs: 2000 });
    expect(direct.bytes.length).toBe(0);
    expect(direct.closed).toBe(true);
  });

  test("PasswordMessage after login: FATAL 08P01 and close", async () => {
    const { conn } = await W.login(proxy.port, USER);
    await conn.send(F.password("secret"));
    expect(await conn.waitClosed(1000)).toBe(true);
    expect(F.errors(conn.take()).map((e) => [e.severity, e.code])).toEqual([["FATAL", "08P01"]]);
  });
});

describe("A20 async FATAL on an idle pooled server", () => {
  test("pg_terminate_backend of the proxy's idle server never reaches the idle client; the next query works", async () => {
    const { conn } = await W.login(proxy.port, USER);
    const first = F.firstColumn(await conn.roundTrip(F.query("select pg_backend_pid()")))[0]!;
    const killed = await W.queryOnce(PG_PORT, `select pg_terminate_backend(${first})`);
    expect(F.firstColumn(killed)).toEqual(["t"]);
    for (let i = 0; i < 40; i++) {
      const left = await W.queryOnce(PG_PORT, `select count(*) from pg_stat_activity where pid = ${first}`);
      if (F.firstColumn(left)[0] === "0") break;
      await Bun.sleep(25);
    }
    await Bun.sleep(100);
    expect(conn.closed).toBe(false);
    expect(conn.take()).toEqual([]);
    const r = await conn.roundTrip(F.query("select pg_backend_pid()"));
    expect(F.types(r)).toBe("TDCZ");
    expect(F.firstColumn(r)[0]).not.toBe(first);
    conn.quit();
  });
});

// ---- failing against the current proxy -------------------------------------------------------

describe("PostgreSQL parity of message typing after login", () => {
  test("A12 unknown message type declaring a body not yet sent: FATAL 08P01 at once", async () => {
    const { conn } = await W.login(proxy.port, USER);
    await conn.send(F.message(1, "", { length: 5000 }));
    expect(await conn.waitClosed(1000)).toBe(true);
    const e = F.errors(conn.take());
    expect(e.map((x) => [x.severity, x.code, x.message])).toEqual([["FATAL", "08P01", "invalid frontend message type 1"]]);
  });

  test("A14 a second StartupMessage after login: FATAL 08P01 at once", async () => {
    const { conn } = await W.login(proxy.port, USER);
    await conn.send(F.startup(USER));
    expect(await conn.waitClosed(1000)).toBe(true);
    const e = F.errors(conn.take());
    expect(e.map((x) => [x.severity, x.code, x.message])).toEqual([["FATAL", "08P01", "invalid frontend message type 0"]]);
  });
});
