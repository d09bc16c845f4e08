// Outbox: corked writes leave in one socket write, in order, with partial writes queued and large writes passed through.

import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { Outbox } from "../../src/util/outbox.ts";

/** A socket stand-in that records each write and takes at most `room` bytes of it. */
function recorder(room = Infinity) {
  const writes: number[][] = [];
  const sock = {
    room,
    ended: false,
    write(data: Uint8Array, from = 0, len = data.length - from) {
      const n = Math.min(len, this.room);
      writes.push([...data.subarray(from, from + n)]);
      return n;
    },
    end() {
      this.ended = true;
    },
  };
  const out = new Outbox({ pauseProducer() {}, resumeProducer() {} });
  out.attach(sock as unknown as Socket<unknown>);
  return { out, sock, writes };
}

const bytes = (...xs: number[]) => new Uint8Array(xs);

describe("Outbox cork", () => {
  test("writes between cork and uncork go out as one socket write", () => {
    const { out, writes } = recorder();
    out.cork();
    out.write(bytes(1, 2, 3));
    out.write(bytes(9, 4, 5, 9), 1, 3);
    expect(writes).toEqual([]);
    out.uncork();
    expect(writes).toEqual([[1, 2, 3, 4, 5]]);
    out.write(bytes(6));
    expect(writes).toEqual([[1, 2, 3, 4, 5], [6]]);
  });

  test("a partial socket write queues the rest, flushed in order on drain", () => {
    const { out, sock, writes } = recorder(2);
    out.cork();
    out.write(bytes(1, 2, 3));
    out.write(bytes(4));
    out.uncork();
    expect(out.empty).toBe(false);
    out.write(bytes(5));
    sock.room = Infinity;
    out.flush();
    expect(writes.flat()).toEqual([1, 2, 3, 4, 5]);
    expect(out.empty).toBe(true);
  });

  test("a write too large to gather follows what was gathered", () => {
    const { out, writes } = recorder();
    const big = new Uint8Array(64 * 1024).fill(7);
    out.cork();
    out.write(bytes(1));
    out.write(big);
    out.write(bytes(2));
    out.uncork();
    expect(writes.length).toBe(3);
    expect(writes[0]).toEqual([1]);
    expect(writes[1]!.length).toBe(big.length);
    expect(writes[2]).toEqual([2]);
  });

  test("end() while corked sends what was gathered before closing", () => {
    const { out, sock, writes } = recorder();
    out.cork();
    out.write(bytes(1, 2));
    out.end(bytes(3));
    expect(writes).toEqual([[1, 2, 3]]);
    expect(sock.ended).toBe(true);
    out.uncork();
    expect(writes.length).toBe(1);
  });

  test("one outbox is corked at a time: another writes straight through", () => {
    const a = recorder();
    const b = recorder();
    a.out.cork();
    b.out.cork();
    a.out.write(bytes(1));
    b.out.write(bytes(2));
    expect(b.writes).toEqual([[2]]);
    b.out.uncork();
    a.out.uncork();
    expect(a.writes).toEqual([[1]]);
  });

  test("discard() while corked drops what was gathered and frees the cork", () => {
    const a = recorder();
    const b = recorder();
    a.out.cork();
    a.out.write(bytes(1));
    a.out.discard();
    a.out.uncork();
    expect(a.writes).toEqual([]);
    b.out.cork();
    b.out.write(bytes(2));
    b.out.uncork();
    expect(b.writes).toEqual([[2]]);
  });
});
