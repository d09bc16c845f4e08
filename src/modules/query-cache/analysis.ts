// What a request does, read from the PostgreSQL parse tree: may it be cached, which tables it reads and writes, how it changes the session.

import { BUILTIN_READ_SAFE } from "../../sql/classify.ts";

/** Built-in functions whose result depends only on their arguments and the session's settings. */
const BUILTIN_CACHEABLE = [
  "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "json_agg", "jsonb_agg", "json_object_agg",
  "jsonb_object_agg", "bool_and", "bool_or", "every", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop",
  "var_samp", "percentile_cont", "percentile_disc", "mode", "row_number", "rank", "dense_rank", "percent_rank",
  "cume_dist", "lag", "lead", "first_value", "last_value", "nth_value", "ntile", "coalesce", "nullif", "greatest",
  "least", "lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length", "bit_length",
  "substring", "substr", "trim", "btrim", "ltrim", "rtrim", "replace", "translate", "overlay", "repeat", "reverse",
  "lpad", "rpad", "concat", "concat_ws", "format", "left", "right", "position", "strpos", "starts_with",
  "split_part", "ascii", "chr", "regexp_replace", "regexp_match", "regexp_matches", "regexp_split_to_array",
  "regexp_split_to_table", "to_char", "to_date", "to_timestamp", "to_number", "date_trunc", "date_part", "extract",
  "make_date", "make_time", "make_timestamp", "make_timestamptz", "make_interval", "justify_days", "justify_hours",
  "justify_interval", "isfinite", "abs", "sign", "round", "ceil", "ceiling", "floor", "trunc", "mod", "div", "power",
  "pow", "sqrt", "cbrt", "exp", "ln", "log", "log10", "pi", "degrees", "radians", "sin", "cos", "tan", "width_bucket",
  "generate_series", "generate_subscripts", "unnest", "array_length", "array_lower", "array_upper", "array_dims",
  "cardinality", "array_to_string", "string_to_array", "array_position", "array_positions", "array_remove",
  "array_replace", "array_append", "array_prepend", "array_cat", "json_build_object", "jsonb_build_object",
  "json_build_array", "jsonb_build_array", "to_json", "to_jsonb", "jsonb_array_elements", "json_array_elements",
  "jsonb_array_elements_text", "json_array_elements_text", "jsonb_each", "json_each", "jsonb_each_text",
  "json_each_text", "jsonb_object_keys", "json_object_keys", "jsonb_extract_path", "jsonb_extract_path_text",
  "json_extract_path", "json_extract_path_text", "jsonb_array_length", "json_array_length", "jsonb_typeof",
  "json_typeof", "jsonb_set", "jsonb_insert", "jsonb_strip_nulls", "jsonb_pretty", "row_to_json", "array_to_json",
  "md5", "sha224", "sha256", "sha384", "sha512", "encode", "decode", "quote_ident", "quote_literal", "quote_nullable",
  "format_type", "any_value", "num_nonnulls", "num_nulls", "int4", "int8", "numeric", "text", "float8", "bool",
];

/** Built-in functions whose result moves with time or is drawn at random, or that read server state. Never cached. */
const BUILTIN_DENIED = [
  "now", "current_timestamp", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday",
  "localtime", "localtimestamp", "current_date", "current_time", "age", "random", "random_normal", "setseed",
  "nextval", "currval", "lastval", "setval", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc",
  "uuid_generate_v4", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "txid_current", "txid_current_if_assigned",
  "txid_current_snapshot", "txid_status", "txid_visible_in_snapshot", "pg_current_xact_id",
  "pg_current_xact_id_if_assigned", "pg_current_snapshot", "pg_xact_status", "pg_backend_pid",
  "pg_current_wal_lsn", "pg_postmaster_start_time", "pg_conf_load_time", "pg_is_in_recovery",
  "pg_last_xact_replay_timestamp", "pg_last_wal_replay_lsn", "pg_last_wal_receive_lsn", "inet_client_addr",
  "inet_client_port", "inet_server_addr", "inet_server_port", "pg_table_size", "pg_relation_size",
  "pg_total_relation_size", "pg_database_size", "pg_indexes_size", "set_config", "current_setting",
];

/** SQLValueFunction operators that read the clock. */
const CLOCK_VALUES = /^SVFOP_(?:CURRENT_DATE|CURRENT_TIME|CURRENT_TIMESTAMP|LOCALTIME|LOCALTIMESTAMP)/;

/** Statements that change neither data nor the session in a way the cache cares about. */
const HARMLESS = new Set([
  "VariableShowStmt", "ListenStmt", "UnlistenStmt", "NotifyStmt", "LockStmt", "VacuumStmt", "CheckPointStmt",
  "DeallocateStmt", "ClosePortalStmt", "FetchStmt", "DeclareCursorStmt", "PrepareStmt", "ConstraintsSetStmt",
]);

