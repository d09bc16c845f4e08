// Write load for the failover benchmarks: autocommit ledger INSERTs (and optionally short transactions) through a proxy, each write's send and acknowledgement time and server port recorded.

import pg from "pg";
import type { LedgerWrite } from "../test/support/ledger.ts";

export interface WriteError {
  /** performance.now() when the failed write (or transaction) was sent, and when it failed. */
  sentAt: number;
  at: number;
  code: string;
  message: string;
  /** "write" (autocommit INSERT) or "tx" (the multi-statement transaction client). */
  source: "write" | "tx";
}

export const TIMEOUT_MS = 15_000;

export function pgError(e: unknown): { code: string; message: string } {
  const err = e as Error & { code?: string };
  return { code: err.code ?? "client", message: err.message.replace(/\s+/g, " ").slice(0, 160) };
}

async function connect(port: number): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "app", connectionTimeoutMillis: TIMEOUT_MS, query_timeout: TIMEOUT_MS });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/**
 * Autocommit INSERTs of unique ids through the proxy (the ledger of test/support/ledger.ts),
 * recording when each was sent and acknowledged and, unlike LedgerLoad, when a failed one was
 * sent (to tell writes in flight at the kill from writes issued during the failover). A client
 * whose write fails reconnects. Optionally one more client runs short multi-statement transactions.
 */
export class WriteLoad {
  readonly acked: LedgerWrite[] = [];
  readonly errors: WriteError[] = [];
  /** Commits of the transaction client (id of its row; port 0). */
  readonly txAcked: LedgerWrite[] = [];
  private running = true;
  /** While set, writers send nothing (and finish what they sent). */
  paused = false;
  private readonly done: Promise<void>[];

  /** firstWriter: the first writer number (loads through several proxies write distinct ids). */
  constructor(port: number, o: { clients: number; everyMs: number; transactions: boolean; firstWriter?: number }) {
    const first = o.firstWriter ?? 0;
    this.done = Array.from({ length: o.clients }, (_, w) => this.writer(first + w, port, o.everyMs, o.clients));
    if (o.transactions) this.done.push(this.txClient(port));
  }

  private async writer(w: number, port: number, everyMs: number, clients: number): Promise<void> {
    // Sparse writers start spread over one period so their writes interleave.
    if (everyMs > 0) await Bun.sleep((everyMs / clients) * (w % clients));
    let c: pg.Client | null = null;
    let seq = 0;
    while (this.running) {
      if (this.paused) {
        await Bun.sleep(5);
        continue;
      }
      const id = (w + 1) * 1_000_000 + ++seq;
      const sentAt = performance.now();
      try {
        c ??= await connect(port);
        const r = await c.query({ text: `INSERT INTO ledger (id, writer) VALUES (${id}, ${w}) RETURNING inet_server_port()`, rowMode: "array" });
        this.acked.push({ id, sentAt, ackAt: performance.now(), port: Number(r.rows[0][0]) });
      } catch (e) {
        this.errors.push({ sentAt, at: performance.now(), source: "write", ...pgError(e) });
        await c?.end().catch(() => {});
        c = null;
      }
      if (everyMs > 0) {
        const wait = sentAt + everyMs - performance.now();
        if (wait > 0) await Bun.sleep(wait);
      }
    }
    await c?.end().catch(() => {});
  }

  /** BEGIN; INSERT; 20 ms; UPDATE; COMMIT, over and over (as test/ha/switchover.test.ts). */
  private async txClient(port: number): Promise<void> {
    let c: pg.Client | null = null;
    let n = 0;
    while (this.running) {
      const id = 90_000_000 + ++n;
      const sentAt = performance.now();
      try {
        c ??= await connect(port);
        await c.query("BEGIN");
        await c.query(`INSERT INTO ledger (id, writer) VALUES (${id}, 50)`);
        await Bun.sleep(20);
        await c.query(`UPDATE ledger SET writer = 51 WHERE id = ${id}`);
        await c.query("COMMIT");
        this.txAcked.push({ id, sentAt, ackAt: performance.now(), port: 0 });
      } catch (e) {
        this.errors.push({ sentAt, at: performance.now(), source: "tx", ...pgError(e) });
        await c?.end().catch(() => {});
        c = null;
      }
    }
    await c?.end().catch(() => {});
  }

  /** The first write acknowledged after `t` by a backend other than `notPort`. */
  firstAckAfter(t: number, notPort: number): LedgerWrite | undefined {
    let best: LedgerWrite | undefined;
    for (const a of this.acked) if (a.ackAt >= t && a.port !== notPort && (best === undefined || a.ackAt < best.ackAt)) best = a;
    return best;
  }

  async waitAckAfter(t: number, notPort: number, limitMs: number): Promise<LedgerWrite> {
    const t0 = performance.now();
    for (;;) {
      const a = this.firstAckAfter(t, notPort);
      if (a) return a;
      if (performance.now() - t0 > limitMs) throw new Error(`no write acknowledged by a new primary within ${limitMs} ms; last errors: ${JSON.stringify(this.errors.slice(-3))}`);
      await Bun.sleep(5);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }
}

