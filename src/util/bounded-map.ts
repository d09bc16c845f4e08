// A map bounded by its number of entries: the oldest set first leaves when a new key would exceed the bound (a plain Map underneath, nothing done on a read).

/**
 * At most `max` entries; a new key beyond that drops the oldest inserted one and `evicted` hears of
 * it. Reads do not reorder (first in, first out): these maps stay far below their bound in normal
 * use, and the bound only stops a flood of distinct input, where recency would not save an entry
 * either. Unlike lru-cache, a read costs one Map lookup and a write no bookkeeping.
 */
export class BoundedMap<K, V> {
  private readonly m = new Map<K, V>();

  constructor(
    readonly max: number,
    private readonly evicted?: (value: V, key: K) => void,
  ) {}

  get(key: K): V | undefined {
    return this.m.get(key);
  }

  has(key: K): boolean {
    return this.m.has(key);
  }

  set(key: K, value: V): this {
    if (this.m.size >= this.max && !this.m.has(key)) {
      const oldest = this.m.keys().next();
      if (oldest.done !== true) {
        const v = this.m.get(oldest.value)!;
        this.m.delete(oldest.value);
        this.evicted?.(v, oldest.value);
      }
    }
    this.m.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    return this.m.delete(key);
  }

  clear(): void {
    this.m.clear();
  }

  get size(): number {
    return this.m.size;
  }
}
