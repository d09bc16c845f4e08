// Message builder for the few messages the proxy writes itself (errors, startup, auth, injected SQL).

const encoder = new TextEncoder();

/** Growable byte writer; `msg(type)` ... `end()` frames one message with its length. */
export class MessageWriter {
  private buf: Uint8Array;
  private pos = 0;
  private lenAt = -1;

  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** Start a message with a type byte (0 = untyped, as startup packets are). */
  msg(type: number): this {
    if (type !== 0) {
      this.ensure(1);
      this.buf[this.pos++] = type;
    }
    this.lenAt = this.pos;
    return this.int32(0);
  }

  byte(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    const b = this.buf;
    b[this.pos++] = v >>> 24;
    b[this.pos++] = v >>> 16;
    b[this.pos++] = v >>> 8;
    b[this.pos++] = v;
    return this;
  }

  bytes(v: Uint8Array): this {
    this.ensure(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
    return this;
  }

  /** String without terminator. */
  str(s: string): this {
    this.ensure(s.length * 3);
    this.pos += encoder.encodeInto(s, this.buf.subarray(this.pos)).written!;
    return this;
  }

  /** NUL-terminated string. */
  cstr(s: string): this {
    return this.str(s).byte(0);
  }

  /** Close the current message: patch its length. */
  end(): this {
    const len = this.pos - this.lenAt;
    const b = this.buf;
    b[this.lenAt] = len >>> 24;
    b[this.lenAt + 1] = len >>> 16;
    b[this.lenAt + 2] = len >>> 8;
    b[this.lenAt + 3] = len;
    this.lenAt = -1;
    return this;
  }

  /** A copy of everything written, and reset. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.pos);
    this.pos = 0;
    return out;
  }
}

/** Build one message in a fresh writer and return its bytes. */
export function build(fn: (w: MessageWriter) => void): Uint8Array {
  const w = new MessageWriter();
  fn(w);
  return w.take();
}
