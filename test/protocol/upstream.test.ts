// A malicious or broken upstream behind the proxy (a fake server built from the frame builder): RELIABILITY A7, A19.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import * as F from "../support/frames.ts";
import * as W from "../support/wire.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";

const { concat, cstr, int16, int32, message } = F;

/** What the fake server does after a startup from `user`, and on each query text. */
const ready = concat(
  message("R", int32(0)),
  message("S", concat(cstr("server_version"), cstr("15.0"))),
  message("S", concat(cstr("client_encoding"), cstr("UTF8"))),
  message("K", concat(int32(4242), int32(99))),
  message("Z", "I"),
);
const rowDescription = message("T", concat(int16(1), cstr("v"), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0)));
const row = (v: string) => message("D", concat(int16(1), int32(v.length), v));
const done = concat(message("C", cstr("SELECT 1")), message("Z", "I"));

const onQuery: Record<string, Uint8Array> = {
  "error without code": concat(message("E", concat("SERROR", [0], "Mboom", [0], [0])), message("Z", "I")),
  "datarow minus two": concat(rowDescription, message("D", concat(int16(1), int32(-2))), done),
  "length ffffffff": concat([0x44, 0xff, 0xff, 0xff, 0xff], new Uint8Array(32)),
  "length two": concat([0x5a], int32(2), [0x49]),
};

/** How the fake server answers an SSLRequest (the proxy sends one: server_sslmode = "prefer"). */
let sslAnswer: Uint8Array = Uint8Array.from([78]); // N

interface FakeConn {
  buf: Uint8Array;
  started: boolean;
  user: string;
}

function fakeServer(): TCPSocketListener<FakeConn> {
  const reply = (s: Socket<FakeConn>, b: Uint8Array) => s.write(b);
  return Bun.listen<FakeConn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { buf: new Uint8Array(0), started: false, user: "" };
      },
      data(s, chunk) {
        const c = s.data;
        c.buf = concat(c.buf, chunk);
        for (;;) {
          if (!c.started) {
            if (c.buf.length < 4) return;
            const len = new DataView(c.buf.buffer, c.buf.byteOffset).getInt32(0);
            if (c.buf.length < len) return;
            if (len === 8 && new DataView(c.buf.buffer, c.buf.byteOffset).getInt32(4) === F.SSL_REQUEST_CODE) {
              c.buf = c.buf.slice(8);
              reply(s, sslAnswer);
              continue;
            }
            const fields = new TextDecoder().decode(c.buf.subarray(8, len)).split("\0");
            c.user = fields[fields.indexOf("user") + 1] ?? "";
            c.buf = c.buf.slice(len);
            c.started = true;
            if (c.user === "nocode") {
              reply(s, message("E", concat("SFATAL", [0], "Mno code here", [0], [0])));
              s.end();
            } else if (c.user === "hugelen") reply(s, concat([0x52], int32(-1), new Uint8Array(16)));
            else if (c.user === "bignonce") reply(s, message("R", concat(int32(10), cstr("SCRAM-SHA-256"), [0])));
            else reply(s, ready);
            continue;
          }
          if (c.buf.length < 5) return;
          const type = String.fromCharCode(c.buf[0]!);
          const len = new DataView(c.buf.buffer, c.buf.byteOffset + 1).getInt32(0);
          if (c.buf.length < len + 1) return;
          const body = c.buf.slice(5, len + 1);
          c.buf = c.buf.slice(len + 1);
          const text = new TextDecoder().decode(body.subarray(0, Math.max(0, body.indexOf(0))));
          if (type === "X") return void s.end();
          if (type === "p") reply(s, message("R", concat(int32(11), "r=" + "n".repeat(100_000) + ",s=c2FsdA==,i=4096")));
          else if (type === "Q") reply(s, onQuery[text] ?? concat(rowDescription, row("1"), done));
          else if (type === "P") reply(s, message("1"));
          else if (type === "B") reply(s, message("2"));
          else if (type === "D") reply(s, rowDescription);
          else if (type === "E") reply(s, concat(row("1"), message("C", cstr("SELECT 1"))));
          else if (type === "S") reply(s, message("Z", "I"));
        }
      },
    },
  });
}

let fake: TCPSocketListener<FakeConn>;
let proxy: RunningProxy;

