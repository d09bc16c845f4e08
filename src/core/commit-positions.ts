// Commit WAL positions per session and overall, learned from LSN reads pipelined after writes (read-your-writes).

import type { CommitPositions } from "./hooks.ts";

export class CommitTracker implements CommitPositions {
  private readonly bySession = new Map<number, number>();
  private newest = 0;

  record(session: number, lsn: number): void {
    if (lsn > (this.bySession.get(session) ?? 0)) this.bySession.set(session, lsn);
    if (lsn > this.newest) this.newest = lsn;
  }

  forget(session: number): void {
    this.bySession.delete(session);
  }

  session(id: number): number {
    return this.bySession.get(id) ?? 0;
  }

  latest(): number {
    return this.newest;
  }
}
