// A logical replication connection (replication=database) to one node: replication commands, then one copy-both stream of CopyData payloads.

import { Be, Fe } from "../protocol/codes.ts";
import { errorFields } from "../protocol/errors.ts";
import { readInt32 } from "../protocol/framing.ts";
import { build } from "../protocol/writer.ts";
import { ServerConnection, type Lessee, type ServerEndpoint, type Sink } from "./connection.ts";
import type { ServerCredentials } from "./login.ts";
import { runQuery } from "./query-runner.ts";
import { Pending } from "./response-queue.ts";

/** Raised by command() and stream() with the server's SQLSTATE (08006 for a lost connection). */
export class ReplicationError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Where a started stream's payloads and its end go. */
export interface StreamHandlers {
  /** One CopyData payload; a view valid only during the call. */
  data(payload: Uint8Array): void;
  /** The stream ended (server error, closed connection, or close()); called once. */
  end(reason: string): void;
}

/** Frames the copy-both traffic (oversized CopyData may arrive in pieces) and hands out the payloads. */
class Streamer implements Lessee, Sink {
  readonly replies = this;
  private partial: Uint8Array | null = null;
  private started = false;
  private ended = false;

  constructor(
    private readonly handlers: StreamHandlers,
    private readonly startedCb: () => void,
    private readonly failed: (e: ReplicationError) => void,
  ) {}

  write(data: Uint8Array, from = 0, to = data.length): boolean {
    let b = data;
    let p = from;
    let end = to;
    if (this.partial !== null) {
      const joined = new Uint8Array(this.partial.length + (to - from));
      joined.set(this.partial);
      joined.set(data.subarray(from, to), this.partial.length);
      this.partial = null;
      b = joined;
      p = 0;
      end = joined.length;
    }
    while (end - p >= 5) {
      const msgEnd = p + 1 + readInt32(b, p + 1);
      if (msgEnd > end) break;
      this.message(b, p, msgEnd);
      p = msgEnd;
    }
    if (p < end) this.partial = b.slice(p, end);
    return true;
  }

  private message(b: Uint8Array, p: number, msgEnd: number): void {
    const type = b[p]!;
    if (type === Be.CopyData) this.handlers.data(b.subarray(p + 5, msgEnd));
    else if (type === Be.CopyBothResponse) {
      this.started = true;
      this.startedCb();
    } else if (type === Be.ErrorResponse) {
      const f = errorFields(b, p + 5, msgEnd);
      this.stop(new ReplicationError(f.code, f.message));
    }
  }

  stop(e: ReplicationError): void {
    if (this.ended) return;
    this.ended = true;
    if (this.started) this.handlers.end(`${e.code} ${e.message}`);
    else this.failed(e);
  }

  serverReady(): void {
    this.stop(new ReplicationError("08006", "the replication stream ended"));
  }
  serverLost(_s: ServerConnection, reason: string): void {
    this.stop(new ReplicationError("08006", reason));
  }
  injectedReady(): void {}
  extendedFailed(): void {}
  injectedFailed(): void {}
  pauseReading(): void {}
  resumeReading(): void {}
}

export class ReplicationConnection {
  private streamer: Streamer | null = null;

  private constructor(
    /** The node it is connected to. */
    readonly node: string,
    private readonly conn: ServerConnection,
  ) {}

  /** Log in with replication=database (the user needs REPLICATION or superuser). Rejects with ReplicationError. */
  static async open(endpoint: ServerEndpoint, creds: ServerCredentials, applicationName: string, timeoutMs: number): Promise<ReplicationConnection> {
    const conn = new ServerConnection(endpoint, { serverClosed() {} });
    try {
      await conn.open(creds, { replication: "database", application_name: applicationName }, timeoutMs);
    } catch (e) {
      const err = e as { code?: string; message: string };
      throw new ReplicationError(err.code ?? "08006", err.message);
    }
    return new ReplicationConnection(endpoint.name, conn);
  }

  /** Run one replication command (CREATE_REPLICATION_SLOT, IDENTIFY_SYSTEM...) or SQL; rows as text. */
  async command(sql: string, timeoutMs: number): Promise<(string | null)[][]> {
    const r = await runQuery(this.conn, sql, undefined, timeoutMs);
    if (r.error) throw new ReplicationError(r.error.code, r.error.message);
    return r.rows;
  }

  /** Send START_REPLICATION (or another command that enters copy-both); resolves once the stream runs. */
  stream(sql: string, handlers: StreamHandlers, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close();
        reject(new ReplicationError("57014", `no CopyBothResponse within ${timeoutMs} ms`));
      }, timeoutMs);
      const s = new Streamer(
        handlers,
        () => {
          clearTimeout(timer);
          resolve();
        },
        (e) => {
          clearTimeout(timer);
          reject(e);
        },
      );
      this.streamer = s;
      this.conn.lessee = s;
      this.conn.out.write(build((w) => w.msg(Fe.Query).cstr(sql).end()));
      this.conn.expect(Pending.Query);
    });
  }

  /** Send one CopyData message carrying `payload` (standby status updates). */
  send(payload: Uint8Array): void {
    if (!this.conn.closed) this.conn.out.write(build((w) => w.msg(Fe.CopyData).bytes(payload).end()));
  }

  close(): void {
    this.streamer?.stop(new ReplicationError("08006", "closed by the proxy"));
    this.conn.close("replication stream closed");
  }
}
