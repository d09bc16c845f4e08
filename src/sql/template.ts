// Does a text have a known shape? It is matched against an earlier text's normalised form, literal for placeholder, without lexing.

const DOLLAR = 36, QUOTE = 39, DOT = 46, SEMI = 59, SPACE = 32, AMP = 38, BACKSLASH = 92;
/** Kinds of literal: the normaliser's choices (ORDER BY positions, signs, UESCAPE, type modifiers) depend on them. */
const INTEGER = 1, DECIMAL = 2, STRING = 3;

const isDigit = (c: number) => c >= 48 && c <= 57;
const isBlank = (c: number) => c === SPACE || (c >= 9 && c <= 13);
export const isNameChar = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || isDigit(c) || c === 95 || c === DOLLAR || c >= 128;

/** A normalised text, which of its placeholders replaced literals, and the kind of each of those literals. */
export interface Template {
  readonly text: string;
  /** Placeholders numbered from here up replaced literals (the normaliser numbers them after the highest parameter). */
  readonly firstGenerated: number;
  /** Kind of the literal behind each of those placeholders, in order. */
  readonly kinds: Uint8Array;
}

/**
 * The template of `text`, whose normalised form is `normalised` with `constants` placeholders made
 * from literals; null when the text does not match its own normalised form this simple way (other
 * spacing, comments, E'' or dollar quotes, NULL/TRUE/FALSE...): such texts are always lexed.
 */
export function templateOf(text: string, normalised: string, constants: number): Template | null {
  let max = 0;
  for (let i = normalised.indexOf("$"); i >= 0; i = normalised.indexOf("$", i + 1)) {
    if (paramAt(normalised, i + 1) > 0 && param.n > max) max = param.n;
  }
  const t = { text: normalised, firstGenerated: constants === 0 ? Infinity : max - constants + 1, kinds: new Uint8Array(constants) };
  return match(t, text, t.kinds) ? t : null;
}

/**
 * Whether `text` normalises to `t.text` (so has its fingerprint): equal character for character,
 * except that where the template has a placeholder made from a literal the text has a plain number
 * or '...' string of the same kind, numbered as the normaliser would number it (after the text's
 * highest `$n`, in order); the text may end in blanks and semicolons. Anything else is "no" and the
 * caller lexes the text: "yes" only for the same shape.
 */
export function sameShape(t: Template, text: string): boolean {
  return match(t, text, null);
}

/** The match; with `learn`, the kinds of the text's literals are recorded instead of checked. */
function match(t: Template, text: string, learn: Uint8Array | null): boolean {
  const tpl = t.text;
  const n = tpl.length;
  let i = 0;
  let j = 0;
  let maxParam = 0;
  let literals = 0;
  let firstK = 0;
  let lastK = 0;
  while (i < n) {
    const c = tpl.charCodeAt(i);
    if (c === DOLLAR) {
      const kEnd = paramAt(tpl, i + 1);
      const k = param.n;
      const x = text.charCodeAt(j);
      if (kEnd > 0 && x === DOLLAR) {
        // A parameter in the text too: the same number.
        const pEnd = paramAt(text, j + 1);
        if (pEnd < 0 || param.n !== k) return false;
        if (k > maxParam) maxParam = k;
        i = kEnd;
        j = pEnd;
        continue;
      }
      if (kEnd > 0 && k >= t.firstGenerated) {
        const end = literalEnd(text, j);
        // The character before (the same in both) must not make the literal part of another token: E'', U&'', t1, .5
        const before = i > 0 ? tpl.charCodeAt(i - 1) : SPACE;
        if (end < 0 || isNameChar(before) || before === DOT || before === AMP || before === QUOTE) return false;
        const m = k - t.firstGenerated;
        if (m >= t.kinds.length) return false;
        if (learn !== null) learn[m] = lit.kind;
        else if (t.kinds[m] !== lit.kind) return false;
        // Placeholders for literals run k0, k0+1, ...; k0 is checked against the highest parameter at the end.
        if (literals === 0) firstK = k;
        else if (k !== lastK + 1) return false;
        lastK = k;
        literals++;
        i = kEnd;
        j = end;
        continue;
      }
    }
    if (text.charCodeAt(j) !== c) return false;
    i++;
    j++;
  }
  for (; j < text.length; j++) {
    const x = text.charCodeAt(j);
    if (x !== SEMI && !isBlank(x)) return false;
  }
  return literals === 0 || firstK === maxParam + 1;
}

/** Kind of the literal literalEnd() last read. */
export const lit = { kind: 0 };

/** End of a plain number or '...' string at `i` (its kind in `lit`), or -1. */
export function literalEnd(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === QUOTE) {
    lit.kind = STRING;
    for (let j = i + 1; j < s.length; j++) {
      const x = s.charCodeAt(j);
      // A backslash ends the string early under standard_conforming_strings = off: such texts are lexed.
      if (x === BACKSLASH) return -1;
      if (x !== QUOTE) continue;
      if (s.charCodeAt(j + 1) === QUOTE) j++; // '' inside
      else return j + 1;
    }
    return -1;
  }
  const start = i;
  lit.kind = INTEGER;
  while (isDigit(s.charCodeAt(i))) i++;
  if (s.charCodeAt(i) === DOT) {
    lit.kind = DECIMAL;
    i++;
    while (isDigit(s.charCodeAt(i))) i++;
  }
  if (i === start || (i === start + 1 && c === DOT)) return -1;
  if ((s.charCodeAt(i) | 0x20) === 101) {
    // 'e': an exponent
    lit.kind = DECIMAL;
    let j = i + 1;
    const sign = s.charCodeAt(j);
    if (sign === 43 || sign === 45) j++; // '+' '-'
    if (!isDigit(s.charCodeAt(j))) return -1;
    while (isDigit(s.charCodeAt(j))) j++;
    i = j;
  }
  // A name or number glued behind would make it another token.
  return isNameChar(s.charCodeAt(i)) || s.charCodeAt(i) === DOT ? -1 : i;
}

/** The number of the `$n` read last by paramAt(). */
const param = { n: 0 };

/** Where the `$n` at `i` (just after the '$') ends, its number in `param.n`; -1 when no digit follows. */
function paramAt(s: string, i: number): number {
  let n = 0;
  let j = i;
  while (isDigit(s.charCodeAt(j)) && n < 1e9) n = n * 10 + (s.charCodeAt(j++) - 48);
  param.n = n;
  return j === i ? -1 : j;
}
