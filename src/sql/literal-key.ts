// Cache key for per-statement decisions that do not depend on literal values: literals become "?".

const isDigit = (c: number) => c >= 48 && c <= 57;
const isIdent = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 128 || isDigit(c) || c === 36;

/**
 * `SELECT a FROM t WHERE id = 42 AND s = 'x'` -> `SELECT a FROM t WHERE id = ? AND s = ?`.
 * Numbers, quoted strings (also E'', with doubled quotes) and dollar-quoted strings are masked;
 * identifiers (quoted or not), keywords, operators, comments and $n parameters are kept.
 * Texts without literals come back as the same string.
 */
export function literalKey(sql: string): string {
  let out = "";
  let from = 0;
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 39) {
      // '...' with '' inside; E'...' also allows backslash escapes.
      const escapes = i > 0 && (sql.charCodeAt(i - 1) | 0x20) === 101 && (i < 2 || !isIdent(sql.charCodeAt(i - 2)));
      let j = i + 1;
      while (j < n) {
        const d = sql.charCodeAt(j);
        if (escapes && d === 92) j += 2;
        else if (d === 39) {
          if (sql.charCodeAt(j + 1) === 39) j += 2;
          else break;
        } else j++;
      }
      out += sql.slice(from, escapes ? i - 1 : i) + "?";
      i = from = j + 1;
    } else if (c === 34) {
      const j = sql.indexOf('"', i + 1);
      i = j < 0 ? n : j + 1;
    } else if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      const j = sql.indexOf("\n", i);
      i = j < 0 ? n : j;
    } else if (c === 36 && !(i > 0 && isIdent(sql.charCodeAt(i - 1)))) {
      // $1 parameters stay; $tag$...$tag$ strings are masked.
      let j = i + 1;
      while (j < n && isIdent(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
      if (j < n && sql.charCodeAt(j) === 36 && !isDigit(sql.charCodeAt(i + 1))) {
        const tag = sql.slice(i, j + 1);
        const end = sql.indexOf(tag, j + 1);
        const stop = end < 0 ? n : end + tag.length;
        out += sql.slice(from, i) + "?";
        i = from = stop;
      } else i = j;
    } else if (isDigit(c) && !(i > 0 && isIdent(sql.charCodeAt(i - 1)))) {
      let j = i + 1;
      while (j < n && (isDigit(sql.charCodeAt(j)) || sql.charCodeAt(j) === 46 || (sql.charCodeAt(j) | 0x20) === 101)) j++;
      out += sql.slice(from, i) + "?";
      i = from = j;
    } else if (isIdent(c)) {
      let j = i + 1;
      while (j < n && isIdent(sql.charCodeAt(j))) j++;
      i = j;
    } else i++;
  }
  return from === 0 ? sql : out + sql.slice(from);
}
