// How far a standby must have replayed before its reply of some tables may be stored: the WAL position of the newest known commit that wrote them.

import { BoundedMap } from "../../util/bounded-map.ts";

/** Tables whose newest commit is kept: beyond, the least recently used one's position counts for every table. */
export const POSITIONS_MAX = 100_000;

/** A commit whose position is not known: from then on only the primary's replies of its tables are stored . */
export const UNKNOWN_LSN = Number.MAX_SAFE_INTEGER;

export class WritePositions {
  /** Table -> end of the newest commit known to have written it (bytes of WAL). */
  // A table forgotten: its position still bounds every read from below (asking more of a standby is safe).
  private readonly tables = new BoundedMap<string, number>(POSITIONS_MAX, (lsn) => (this.all = Math.max(this.all, lsn)));
  /** The newest commit that may have written any table. */
  private all = 0;

  /** A commit at `lsn` (UNKNOWN_LSN when not known) wrote these tables (or any). Positions only grow. */
  wrote(tables: Iterable<string> | "all", lsn: number): void {
    if (tables === "all") this.all = Math.max(this.all, lsn);
    else for (const t of tables) this.tables.set(t, Math.max(this.tables.get(t) ?? 0, lsn));
  }

  /** Tables whose newest commit is kept. */
  get size(): number {
    return this.tables.size;
  }

  /** The position a reply reading `tables` must reflect: `floor` or a newer commit that wrote them (0: none known). */
  needed(tables: readonly string[], floor: number): number {
    let n = Math.max(floor, this.all);
    for (const t of tables) n = Math.max(n, this.tables.get(t) ?? 0);
    return n;
  }
}