/**
 * What the parse tree shows about the session beyond its settings (SET, RESET, DISCARD ALL and
 * set_config are read by the core's session-effects scan, see sessions.ts).
 */
export const enum SessionChange {
  None = 0,
  /** Created a temporary object: the session's names may now mean something else. */
  Temp = 8,
  /** Something the proxy cannot follow (a function or procedure that may SET). */
  Unknown = 16,
}

export interface Analysis {
  /** One read-only statement that may be cached. */
  readonly cacheable: boolean;
  /** Why not, when not ("" when cacheable). */
  readonly reason: string;
  /** Tables read (unqualified names as PostgreSQL folds them, views and functions expanded by `dependencies`). */
  readonly reads: readonly string[];
  /** Tables the request may write; "all" when it cannot be known. Empty for reads. */
  readonly writes: readonly string[] | "all";
  readonly change: SessionChange;
  /** BEGIN, COMMIT, ROLLBACK, SAVEPOINT... */
  readonly txControl: boolean;
  /** Changes the schema (DDL, GRANT...): what names mean may differ afterwards. */
  readonly ddl: boolean;
  readonly statements: number;
}

export interface AnalysisSettings {
  readonly denyFunctions: readonly string[];
  readonly cacheableFunctions: readonly string[];
  readonly dependencies: Readonly<Record<string, readonly string[]>>;
  readonly functionWrites: Readonly<Record<string, readonly string[]>>;
  /** Table -> tables its writes reach too (triggers, foreign-key cascades). */
  readonly cascades?: Readonly<Record<string, readonly string[]>>;
}

type Node = Record<string, unknown>;

export class Analyzer {
  private readonly cacheable: Set<string>;
  private readonly readSafe: Set<string>;

  constructor(private readonly s: AnalysisSettings) {
    const denied = new Set([...BUILTIN_DENIED, ...s.denyFunctions]);
    this.cacheable = new Set([...BUILTIN_CACHEABLE, ...s.cacheableFunctions].filter((f) => !denied.has(f)));
    this.readSafe = new Set([...BUILTIN_READ_SAFE, ...BUILTIN_CACHEABLE, ...BUILTIN_DENIED, ...s.cacheableFunctions]);
    for (const f of ["set_config", "setval", "nextval", "pg_advisory_lock"]) this.readSafe.delete(f);
    // Sequence functions change only sequences: not a write to cached tables.
    this.readSafe.add("nextval").add("setval");
  }

  /** Analyse a parse tree (`{ stmts: [{ stmt }] }`); null tree (no parser, syntax error): nothing cacheable, writes unknown. */
  analyze(tree: unknown): Analysis {
    const stmts = ((tree as { stmts?: { stmt?: Node }[] } | null)?.stmts ?? []).map((s) => s.stmt ?? {});
    const w = new Walk();
    let kind = "";
    for (const stmt of stmts) {
      const [k, body] = Object.entries(stmt)[0] ?? ["", {}];
      kind = k;
      this.statement(k, body as Node, w);
    }
    let reason = "";
    if (tree === null) reason = "not parsed";
    else if (stmts.length !== 1) reason = stmts.length === 0 ? "empty" : "several statements";
    else if (kind !== "SelectStmt") reason = "not a query";
    else if (w.writes !== null) reason = "writes";
    else reason = w.uncacheable;
    // Text the parser refuses, PostgreSQL refuses too: it runs nothing.
    const reads = this.expand([...w.reads].filter((r) => !w.ctes.has(r)), this.s.dependencies);
    const writes: readonly string[] | "all" = w.writes === "all" ? "all" : w.writes === null ? [] : this.expand([...w.writes], this.s.cascades ?? {});
    return {
      cacheable: reason === "",
      reason,
      reads,
      writes,
      change: w.change,
      txControl: w.txControl,
      ddl: w.ddl,
      statements: stmts.length,
    };
  }

  private expand(names: string[], map: Readonly<Record<string, readonly string[]>>): string[] {
    const out = new Set(names);
    for (const n of names) for (const t of map[n] ?? []) out.add(t);
    return [...out];
  }

