// The session state a client expects on whichever server it gets: startup parameters and SETs.

import { Lexer, Tok } from "./lexer.ts";

/** Trace context a client may pass at login: read by the proxy (tracing), never set on a server. */
const TRACE_PARAMS = ["traceparent", "tracestate"];
/** Startup parameters that are not session settings. */
const NOT_GUCS = new Set(["user", "database", "replication", "options", "standard_conforming_strings", ...TRACE_PARAMS]);
const NAME_OK = /^[A-Za-z_][A-Za-z0-9_.$]*$/;

function literal(v: string): string {
  return `'${v.replaceAll("'", "''")}'`;
}

/** Parse libpq `options` ("-c a=b --c=d") into settings. */
export function parseOptions(options: string): [string, string][] {
  const out: [string, string][] = [];
  const parts = options.match(/(?:\\.|\S)+/g) ?? [];
  for (let i = 0; i < parts.length; i++) {
    let p = parts[i]!.replace(/\\(.)/g, "$1");
    if (p === "-c" && i + 1 < parts.length) p = parts[++i]!.replace(/\\(.)/g, "$1");
    else if (p.startsWith("-c")) p = p.slice(2);
    else if (p.startsWith("--")) p = p.slice(2);
    else continue;
    const eq = p.indexOf("=");
    if (eq > 0) out.push([p.slice(0, eq).replaceAll("-", "_"), p.slice(eq + 1)]);
  }
  return out;
}

/** Startup keys the proxy reads itself and never applies as settings on a server. */
export function consumedByProxy(name: string): boolean {
  return NOT_GUCS.has(name);
}

/** The traceparent a client gave at login: a startup parameter, or `-c traceparent=...` in `options`. */
export function traceContextParam(params: ReadonlyMap<string, string>): string | undefined {
  const direct = params.get("traceparent");
  if (direct !== undefined) return direct;
  const options = params.get("options");
  if (options === undefined || !options.includes("traceparent")) return undefined;
  return parseOptions(options).find((kv) => kv[0] === "traceparent")?.[1];
}

/**
 * Compacted, not a log: startup settings plus the last SET per parameter. `key` identifies the
 * state; a server whose stateKey equals it needs nothing applied.
 */
export class SessionState {
  private readonly startup: [string, string][] = [];
  /** Parameter name (lower case) -> the client's own SET/RESET statement text. */
  private readonly sets = new Map<string, string>();
  private cachedKey: string | null = null;

  constructor(params: Map<string, string>) {
    for (const [k, v] of params) {
      if (k === "options") {
        for (const kv of parseOptions(v)) if (NAME_OK.test(kv[0]) && !TRACE_PARAMS.includes(kv[0])) this.startup.push(kv);
      } else if (!NOT_GUCS.has(k) && NAME_OK.test(k)) this.startup.push([k, v]);
    }
    this.startup.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  }

  get key(): string {
    if (this.cachedKey === null) {
      let k = "";
      for (const [n, v] of this.startup) k += `${n}=${v}\u0001`;
      for (const s of this.sets.values()) k += `${s}\u0002`;
      this.cachedKey = k;
    }
    return this.cachedKey;
  }

  /**
   * Record a committed statement that changes settings: SET / RESET (read with the SQL lexer, so
   * comments anywhere count as blanks) or a statement calling set_config(constant, constant, false).
   * Models PostgreSQL: RESET ALL leaves role and session authorization, SET/RESET SESSION
   * AUTHORIZATION also resets the role. False when the text is not understood: the caller then
   * cannot know what the server holds.
   */
  record(statement: string): boolean {
    const lx = lexer.reset(statement);
    lx.nextSignificant();
    this.cachedKey = null;
    if (lx.is("set") || lx.is("reset")) return this.recordSet(lx, statement);
    let found = false;
    while (lx.kind !== Tok.End) {
      if (lx.is("set_config") && lx.peekSignificant() === Tok.Punct) {
        const call = setConfigCall(lx);
        if (call === null) return false;
        if (!call.local) this.put(normalise(call.name), `SET ${quoteIdent(call.name)} TO ${literal(call.value)}`);
        found = true;
      } else lx.nextSignificant();
    }
    return found;
  }

