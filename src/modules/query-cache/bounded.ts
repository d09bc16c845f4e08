// An LRU map bounded by its number of entries whose storage grows with use (lru-cache's `max` allocates room for the whole bound up front).

import { LRUCache } from "lru-cache";

/** At most `entries` entries, the least recently used dropped first (`dispose` hears why each one left). */
export function lruOf<K extends {}, V extends {}>(entries: number, dispose?: LRUCache.Disposer<K, V>): LRUCache<K, V> {
  // Each entry counts 1 towards maxSize: the bound without `max`'s preallocated arrays.
  return new LRUCache<K, V>({ maxSize: entries, sizeCalculation: () => 1, ...(dispose === undefined ? {} : { dispose }) });
}
