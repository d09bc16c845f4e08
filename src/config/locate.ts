// Finds the source line of every table header and key in a TOML text (the parser gives values, not positions).

export type KeyPath = readonly (string | number)[];

/**
 * Scans a TOML document that already parsed cleanly and records the 1-based line where each
 * key path first appears: `["pool","mode"]`, `["nodes",1,"host"]`, `["nodes",1]` (its header).
 * Tracks [table] and [[array]] headers, dotted keys, inline tables and arrays, multi-line strings.
 */
export class KeyLocator {
  private readonly lines = new Map<string, number>();
  private readonly arrayCounts = new Map<string, number>();
  private readonly s: string;
  private i = 0;
  private line = 1;

  constructor(text: string) {
    this.s = text;
    this.scan();
  }

  /** Line of `path`, or of its nearest recorded parent; undefined when nothing matches. */
  lineOf(path: KeyPath): number | undefined {
    for (let n = path.length; n > 0; n--) {
      const found = this.lines.get(keyOf(path.slice(0, n)));
      if (found !== undefined) return found;
    }
    return undefined;
  }

  /** Line of exactly `path`, no fallback. */
  exactLineOf(path: KeyPath): number | undefined {
    return this.lines.get(keyOf(path));
  }

  private record(path: KeyPath, line: number): void {
    for (let n = 1; n <= path.length; n++) {
      const k = keyOf(path.slice(0, n));
      if (!this.lines.has(k)) this.lines.set(k, line);
    }
  }

  private scan(): void {
    const s = this.s;
    let table: KeyPath = [];
    while (this.i < s.length) {
      this.skipBlank();
      if (this.i >= s.length) break;
      const c = s[this.i];
      if (c === "[") {
        const isArray = s[this.i + 1] === "[";
        this.i += isArray ? 2 : 1;
        const segs = this.readKey();
        this.i = s.indexOf("\n", this.i) < 0 ? s.length : s.indexOf("\n", this.i);
        table = this.resolveHeader(segs, isArray);
        this.record(table, this.line);
      } else {
        const line = this.line;
        const segs = this.readKey();
        const path = [...table, ...segs];
        this.record(path, line);
        this.skipSpaces();
        if (s[this.i] === "=") this.i++;
        this.skipValue(path);
      }
    }
  }

  /** Inserts the current index after every array-of-tables segment; a [[x]] header opens a new one. */
  private resolveHeader(segs: string[], isArray: boolean): KeyPath {
    const out: (string | number)[] = [];
    for (let n = 0; n < segs.length; n++) {
      out.push(segs[n]!);
      const k = keyOf(out);
      const count = this.arrayCounts.get(k);
      if (isArray && n === segs.length - 1) {
        this.arrayCounts.set(k, (count ?? 0) + 1);
        out.push(count ?? 0);
      } else if (count !== undefined) {
        out.push(count - 1);
      }
    }
    return out;
  }

  // --- lexing -------------------------------------------------------------------------------

  private skipSpaces(): void {
    while (this.s[this.i] === " " || this.s[this.i] === "\t") this.i++;
  }

  /** Whitespace, newlines and comments. */
  private skipBlank(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s[this.i];
      if (c === " " || c === "\t" || c === "\r") this.i++;
      else if (c === "\n") {
        this.line++;
        this.i++;
      } else if (c === "#") {
        while (this.i < s.length && s[this.i] !== "\n") this.i++;
      } else break;
    }
  }

  /** A dotted key: bare, "basic" or 'literal' segments. */
  private readKey(): string[] {
    const s = this.s;
    const segs: string[] = [];
    for (;;) {
      this.skipSpaces();
      const c = s[this.i];
      if (c === '"') segs.push(unquote(this.readBasicString()));
      else if (c === "'") {
        const end = s.indexOf("'", this.i + 1);
        segs.push(s.slice(this.i + 1, end));
        this.i = end + 1;
      } else {
        const start = this.i;
        while (this.i < s.length && /[A-Za-z0-9_-]/.test(s[this.i]!)) this.i++;
        segs.push(s.slice(start, this.i));
        if (this.i === start) this.i++; // never stall on unexpected input
      }
      this.skipSpaces();
      if (s[this.i] !== ".") return segs;
      this.i++;
    }
  }

  /** Returns the raw "..." text (quotes included) and moves past it. */
  private readBasicString(): string {
    const s = this.s;
    const start = this.i;
    this.i++;
    while (this.i < s.length && s[this.i] !== '"' && s[this.i] !== "\n") this.i += s[this.i] === "\\" ? 2 : 1;
    this.i++;
    return s.slice(start, this.i);
  }

  private skipValue(path: KeyPath): void {
    const s = this.s;
    this.skipSpaces();
    if (s.startsWith('"""', this.i) || s.startsWith("'''", this.i)) {
      const q = s.slice(this.i, this.i + 3);
      this.i += 3;
      for (;;) {
        if (this.i >= s.length) return;
        if (q === '"""' && s[this.i] === "\\") {
          if (s[this.i + 1] === "\n") this.line++;
          this.i += 2;
          continue;
        }
        if (s.startsWith(q, this.i)) {
          this.i += 3;
          while (s[this.i] === q[0]) this.i++; // up to two quotes may end the content
          return;
        }
        if (s[this.i] === "\n") this.line++;
        this.i++;
      }
    }
    const c = s[this.i];
    if (c === '"') this.readBasicString();
    else if (c === "'") this.i = s.indexOf("'", this.i + 1) + 1;
    else if (c === "[") this.skipArray(path);
    else if (c === "{") this.skipInlineTable(path);
    else while (this.i < s.length && !" \t\r\n,]}#".includes(s[this.i]!)) this.i++;
  }

  private skipArray(path: KeyPath): void {
    const s = this.s;
    this.i++; // [
    let index = 0;
    for (;;) {
      this.skipBlank();
      if (this.i >= s.length) return;
      if (s[this.i] === "]") {
        this.i++;
        return;
      }
      if (s[this.i] === ",") {
        this.i++;
        index++;
        continue;
      }
      this.record([...path, index], this.line);
      this.skipValue([...path, index]);
    }
  }

  private skipInlineTable(path: KeyPath): void {
    const s = this.s;
    this.i++; // {
    for (;;) {
      this.skipBlank();
      if (this.i >= s.length) return;
      if (s[this.i] === "}") {
        this.i++;
        return;
      }
      if (s[this.i] === ",") {
        this.i++;
        continue;
      }
      const line = this.line;
      const key = [...path, ...this.readKey()];
      this.record(key, line);
      this.skipSpaces();
      if (s[this.i] === "=") this.i++;
      this.skipValue(key);
    }
  }
}

function unquote(raw: string): string {
  try {
    return JSON.parse(raw) as string;
  } catch {
    return raw.slice(1, -1); // TOML-only escapes (\e, \UXXXXXXXX): close enough for locating
  }
}

function keyOf(path: KeyPath): string {
  return JSON.stringify(path);
}
