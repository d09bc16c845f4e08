// set_config calls whose value is a Bind parameter: the statement made literal from the Bind message, to be followed like a SET.

import { readInt32 } from "../protocol/framing.ts";
import { Lexer, Tok } from "../sql/lexer.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });
const lexer = new Lexer();

/**
 * The parameter values of the Bind message at b[pos, msgEnd), as text (null for NULL); null when
 * any is in binary format or the message is malformed.
 */
export function bindTextParams(b: Uint8Array, pos: number, msgEnd: number): (string | null)[] | null {
  const portalEnd = b.indexOf(0, pos + 5);
  const stmtEnd = portalEnd < 0 ? -1 : b.indexOf(0, portalEnd + 1);
  if (stmtEnd < 0 || stmtEnd + 3 > msgEnd) return null;
  let p = stmtEnd + 1;
  const nFormats = (b[p]! << 8) | b[p + 1]!;
  p += 2;
  for (let i = 0; i < nFormats; i++, p += 2) if (p + 2 > msgEnd || ((b[p]! << 8) | b[p + 1]!) !== 0) return null;
  if (p + 2 > msgEnd) return null;
  const n = (b[p]! << 8) | b[p + 1]!;
  p += 2;
  const out: (string | null)[] = [];
  try {
    for (let i = 0; i < n; i++) {
      if (p + 4 > msgEnd) return null;
      const len = readInt32(b, p);
      p += 4;
      if (len < 0) {
        out.push(null);
        continue;
      }
      if (p + len > msgEnd) return null;
      out.push(utf8.decode(b.subarray(p, p + len)));
      p += len;
    }
  } catch {
    return null;
  }
  return out;
}

/** `sql` with each $n replaced by its value as a string constant; null when one is NULL or missing. */
export function withParams(sql: string, params: readonly (string | null)[]): string | null {
  const lx = lexer.reset(sql);
  let out = "";
  let last = 0;
  while (lx.next() !== Tok.End) {
    if (lx.kind !== Tok.Param) continue;
    const v = params[Number(sql.slice(lx.start + 1, lx.end)) - 1];
    if (v === undefined || v === null) return null;
    out += `${sql.slice(last, lx.start)}'${v.replaceAll("'", "''")}'`;
    last = lx.end;
  }
  return out + sql.slice(last);
}
