// Keyword look-ups on a span of the source text, without slicing it into a string.

import { wordEq } from "./lexer.ts";

const SLOTS = 1024;

/** Slot of a word from its length and first and last characters (ASCII case folded): no string needed. */
function slot(s: string, start: number, end: number): number {
  const f = s.charCodeAt(start) | 0x20, l = s.charCodeAt(end - 1) | 0x20;
  return (((end - start) << 6) ^ (f << 3) ^ l) & (SLOTS - 1);
}

/** Lower-case ASCII words, each with a small integer code (0 = not in the table): chained hash, 2 KB a table. */
export class WordTable {
  private readonly head = new Int16Array(SLOTS).fill(-1);
  private readonly next: number[] = [];
  private readonly words: string[] = [];
  private readonly codes: number[] = [];

  constructor(entries: Record<string, number>) {
    for (const [word, code] of Object.entries(entries)) {
      const i = slot(word, 0, word.length);
      this.next.push(this.head[i]!);
      this.head[i] = this.words.length;
      this.words.push(word);
      this.codes.push(code);
    }
  }

  /** Code of s[start, end) compared case-insensitively, or 0. */
  code(s: string, start: number, end: number): number {
    if (end <= start) return 0;
    for (let i = this.head[slot(s, start, end)]!; i >= 0; i = this.next[i]!) {
      if (wordEq(s, start, end, this.words[i]!)) return this.codes[i]!;
    }
    return 0;
  }

  has(s: string, start: number, end: number): boolean {
    return this.code(s, start, end) !== 0;
  }
}

/** A set of words (code 1 each). */
export const wordSet = (words: readonly string[]) => new WordTable(Object.fromEntries(words.map((w) => [w, 1])));
