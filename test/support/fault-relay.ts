// Test relay between the proxy and PostgreSQL: frames protocol messages both ways and cuts one connection at a chosen point around a COMMIT or a write.

import net from "node:net";
import { freePort } from "../../src/util/net.ts";

/**
 * Where the next matching connection is cut (server side first, then the proxy's side):
 * - cut-after-commit: the COMMIT reaches the server and commits; no reply to it comes back (replies
 *   to queries sent ahead of it in the same write, the proxy's transaction-id read, do).
 * - cut-before-commit: what was sent ahead of the COMMIT reaches the server and is answered; the
 *   COMMIT is dropped.
 * - cut-at-commit-chunk: the write holding the COMMIT (and anything sent with it) is dropped.
 * - cut-after-write: an INSERT reaches the server; no reply comes back.
 * - cut-at-chunk: the first write whose messages satisfy the armed `when` is dropped (any request: a Parse, a Sync alone...).
 */
export type FaultRule = "cut-after-commit" | "cut-before-commit" | "cut-at-commit-chunk" | "cut-after-write" | "cut-before-rollback" | "cut-before-refusal" | "cut-at-chunk";

/** Picks the client write `cut-at-chunk` fires on, from its whole messages (type byte first). */
export type ChunkMatch = (msgs: Buffer[]) => boolean;

const COMMIT = /^\s*(?:commit|end)\b/i;
const INSERT = /^\s*insert\b/i;
const ROLLBACK = /^\s*rollback\b/i;
/** The proxy's own error raised in place of a refused request. */
const REFUSAL = /^DO \$hp\d+\$BEGIN RAISE EXCEPTION/;
/** Time the server gets to finish what reached it before the cut. */
const SETTLE_MS = 300;
/** How long a lingering backend stays connected after the proxy's side was cut. */
const LINGER_MS = 3000;
/** The server side goes first: its backend sees the cut before the proxy can ask it anything anew. */
const PROXY_SIDE_DELAY_MS = 0;
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const PROTOCOL_3 = 196608;

/** Splits a byte stream into whole messages (untyped: length-prefixed startup packets). */
class Framer {
  private buf: Buffer = Buffer.alloc(0);
  typed: boolean;

  constructor(typed: boolean) {
    this.typed = typed;
  }

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      const head = this.typed ? 5 : 4;
      if (this.buf.length < head) return out;
      const size = this.buf.readInt32BE(head - 4) + head - 4;
      if (this.buf.length < size) return out;
      out.push(this.buf.subarray(0, size));
      this.buf = this.buf.subarray(size);
    }
  }
}

/** SQL text of a simple Query message ('Q'), else null. */
function queryText(m: Buffer): string | null {
  return m[0] === 0x51 ? m.toString("utf8", 5, m.length - 1) : null;
}

/** One proxied connection and the fault it may carry out. */
class Pair {
  private readonly fromClient = new Framer(false);
  private readonly fromServer = new Framer(true);
  /** SSLRequest/GSSENCRequest sent: the server answers with one unframed byte. */
  private encryptionAsked = false;
  /** Encryption was accepted: bytes pass unframed, no fault can fire. */
  private opaque = false;
  /** Client messages are dropped from now on. */
  private clientMuted = false;
  /** Server messages still forwarded (ReadyForQuery counted); -1: no limit. */
  private serverZLeft = -1;
  /** What to do once the limit is reached. */
  private afterZ: (() => void) | null = null;
  /** The server side is cut; the proxy's side follows on a timer. */
  private cutting = false;
  private readonly timers: ReturnType<typeof setTimeout>[] = [];

  constructor(
    private readonly front: net.Socket,
    private readonly back: net.Socket,
    private readonly relay: FaultRelay,
  ) {
    front.on("data", (c: Buffer) => this.clientData(c));
    back.on("data", (c: Buffer) => this.serverData(c));
    front.on("error", () => {});
    back.on("error", () => {});
    front.on("close", () => this.destroy());
    back.on("close", () => {
      if (!this.cutting) this.destroy();
    });
  }

  private clientData(chunk: Buffer): void {
    if (this.clientMuted) return;
    if (this.opaque) return void this.back.write(chunk);
    const msgs = this.fromClient.push(chunk);
    const fired = this.fromClient.typed ? this.relay.take(msgs) : null;
    if (fired === null) {
      for (const m of msgs) this.clientMessage(m);
      return;
    }
    const { rule, at } = fired;
    this.clientMuted = true;
    // Queries sent ahead of the COMMIT in the same chunk (the proxy's transaction-id read when it has no id yet) get their replies.
    const ahead = msgs.slice(0, at).filter((m) => m[0] === 0x51).length;
    if (rule === "cut-after-commit") {
      this.send(msgs.slice(0, at + 1));
      this.limitServer(ahead, null);
      this.later(this.relay.holdMs ?? SETTLE_MS, () => this.cut());
    } else if (rule === "cut-before-commit" || rule === "cut-before-rollback" || rule === "cut-before-refusal") {
      this.send(msgs.slice(0, at));
      const hold = this.relay.holdMs;
      const cut = () => (hold === null ? this.cut() : this.later(hold, () => this.cut()));
      if (ahead === 0) cut();
      else this.limitServer(ahead, cut);
    } else if (rule === "cut-at-commit-chunk" || rule === "cut-at-chunk") {
      this.cut();
    } else {
      this.send(msgs.slice(0, at + 1));
      this.limitServer(0, null);
      this.later(this.relay.holdMs ?? SETTLE_MS, () => this.cut());
    }
  }