  private recordSet(lx: Lexer, statement: string): boolean {
    const reset = lx.is("reset");
    let k = lx.nextSignificant();
    if (!reset && lx.is("session") && lx.peekSignificant() === Tok.Word) {
      const after = lx.src.slice(lx.peekStart, lx.peekEnd).toLowerCase();
      if (after !== "authorization" && after !== "characteristics") k = lx.nextSignificant();
    }
    if (k !== Tok.Word && k !== Tok.QuotedIdent) return false;
    let name: string;
    if (k === Tok.Word && lx.is("all")) name = "all";
    else if (lx.is("time") && lx.peekSignificant() === Tok.Word && lx.src.slice(lx.peekStart, lx.peekEnd).toLowerCase() === "zone") name = "timezone";
    else if (lx.is("session") && lx.peekSignificant() === Tok.Word) {
      name = `session ${lx.src.slice(lx.peekStart, lx.peekEnd).toLowerCase()}`;
    } else {
      // A dotted name: app.tenant, "my"."guc".
      name = lx.word();
      while (lx.peekSignificant() === Tok.Punct && lx.src.charCodeAt(lx.peekStart) === 46) {
        lx.nextSignificant();
        const part = lx.nextSignificant();
        if (part !== Tok.Word && part !== Tok.QuotedIdent) return false;
        name += `.${lx.word()}`;
      }
    }
    name = normalise(name);
    if (reset) {
      if (name === "all") {
        for (const n of [...this.sets.keys()]) if (n !== "role" && n !== "session authorization") this.sets.delete(n);
      } else {
        this.sets.delete(name);
        if (name === "session authorization") this.sets.delete("role");
      }
      return true;
    }
    if (name === "all") return false;
    if (name === "session authorization") this.sets.delete("role");
    this.put(name, statement.trim().replace(/;\s*$/, ""));
    return true;
  }

  /** The latest setting of a name goes last: replayed in the order the client ran them. */
  private put(name: string, sql: string): void {
    this.sets.delete(name);
    this.sets.set(name, sql);
  }

  /** DISCARD ALL by the client: back to its startup settings (role and session authorization too). */
  resetAll(): void {
    this.sets.clear();
    this.cachedKey = null;
  }

  /** SQL that takes a server from any state to this one. `fresh`: the server has only its startup defaults. */
  applySql(fresh: boolean): string {
    // RESET SESSION AUTHORIZATION also resets the role, which RESET ALL leaves.
    let sql = fresh ? "" : "RESET SESSION AUTHORIZATION;RESET ALL;";
    for (const [n, v] of this.startup) sql += `SET ${n} TO ${literal(v)};`;
    for (const s of this.sets.values()) sql += `${s};`;
    return sql;
  }

  /** Startup settings as the client gave them (for ParameterStatus at login). */
  startupSettings(): readonly [string, string][] {
    return this.startup;
  }
}

/** One key per setting whatever the spelling: SET TIME ZONE is timezone, session_authorization is SET SESSION AUTHORIZATION, SCHEMA is search_path. */
function normalise(name: string): string {
  const n = name.toLowerCase();
  if (n === "time zone") return "timezone";
  if (n === "session_authorization") return "session authorization";
  if (n === "schema") return "search_path";
  if (n === "names") return "client_encoding";
  return n;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

const lexer = new Lexer();

/** A string constant's value (standard_conforming_strings on: '' is a quote; E'' strings are not read). */
function stringValue(lx: Lexer): string | null {
  if (lx.kind !== Tok.String || lx.src.charCodeAt(lx.start) !== 39 || lx.unterminated) return null;
  const body = lx.src.slice(lx.start + 1, lx.end - 1);
  return /'\s*\n\s*'/.test(body) ? null : body.replaceAll("''", "'");
}

/** With the lexer on `set_config`: its constant arguments, or null when any is not a constant. */
function setConfigCall(lx: Lexer): { name: string; value: string; local: boolean } | null {
  lx.nextSignificant();
  if (!lx.isChar(40)) return null;
  lx.nextSignificant();
  const name = stringValue(lx);
  lx.nextSignificant();
  if (name === null || !lx.isChar(44)) return null;
  lx.nextSignificant();
  const value = stringValue(lx);
  lx.nextSignificant();
  if (value === null || !lx.isChar(44)) return null;
  lx.nextSignificant();
  const local = lx.is("true") ? true : lx.is("false") ? false : null;
  lx.nextSignificant();
  if (local === null || !lx.isChar(41)) return null;
  lx.nextSignificant();
  return { name, value, local };
}
