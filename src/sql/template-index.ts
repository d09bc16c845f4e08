// Texts that differ only in their literals find what was learned of an earlier one: a hash of the text with its literals left out, then an exact template match.

import { BoundedMap } from "../util/bounded-map.ts";
import { isNameChar, lit, literalEnd, sameShape, templateOf, type Template } from "./template.ts";

const DOT = 46, QUOTE = 39, AMP = 38;
const P = 0x01000193;

/**
 * A hash of `text` in which every plain number or '...' string counts only by its kind: texts of
 * one template hash alike (the rule is the template matcher's). Other texts may collide; the
 * match that follows decides.
 */
export function skeletonHash(text: string): number {
  let h = 0x811c9dc5;
  let prev = 32;
  const n = text.length;
  for (let i = 0; i < n; ) {
    const c = text.charCodeAt(i);
    if ((c === QUOTE || (c >= 48 && c <= 57)) && !isNameChar(prev) && prev !== DOT && prev !== AMP && prev !== QUOTE) {
      const end = literalEnd(text, i);
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

export interface Learned<V> {
  readonly template: Template;
  readonly value: V;
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
    this.byHash = new BoundedMap(max);
  }

  find(text: string): V | undefined {
    return this.learned(text)?.value;
  }

  /** The template `text` matched and its value. */
  learned(text: string): Learned<V> | undefined {
    const list = this.byHash.get(skeletonHash(text));
    if (list === undefined) return undefined;
    for (let k = 0; k < list.length; k++) if (sameShape(list[k]!.template, text)) return list[k];
    return undefined;
  }

  /**
   * Remember `value` for the shape of `text`, whose literals are at `spans` (start, end pairs, in
   * order, each a plain number or '...' string). False when the text does not make a template
   * this simple way (it is then always lexed).
   */
  remember(text: string, spans: readonly number[], value: V): boolean {
    const template = templateFromSpans(text, spans);
    if (template === null) return false;
    this.add(text, template, value);
    return true;
  }

  /** Remember `value` for `template`, which `text` matches. */
  add(text: string, template: Template, value: V): void {
    const h = skeletonHash(text);
    const list = this.byHash.get(h);
    if (list === undefined) this.byHash.set(h, [{ template, value }]);
    else if (list.length < 4 && !list.some((l) => sameShape(l.template, text))) list.push({ template, value });
  }

  get size(): number {
    return this.byHash.size;
  }
}

/** The template of `text` with the literals at `spans` as placeholders numbered after its highest `$n`. */
function templateFromSpans(text: string, spans: readonly number[]): Template | null {
  if (spans.length === 0) return null;
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
