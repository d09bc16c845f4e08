// Giving a server back after its client left: roll back, reset, or close it if it is busy.

import { TxStatus } from "../protocol/codes.ts";
import { queryMessage } from "../protocol/messages.ts";
import { ServerState, type Lessee, type ServerConnection, type Sink } from "../server/connection.ts";
import type { Pool } from "../server/pool.ts";
import { Pending } from "../server/response-queue.ts";

const nowhere: Sink = { write: () => true };
const RESET_TIMEOUT_MS = 5000;

/** Lessee for a server with no client: swallows replies, returns the server when it is idle. */
class ServerReset implements Lessee {
  readonly replies = nowhere;
  private readonly timer: ReturnType<typeof setTimeout>;

  constructor(
    private readonly pool: Pool,
    server: ServerConnection,
    private readonly after: () => void,
  ) {
    this.timer = setTimeout(() => server.close("reset did not finish in time"), RESET_TIMEOUT_MS);
  }

  injectedReady(s: ServerConnection, status: number): void {
    this.serverReady(s, status);
  }

  serverReady(s: ServerConnection, status: number): void {
    if (s.owed !== 0) return;
    clearTimeout(this.timer);
    if (status !== TxStatus.Idle) {
      s.close("still in a transaction after reset");
      return;
    }
    this.after();
    this.pool.release(s);
  }

  serverLost(): void {
    clearTimeout(this.timer);
  }

  injectedFailed(s: ServerConnection): void {
    s.close("reset failed");
  }

  extendedFailed(): void {}
  pauseReading(): void {}
  resumeReading(): void {}
}

/**
 * A client is gone. A server that still owes replies (a query running, a pipeline without Sync)
 * is closed: never reused busy. One inside a transaction is rolled back; a session-mode or
 * session-pinned one runs the reset query; a clean one goes straight back.
 */
export function returnServer(s: ServerConnection, midRequest: boolean, reset: boolean, resetQuery: string): void {
  const pool = s.owner as Pool;
  if (s.state === ServerState.Closed) return;
  if (s.owed !== 0 || midRequest || !s.out.empty) {
    s.lessee = null;
    s.close("client left while the server was busy");
    return;
  }
  const inTx = s.txStatus !== TxStatus.Idle;
  if (!inTx && !reset) {
    pool.release(s);
    return;
  }
  const wasReset = reset;
  // Only DISCARD ALL is known to leave the login state; after another query settings and statements are unknown.
  const discards = /^\s*discard\s+all\s*;?\s*$/i.test(resetQuery);
  s.lessee = new ServerReset(pool, s, () => {
    if (wasReset) {
      s.prepared.clear();
      s.stateKey = discards ? "" : "\u0000unknown";
      s.dirty = false;
      s.preparedUncertain = !discards;
    }
  });
  // A reply paused by the last client's backpressure must not hold the reset up.
  s.resumeReads();
  // Separate Query messages: DISCARD ALL refuses to run in the implicit transaction of a multi-statement one.
  const queries = [inTx ? "ROLLBACK" : "", reset ? resetQuery : ""].filter((q) => q !== "");
  for (const sql of queries.length > 0 ? queries : [""]) {
    s.out.write(queryMessage(sql));
    s.expect(Pending.InjectedQuery);
  }
}
