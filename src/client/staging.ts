// A round of client bytes on its way to a server: forwarded as received, or, once a message is rewritten or added, gathered in one buffer and written once.

import { Fe } from "../protocol/codes.ts";
import { writeInt32 } from "../protocol/framing.ts";
import type { ServerConnection } from "../server/connection.ts";
import type { Stage } from "../core/request-tap.ts";
import { writeRenamed } from "./prepared.ts";

export class Staging implements Stage {
  /** Allocated on the first rewrite; most sessions in transaction mode need it, idle ones don't. */
  private buf = new Uint8Array(0);
  /** -1: not staging this round; else bytes staged. */
  staged = -1;

  spill(b: Uint8Array, run: number, pos: number): number {
    if (this.staged < 0) this.staged = 0;
    if (pos > run) this.put(b, run, pos);
    return pos;
  }

  put(b: Uint8Array, from: number, to: number): void {
    this.room(to - from);
    this.buf.set(b.subarray(from, to), this.staged);
    this.staged += to - from;
  }

  /** Stage after what is staged (starting to stage if not yet). */
  append(b: Uint8Array): void {
    if (this.staged < 0) this.staged = 0;
    this.put(b, 0, b.length);
  }

  putQueryWithTail(b: Uint8Array, pos: number, end: number, tail: Uint8Array): void {
    const textLen = end - pos - 6; // without the type, length and final NUL
    const len = 4 + textLen + tail.length;
    this.room(1 + len);
    const st = this.buf;
    st[this.staged] = Fe.Query;
    writeInt32(st, this.staged + 1, len);
    st.set(b.subarray(pos + 5, end - 1), this.staged + 5);
    st.set(tail, this.staged + 5 + textLen);
    this.staged += 1 + len;
  }

  /** Stage the message b[pos, end) with the name at [nameStart, nameEnd) replaced by `name`. */
  putRenamed(b: Uint8Array, pos: number, nameStart: number, nameEnd: number, end: number, name: string): void {
    this.room(end - pos + name.length);
    this.staged += writeRenamed(this.buf, this.staged, b, pos, nameStart, nameEnd, end, name);
  }

  private room(n: number): void {
    if (this.staged + n <= this.buf.length) return;
    let cap = Math.max(this.buf.length * 2, 4096);
    while (cap < this.staged + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.staged));
    this.buf = next;
  }

  /** Write what this round produced: the staged copy, or the untouched run b[run, pos) straight from the input. */
  flush(server: ServerConnection | null, b: Uint8Array, run: number, pos: number): void {
    if (server === null) return;
    if (this.staged >= 0) {
      if (pos > run) this.put(b, run, pos);
      server.stats.bytesIn += this.staged;
      if (this.staged > 0) server.out.write(this.buf, 0, this.staged);
      this.staged = -1;
      if (this.buf.length > 1 << 20) this.buf = new Uint8Array(0);
    } else if (pos > run) {
      server.stats.bytesIn += pos - run;
      server.out.write(b, run, pos);
    }
  }
}
