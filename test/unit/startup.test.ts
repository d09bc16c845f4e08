// parseStartupPacket (src/protocol/startup.ts): lengths, layout, versions, request codes, partial input and garbage.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseStartupPacket, type StartupPacket } from "../../src/protocol/startup.ts";
import * as F from "../support/frames.ts";

const USER = { user: "postgres", database: "test" };
const V3 = 196608;

const parse = (b: Uint8Array): StartupPacket => parseStartupPacket(b, 0, b.length);

/** The single ErrorResponse a rejection carries. */
function replyOf(p: StartupPacket): F.ErrorFields {
  if (p.kind !== "reject" || p.reply === null) throw new Error(`expected a reject with a reply, got ${JSON.stringify(p)}`);
  const { messages, rest } = F.parseBackend(p.reply);
  expect(rest).toBe(0);
  expect(F.types(messages)).toBe("E");
  return F.errorFields(messages[0]!.body);
}

function expectSilentReject(b: Uint8Array): void {
  expect(parse(b)).toEqual({ kind: "reject", reply: null });
}

function startupOf(p: StartupPacket) {
  if (p.kind !== "startup") throw new Error(`expected a startup packet, got ${JSON.stringify(p, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v))}`);
  return p;
}

/** A startup packet of exactly `size` bytes (long `options`). */
function startupOfSize(size: number): Uint8Array {
  const pad = size - F.startup({ ...USER, options: "-c a.b=" }).length;
  return F.startup({ ...USER, options: `-c a.b=${"x".repeat(pad)}` });
}

function expectTooLong(b: Uint8Array): void {
  const e = replyOf(parse(b));
  expect([e.severity, e.code, e.message]).toEqual(["FATAL", "08P01", "invalid length of startup packet"]);
}

describe("A1 lengths out of range are refused at once", () => {
  for (const len of [0, 4, 7, -1, -2147483648]) {
    test(`declared length ${len}: no reply`, () => {
      expectSilentReject(F.int32(len));
      expectSilentReject(F.concat(F.int32(len), F.int32(V3)));
      expectSilentReject(F.concat(F.int32(len), F.int32(V3), new Uint8Array(64)));
    });
  }
  for (const len of [10005, 0x7fffffff]) {
    test(`declared length ${len}: 08P01 before the body arrives`, () => {
      expectTooLong(F.int32(len));
      expectTooLong(F.concat(F.int32(len), F.int32(V3)));
      expectTooLong(F.concat(F.int32(len), F.int32(V3), new Uint8Array(64)));
    });
  }

  test("fewer than 4 bytes: incomplete", () => {
    for (let n = 0; n < 4; n++) expect(parse(F.startup(USER).subarray(0, n))).toEqual({ kind: "incomplete" });
  });
});

describe("A2 sizes up to the limit (10,000 + 4, as PostgreSQL)", () => {
  for (const size of [4096, 9900, 10000, 10004]) {
    test(`${size}-byte packet parses with its options intact`, () => {
      const b = startupOfSize(size);
      expect(b.length).toBe(size);
      const p = startupOf(parse(b));
      expect(p.length).toBe(size);
      expect(p.params.get("options")!.length).toBe(size - F.startup({ ...USER, options: "" }).length);
      expect(p.params.get("user")).toBe("postgres");
    });
  }

  test("10005 bytes is refused with 08P01", () => {
    expectTooLong(startupOfSize(10005));
  });
});

describe("A4 layout", () => {
  test("a value missing its NUL: 08P01", () => {
    const e = replyOf(parse(F.untyped(F.concat(F.int32(V3), F.cstr("user"), "postgres"))));
    expect([e.severity, e.code]).toEqual(["FATAL", "08P01"]);
    expect(e.message).toBe("invalid startup packet layout: expected terminator as last byte");
  });

  test("a key with no value at all: 08P01", () => {
    const e = replyOf(parse(F.untyped(F.concat(F.int32(V3), F.cstr("user"), F.cstr("postgres"), "database"))));
    expect(e.code).toBe("08P01");
  });

  test("no user: 28000", () => {
    const e = replyOf(parse(F.startup({ database: "test" })));
    expect([e.severity, e.code, e.message]).toEqual(["FATAL", "28000", "no PostgreSQL user name specified in startup packet"]);
  });

  test("empty user: 28000", () => {
    expect(replyOf(parse(F.startup({ user: "", database: "test" }))).code).toBe("28000");
  });

  test("parameters in order, duplicates take the last value", () => {
    const p = startupOf(parse(F.startup([["user", "a"], ["application_name", "x y"], ["user", "b"], ["options", "-c search_path=s"]])));
    expect(p.params.get("user")).toBe("b");
    expect(p.params.get("application_name")).toBe("x y");
    expect(p.params.get("options")).toBe("-c search_path=s");
    expect(p.params.has("database")).toBe(false);
  });

  test("UTF-8 keys and values", () => {
    const p = startupOf(parse(F.startup({ user: "jörg", application_name: "应用" })));
    expect(p.params.get("user")).toBe("jörg");
    expect(p.params.get("application_name")).toBe("应用");
  });
});