beforeAll(async () => {
  fake = fakeServer();
  proxy = await startProxy({
    mode: "transaction",
    nodes: [{ host: "127.0.0.1", port: fake.port }],
    toml: '[tls]\nserver_sslmode = "prefer"',
  });
});

afterAll(async () => {
  W.RawConn.destroyAll();
  await proxy.stop();
  fake.stop(true);
});

/** The proxy process is alive and a fresh client logs in and gets an answer through it. */
async function proxyAlive(): Promise<void> {
  expect(proxy.proc.exitCode).toBeNull();
  const r = await W.queryOnce(proxy.port, "select 1");
  expect(F.types(r)).toBe("TDCZ");
  expect(F.firstColumn(r)).toEqual(["1"]);
}

/** Log in as `user` and expect one FATAL with a SQLSTATE, then a close. */
async function loginRefused(user: string, password?: string): Promise<F.ErrorFields> {
  const c = await W.RawConn.open(proxy.port);
  await c.send(F.startup({ user, database: "test" }));
  if (password !== undefined) {
    expect(await c.waitFor((x) => x.messages.some((m) => m.type === "R"), 3000)).toBe(true);
    expect(c.take().map((m) => new DataView(m.body.buffer, m.body.byteOffset).getInt32(0))).toEqual([3]);
    await c.send(F.password(password));
  }
  expect(await c.waitClosed(3000)).toBe(true);
  const got = c.take();
  expect(F.types(got)).toBe("E");
  const e = F.errorFields(got[0]!.body);
  expect(e.severity).toBe("FATAL");
  expect(e.code).toMatch(/^[0-9A-Z]{5}$/);
  return e;
}

describe("A7 upstream answers to SSLRequest", () => {
  test("'S' followed by plaintext bytes: the login is aborted with a FATAL, nothing is trusted", async () => {
    sslAnswer = concat("S", message("R", int32(0)), message("Z", "I"));
    try {
      await loginRefused("ssl_injected");
    } finally {
      sslAnswer = Uint8Array.from([78]);
    }
    await proxyAlive();
  });

  test("'E' followed by a long message: the login is aborted with a FATAL", async () => {
    sslAnswer = concat("E", int32(20004), "x".repeat(20000));
    try {
      await loginRefused("ssl_error");
    } finally {
      sslAnswer = Uint8Array.from([78]);
    }
    await proxyAlive();
  });
});

describe("A19 malicious upstream", () => {
  test("ErrorResponse without a 'C' field at login: the client gets a FATAL with a SQLSTATE", async () => {
    await loginRefused("nocode");
    await proxyAlive();
  });

  test("authentication message declaring length 0xFFFFFFFF at login: a FATAL, no crash", async () => {
    await loginRefused("hugelen");
    await proxyAlive();
  });

  test("100 KB SCRAM server-first message: a FATAL, no crash", async () => {
    await loginRefused("bignonce", "secret");
    await proxyAlive();
  });

  test("ErrorResponse without a 'C' field in a query: relayed, the session goes on", async () => {
    const { conn } = await W.login(proxy.port, { user: "postgres", database: "test" });
    const r = await conn.roundTrip(F.query("error without code"), 1, 3000);
    expect(F.types(r)).toBe("EZ");
    expect(F.errorFields(r[0]!.body).message).toBe("boom");
    expect(F.firstColumn(await conn.roundTrip(F.query("select 1")))).toEqual(["1"]);
    conn.quit();
  });

  test("DataRow field length -2: relayed untouched, no crash", async () => {
    const { conn } = await W.login(proxy.port, { user: "postgres", database: "test" });
    const r = await conn.roundTrip(F.query("datarow minus two"), 1, 3000);
    expect(F.types(r)).toBe("TDCZ");
    expect(Array.from(r[1]!.body)).toEqual([0, 1, 0xff, 0xff, 0xff, 0xfe]);
    conn.quit();
    await proxyAlive();
  });

  for (const q of ["length ffffffff", "length two"]) {
    test(`backend message with ${q}: the client gets a FATAL and a close, the proxy lives on`, async () => {
      const { conn } = await W.login(proxy.port, { user: "postgres", database: "test" });
      await conn.send(F.query(q));
      expect(await conn.waitClosed(3000)).toBe(true);
      const e = F.errors(conn.take());
      expect(e.map((x) => x.severity)).toEqual(["FATAL"]);
      expect(e[0]!.code).toMatch(/^08/);
      await proxyAlive();
    });
  }
});
