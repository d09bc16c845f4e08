// Read/write classification with the real PostgreSQL parser (libpg-query, WASM), cached by query text.


import { LRUCache } from "lru-cache";
import { normalize } from "./fingerprint.ts";

/** Functions known not to write, callable on a standby. Configurable additions come from [load_balancer]. */
export const BUILTIN_READ_SAFE: readonly string[] = [
  "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "json_agg", "jsonb_agg", "bool_and", "bool_or",
  "every", "stddev", "variance", "percentile_cont", "percentile_disc", "mode", "row_number", "rank", "dense_rank",
  "lag", "lead", "first_value", "last_value", "ntile", "coalesce", "nullif", "greatest", "least", "lower", "upper",
  "length", "char_length", "octet_length", "substring", "substr", "trim", "btrim", "ltrim", "rtrim", "replace",
  "concat", "concat_ws", "format", "left", "right", "position", "strpos", "split_part", "regexp_replace",
  "regexp_match", "regexp_matches", "to_char", "to_date", "to_timestamp", "to_number", "date_trunc", "date_part",
  "extract", "age", "now", "current_date", "current_timestamp", "localtimestamp", "clock_timestamp", "abs",
  "round", "ceil", "ceiling", "floor", "trunc", "mod", "power", "sqrt", "exp", "ln", "log", "random",
  "generate_series", "unnest", "array_length", "cardinality", "array_to_string", "string_to_array",
  "json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array", "to_json", "to_jsonb",
  "jsonb_array_elements", "json_array_elements", "jsonb_each", "json_each", "jsonb_extract_path",
  "jsonb_extract_path_text", "row_to_json", "md5", "encode", "decode", "version", "current_setting",
  "current_user", "session_user", "current_database", "current_schema", "inet_server_port", "inet_server_addr",
  "pg_backend_pid", "pg_is_in_recovery", "pg_last_wal_replay_lsn", "pg_last_wal_receive_lsn",
  "pg_last_xact_replay_timestamp", "pg_sleep", "pg_typeof", "has_table_privilege", "pg_table_size",
  "pg_relation_size", "pg_total_relation_size", "pg_size_pretty", "pg_database_size", "quote_ident",
  "quote_literal", "format_type", "obj_description", "col_description", "pg_get_expr", "pg_get_indexdef",
  "pg_get_constraintdef", "pg_get_viewdef", "pg_get_userbyid", "array_position", "array_remove", "any_value",
];

export interface ClassifyStats {
  hits: number;
  misses: number;
  /** Total microseconds spent parsing (misses only). */
  parseUs: number;
}

export class QueryClassifier {
  private readonly cache = new LRUCache<string, boolean>({ max: 10000 });
  private readonly readSafe: Set<string>;
  readonly stats: ClassifyStats = { hits: 0, misses: 0, parseUs: 0 };

  constructor(extraReadSafe: readonly string[] = []) {
    this.readSafe = new Set([...BUILTIN_READ_SAFE, ...extraReadSafe.map((f) => f.toLowerCase())]);
  }

  /**
   * True when the text may write (or cannot be parsed): it must run on the primary. The answer
   * does not depend on literal values, spacing or comments, so it is cached under the normalised
   * text (fingerprint.ts: literals become $n, comments and whitespace collapse).
   */
  isWrite(sql: string): boolean {
    const key = normalize(sql);
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      this.stats.hits++;
      return hit;
    }
    this.stats.misses++;
    const t = performance.now();
    let write = true;
    try {
      const tree = parseSync(sql) as { stmts?: { stmt: Record<string, unknown> }[] };
      write = (tree.stmts ?? []).some((s) => this.stmtWrites(s.stmt));
      if ((tree.stmts ?? []).length === 0) write = false;
    } catch {
      write = true;
    }
    this.stats.parseUs += (performance.now() - t) * 1000;
    this.cache.set(key, write);
    return write;
  }

  private stmtWrites(stmt: Record<string, unknown>): boolean {
    const [kind, body] = Object.entries(stmt)[0] ?? ["", null];
    switch (kind) {
      case "SelectStmt":
        return this.treeWrites(body);
      case "VariableShowStmt":
        return false;
      case "ExplainStmt": {
        const e = body as { query: Record<string, unknown>; options?: { DefElem?: { defname?: string } }[] };
        const analyze = (e.options ?? []).some((o) => o.DefElem?.defname === "analyze");
        return analyze ? this.stmtWrites(e.query) : false;
      }
      case "TransactionStmt": {
        // BEGIN / START TRANSACTION READ ONLY may run on a standby; any other transaction on the primary.
        const t = body as { kind?: string; options?: { DefElem?: { defname?: string; arg?: { A_Const?: { ival?: { ival?: number } } } } }[] };
        if (t.kind !== "TRANS_STMT_BEGIN" && t.kind !== "TRANS_STMT_START") return true;
        return !(t.options ?? []).some((o) => o.DefElem?.defname === "transaction_read_only" && o.DefElem.arg?.A_Const?.ival?.ival === 1);
      }
      default:
        return true;
    }
  }

  /** Walk a SELECT: locking clauses, SELECT INTO, data-modifying CTEs, calls of functions not known to be read-only. */
  private treeWrites(node: unknown): boolean {
    if (node === null || typeof node !== "object") return false;
    if (Array.isArray(node)) return node.some((n) => this.treeWrites(n));
    const o = node as Record<string, unknown>;
    for (const key in o) {
      const v = o[key];
      switch (key) {
        case "lockingClause":
        case "intoClause":
        case "InsertStmt":
        case "UpdateStmt":
        case "DeleteStmt":
        case "MergeStmt":
          if (v) return true;
          break;
        case "FuncCall": {
          const f = v as { funcname?: { String?: { sval?: string } }[] };
          const parts = f.funcname ?? [];
          const name = parts[parts.length - 1]?.String?.sval?.toLowerCase() ?? "";
          if (!this.readSafe.has(name)) return true;
          break;
        }
      }
      if (typeof v === "object" && this.treeWrites(v)) return true;
    }
    return false;
  }
}

let loaded: Promise<void> | null = null;
let parseSync: (sql: string) => unknown = () => {
  throw new Error("the SQL parser is not loaded (loadParser)");
};

/** The PostgreSQL parse tree of `sql` (throws on a syntax error, or before loadParser() resolved). */
export function parseSql(sql: string): unknown {
  return parseSync(sql);
}

/**
 * Load the WASM parser once (about 20 ms, ~13 MB): only proxies that classify queries pay for it.
 * Call before the first classification; until then every query counts as a write.
 */
export function loadParser(): Promise<void> {
  loaded ??= import("libpg-query").then(async (m) => {
    await m.loadModule();
    parseSync = m.parseSync;
  });
  return loaded;
}
