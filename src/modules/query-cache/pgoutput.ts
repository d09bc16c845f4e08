// Just enough of the replication stream (XLogData, keepalive) and pgoutput protocol 1 to learn which tables each committed transaction changed.

// Not pg-logical-replication: it needs `pg` (a second connection stack beside the proxy's own, with
// its login, TLS and SCRAM) and decodes every column of every changed row into objects on the
// proxy's only thread; the cache needs the relation of each change and the commit, nothing more.

/** Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000;

const u32 = (b: Uint8Array, p: number): number => ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
/** An LSN or other int64 as a number (exact below 2^53: 8 PB of WAL). */
const u64 = (b: Uint8Array, p: number): number => u32(b, p) * 0x1_0000_0000 + u32(b, p + 4);
const utf8 = new TextDecoder();

/** What one CopyData payload of the stream asks of the follower. */
export interface StreamStep {
  /** Tables of a transaction that just committed (relation names as PostgreSQL has them), or "all" when a relation was not announced. */
  committed?: ReadonlySet<string> | "all";
  /** The server asked for a status update now. */
  replyNow?: boolean;
}

/** Follows relations and open transactions across the payloads of one stream. */
export class ChangeDecoder {
  /** Relation OID -> name, from Relation messages (sent before a relation's first change, and after its schema changes). */
  private readonly relations = new Map<number, string>();
  private open: Set<string> | "all" | null = null;
  /** Everything up to here was decoded and acted on: the position confirmed to the server. */
  processed = 0;
  /** Transactions decoded. */
  commits = 0;

  /** One CopyData payload: XLogData ('w') or primary keepalive ('k'); anything else is ignored. */
  step(b: Uint8Array): StreamStep | null {
    if (b.length >= 18 && b[0] === 107) {
      // 'k': walEnd, sendTime, replyRequested. Outside a transaction everything sent so far is done.
      if (this.open === null) this.processed = Math.max(this.processed, u64(b, 1));
      return b[17] === 1 ? { replyNow: true } : null;
    }
    if (b.length < 26 || b[0] !== 119) return null; // 'w'
    return this.message(b, 25);
  }

  private message(b: Uint8Array, p: number): StreamStep | null {
    const kind = b[p]!;
    switch (kind) {
      case 66: // 'B' Begin
        this.open = new Set();
        return null;
      case 67: {
        // 'C' Commit: flags, commit LSN, end LSN, timestamp.
        const tables = this.open ?? new Set<string>();
        this.open = null;
        this.commits++;
        this.processed = Math.max(this.processed, u64(b, p + 10));
        return tables === "all" || tables.size > 0 ? { committed: tables } : null;
      }
      case 82: {
        // 'R' Relation: OID, namespace, name, ...
        const oid = u32(b, p + 1);
        const nsEnd = b.indexOf(0, p + 5);
        const nameEnd = nsEnd < 0 ? -1 : b.indexOf(0, nsEnd + 1);
        if (nameEnd > 0) this.relations.set(oid, utf8.decode(b.subarray(nsEnd + 1, nameEnd)));
        return null;
      }
      case 73: // 'I' Insert
      case 85: // 'U' Update
      case 68: // 'D' Delete
        this.touch(u32(b, p + 1));
        return null;
      case 84: {
        // 'T' Truncate: relation count, options, OIDs.
        const n = u32(b, p + 1);
        for (let i = 0; i < n; i++) this.touch(u32(b, p + 6 + 4 * i));
        return null;
      }
      default:
        return null;
    }
  }

  private touch(oid: number): void {
    if (this.open === "all") return;
    const name = this.relations.get(oid);
    if (name === undefined || this.open === null) this.open = "all";
    else this.open.add(name);
  }
}

/** A standby status update ('r'): written, flushed and applied up to `lsn`; asks the server to answer at once when `ping`. */
export function statusUpdate(lsn: number, ping: boolean): Uint8Array {
  const out = new Uint8Array(34);
  const v = new DataView(out.buffer);
  out[0] = 114; // 'r'
  const l = BigInt(lsn);
  v.setBigUint64(1, l);
  v.setBigUint64(9, l);
  v.setBigUint64(17, l);
  v.setBigInt64(25, BigInt(Date.now() * 1000 - PG_EPOCH_US));
  out[33] = ping ? 1 : 0;
  return out;
}
