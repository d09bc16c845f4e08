// Looking up a user's stored password with the configured auth_query, run with a bound parameter.

import type { ProxyContext } from "../core/context.ts";
import { Be, Fe } from "../protocol/codes.ts";
import { errorFields } from "../protocol/errors.ts";
import { readInt32 } from "../protocol/framing.ts";
import { build } from "../protocol/writer.ts";
import type { Lessee, ServerConnection, Sink } from "../server/connection.ts";
import type { LoginError } from "../server/login.ts";
import type { PoolWaiter } from "../server/pool.ts";
import { Pending } from "../server/response-queue.ts";

export interface AuthQueryResult {
  /** Stored password (SCRAM verifier, md5 hash or plain), or null: no such user / no password / expired. */
  password: string | null;
  /** Set when the lookup itself failed (the login must fail closed). */
  error?: string;
}

const decoder = new TextDecoder();

/** Collects the first row's second column (passwd) and any error from the reply stream. */
class Collector implements Sink, Lessee, PoolWaiter {
  readonly out = this;
  waitingSince = 0;
  password: string | null = null;
  error: string | undefined;
  private rows = 0;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly user: string,
    private readonly resolve: (r: AuthQueryResult) => void,
  ) {}

  write(b: Uint8Array): boolean {
    let p = 0;
    while (p + 5 <= b.length) {
      const type = b[p]!;
      const end = p + 1 + readInt32(b, p + 1);
      if (type === Be.DataRow && this.rows++ === 0) this.password = column(b, p + 5, end, 1);
      else if (type === Be.ErrorResponse) this.error = errorFields(b, p + 5, end).message;
      p = end;
    }
    return true;
  }

  serverLeased(s: ServerConnection): void {
    s.lessee = this;
    const sql = this.ctx.config.auth.auth_query;
    const msgs = build((w) => {
      w.msg(Fe.Parse).cstr("").cstr(sql).int16(0).end();
      w.msg(Fe.Bind).cstr("").cstr("").int16(0).int16(1).int32(Buffer.byteLength(this.user)).str(this.user).int16(0).end();
      w.msg(Fe.Execute).cstr("").int32(2).end();
      w.msg(Fe.Sync).end();
    });
    s.out.write(msgs);
    s.expect(Pending.Parse);
    s.expect(Pending.Bind);
    s.expect(Pending.Execute);
    s.expect(Pending.Sync);
  }

  serverFailed(e: LoginError): void {
    this.resolve({ password: null, error: `auth_query connection failed: ${e.message}` });
  }

  serverReady(s: ServerConnection): void {
    if (s.owed !== 0) return;
    s.lessee = null;
    this.ctx.authQueryPool().release(s);
    if (this.rows > 1) this.resolve({ password: null, error: "auth_query returned more than one row" });
    else this.resolve(this.error ? { password: null, error: this.error } : { password: this.password });
  }

  serverLost(_s: ServerConnection, reason: string): void {
    this.resolve({ password: null, error: reason });
  }

  injectedFailed(): void {}
  pauseReading(): void {}
  resumeReading(): void {}
}

/** Column `index` of a DataRow body at b[p, end) as text; null for SQL NULL or a short row. */
function column(b: Uint8Array, p: number, end: number, index: number): string | null {
  const n = (b[p]! << 8) | b[p + 1]!;
  if (index >= n) return null;
  p += 2;
  for (let i = 0; i < n && p + 4 <= end; i++) {
    const len = readInt32(b, p);
    p += 4;
    if (i === index) return len < 0 ? null : decoder.decode(b.subarray(p, p + len));
    if (len > 0) p += len;
  }
  return null;
}

/** Run auth_query for `user` on the auth pool. Never rejects. */
export function lookupPassword(ctx: ProxyContext, user: string): Promise<AuthQueryResult> {
  return new Promise((resolve) => {
    const c = new Collector(ctx, user, resolve);
    const pool = ctx.authQueryPool();
    const s = pool.acquire(c);
    if (s !== null) c.serverLeased(s);
  });
}