describe("A5 protocol versions", () => {
  test("2.0 and 4.0: FATAL 0A000", () => {
    for (const major of [2, 4, 1234]) {
      const e = replyOf(parse(F.startup(USER, { major })));
      expect([e.severity, e.code]).toEqual(["FATAL", "0A000"]);
      expect(e.message).toMatch(new RegExp(`^unsupported frontend protocol ${major}\\.0`));
    }
  });

  test("3.0, 3.2 and 3.3 parse with their minor version", () => {
    for (const minor of [0, 2, 3, 65535]) {
      const p = startupOf(parse(F.startup(USER, { minor })));
      expect(p.minor).toBe(minor);
      expect(p.unsupportedOptions).toEqual([]);
    }
  });

  test("_pq_ options are reported as unsupported and kept out of the parameters", () => {
    const p = startupOf(parse(F.startup({ ...USER, "_pq_.x": "1", "_pq_.compression": "on" })));
    expect(p.unsupportedOptions).toEqual(["_pq_.x", "_pq_.compression"]);
    expect([...p.params.keys()].sort()).toEqual(["database", "user"]);
  });
});

describe("SSL, GSS and cancel request codes", () => {
  test("SSLRequest and GSSENCRequest", () => {
    expect(parse(F.sslRequest())).toEqual({ kind: "ssl", length: 8 });
    expect(parse(F.gssencRequest())).toEqual({ kind: "gssenc", length: 8 });
  });

  test("an SSLRequest with a body is refused without a reply", () => {
    expectSilentReject(F.untyped(F.concat(F.int32(F.SSL_REQUEST_CODE), F.int32(0))));
    expectSilentReject(F.untyped(F.concat(F.int32(F.GSSENC_REQUEST_CODE), F.int32(0))));
  });

  test("CancelRequest with a 4-byte and a 32-byte key", () => {
    expect(parse(F.cancelRequest(77, 0x01020304))).toEqual({ kind: "cancel", length: 16, pid: 77, secret: Uint8Array.from([1, 2, 3, 4]) });
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(parse(F.cancelRequest(-5, key))).toEqual({ kind: "cancel", length: 44, pid: -5, secret: key });
    const longest = new Uint8Array(256).fill(9);
    expect(parse(F.cancelRequest(1, longest))).toMatchObject({ kind: "cancel", length: 268 });
  });

  test("CancelRequest too short or too long is refused without a reply", () => {
    expectSilentReject(F.cancelRequest(1, new Uint8Array(0)));
    expectSilentReject(F.cancelRequest(1, new Uint8Array(257)));
  });

  test("the packet is read from `start`, and bytes after it are left alone", () => {
    const pkt = F.startup(USER);
    const b = F.concat(new Uint8Array(7).fill(0xee), pkt, F.query("select 1"));
    const p = startupOf(parseStartupPacket(b, 7, b.length));
    expect(p.length).toBe(pkt.length);
    expect(p.params.get("user")).toBe("postgres");
    expect(parseStartupPacket(b, 7, 7 + pkt.length - 1)).toEqual({ kind: "incomplete" });
  });
});

describe("partial input", () => {
  const packets: [string, Uint8Array][] = [
    ["startup 3.0", F.startup(USER)],
    ["startup 3.2 with options", F.startup({ ...USER, options: "-c work_mem=64MB", application_name: "a" }, { minor: 2 })],
    ["SSLRequest", F.sslRequest()],
    ["GSSENCRequest", F.gssencRequest()],
    ["CancelRequest", F.cancelRequest(42, 7)],
    ["CancelRequest 3.2", F.cancelRequest(42, new Uint8Array(32).fill(3))],
    ["4 KB startup", startupOfSize(4096)],
  ];
  for (const [name, pkt] of packets) {
    test(`${name}: every proper prefix is incomplete, the whole packet is not`, () => {
      for (let n = 0; n < pkt.length; n++) expect(parse(pkt.subarray(0, n))).toEqual({ kind: "incomplete" });
      const whole = parse(pkt);
      expect(whole.kind).not.toBe("incomplete");
      expect(whole.kind).not.toBe("reject");
      expect(parse(F.concat(pkt, new Uint8Array(10).fill(1)))).toEqual(whole);
    });
  }

  test("a rejection needs only the bytes that prove it", () => {
    expectTooLong(F.int32(0x7fffffff));
    const v2 = F.startup(USER, { major: 2 });
    expect(parse(v2.subarray(0, v2.length - 1))).toEqual({ kind: "incomplete" });
    expect(replyOf(parse(v2)).code).toBe("0A000");
  });
});

