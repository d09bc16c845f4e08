// The cache proper: tiers, per-table generations that keep racing fills out, invalidation by table, fingerprint, pattern or all.

import { BoundedMap } from "../../util/bounded-map.ts";
import { Tiers, type Entry } from "./tiers.ts";

/** Tables whose generation is kept (tables written, by name): beyond, the least recently used is forgotten. */
export const GENERATIONS_MAX = 100_000;

/** What a fill saw when its request went out: the generations its reply must still match. */
export interface Snapshot {
  readonly all: number;
  readonly tables: readonly number[];
}

export interface InvalidationCounters {
  /** Writes (and admin calls, failovers) that invalidated. */
  events: number;
  /** Entries they dropped. */
  entries: number;
  /** Fills refused because a write overtook their request. */
  racedFills: number;
}

export class CacheStore {
  readonly tiers: Tiers;
  /**
   * Bumped by every write to a table: a fill whose request started before it is refused. A
   * table's generation forgotten (it would read 0 again) bumps `allGen`, so no fill under way
   * can match a number it saw before.
   */
  private readonly gens = new BoundedMap<string, number>(GENERATIONS_MAX, () => this.allGen++);
  private allGen = 0;
  readonly invalidations: InvalidationCounters = { events: 0, entries: 0, racedFills: 0 };

  constructor(l1Bytes: number, l2Bytes: number, compression: "zstd" | "gzip") {
    this.tiers = new Tiers(l1Bytes, l2Bytes, compression);
  }

  /** Tables whose generation is kept. */
  get generations(): number {
    return this.gens.size;
  }

  snapshot(tables: readonly string[]): Snapshot {
    return { all: this.allGen, tables: tables.map((t) => this.gens.get(t) ?? 0) };
  }

  /** Store a reply unless a write to one of its tables came after its request started. */
  fill(key: string, entry: Entry, seen: Snapshot): boolean {
    if (seen.all !== this.allGen || entry.tables.some((t, i) => (this.gens.get(t) ?? 0) !== seen.tables[i])) {
      this.invalidations.racedFills++;
      return false;
    }
    this.tiers.set(key, entry);
    return true;
  }

  /** A write to these tables (or to everything): drop what read them and refuse fills already under way. */
  written(tables: Iterable<string> | "all"): number {
    this.invalidations.events++;
    let n = 0;
    if (tables === "all") {
      this.allGen++;
      n = this.tiers.clear();
    } else
      for (const t of tables) {
        this.gens.set(t, (this.gens.get(t) ?? 0) + 1);
        n += this.tiers.dropTable(t);
      }
    this.invalidations.entries += n;
    return n;
  }

  /** Drop entries of a fingerprint, or whose normalised text matches a `*` pattern. */
  dropMatching(test: (e: Omit<Entry, "data">) => boolean): number {
    this.invalidations.events++;
    // Fills under way may be of the same statements: refuse them all (cheap, and rare).
    this.allGen++;
    const n = this.tiers.dropWhere(test);
    this.invalidations.entries += n;
    return n;
  }
}

/** `*` matches any run of characters; everything else literally, ignoring case. */
export function globTest(pattern: string): (s: string) => boolean {
  const re = new RegExp("^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$", "is");
  return (s) => re.test(s);
}
