// Write side of a socket: Bun's write() may take only part of a buffer and keeps nothing; queue the rest. Small writes made while corked go out as one.

import type { Socket } from "bun";

/** Bytes queued beyond which the producer on the other side is paused. */
export const HIGH_WATER = 1 << 20;
/** Queue size at which a paused producer is resumed. */
export const LOW_WATER = 1 << 18;

export interface BackpressureTarget {
  /** Stop reading from the peer that feeds this outbox. */
  pauseProducer(): void;
  /** Resume reading from that peer. */
  resumeProducer(): void;
}

/** Room for the small writes of one corked outbox (callbacks run one at a time: one outbox is corked at once). */
const CORK_BYTES = 16 * 1024;
let corkBuf: Uint8Array | null = null;
let corkOwner: Outbox | null = null;
let corkLen = 0;

/**
 * Writes go straight to the socket while nothing is queued; the unwritten tail is copied into
 * the queue (the caller's buffer is reused at once). `flush` runs on the socket's drain event.
 */
export class Outbox {
  sock: Socket<any> | null = null;
  private queue: Uint8Array[] = [];
  private head = 0;
  queued = 0;
  private paused = false;
  closed = false;

  constructor(private readonly target: BackpressureTarget) {}

  /** The producer is paused: the queue went over the high-water mark and has not drained below the low one. */
  get producerPaused(): boolean {
    return this.paused;
  }

  attach(sock: Socket<any>): void {
    this.sock = sock;
  }

  /**
   * Gather the small writes that follow into one socket write, made by uncork() (a send per
   * message costs more than the copy). No-op when another outbox is corked.
   */
  cork(): void {
    if (corkOwner !== null || this.closed) return;
    corkOwner = this;
    corkLen = 0;
    corkBuf ??= new Uint8Array(CORK_BYTES);
  }

  /** Write what was gathered since cork(). */
  uncork(): void {
    if (corkOwner !== this) return;
    corkOwner = null;
    if (corkLen > 0) this.write(corkBuf!, 0, corkLen);
  }

  /** Write data[from, to) (default: all); returns false once the queue is over the high-water mark. */
  write(data: Uint8Array, from = 0, to = data.length): boolean {
    const len = to - from;
    if (this.closed || len <= 0) return !this.closed;
    if (corkOwner === this) {
      if (corkLen + len <= CORK_BYTES) {
        corkBuf!.set(from === 0 && to === data.length ? data : data.subarray(from, to), corkLen);
        corkLen += len;
        return true;
      }
      // Too large to gather: what was gathered goes first, then this as it is.
      this.uncork();
      const ok = this.write(data, from, to);
      this.cork();
      return ok;
    }
    if (this.queued === 0) {
      const n = this.sock!.write(data, from, len);
      if (n === len) return true;
      this.enqueue(data.slice(from + Math.max(0, n), to));
    } else {
      this.enqueue(data.slice(from, to));
    }
    if (this.queued > HIGH_WATER && !this.paused) {
      this.paused = true;
      this.target.pauseProducer();
    }
    return this.queued <= HIGH_WATER;
  }

  /** `rest` is already a private copy. */
  private enqueue(rest: Uint8Array): void {
    this.queue.push(rest);
    this.queued += rest.length;
  }

  /** Called on drain: push out what is queued; resume the producer under the low-water mark. */
  flush(): void {
    const sock = this.sock;
    if (!sock || this.closed) return;
    while (this.head < this.queue.length) {
      const chunk = this.queue[this.head]!;
      const n = sock.write(chunk);
      if (n < chunk.length) {
        if (n > 0) {
          this.queue[this.head] = chunk.subarray(n);
          this.queued -= n;
        }
        break;
      }
      this.queued -= chunk.length;
      this.head++;
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 64) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (this.paused && this.queued <= LOW_WATER) {
      this.paused = false;
      this.target.resumeProducer();
    }
  }

  /** True when everything written so far has been handed to the kernel. */
  get empty(): boolean {
    return this.queued === 0 && (corkOwner !== this || corkLen === 0);
  }

  /** Write then close once the queue is flushed (or at once if empty). */
  end(data?: Uint8Array): void {
    if (this.closed) return;
    if (data) this.write(data);
    this.uncork();
    this.closed = true;
    const sock = this.sock;
    if (!sock) return;
    if (this.queued === 0) sock.end();
    else {
      // Give the queue one chance to drain, then end regardless.
      this.closed = false;
      this.flush();
      this.closed = true;
      sock.end();
    }
  }

  discard(): void {
    if (corkOwner === this) corkOwner = null;
    this.closed = true;
    this.queue.length = 0;
    this.head = 0;
    this.queued = 0;
  }
}