  private statement(kind: string, body: Node, w: Walk): void {
    switch (kind) {
      case "SelectStmt":
        if (body.intoClause) w.write("all");
        this.tree(body, w);
        return;
      case "InsertStmt":
      case "UpdateStmt":
      case "DeleteStmt":
      case "MergeStmt": {
        const rel = (body.relation as Node | undefined) ?? {};
        w.write(relName(rel));
        this.tree(body, w);
        return;
      }
      case "TruncateStmt":
        for (const r of (body.relations as { RangeVar?: Node }[] | undefined) ?? []) w.write(relName(r.RangeVar ?? {}));
        return;
      case "CopyStmt":
        if (body.is_from) w.write(relName((body.relation as Node | undefined) ?? {}));
        else if (body.query) this.tree(body.query, w);
        return;
      case "RefreshMatViewStmt":
        w.write(relName((body.relation as Node | undefined) ?? {}));
        return;
      case "ExplainStmt": {
        const options = (body.options as { DefElem?: { defname?: string } }[] | undefined) ?? [];
        if (options.some((o) => o.DefElem?.defname === "analyze")) {
          const [k, inner] = Object.entries((body.query as Node) ?? {})[0] ?? ["", {}];
          this.statement(k, inner as Node, w);
        }
        return;
      }
      case "TransactionStmt":
        w.txControl = true;
        return;
      // Settings: the core's session-effects scan follows them.
      case "VariableSetStmt":
      case "DiscardStmt":
        return;
      case "CreateStmt":
      case "ViewStmt":
      case "CreateTableAsStmt":
      case "CreateSeqStmt": {
        const rel = (body.relation ?? body.view ?? body.sequence ?? (body.into as Node | undefined)?.rel) as Node | undefined;
        if (rel?.relpersistence === "t") w.change |= SessionChange.Temp;
        w.ddl = true;
        w.write("all");
        return;
      }
      case "DoStmt":
      case "CallStmt":
      case "ExecuteStmt":
        w.change |= SessionChange.Unknown;
        w.write("all");
        return;
      default:
        if (!HARMLESS.has(kind)) {
          w.ddl = true;
          w.write("all");
        }
        else if (kind === "DeclareCursorStmt") this.tree(body, w);
    }
  }

  /** Walk expressions and FROM lists: relations read, functions called, locking, data-modifying CTEs. */
  private tree(node: unknown, w: Walk): void {
    if (node === null || typeof node !== "object") return;
    if (Array.isArray(node)) {
      for (const n of node) this.tree(n, w);
      return;
    }
    const o = node as Node;
    for (const key in o) {
      const v = o[key];
      switch (key) {
        case "RangeVar": {
          const r = v as Node;
          const schema = typeof r.schemaname === "string" ? r.schemaname : "";
          const name = relName(r);
          if (schema === "pg_catalog" || schema === "information_schema" || (schema === "" && name.startsWith("pg_"))) w.nocache("reads a system catalog");
          else if (schema === "pg_temp" || schema.startsWith("pg_temp_")) w.nocache("reads a temporary table");
          w.reads.add(name);
          continue;
        }
        case "CommonTableExpr":
          w.ctes.add(String((v as Node).ctename ?? ""));
          break;
        case "lockingClause":
          if (Array.isArray(v) && v.length > 0) w.nocache("FOR UPDATE/SHARE");
          break;
        case "RangeTableSample":
          w.nocache("TABLESAMPLE");
          break;
        case "SQLValueFunction":
          if (CLOCK_VALUES.test(String((v as Node).op ?? ""))) w.nocache("reads the clock");
          break;
        case "InsertStmt":
        case "UpdateStmt":
        case "DeleteStmt":
        case "MergeStmt":
          this.statement(key, v as Node, w);
          continue;
        case "FuncCall": {
          const parts = ((v as Node).funcname as { String?: { sval?: string } }[] | undefined) ?? [];
          const name = (parts[parts.length - 1]?.String?.sval ?? "").toLowerCase();
          if (!this.cacheable.has(name)) w.nocache(`calls ${name}()`);
          if (name === "set_config") {
            // A SET by another spelling: with constant arguments the core's session-effects scan follows it; else nobody can.
            const args = ((v as Node).args as { A_Const?: unknown }[] | undefined) ?? [];
            if (args.length !== 3 || args.some((x) => x.A_Const === undefined)) w.change |= SessionChange.Unknown;
          } else if (!this.readSafe.has(name)) {
            const tables = this.s.functionWrites[name];
            if (tables !== undefined) for (const t of tables) w.write(t);
            else {
              w.write("all");
              w.change |= SessionChange.Unknown;
            }
          }
          for (const t of this.s.dependencies[name] ?? []) w.reads.add(t);
          break;
        }
      }
      if (typeof v === "object") this.tree(v, w);
    }
  }
}

/** What one walk found. */
class Walk {
  readonly reads = new Set<string>();
  readonly ctes = new Set<string>();
  writes: Set<string> | "all" | null = null;
  uncacheable = "";
  change = SessionChange.None;
  txControl = false;
  ddl = false;

  write(table: string): void {
    if (table === "all" || table === "") this.writes = "all";
    else if (this.writes === null) this.writes = new Set([table]);
    else if (this.writes !== "all") this.writes.add(table);
  }

  nocache(reason: string): void {
    if (this.uncacheable === "") this.uncacheable = reason;
  }
}

function relName(r: Node): string {
  return typeof r.relname === "string" ? r.relname : "";
}
