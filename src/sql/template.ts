// Does a text have a known shape? Its UTF-8 bytes are matched against an earlier text's normalised form, literal for placeholder, without lexing.

const DOLLAR = 36, QUOTE = 39, DOT = 46, SEMI = 59, SPACE = 32, AMP = 38, BACKSLASH = 92;
/** Kinds of literal: the normaliser's choices (ORDER BY positions, signs, UESCAPE, type modifiers) depend on them. */
const INTEGER = 1, DECIMAL = 2, STRING = 3;

const encoder = new TextEncoder();
const ASCII_ONLY = /^[\x00-\x7f]*$/;

const isDigit = (c: number) => c >= 48 && c <= 57;
const isBlank = (c: number) => c === SPACE || (c >= 9 && c <= 13);
/** A byte that continues a name or number (every byte of a non-ASCII character counts, as the lexer counts the character). */
export const isNameChar = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || isDigit(c) || c === 95 || c === DOLLAR || c >= 128;

/** A normalised text, which of its placeholders replaced literals, and the kind of each of those literals. */
export interface Template {
  readonly text: string;
  /** The normalised text's bytes (ASCII: only ASCII texts make templates). */
  readonly bytes: Uint8Array;
  /**
   * The bytes as runs, each a triple: start and end of a stretch of plain bytes, then the number of
   * the `$n` placeholder that follows it (0 after the last stretch).
   */
  readonly parts: Int32Array;
  /** Placeholders numbered from here up replaced literals (the normaliser numbers them after the highest parameter). */
  readonly firstGenerated: number;
  /** Kind of the literal behind each of those placeholders, in order. */
  readonly kinds: Uint8Array;
}

/**
 * The template of `text`, whose normalised form is `normalised` with `constants` placeholders made
 * from literals; null when the text does not match its own normalised form this simple way (other
 * spacing, comments, E'' or dollar quotes, NULL/TRUE/FALSE...) or is not ASCII: such texts are always lexed.
 */
export function templateOf(text: string, normalised: string, constants: number): Template | null {
  if (!ASCII_ONLY.test(text) || !ASCII_ONLY.test(normalised)) return null;
  const bytes = encoder.encode(normalised);
  let max = 0;
  for (let i = bytes.indexOf(DOLLAR); i >= 0; i = bytes.indexOf(DOLLAR, i + 1)) {
    if (paramAt(bytes, i + 1, bytes.length) > 0 && param.n > max) max = param.n;
  }
  const t = { text: normalised, bytes, parts: partsOf(bytes), firstGenerated: constants === 0 ? Infinity : max - constants + 1, kinds: new Uint8Array(constants) };
  const b = encoder.encode(text);
  return match(t, b, 0, b.length, t.kinds) ? t : null;
}

/**
 * Whether `text` normalises to `t.text` (so has its fingerprint): equal character for character,
 * except that where the template has a placeholder made from a literal the text has a plain number
 * or '...' string of the same kind, numbered as the normaliser would number it (after the text's
 * highest `$n`, in order); the text may end in blanks and semicolons. Anything else is "no" and the
 * caller lexes the text: "yes" only for the same shape.
 */
export function sameShape(t: Template, text: string): boolean {
  const b = encoder.encode(text);
  return match(t, b, 0, b.length, null);
}

/** sameShape() of the UTF-8 text at b[from, to). */
export function sameShapeAt(t: Template, b: Uint8Array, from: number, to: number): boolean {
  return match(t, b, from, to, null);
}

/** The byte at `i` of a text ending at `to`; -1 past its end. */
const at = (b: Uint8Array, i: number, to: number) => (i < to ? b[i]! : -1);

/** Runs of plain bytes and the placeholders between them (Template.parts); a '$' with no digit behind is a plain byte. */
function partsOf(bytes: Uint8Array): Int32Array {
  const parts: number[] = [];
  let start = 0;
  for (let i = bytes.indexOf(DOLLAR); i >= 0; i = bytes.indexOf(DOLLAR, i + 1)) {
    const end = paramAt(bytes, i + 1, bytes.length);
    if (end < 0) continue;
    parts.push(start, i, param.n);
    start = end;
    i = end - 1;
  }
  parts.push(start, bytes.length, 0);
  return Int32Array.from(parts);
}

