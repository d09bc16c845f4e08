// Receive buffer and message framing: messages are (type, offset, length) views, never copies.

/**
 * One growable buffer per socket. Data is appended at `end`; consumers read
 * whole messages from `start`. It compacts or doubles, never concatenates per read.
 */
export class ReceiveBuffer {
  /** Empty until the first partial message arrives: idle connections hold no buffer. */
  buf: Uint8Array = EMPTY;
  start = 0;
  end = 0;

  constructor(private readonly initial = 16384) {}

  get size(): number {
    return this.end - this.start;
  }

  /** Append bytes, compacting first and growing (doubling) only when needed. */
  push(chunk: Uint8Array): void {
    const n = chunk.length;
    if (this.end + n > this.buf.length) {
      const live = this.end - this.start;
      if (live + n <= this.buf.length && this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let cap = Math.max(this.buf.length * 2, this.initial);
        while (cap < live + n) cap *= 2;
        const next = new Uint8Array(cap);
        next.set(this.buf.subarray(this.start, this.end));
        this.buf = next;
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += n;
  }

  /** Drop `n` consumed bytes from the front; resets to offset 0 when empty. */
  consume(n: number): void {
    this.start += n;
    if (this.start >= this.end) {
      this.start = 0;
      this.end = 0;
    }
  }

  clear(): void {
    this.start = 0;
    this.end = 0;
  }

  /** Drop a large buffer once it is empty again (idle sockets stay cheap). */
  shrinkIfIdle(limit = 65536): void {
    if (this.end === this.start && this.buf.length > limit) {
      this.buf = EMPTY;
      this.start = 0;
      this.end = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);

/** Big-endian int32 at `pos`. */
export function readInt32(b: Uint8Array, pos: number): number {
  return ((b[pos]! << 24) | (b[pos + 1]! << 16) | (b[pos + 2]! << 8) | b[pos + 3]!) | 0;
}

export function readInt16(b: Uint8Array, pos: number): number {
  return ((b[pos]! << 8) | b[pos + 1]!) << 16 >> 16;
}

export function writeInt32(b: Uint8Array, pos: number, v: number): void {
  b[pos] = v >>> 24;
  b[pos + 1] = v >>> 16;
  b[pos + 2] = v >>> 8;
  b[pos + 3] = v;
}

/**
 * Index of the NUL that ends the C string starting at `pos`, or -1 before `limit`. Names are short:
 * the first bytes are looked at here (a native indexOf costs more to call than a short loop), the rest by indexOf.
 */
export function cstringEnd(b: Uint8Array, pos: number, limit: number): number {
  const near = Math.min(limit, pos + 32);
  for (let i = pos; i < near; i++) if (b[i] === 0) return i;
  if (near >= limit) return -1;
  const i = b.indexOf(0, near);
  return i < 0 || i >= limit ? -1 : i;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");

/** Decode bytes [from, to) as UTF-8 (PostgreSQL client_encoding UTF8 is what we speak); short ASCII without a decoder or a view. */
export function decodeUtf8(b: Uint8Array, from: number, to: number): string {
  return to - from < 32 ? shortText(b, from, to, utf8) : utf8.decode(b.subarray(from, to));
}

/** Decode a short ASCII name (statement names, tags) without UTF-8 validation cost. */
export function decodeAscii(b: Uint8Array, from: number, to: number): string {
  return to - from < 32 ? shortText(b, from, to, utf8) : latin1.decode(b.subarray(from, to));
}

/** A few bytes as text, character by character while they are ASCII; else by `decoder`. */
function shortText(b: Uint8Array, from: number, to: number, decoder: TextDecoder): string {
  let s = "";
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c > 127) return decoder.decode(b.subarray(from, to));
    s += String.fromCharCode(c);
  }
  return s;
}