describe("arbitrary bytes", () => {
  const KINDS = ["incomplete", "ssl", "gssenc", "cancel", "startup", "reject"];

  test("property: never throws, and every reply is one well-formed FATAL", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(16), (b, off) => {
        const start = Math.min(off, b.length);
        const p = parseStartupPacket(b, start, b.length);
        expect(KINDS).toContain(p.kind);
        if (p.kind === "reject" && p.reply !== null) expect(replyOf(p).severity).toBe("FATAL");
        if (p.kind === "startup" || p.kind === "cancel") expect(p.length).toBeLessThanOrEqual(b.length - start);
      }),
      { numRuns: 2000 },
    );
  });

  test("property: a valid length word followed by random bytes never throws", () => {
    fc.assert(
      fc.property(fc.integer({ min: 8, max: 600 }), fc.constantFrom(V3, V3 + 2, 0x20000, F.CANCEL_REQUEST_CODE, F.SSL_REQUEST_CODE), fc.uint8Array({ maxLength: 600 }), (len, code, rest) => {
        const b = F.concat(F.int32(len), F.int32(code), rest);
        const p = parse(b);
        expect(KINDS).toContain(p.kind);
        if (b.length < len && p.kind !== "reject") expect(p.kind).toBe("incomplete");
      }),
      { numRuns: 2000 },
    );
  });

  test("property: well-formed parameter lists round-trip", () => {
    const name = fc.stringMatching(/^[a-z_][a-z0-9_.]{0,20}$/).filter((k) => !k.startsWith("_pq_."));
    const value = fc.string({ maxLength: 40 }).filter((v) => !v.includes("\0"));
    fc.assert(
      fc.property(fc.dictionary(name, value, { maxKeys: 8 }), fc.string({ minLength: 1, maxLength: 20 }).filter((u) => !u.includes("\0")), (extra, user) => {
        const params = { ...extra, user };
        const p = startupOf(parse(F.startup(params)));
        expect(Object.fromEntries(p.params)).toEqual(params);
      }),
      { numRuns: 300 },
    );
  });
});

/**
 * PostgreSQL's own reading of a 3.0 startup body (ProcessStartupPacket in postmaster.c): pairs
 * until an empty name or a name with no room for a value, and the terminator must then be exactly
 * the last byte. Returns the SQLSTATE or the pairs.
 */
function postgresLayout(b: Uint8Array): { code: string } | { params: Map<string, string> } {
  const len = b.length;
  const dec = new TextDecoder();
  const strEnd = (p: number) => {
    const z = b.indexOf(0, p);
    return z < 0 ? len : z; // PostgreSQL appends a NUL after the packet
  };
  const params = new Map<string, string>();
  let offset = 8;
  while (offset < len) {
    if (b[offset] === 0) break;
    const nameEnd = strEnd(offset);
    const valOffset = nameEnd + 1;
    if (valOffset >= len) break; // missing value: caught by the terminator check

    const valEnd = strEnd(valOffset);
    const name = dec.decode(b.subarray(offset, nameEnd));
    if (!name.startsWith("_pq_.")) params.set(name, dec.decode(b.subarray(valOffset, valEnd)));
    offset = valEnd + 1;
  }
  if (offset !== len - 1) return { code: "08P01" };
  if (!params.get("user")) return { code: "28000" };
  return { params };
}

describe("A4 layout, as PostgreSQL reads it", () => {
  test("no final terminator after the last value: 08P01", () => {
    const e = replyOf(parse(F.startup(USER, { terminator: false })));
    expect([e.severity, e.code, e.message]).toEqual(["FATAL", "08P01", "invalid startup packet layout: expected terminator as last byte"]);
  });

  test("a version and nothing else (8 bytes): 08P01", () => {
    expect(replyOf(parse(F.startup([], { terminator: false }))).code).toBe("08P01");
  });

  test("an empty name ends the list: pairs after it are a layout error", () => {
    const b = F.untyped(F.concat(F.int32(V3), F.cstr("user"), F.cstr("postgres"), [0], F.cstr("x"), [0]));
    expect(replyOf(parse(b)).code).toBe("08P01");
  });

  test("property: same verdict and parameters as PostgreSQL for random layouts", () => {
    const token = fc.constantFrom("user", "postgres", "database", "test", "options", "_pq_.x", "", "a", "b\u00e9");
    fc.assert(
      fc.property(fc.array(fc.tuple(token, fc.boolean()), { maxLength: 8 }), fc.boolean(), (tokens, finalNul) => {
        const parts = tokens.map(([t, nul]) => (nul ? F.cstr(t) : F.concat(t)));
        const b = F.untyped(F.concat(F.int32(V3), ...parts, finalNul ? [0] : []));
        const want = postgresLayout(b);
        const got = parse(b);
        if ("code" in want) expect(got.kind === "reject" && got.reply !== null ? replyOf(got).code : got.kind).toBe(want.code);
        else expect(Object.fromEntries(startupOf(got).params)).toEqual(Object.fromEntries(want.params));
      }),
      { numRuns: 2000 },
    );
  });
});