/** The match of b[from, to) against `t`; with `learn`, the kinds of the text's literals are recorded instead of checked. */
function match(t: Template, b: Uint8Array, from: number, to: number, learn: Uint8Array | null): boolean {
  const tpl = t.bytes;
  const parts = t.parts;
  let j = from;
  let maxParam = 0;
  let literals = 0;
  let firstK = 0;
  let lastK = 0;
  for (let p = 0; p < parts.length; p += 3) {
    const start = parts[p]!;
    const end = parts[p + 1]!;
    const k = parts[p + 2]!;
    // The plain stretch: the same bytes.
    if (j + (end - start) > to) return false;
    for (let i = start; i < end; i++, j++) if (b[j] !== tpl[i]) return false;
    if (k === 0) continue;
    if (at(b, j, to) === DOLLAR) {
      // A parameter in the text too: the same number.
      const pEnd = paramAt(b, j + 1, to);
      if (pEnd < 0 || param.n !== k) return false;
      if (k > maxParam) maxParam = k;
      j = pEnd;
      continue;
    }
    if (k < t.firstGenerated) return false;
    const litEnd = literalEnd(b, j, to);
    // The character before (the same in both) must not make the literal part of another token: E'', U&'', t1, .5
    const before = end > 0 ? tpl[end - 1]! : SPACE;
    if (litEnd < 0 || isNameChar(before) || before === DOT || before === AMP || before === QUOTE) return false;
    const m = k - t.firstGenerated;
    if (m >= t.kinds.length) return false;
    if (learn !== null) learn[m] = lit.kind;
    else if (t.kinds[m] !== lit.kind) return false;
    // Placeholders for literals run k0, k0+1, ...; k0 is checked against the highest parameter at the end.
    if (literals === 0) firstK = k;
    else if (k !== lastK + 1) return false;
    lastK = k;
    literals++;
    j = litEnd;
  }
  for (; j < to; j++) {
    const x = b[j]!;
    if (x !== SEMI && !isBlank(x)) return false;
  }
  return literals === 0 || firstK === maxParam + 1;
}

/** Kind of the literal literalEnd() last read. */
export const lit = { kind: 0 };

/** End of a plain number or '...' string at b[i] (its kind in `lit`) in a text ending at `to`, or -1. */
export function literalEnd(b: Uint8Array, i: number, to: number): number {
  const c = at(b, i, to);
  if (c === QUOTE) {
    lit.kind = STRING;
    for (let j = i + 1; j < to; j++) {
      const x = b[j]!;
      // A backslash ends the string early under standard_conforming_strings = off: such texts are lexed.
      if (x === BACKSLASH) return -1;
      if (x !== QUOTE) continue;
      if (at(b, j + 1, to) === QUOTE) j++; // '' inside
      else return j + 1;
    }
    return -1;
  }
  const start = i;
  lit.kind = INTEGER;
  while (isDigit(at(b, i, to))) i++;
  if (at(b, i, to) === DOT) {
    lit.kind = DECIMAL;
    i++;
    while (isDigit(at(b, i, to))) i++;
  }
  if (i === start || (i === start + 1 && c === DOT)) return -1;
  if ((at(b, i, to) | 0x20) === 101) {
    // 'e': an exponent
    lit.kind = DECIMAL;
    let j = i + 1;
    const sign = at(b, j, to);
    if (sign === 43 || sign === 45) j++; // '+' '-'
    if (!isDigit(at(b, j, to))) return -1;
    while (isDigit(at(b, j, to))) j++;
    i = j;
  }
  // A name or number glued behind would make it another token.
  const next = at(b, i, to);
  return isNameChar(next) || next === DOT ? -1 : i;
}

/** The number of the `$n` read last by paramAt(). */
const param = { n: 0 };

/** Where the `$n` at b[i] (just after the '$') ends, its number in `param.n`; -1 when no digit follows. */
function paramAt(b: Uint8Array, i: number, to: number): number {
  let n = 0;
  let j = i;
  while (isDigit(at(b, j, to)) && n < 1e9) n = n * 10 + (b[j++]! - 48);
  param.n = n;
  return j === i ? -1 : j;
}
