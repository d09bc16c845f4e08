// What a server connection counts of the reply to the request in flight (rows, command tag, first error), when feature modules listen.

import { decodeAscii } from "../protocol/framing.ts";

/** Command tags seen lately, by a hash of their bytes: the same tag ("UPDATE 1", "COMMIT") is one string, not one per reply. */
const TAGS: (string | undefined)[] = new Array(64);

/** The command tag in b[from, to) as a string (interned in a small direct-mapped table). */
export function commandTag(b: Uint8Array, from: number, to: number): string {
  let h = to - from;
  for (let i = from; i < to; i++) h = (Math.imul(h, 31) + b[i]!) | 0;
  const slot = h & 63;
  const known = TAGS[slot];
  if (known !== undefined && known.length === to - from) {
    let i = 0;
    while (i < known.length && known.charCodeAt(i) === b[from + i]) i++;
    if (i === known.length) return known;
  }
  const tag = decodeAscii(b, from, to);
  TAGS[slot] = tag;
  return tag;
}

/** What a server tallied for the request in flight; reset at each ReadyForQuery. */
export class ResultTally {
  rows = 0;
  tag = "";
  errorCode = "";
  errorMessage = "";
  /** The reply in flight is being kept (a module asked). */
  capturing = false;
  /** Bytes of reply still allowed into `captured` (-1: it outgrew its cap). */
  private captureLeft = 0;
  private captured: Uint8Array | null = null;
  private capturedLength = 0;

  /** Keep the messages of the reply in flight, up to `maxBytes`. */
  capture(maxBytes: number): void {
    this.capturing = true;
    this.captureLeft = maxBytes;
    this.capturedLength = 0;
  }

  /** One backend message b[from, to) of the reply. */
  keep(b: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n > this.captureLeft) {
      // Too large to keep: the rest streams through uncopied.
      this.captureLeft = -1;
      this.capturing = false;
      return;
    }
    this.captureLeft -= n;
    const need = this.capturedLength + n;
    if (this.captured === null || need > this.captured.length) {
      const next = new Uint8Array(Math.max(need, (this.captured?.length ?? 512) * 2));
      if (this.captured !== null) next.set(this.captured.subarray(0, this.capturedLength));
      this.captured = next;
    }
    this.captured.set(b.subarray(from, to), this.capturedLength);
    this.capturedLength = need;
  }

  /** A message of the reply streams through without being seen whole: counted, and no copy of the reply is kept. */
  streamed(row: boolean): void {
    if (row) this.rows++;
    this.captureLeft = -1;
    this.capturing = false;
  }

  /** A copy of the kept reply, or undefined when none was asked or it outgrew its cap. */
  reply(): Uint8Array | undefined {
    if (!this.capturing) return undefined;
    return this.captured === null ? new Uint8Array(0) : this.captured.slice(0, this.capturedLength);
  }

  reset(): void {
    this.rows = 0;
    this.tag = "";
    this.errorCode = "";
    this.errorMessage = "";
    this.capturing = false;
    this.captureLeft = 0;
    this.capturedLength = 0;
    if (this.captured !== null && this.captured.length > 1 << 16) this.captured = null;
  }
}

