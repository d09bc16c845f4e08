// ReceiveBuffer and the byte functions of src/protocol/framing.ts: growth, compaction, and framing however bytes are split.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ReceiveBuffer, cstringEnd, decodeAscii, decodeUtf8, readInt16, readInt32, writeInt32 } from "../../src/protocol/framing.ts";
import * as F from "../support/frames.ts";

const bytes = (...v: number[]) => Uint8Array.from(v);
const live = (r: ReceiveBuffer) => Array.from(r.buf.subarray(r.start, r.end));

/** Frame typed messages out of chunks pushed one by one, as a socket's data handler would. */
function frameChunks(chunks: Uint8Array[], initial = 16): F.BackendMessage[] {
  const r = new ReceiveBuffer(initial);
  const out: F.BackendMessage[] = [];
  for (const c of chunks) {
    r.push(c);
    while (r.size >= 5) {
      const len = readInt32(r.buf, r.start + 1);
      if (r.size < len + 1) break;
      out.push({ type: String.fromCharCode(r.buf[r.start]!), body: r.buf.slice(r.start + 5, r.start + 1 + len) });
      r.consume(len + 1);
    }
  }
  expect(r.size).toBe(0);
  return out;
}

describe("ReceiveBuffer", () => {
  test("push appends, consume drops from the front, size tracks both", () => {
    const r = new ReceiveBuffer(8);
    expect(r.size).toBe(0);
    r.push(bytes(1, 2, 3));
    r.push(bytes(4, 5));
    expect(r.size).toBe(5);
    expect(live(r)).toEqual([1, 2, 3, 4, 5]);
    r.consume(2);
    expect(r.size).toBe(3);
    expect(r.start).toBe(2);
    expect(live(r)).toEqual([3, 4, 5]);
  });

  test("consuming everything resets to offset 0", () => {
    const r = new ReceiveBuffer(8);
    r.push(bytes(1, 2, 3, 4));
    r.consume(4);
    expect([r.start, r.end, r.size]).toEqual([0, 0, 0]);
    r.push(bytes(9));
    expect(r.start).toBe(0);
    expect(live(r)).toEqual([9]);
  });

  test("an empty push changes nothing", () => {
    const r = new ReceiveBuffer(4);
    r.push(bytes(1));
    r.push(new Uint8Array(0));
    expect(live(r)).toEqual([1]);
    expect(r.buf.length).toBe(4);
  });

  test("compacts in place when the live bytes plus the new chunk fit", () => {
    const r = new ReceiveBuffer(8);
    r.push(bytes(1, 2, 3, 4, 5, 6));
    const before = r.buf;
    r.consume(4);
    r.push(bytes(7, 8, 9, 10));
    expect(r.buf).toBe(before);
    expect(r.buf.length).toBe(8);
    expect(r.start).toBe(0);
    expect(live(r)).toEqual([5, 6, 7, 8, 9, 10]);
  });

  test("fills to exactly its capacity without growing", () => {
    const r = new ReceiveBuffer(8);
    r.push(bytes(1, 2, 3, 4));
    r.push(bytes(5, 6, 7, 8));
    expect(r.buf.length).toBe(8);
    expect(live(r)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test("grows by doubling, keeping only the live bytes", () => {
    const r = new ReceiveBuffer(8);
    r.push(bytes(1, 2, 3, 4, 5, 6, 7));
    r.consume(2);
    r.push(bytes(8, 9, 10, 11, 12));
    expect(r.buf.length).toBe(16);
    expect(r.start).toBe(0);
    expect(live(r)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  test("one large chunk doubles as often as needed", () => {
    const r = new ReceiveBuffer(4);
    const big = Uint8Array.from({ length: 100 }, (_, i) => i);
    r.push(bytes(255));
    r.push(big);
    expect(r.buf.length).toBe(128);
    expect(live(r)).toEqual([255, ...big]);
  });

  test("clear empties without shrinking; shrinkIfIdle gives back only an idle, large buffer", () => {
    const r = new ReceiveBuffer(16);
    r.push(new Uint8Array(100_000));
    r.shrinkIfIdle(65536);
    expect(r.buf.length).toBe(131072);
    expect(r.size).toBe(100_000);
    r.clear();
    expect(r.size).toBe(0);
    expect(r.buf.length).toBe(131072);
    r.shrinkIfIdle(65536);
    expect(r.buf.length).toBeLessThanOrEqual(16);
    r.push(bytes(1, 2));
    expect(live(r)).toEqual([1, 2]);
    const small = new ReceiveBuffer(1024);
    small.push(bytes(1));
    small.consume(1);
    const kept = small.buf;
    small.shrinkIfIdle(65536);
    expect(small.buf).toBe(kept);
  });

  const message = fc
    .tuple(fc.integer({ min: 0x31, max: 0x7a }), fc.uint8Array({ maxLength: 300 }))
    .map(([t, body]) => F.message(t, body));

  test("property: random messages split at random points frame exactly as the whole stream", () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 30 }), fc.array(fc.nat(), { maxLength: 40 }), fc.integer({ min: 1, max: 64 }), (msgs, cuts, initial) => {
        const stream = F.concat(...msgs);
        const expected = F.parseBackend(stream).messages;
        expect(expected.length).toBe(msgs.length);
        expect(frameChunks([stream], initial)).toEqual(expected);
        expect(frameChunks(F.splitAt(stream, cuts), initial)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  test("every split point of a stream, and byte by byte, frame identically", () => {
    const stream = F.concat(F.query("select 1"), F.message("S"), F.parse("s", "select $1", [23]), F.message("X"), F.copyData(new Uint8Array(40).fill(7)));
    const expected = F.parseBackend(stream).messages;
    expect(expected.map((m) => m.type).join("")).toBe("QSPXd");
    for (let k = 0; k <= stream.length; k++) expect(frameChunks([stream.subarray(0, k), stream.subarray(k)], 8)).toEqual(expected);
    for (let k = 0; k < stream.length; k++)
      for (const j of [k + 1, k + 5, k + 13]) {
        if (j > stream.length) continue;
        expect(frameChunks(F.splitAt(stream, [k, j]), 8)).toEqual(expected);
      }
    expect(frameChunks(Array.from(stream, (b) => bytes(b)), 4)).toEqual(expected);
  });
});

describe("byte functions", () => {
  test("readInt32 is big-endian and signed", () => {
    expect(readInt32(bytes(0, 0, 0, 8), 0)).toBe(8);
    expect(readInt32(bytes(9, 0x7f, 0xff, 0xff, 0xff), 1)).toBe(0x7fffffff);
    expect(readInt32(bytes(0xff, 0xff, 0xff, 0xff), 0)).toBe(-1);
    expect(readInt32(bytes(0x80, 0, 0, 0), 0)).toBe(-2147483648);
    expect(readInt32(bytes(0x04, 0xd2, 0x16, 0x2f), 0)).toBe(80877103);
  });

  test("readInt16 is big-endian and signed", () => {
    expect(readInt16(bytes(0, 3), 0)).toBe(3);
    expect(readInt16(bytes(0xff, 0xff), 0)).toBe(-1);
    expect(readInt16(bytes(0x7f, 0xff), 0)).toBe(32767);
    expect(readInt16(bytes(0x80, 0x00), 0)).toBe(-32768);
  });

  test("property: writeInt32 then readInt32 round-trips and matches DataView", () => {
    fc.assert(
      fc.property(fc.integer({ min: -2147483648, max: 2147483647 }), fc.nat(8), (v, at) => {
        const b = new Uint8Array(12);
        writeInt32(b, at, v);
        expect(readInt32(b, at)).toBe(v);
        expect(new DataView(b.buffer).getInt32(at)).toBe(v);
      }),
    );
  });

  test("cstringEnd finds the NUL before the limit, -1 otherwise", () => {
    const b = F.concat(F.cstr("abc"), "de", [0]);
    expect(cstringEnd(b, 0, b.length)).toBe(3);
    expect(cstringEnd(b, 4, b.length)).toBe(6);
    expect(cstringEnd(b, 0, 3)).toBe(-1);
    expect(cstringEnd(b, 4, 6)).toBe(-1);
    expect(cstringEnd(F.concat("xyz"), 0, 3)).toBe(-1);
    // Past the first 32 bytes (looked at one by one) the rest is searched too, up to the limit only.
    for (const n of [31, 32, 33, 100]) {
      const long = F.concat(F.cstr("q".repeat(n)), "tail", [0]);
      expect([n, cstringEnd(long, 0, long.length)]).toEqual([n, n]);
      expect([n, cstringEnd(long, 0, n)]).toEqual([n, -1]);
      expect([n, cstringEnd(long, n + 1, long.length)]).toEqual([n, long.length - 1]);
    }
  });

  test("decodeAscii and decodeUtf8 decode short, long and non-ASCII names", () => {
    const enc = new TextEncoder();
    const long = "s".repeat(40);
    const b = F.concat("xx", "stmt_1", long, "héllo", "prêt_à_porter_statement_name_long");
    expect(decodeAscii(b, 2, 8)).toBe("stmt_1");
    expect(decodeAscii(b, 8, 48)).toBe(long);
    const h = 48;
    const hEnd = h + enc.encode("héllo").length;
    expect(decodeAscii(b, h, hEnd)).toBe("héllo");
    expect(decodeUtf8(b, h, hEnd)).toBe("héllo");
    expect(decodeUtf8(b, hEnd, b.length)).toBe("prêt_à_porter_statement_name_long");
    expect(decodeAscii(b, 3, 3)).toBe("");
  });
});