  /** A client message before or outside any fault; startup packets decide how the server side is framed. */
  private clientMessage(m: Buffer): void {
    if (!this.fromClient.typed) {
      const code = m.readInt32BE(4);
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) this.encryptionAsked = true;
      else if (code === PROTOCOL_3) this.fromClient.typed = true;
    }
    this.back.write(m);
  }

  private send(msgs: Buffer[]): void {
    for (const m of msgs) this.back.write(m);
  }

  private serverData(chunk: Buffer): void {
    if (this.opaque) return void this.front.write(chunk);
    if (this.encryptionAsked) {
      this.encryptionAsked = false;
      this.front.write(chunk.subarray(0, 1));
      if (chunk[0] !== 0x4e) {
        // 'S' or 'G': the rest is encrypted.
        this.opaque = true;
        if (chunk.length > 1) this.front.write(chunk.subarray(1));
        return;
      }
      chunk = chunk.subarray(1);
      if (chunk.length === 0) return;
    }
    for (const m of this.fromServer.push(chunk)) {
      if (this.serverZLeft === 0) continue;
      this.front.write(m);
      if (this.serverZLeft > 0 && m[0] === 0x5a && --this.serverZLeft === 0) {
        const then = this.afterZ;
        this.afterZ = null;
        then?.();
      }
    }
  }

  /** Forward server messages up to `n` more ReadyForQuery, then swallow; `then` runs on the last one. */
  private limitServer(n: number, then: (() => void) | null): void {
    this.serverZLeft = n;
    this.afterZ = then;
  }

  private later(ms: number, f: () => void): void {
    this.timers.push(setTimeout(f, ms));
  }

  /**
   * Cut without a word: the server side at once, the proxy's side a little later — or, when the
   * backend lingers, the proxy's side first and the server's only after a while (a broken link
   * the old backend has not noticed yet).
   */
  private cut(): void {
    this.cutting = true;
    this.serverZLeft = 0;
    if (this.relay.backendLingers) {
      this.front.destroy();
      this.later(LINGER_MS, () => this.destroy());
      return;
    }
    this.back.destroy();
    this.later(PROXY_SIDE_DELAY_MS, () => this.destroy());
  }

  destroy(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.length = 0;
    this.front.destroy();
    this.back.destroy();
    this.relay.forget(this);
  }
}

/** A TCP relay on a free port in front of `target` (PostgreSQL on 127.0.0.1:5432 by default). */
export class FaultRelay {
  private armed: FaultRule | null = null;
  private readonly pairs = new Set<Pair>();
  /** Rules that fired, in order. */
  readonly fired: FaultRule[] = [];

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetPort = 5432, targetHost = "127.0.0.1"): Promise<FaultRelay> {
    const port = freePort();
    let relay: FaultRelay | null = null;
    const server = net.createServer((front) => {
      const back = net.connect(targetPort, targetHost);
      relay!.pairs.add(new Pair(front, back, relay!));
    });
    relay = new FaultRelay(server, port);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    return relay;
  }

  /** The old backend stays connected for a while after the proxy's side is cut (set by armOnce). */
  backendLingers = false;

  /** How long the connection stays silent before the cut (set by armOnce; null: the rule's own, 300 ms after a forwarded trigger, none before). */
  holdMs: number | null = null;

  /**
   * The next connection that sends the rule's trigger is cut by it; the others relay untouched.
   * holdMs: a long one keeps the connection silent (no reply, no cut) until the server goes.
   */
  armOnce(rule: FaultRule, o: { backendLingers?: boolean; when?: ChunkMatch; holdMs?: number } = {}): void {
    this.armed = rule;
    this.backendLingers = o.backendLingers ?? false;
    this.when = o.when ?? null;
    this.holdMs = o.holdMs ?? null;
  }

  /** Which write `cut-at-chunk` fires on. */
  private when: ChunkMatch | null = null;

  /** Armed once the rule armed now has fired (a second cut the proxy's reaction to the first runs into). */
  private next: FaultRule | null = null;
  thenArm(rule: FaultRule): void {
    this.next = rule;
  }

  /** The armed rule fires on these client messages: the rule and its trigger's index (the rule is disarmed). */
  take(msgs: Buffer[]): { rule: FaultRule; at: number } | null {
    const rule = this.armed;
    if (rule === null) return null;
    if (rule === "cut-at-chunk") {
      if (this.when === null || !this.when(msgs)) return null;
      this.armed = null;
      this.fired.push(rule);
      return { rule, at: 0 };
    }
    const trigger = rule === "cut-after-write" ? INSERT : rule === "cut-before-rollback" ? ROLLBACK : rule === "cut-before-refusal" ? REFUSAL : COMMIT;
    const at = msgs.findIndex((m) => {
      const sql = queryText(m);
      return sql !== null && trigger.test(sql);
    });
    if (at < 0) return null;
    this.armed = this.next;
    this.next = null;
    this.fired.push(rule);
    return { rule, at };
  }

  forget(p: Pair): void {
    this.pairs.delete(p);
  }

  /** Stop listening and drop every connection. */
  async close(): Promise<void> {
    this.armed = null;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const p of [...this.pairs]) p.destroy();
    await closed;
  }
}
