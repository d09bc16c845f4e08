// Which statement texts came before: a fixed table of their hashes (no object kept per text), so a text is remembered only when it comes again.

/** Slots of the table (a power of two): 256 KB, whatever the stream. */
const SLOTS = 1 << 16;

export class SeenTexts {
  private readonly hashes = new Uint32Array(SLOTS);

  /**
   * Whether `text` came before (as far as its slot still says: a text overwritten by another in
   * between counts as new); records it either way. Never a wrong "no" for the previous text of
   * its slot, rarely a wrong "yes" (two texts with one 32-bit hash): either only decides what is
   * remembered, never what a statement does.
   */
  again(text: string): boolean {
    // 0 marks an empty slot: hashes are odd.
    const h = (Bun.hash.murmur32v3(text) | 1) >>> 0;
    const slot = h & (SLOTS - 1);
    if (this.hashes[slot] === h) return true;
    this.hashes[slot] = h;
    return false;
  }
}
