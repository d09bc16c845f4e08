// Write load with a ledger: clients insert unique ids through the proxy and remember which were acknowledged, to check none is lost or doubled.

import pg from "pg";

export interface LedgerWrite {
  id: number;
  /** performance.now() when the write was sent and when its acknowledgement came. */
  sentAt: number;
  ackAt: number;
  /** Backend port that ran it (inet_server_port()). */
  port: number;
}

export interface LedgerError {
  at: number;
  code: string;
  message: string;
}

/** The table the load writes to (create it on the primary first). No unique key: a doubled write must show. */
export const LEDGER_DDL = "CREATE TABLE IF NOT EXISTS ledger (id bigint NOT NULL, writer int NOT NULL, at timestamptz NOT NULL DEFAULT now())";

export class LedgerLoad {
  readonly acked: LedgerWrite[] = [];
  readonly errors: LedgerError[] = [];
  private running = true;
  private readonly done: Promise<void>[];

  constructor(
    port: number,
    /**
     * firstWriter: the first writer number (loads through several proxies write distinct ids).
     * transactions: each write is BEGIN; INSERT; COMMIT (acknowledged by the COMMIT), the port read after it.
     */
    o: { clients: number; database: string; pauseMs?: number; queryTimeoutMs?: number; firstWriter?: number; transactions?: boolean },
  ) {
    this.done = Array.from({ length: o.clients }, (_, w) => this.writer(w + (o.firstWriter ?? 0), port, o.database, o.pauseMs ?? 5, o.queryTimeoutMs ?? 15000, o.transactions === true));
  }

  private async writer(w: number, port: number, database: string, pauseMs: number, timeoutMs: number, transactions: boolean): Promise<void> {
    let c: pg.Client | null = null;
    let seq = 0;
    while (this.running) {
      const id = (w + 1) * 1_000_000 + ++seq;
      const sentAt = performance.now();
      try {
        if (c === null) {
          c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
          c.on("error", () => {});
          await c.connect();
        }
        if (transactions) {
          await c.query("BEGIN");
          await c.query(`INSERT INTO ledger (id, writer) VALUES (${id}, ${w})`);
          await c.query("COMMIT");
          const ackAt = performance.now();
          const r = await c.query({ text: "SELECT inet_server_port()", rowMode: "array" });
          this.acked.push({ id, sentAt, ackAt, port: Number(r.rows[0][0]) });
        } else {
          const r = await c.query({ text: `INSERT INTO ledger (id, writer) VALUES (${id}, ${w}) RETURNING inet_server_port()`, rowMode: "array" });
          this.acked.push({ id, sentAt, ackAt: performance.now(), port: Number(r.rows[0][0]) });
        }
      } catch (e) {
        const err = e as Error & { code?: string };
        // The statement's watchdog (query_timeout) fired: a hang, never an acceptable error.
        const code = err.code ?? (/timeout/i.test(err.message) ? "hang" : "client");
        this.errors.push({ at: performance.now(), code, message: err.message });
        await c?.end().catch(() => {});
        c = null;
      }
      await Bun.sleep(pauseMs);
    }
    await c?.end().catch(() => {});
  }

  /** The first acknowledged write sent after `t` on `port` (undefined if none yet). */
  firstAckAfter(t: number, port?: number): LedgerWrite | undefined {
    return this.acked.find((a) => a.sentAt >= t && (port === undefined || a.port === port));
  }

  async waitAckAfter(t: number, port: number, limitMs = 15000): Promise<LedgerWrite> {
    const t0 = performance.now();
    for (;;) {
      const a = this.firstAckAfter(t, port);
      if (a) return a;
      if (performance.now() - t0 > limitMs) throw new Error(`no write acknowledged by port ${port} within ${limitMs} ms; last errors: ${JSON.stringify(this.errors.slice(-3))}`);
      await Bun.sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }
}

/**
 * Every acknowledged id is present exactly once in `ids` (the ledger's ids read from the new
 * primary). Returns the missing and duplicated ones (both empty when the ledger holds).
 */
export function checkLedger(acked: readonly LedgerWrite[], ids: readonly number[]): { missing: number[]; duplicated: number[] } {
  const count = new Map<number, number>();
  for (const id of ids) count.set(id, (count.get(id) ?? 0) + 1);
  return {
    missing: acked.filter((a) => !count.has(a.id)).map((a) => a.id),
    duplicated: [...count].filter(([, n]) => n > 1).map(([id]) => id),
  };
}
