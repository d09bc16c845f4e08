// Tables a statement names (FROM, JOIN, INTO, UPDATE, TABLE...), read from the lexer: a best effort.

import { Lexer, Tok } from "./lexer.ts";
import { WordTable, wordSet } from "./words.ts";

const W_FROM = 1, W_JOIN = 2, W_INTO = 3, W_UPDATE = 4, W_TABLE = 5, W_USING = 6, W_WITH = 7, W_QUERY = 8,
  W_DISTINCT = 9, W_END = 10, W_NAMES = 11, W_COPY = 12, W_VIEW = 13, W_ON = 14, W_INDEX = 15;
const WORDS = new WordTable({
  from: W_FROM, join: W_JOIN, into: W_INTO, update: W_UPDATE, table: W_TABLE, using: W_USING, with: W_WITH,
  select: W_QUERY, values: W_QUERY, delete: W_QUERY, merge: W_QUERY, insert: W_QUERY, distinct: W_DISTINCT,
  truncate: W_NAMES, lock: W_NAMES, copy: W_COPY, view: W_VIEW, on: W_ON, index: W_INDEX,
  // End a FROM list.
  where: W_END, group: W_END, having: W_END, window: W_END, order: W_END, limit: W_END, offset: W_END,
  fetch: W_END, for: W_END, union: W_END, intersect: W_END, except: W_END, returning: W_END, set: W_END,
  tablesample: W_END,
});
/** Words that cannot be a table alias. */
const NOT_ALIAS = wordSet([
  "where", "join", "inner", "left", "right", "full", "cross", "natural", "on", "using", "group", "order", "limit",
  "offset", "having", "window", "union", "intersect", "except", "for", "fetch", "returning", "set", "values",
  "select", "tablesample", "into", "from", "and", "or", "when", "then", "do", "default", "with", "as", "lateral",
]);
/** Statements whose FROM names no table (REVOKE ... FROM role, FETCH n FROM cursor, COPY t FROM file). */
const NO_FROM = wordSet(["revoke", "fetch", "move", "copy"]);
/** ON followed by these in GRANT/REVOKE names no table. */
const NOT_TABLE_OBJECT = wordSet([
  "schema", "database", "function", "procedure", "routine", "sequence", "all", "type", "domain", "language",
  "large", "foreign", "tablespace", "parameter", "table",
]);
const SKIP_BEFORE_NAME = wordSet(["if", "not", "exists", "only", "temp", "temporary", "unlogged", "table", "concurrently"]);

/**
 * Tables named by the statements in `sql`, in order of first appearance, without duplicates:
 * `schema.table` as written, unquoted parts folded to lower case, quoted parts exact. Covers
 * FROM lists (not function calls, not subqueries: their own FROMs count), JOIN, INSERT/MERGE INTO,
 * SELECT INTO, UPDATE, DELETE FROM, DELETE/MERGE USING, TABLE t, CREATE/ALTER/DROP/LOCK/TRUNCATE
 * [TABLE], [MATERIALIZED] VIEW, COPY t, GRANT/REVOKE ... ON t, CREATE INDEX ... ON t; names defined
 * by WITH are left out. A lexer's best effort (the unit tests compare it with the parser's relations):
 * views and search_path are not resolved, and odd forms (nested join parentheses) may be missed; use
 * the PostgreSQL parser (libpg-query, see classify.ts) for exact answers.
 */
