// The cache's two storage tiers: L1 exact reply bytes in an LRU bounded by bytes; L2 the same entries compressed, bounded by bytes.

import { LRUCache } from "lru-cache";

/** A cached reply: [RowDescription] DataRow... CommandComplete, exactly as PostgreSQL sent them. */
export interface Entry {
  readonly data: Uint8Array;
  /** Where the DataRows start (0: no RowDescription kept). */
  readonly bodyAt: number;
  /** Tables read (invalidation) and the statement's fingerprint and structure (admin). */
  readonly tables: readonly string[];
  readonly fingerprint: string;
  readonly structure: string;
  readonly expiresAt: number;
  hits: number;
}

interface Packed {
  readonly packed: Uint8Array;
  readonly entry: Omit<Entry, "data">;
}

/** Bytes an entry costs besides its data (key, object, index). */
const OVERHEAD = 256;

export interface TierCounters {
  hitsL1: number;
  hitsL2: number;
  misses: number;
  evictionsL1: number;
  evictionsL2: number;
  expired: number;
}

export class Tiers {
  private readonly l1: LRUCache<string, Entry>;
  private readonly l2: LRUCache<string, Packed> | null;
  /** Table -> keys of entries (in either tier) that read it. */
  private readonly byTable = new Map<string, Set<string>>();
  readonly counters: TierCounters = { hitsL1: 0, hitsL2: 0, misses: 0, evictionsL1: 0, evictionsL2: 0, expired: 0 };
  /** The key of the entry moving between tiers: its index entries stay. */
  private moving: string | null = null;

  constructor(
    l1Bytes: number,
    l2Bytes: number,
    private readonly compression: "zstd" | "gzip",
  ) {
    this.l1 = new LRUCache<string, Entry>({
      maxSize: l1Bytes,
      sizeCalculation: (e, k) => e.data.length + k.length * 2 + OVERHEAD,
      dispose: (e, k, reason) => this.leftL1(e, k, reason),
    });
    this.l2 =
      l2Bytes > 0
        ? new LRUCache<string, Packed>({
            maxSize: l2Bytes,
            sizeCalculation: (p, k) => p.packed.length + k.length * 2 + OVERHEAD,
            dispose: (p, k, reason) => {
              if (k === this.moving) return;
              if (reason === "evict") this.counters.evictionsL2++;
              if (reason !== "set") this.unindex(k, p.entry.tables);
            },
          })
        : null;
  }

  /** The live entry under `key` (promoted from L2 to L1 on a warm hit), or undefined. */
  get(key: string, now: number): Entry | undefined {
    const e = this.l1.get(key);
    if (e !== undefined) {
      if (e.expiresAt <= now) {
        this.counters.expired++;
        this.l1.delete(key);
      } else {
        this.counters.hitsL1++;
        e.hits++;
        return e;
      }
    } else if (this.l2 !== null) {
      const p = this.l2.get(key);
      if (p !== undefined) {
        this.moving = key;
        this.l2.delete(key);
        this.moving = null;
        if (p.entry.expiresAt <= now) {
          this.counters.expired++;
          this.unindex(key, p.entry.tables);
        } else {
          this.counters.hitsL2++;
          const entry: Entry = { ...p.entry, data: this.unpack(p.packed), hits: p.entry.hits + 1 };
          this.moving = key;
          this.l1.set(key, entry);
          this.moving = null;
          return entry;
        }
      }
    }
    this.counters.misses++;
    return undefined;
  }

  set(key: string, entry: Entry): void {
    this.delete(key);
    for (const t of entry.tables) {
      let keys = this.byTable.get(t);
      if (keys === undefined) this.byTable.set(t, (keys = new Set()));
      keys.add(key);
    }
    this.l1.set(key, entry);
    // Larger than the whole tier: lru-cache refuses it; nothing is indexed then.
    if (!this.l1.has(key)) this.unindex(key, entry.tables);
  }

  delete(key: string): void {
    this.l1.delete(key);
    this.l2?.delete(key);
  }

  /** Drop every entry that read `table`; returns how many. */
  dropTable(table: string): number {
    const keys = this.byTable.get(table);
    if (keys === undefined) return 0;
    let n = 0;
    for (const k of [...keys]) {
      if (this.l1.has(k) || this.l2?.has(k)) n++;
      this.delete(k);
    }
    this.byTable.delete(table);
    return n;
  }

  /** Drop entries matching `test`; returns how many. */
  dropWhere(test: (e: Omit<Entry, "data">) => boolean): number {
    const doomed: string[] = [];
    for (const [k, e] of this.l1.entries()) if (test(e)) doomed.push(k);
    if (this.l2 !== null) for (const [k, p] of this.l2.entries()) if (test(p.entry)) doomed.push(k);
    for (const k of doomed) this.delete(k);
    return doomed.length;
  }

  clear(): number {
    const n = this.l1.size + (this.l2?.size ?? 0);
    this.l1.clear();
    this.l2?.clear();
    this.byTable.clear();
    return n;
  }

  stats(): { l1: { entries: number; bytes: number }; l2: { entries: number; bytes: number } } {
    return {
      l1: { entries: this.l1.size, bytes: this.l1.calculatedSize },
      l2: { entries: this.l2?.size ?? 0, bytes: this.l2?.calculatedSize ?? 0 },
    };
  }

  /** The most used entries of both tiers. */
  top(n: number): { tier: "l1" | "l2"; entry: Omit<Entry, "data">; bytes: number }[] {
    const all: { tier: "l1" | "l2"; entry: Omit<Entry, "data">; bytes: number }[] = [];
    for (const e of this.l1.values()) all.push({ tier: "l1", entry: e, bytes: e.data.length });
    if (this.l2 !== null) for (const p of this.l2.values()) all.push({ tier: "l2", entry: p.entry, bytes: p.packed.length });
    return all.sort((a, b) => b.entry.hits - a.entry.hits).slice(0, n);
  }

  /** An entry leaves L1: evicted ones age into L2 compressed; deleted and expired ones are gone. */
  private leftL1(e: Entry, key: string, reason: LRUCache.DisposeReason): void {
    if (key === this.moving || reason === "set") return;
    if (reason === "evict") {
      this.counters.evictionsL1++;
      if (this.l2 !== null && e.expiresAt > Date.now()) {
        const { data, ...rest } = e;
        this.moving = key;
        this.l2.set(key, { packed: this.pack(data), entry: rest });
        this.moving = null;
        if (this.l2.has(key)) return;
      }
    }
    this.unindex(key, e.tables);
  }

  private unindex(key: string, tables: readonly string[]): void {
    for (const t of tables) {
      const keys = this.byTable.get(t);
      if (keys === undefined) continue;
      keys.delete(key);
      if (keys.size === 0) this.byTable.delete(t);
    }
  }

  private pack(data: Uint8Array): Uint8Array {
    return this.compression === "zstd" ? Bun.zstdCompressSync(data) : Bun.gzipSync(data as Uint8Array<ArrayBuffer>);
  }

  private unpack(packed: Uint8Array): Uint8Array {
    return this.compression === "zstd" ? Bun.zstdDecompressSync(packed) : Bun.gunzipSync(packed as Uint8Array<ArrayBuffer>);
  }
}
