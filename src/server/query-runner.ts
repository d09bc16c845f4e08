// Running one statement of the proxy's own on a server connection and collecting its rows as text.

import { Be, Fe } from "../protocol/codes.ts";
import { errorFields } from "../protocol/errors.ts";
import { readInt32 } from "../protocol/framing.ts";
import { build } from "../protocol/writer.ts";
import type { Lessee, ServerConnection, Sink } from "./connection.ts";
import { Pending } from "./response-queue.ts";
import type { LoginError } from "./login.ts";
import type { Pool, PoolWaiter } from "./pool.ts";

export interface QueryResult {
  rows: (string | null)[][];
  /** Set when the server answered with an error, or the connection failed. */
  error?: { code: string; message: string };
  /** Bun.hash.crc32 over the DataRow messages as received, chained (compares rows with ones seen before). */
  dataCrc: number;
  /** Tag of the last CommandComplete. */
  tag: string;
}

const decoder = new TextDecoder();

/** Lessee that frames the reply runs it is given and keeps DataRows and the first error. */
class RowCollector implements Lessee, Sink {
  readonly replies = this;
  readonly rows: (string | null)[][] = [];
  error: QueryResult["error"];
  private dataCrc = 0;
  private tag = "";
  private readonly timer: ReturnType<typeof setTimeout>;

  constructor(
    private readonly server: ServerConnection,
    private readonly done: (r: QueryResult) => void,
    timeoutMs: number,
  ) {
    this.timer = setTimeout(() => {
      server.close("proxy query timed out");
      this.finish({ rows: [], error: { code: "57014", message: "query timed out" }, dataCrc: 0, tag: "" });
    }, timeoutMs);
  }

  write(b: Uint8Array, from = 0, to = b.length): boolean {
    let p = from;
    while (p + 5 <= to) {
      const type = b[p]!;
      const end = p + 1 + readInt32(b, p + 1);
      if (type === Be.DataRow) {
        this.rows.push(columns(b, p + 5, end));
        this.dataCrc = Bun.hash.crc32(b.subarray(p, end), this.dataCrc);
      } else if (type === Be.CommandComplete) this.tag = decoder.decode(b.subarray(p + 5, end - 1));
      else if (type === Be.ErrorResponse && !this.error) {
        const f = errorFields(b, p + 5, end);
        this.error = { code: f.code, message: f.message };
      }
      p = end;
    }
    return true;
  }

  private finish(r: QueryResult): void {
    clearTimeout(this.timer);
    if (this.server.lessee === this) this.server.lessee = null;
    this.done(r);
  }

  serverReady(s: ServerConnection): void {
    if (s.owed !== 0) return;
    const r: QueryResult = { rows: this.rows, dataCrc: this.dataCrc, tag: this.tag };
    if (this.error) r.error = this.error;
    this.finish(r);
  }

  serverLost(_s: ServerConnection, reason: string): void {
    this.finish({ rows: [], error: { code: "08006", message: reason }, dataCrc: 0, tag: "" });
  }

  injectedFailed(): void {}
  injectedReady(): void {}
  extendedFailed(): void {}
  pauseReading(): void {}
  resumeReading(): void {}
}

function columns(b: Uint8Array, p: number, end: number): (string | null)[] {
  const n = (b[p]! << 8) | b[p + 1]!;
  const out: (string | null)[] = [];
  p += 2;
  for (let i = 0; i < n && p + 4 <= end; i++) {
    const len = readInt32(b, p);
    p += 4;
    if (len < 0) out.push(null);
    else {
      out.push(decoder.decode(b.subarray(p, p + len)));
      p += len;
    }
  }
  return out;
}

/**
 * Run `sql` on an idle server the caller holds. With `params` it goes through the extended
 * protocol with bound text parameters (never spliced into the text); without, as a simple Query.
 * The server is left idle for the caller to release. Never rejects.
 */
export function runQuery(server: ServerConnection, sql: string, params?: string[], timeoutMs = 5000): Promise<QueryResult> {
  if (params === undefined) return runMessages(server, build((w) => w.msg(Fe.Query).cstr(sql).end()), [Pending.Query], timeoutMs);
  const msgs = build((w) => {
    w.msg(Fe.Parse).cstr("").cstr(sql).int16(0).end();
    w.msg(Fe.Bind).cstr("").cstr("").int16(0).int16(params.length);
    for (const v of params) w.int32(Buffer.byteLength(v)).str(v);
    w.int16(0).end();
    w.msg(Fe.Execute).cstr("").int32(0).end();
    w.msg(Fe.Sync).end();
  });
  return runMessages(server, msgs, [Pending.Parse, Pending.Bind, Pending.Execute, Pending.Sync], timeoutMs);
}

/** Send ready-made messages (ending in Query or Sync) with the replies they are owed; resolves at the last ReadyForQuery. */
export function runMessages(server: ServerConnection, msgs: Uint8Array, expects: readonly Pending[], timeoutMs = 5000): Promise<QueryResult> {
  // Closed while nobody held it (an error that arrived between the lease and now): nothing would answer.
  if (server.closed) return Promise.resolve({ rows: [], error: { code: "08006", message: `server connection closed: ${server.closeReason}` }, dataCrc: 0, tag: "" });
  return new Promise((resolve) => {
    server.lessee = new RowCollector(server, resolve, timeoutMs);
    server.out.write(msgs);
    for (const k of expects) server.expect(k);
  });
}

/**
 * Lease a server from `pool` (waiting like a client), run `sql` on it and give it back. A failed
 * lease is an error result with the pool's SQLSTATE. Never rejects.
 */
export function runOnPool(pool: Pool, sql: string, params?: string[]): Promise<QueryResult> {
  return new Promise((resolve) => {
    const waiter: PoolWaiter = {
      waitingSince: 0,
      serverLeased(s: ServerConnection) {
        void runQuery(s, sql, params).then((r) => {
          pool.release(s);
          resolve(r);
        });
      },
      serverFailed(e: LoginError) {
        resolve({ rows: [], error: { code: e.code, message: `no server connection: ${e.message}` }, dataCrc: 0, tag: "" });
      },
    };
    const s = pool.acquire(waiter);
    if (s !== null) waiter.serverLeased(s);
  });
}
