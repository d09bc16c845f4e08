// Texts that differ only in their literals find what was learned of an earlier one, from their UTF-8 bytes: the templates that followed the caller's last one, else a hash of the text with its literals left out; then an exact template match.

import { BoundedMap } from "../util/bounded-map.ts";
import { isNameChar, lit, literalEnd, sameShapeAt, templateOf, type Template } from "./template.ts";

const DOT = 46, QUOTE = 39, AMP = 38, SEMI = 59, SPACE = 32;
const P = 0x01000193;
const encoder = new TextEncoder();

/**
 * A hash of the text at b[from, to) in which every plain number or '...' string counts only by its
 * kind, and trailing blanks and semicolons not at all: texts of one template hash alike (the rule is the template matcher's). Other texts may
 * collide; the match that follows decides.
 */
export function skeletonHash(b: Uint8Array, from = 0, to = b.length): number {
  let h = 0x811c9dc5;
  let prev = 32;
  // Trailing blanks and semicolons do not count (the matcher allows them).
  while (to > from && (b[to - 1] === SEMI || b[to - 1] === SPACE || (b[to - 1]! >= 9 && b[to - 1]! <= 13))) to--;
  for (let i = from; i < to; ) {
    const c = b[i]!;
    if ((c === QUOTE || (c >= 48 && c <= 57)) && !isNameChar(prev) && prev !== DOT && prev !== AMP && prev !== QUOTE) {
      const end = literalEnd(b, i, to);
      if (end > i) {
        h = Math.imul(h ^ (0x10000 + lit.kind), P);
        prev = 48;
        i = end;
        continue;
      }
    }
    h = Math.imul(h ^ c, P);
    prev = c;
    i++;
  }
  return h >>> 0;
}

export class Learned<V> {
  /**
   * The last two statements found after this one (by callers that pass `after`), the latest first:
   * tried before any hash. Two, because a transaction's next statement often has two templates
   * (a number and a negative number, `+ 5` and `+ -5`, are not one).
   */
  next: Learned<V> | null = null;
  nextBefore: Learned<V> | null = null;
  /** Its hash left the index: it is no longer guessed, and it links to nothing (what it is kept alive by stays bounded). */
  gone = false;

  constructor(
    readonly template: Template,
    readonly value: V,
  ) {}
}

/**
 * What is known of a statement shape, found from any text of it without lexing: the caller lexes a
 * text once, derives `value` (which must not depend on the literals' values) and remembers it with
 * the text's literal spans; later texts that differ only in those literals get it back.
 */
export class TemplateIndex<V> {
  private readonly byHash: BoundedMap<number, Learned<V>[]>;

  /** `max`: hashes kept (the oldest learned go first). */
  constructor(max: number) {
    this.byHash = new BoundedMap(max, (list) => {
      for (const l of list) {
        l.gone = true;
        l.next = l.nextBefore = null;
      }
    });
  }

  find(text: string): V | undefined {
    return this.learned(text)?.value;
  }

  /** The template `text` matched and its value. */
  learned(text: string): Learned<V> | undefined {
    const b = encoder.encode(text);
    return this.learnedAt(b, 0, b.length, null);
  }

  /**
   * The template the UTF-8 text at b[from, to) matches, and its value. `after`: what the caller
   * found last (its statements tend to come in the same order, as a transaction's do): the one that
   * followed it before is tried first, with no hash taken; what is found becomes its successor.
   */
  learnedAt(b: Uint8Array, from: number, to: number, after: Learned<V> | null): Learned<V> | undefined {
    if (after !== null && after.gone) after = null;
    if (after !== null) {
      const guess = after.next;
      if (guess !== null && !guess.gone && sameShapeAt(guess.template, b, from, to)) return guess;
      const other = after.nextBefore;
      if (other !== null && !other.gone && sameShapeAt(other.template, b, from, to)) {
        after.nextBefore = guess;
        after.next = other;
        return other;
      }
    }
    const list = this.byHash.get(skeletonHash(b, from, to));
    if (list === undefined) return undefined;
    for (let k = 0; k < list.length; k++) {
      const l = list[k]!;
      if (sameShapeAt(l.template, b, from, to)) {
        if (after !== null) {
          after.nextBefore = after.next;
          after.next = l;
        }
        return l;
      }
    }
    return undefined;
  }

  /**
   * Remember `value` for the shape of `text`, whose literals are at `spans` (start, end pairs, in
   * order, each a plain number or '...' string). Null when the text does not make a template
   * this simple way (it is then always lexed).
   */
  remember(text: string, spans: readonly number[], value: V): Learned<V> | null {
    const template = templateFromSpans(text, spans);
    return template === null ? null : this.add(text, template, value);
  }

  /** Remember `value` for `template`, which `text` matches (null when that hash holds its four already). */
  add(text: string, template: Template, value: V): Learned<V> | null {
    const b = encoder.encode(text);
    const h = skeletonHash(b);
    const list = this.byHash.get(h);
    const l = new Learned(template, value);
    if (list === undefined) this.byHash.set(h, [l]);
    else {
      const known = list.find((x) => sameShapeAt(x.template, b, 0, b.length));
      if (known !== undefined) return known;
      if (list.length >= 4) return null;
      list.push(l);
    }
    return l;
  }

  get size(): number {
    return this.byHash.size;
  }
}

/** The template of `text` with the literals at `spans` as placeholders numbered after its highest `$n` (none: the text itself). */
function templateFromSpans(text: string, spans: readonly number[]): Template | null {
  let maxParam = 0;
  for (let i = text.indexOf("$"); i >= 0; i = text.indexOf("$", i + 1)) {
    let n = 0;
    let j = i + 1;
    while (j < text.length && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57 && n < 1e9) n = n * 10 + (text.charCodeAt(j++) - 48);
    if (j === i + 1) return null; // a '$' that is no parameter: a dollar quote or a name with '$'
    if (n > maxParam) maxParam = n;
  }
  let out = "";
  let from = 0;
  for (let k = 0; k < spans.length; k += 2) {
    out += text.slice(from, spans[k]) + "$" + (maxParam + 1 + k / 2);
    from = spans[k + 1]!;
  }
  out += text.slice(from);
  return templateOf(text, out, spans.length / 2);
}
