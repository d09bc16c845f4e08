// The session state a client expects on whichever server it gets: startup parameters and SETs.

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

  /** Record a committed SET/RESET statement's text. */
  record(statement: string): void {
    const m = /^\s*(SET|RESET)\s+(?:SESSION\s+(?!AUTHORIZATION|CHARACTERISTICS))?(.*)$/is.exec(statement);
    if (!m) return;
    const verb = m[1]!.toUpperCase();
    const rest = m[2]!.trim().replace(/;\s*$/, "");
    const nameMatch = /^("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_.$]*(?:\s+(?:ZONE|AUTHORIZATION|CHARACTERISTICS))?)/i.exec(rest);
    const name = (nameMatch ? nameMatch[1]! : rest).toLowerCase().replace(/\s+/g, " ");
    this.cachedKey = null;
    if (verb === "RESET") {
      if (name === "all") this.sets.clear();
      else this.sets.delete(normalise(name));
      return;
    }
    this.sets.set(normalise(name), statement.trim().replace(/;\s*$/, ""));
  }

  /** DISCARD ALL / RESET ALL by the client: back to its startup settings. */
  resetAll(): void {
    this.sets.clear();
    this.cachedKey = null;
  }

  /** SQL that takes a server from any state to this one. `fresh`: the server has only its startup defaults. */
  applySql(fresh: boolean): string {
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

function normalise(name: string): string {
  if (name === "time zone") return "timezone";
  if (name === "session authorization" || name === "role") return name;
  return name;
}