export function tablesTouched(sql: string): string[] {
  const lx = new Lexer().reset(sql);
  const found: string[] = [];
  const ctes = new Set<string>();
  // Per paren depth: a query keyword was seen (so FROM lists tables), a FROM list is open (so a ','
  // starts another item).
  const query: boolean[] = [false];
  const fromList: boolean[] = [false];
  const cteLists: number[] = []; // depths of WITH lists whose current body ends at the next ')' there
  let depth = 0, first = "", prevCode = 0, stmtStart = true, indexOn = false;

  const add = (name: string | null) => {
    if (name !== null && !(ctes.has(name) && !name.includes("."))) found.push(name);
  };
  /** Name at the current token (Word/QuotedIdent), dotted parts included; leaves the next token current. */
  const readName = (): string | null => {
    if (lx.kind !== Tok.Word && lx.kind !== Tok.QuotedIdent) return null;
    let name = lx.word();
    for (let parts = 1; lx.nextSignificant() === Tok.Punct && lx.isChar(46) && parts < 3; parts++) {
      if (lx.nextSignificant() !== Tok.Word && lx.kind !== Tok.QuotedIdent) return name;
      name += "." + lx.word();
    }
    return name;
  };
  /** After a table name: `*`, [AS] alias, (column aliases). */
  const skipAlias = () => {
    if (lx.kind === Tok.Operator && lx.isChar(42)) lx.nextSignificant();
    let alias = false;
    if (lx.is("as")) {
      lx.nextSignificant();
      alias = true;
    }
    if ((lx.kind === Tok.Word && !NOT_ALIAS.has(lx.src, lx.start, lx.end)) || lx.kind === Tok.QuotedIdent) {
      lx.nextSignificant();
      alias = true;
    }
    if (alias && lx.isChar(40)) skipParens();
  };
  const skipParens = () => {
    for (let d = 0; ; ) {
      if (lx.isChar(40)) d++;
      else if (lx.isChar(41) && --d === 0) break;
      if (lx.nextSignificant() === Tok.End) return;
    }
    lx.nextSignificant();
  };
  const skipWords = () => {
    while (lx.kind === Tok.Word && SKIP_BEFORE_NAME.has(lx.src, lx.start, lx.end)) lx.nextSignificant();
  };
  /** One FROM/JOIN item: a table (not a function call, subquery or LATERAL item). */
  const fromItem = () => {
    skipWords();
    if (lx.is("lateral") || lx.kind !== Tok.Word && lx.kind !== Tok.QuotedIdent) return;
    if (lx.kind === Tok.Word && NOT_ALIAS.has(lx.src, lx.start, lx.end)) return;
    const name = readName();
    if (lx.isChar(40)) return; // a function: generate_series(...)
    add(name);
    skipAlias();
  };
  /** A comma list of plain names (DROP TABLE a, b / TRUNCATE a, b / LOCK a, b). */
  const nameList = () => {
    for (;;) {
      skipWords();
      add(readName());
      if (lx.kind === Tok.Operator && lx.isChar(42)) lx.nextSignificant();
      if (!lx.isChar(44)) return;
      lx.nextSignificant();
    }
  };

  let tok = lx.nextSignificant();
  while (tok !== Tok.End) {
    const code = tok === Tok.Word ? WORDS.code(lx.src, lx.start, lx.end) : 0;
    const begins = stmtStart;
    stmtStart = false;
    let held = false; // a reader moved on: the current token is the next one to look at
    if (tok === Tok.Word && first === "") first = lx.word();
    if (code === W_QUERY) query[depth] = true;
    switch (code) {
      case W_FROM:
        if (prevCode !== W_DISTINCT && query[depth] && !(depth === 0 && NO_FROM.has(first, 0, first.length))) {
          lx.nextSignificant();
          fromList[depth] = true;
          fromItem();
          held = true;
        }
        break;
      case W_JOIN:
        lx.nextSignificant();
        fromItem();
        held = true;
        break;
      case W_INTO:
        lx.nextSignificant();
        skipWords();
        add(readName());
        held = true;
        break;
      case W_UPDATE: // UPDATE t as a statement or a CTE body, not FOR UPDATE / DO UPDATE / ON UPDATE
        if (begins) {
          query[depth] = true;
          lx.nextSignificant();
          skipWords();
          add(readName());
          held = true;
        }
        break;
      case W_TABLE:
        lx.nextSignificant();
        if (!lx.isChar(40)) nameList(); // not RETURNS TABLE (...)
        held = true;
        break;
      case W_NAMES: // TRUNCATE [TABLE] a, b / LOCK [TABLE] a
      case W_COPY: // COPY t [(cols)] FROM/TO, not COPY (query) TO
        if (begins && depth === 0) {
          lx.nextSignificant();
          if (code === W_NAMES) nameList();
          else if (!lx.isChar(40)) add(readName());
          held = true;
        }
        break;
      case W_USING: // DELETE ... USING a, b / MERGE ... USING s
        if (depth === 0 && (first === "delete" || first === "merge")) {
          lx.nextSignificant();
          fromList[depth] = true;
          fromItem();
          held = true;
        }
        break;
      case W_WITH: // WITH [RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] ( ... ), ...
        lx.nextSignificant();
        if (lx.is("recursive")) lx.nextSignificant();
        if (cteName(lx, ctes)) enterCte();
        held = true;
        break;
      case W_VIEW: // CREATE/ALTER/DROP [MATERIALIZED] VIEW v, REFRESH MATERIALIZED VIEW v
        if (depth === 0 && (first === "create" || first === "alter" || first === "drop" || first === "refresh")) {
          lx.nextSignificant();
          nameList();
          held = true;
        }
        break;
      case W_INDEX:
        if (depth === 0 && first === "create") indexOn = true;
        break;
      case W_ON: // GRANT ... ON t / REVOKE ... ON t / CREATE INDEX ... ON t
        if (depth === 0 && (indexOn || first === "grant" || first === "revoke")) {
          lx.nextSignificant();
          if (!(lx.kind === Tok.Word && NOT_TABLE_OBJECT.has(lx.src, lx.start, lx.end))) nameList();
          indexOn = false;
          held = true;
        }
        break;
      case W_END:
        fromList[depth] = false;
        break;
    }
    if (!held && tok === Tok.Punct) {
      if (lx.isChar(40)) {
        depth++;
        query[depth] = fromList[depth] = false;
        stmtStart = true;
      } else if (lx.isChar(41)) {
        if (depth > 0) depth--;
        if (cteLists.length > 0 && cteLists[cteLists.length - 1] === depth) {
          // End of a CTE body: ", name AS (" continues the list; anything else is the main statement.
          cteLists.pop();
          lx.nextSignificant();
          if (lx.isChar(44)) {
            lx.nextSignificant();
            if (cteName(lx, ctes)) enterCte();
          } else stmtStart = true;
          held = true;
        }
      } else if (lx.isChar(44) && fromList[depth]) {
        lx.nextSignificant();
        fromItem();
        held = true;
      } else if (lx.isChar(59)) {
        depth = 0;
        first = "";
        indexOn = false;
        query[0] = fromList[0] = false;
        cteLists.length = 0;
        ctes.clear();
        stmtStart = true;
      }
    }
    if (held) {
      prevCode = 0;
      tok = lx.kind;
    } else {
      prevCode = code;
      tok = lx.nextSignificant();
    }
  }
  return [...new Set(found)];

  function enterCte(): void {
    cteLists.push(depth);
    depth++;
    query[depth] = fromList[depth] = false;
    stmtStart = true;
  }
}

/**
 * At `name [(cols)] AS [NOT] [MATERIALIZED] (`: record the name, leave the lexer past the '(' of the
 * body and return true; anything else returns false with the lexer on the token that broke the pattern.
 */
function cteName(lx: Lexer, ctes: Set<string>): boolean {
  if (lx.kind !== Tok.Word && lx.kind !== Tok.QuotedIdent) return false;
  const name = lx.word();
  lx.nextSignificant();
  if (lx.isChar(40)) {
    while (lx.nextSignificant() !== Tok.End && !lx.isChar(41));
    lx.nextSignificant();
  }
  if (!lx.is("as")) return false;
  lx.nextSignificant();
  if (lx.is("not")) lx.nextSignificant();
  if (lx.is("materialized")) lx.nextSignificant();
  if (!lx.isChar(40)) return false;
  ctes.add(name);
  lx.nextSignificant();
  return true;
}
