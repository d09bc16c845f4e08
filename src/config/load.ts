// Reads a TOML config, validates every key against the schema and returns a HeliosConfig with defaults filled in.

import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { ModuleConfigError, HOOKS_API_VERSION } from "../core/hooks.ts";
import {
  buildProfile,
  isFeatureCompiled,
  MODULE_SECTION_NAMES,
  moduleFor,
  moduleRow,
  moduleSectionFeature,
  moduleSpec,
  topologyProviderFeature,
  UNBUILT_SECTIONS,
} from "../modules/index.ts";
import { KeyLocator, type KeyPath } from "./locate.ts";
import { CORE_SECTIONS, SCHEMA, isValidHost, parseAddress, type FieldSpec, type SectionSpec } from "./schema.ts";
import type { HeliosConfig, NodeEntry, UserEntry } from "./types.ts";

import { formatConfigForDisplay, type ConfigRow } from "./display.ts";

export { formatConfigForDisplay, MASK, type ConfigRow } from "./display.ts";

/** SHOW CONFIG and GET /config: every key with its default, module sections by their declared schemas, secrets masked. */
export function configRows(cfg: HeliosConfig): ConfigRow[] {
  return formatConfigForDisplay(cfg, moduleSpec);
}

export interface ConfigIssue {
  /** 1-based line in the file, when the problem has one. */
  readonly line: number | undefined;
  /** Dotted key ("pool.mode", "nodes[1].host") or "[section]". */
  readonly key: string;
  /** What was expected and what was found. */
  readonly detail: string;
}

/** A config that cannot be used. The message has one line per problem: `file:line: key: detail`. */
export class ConfigError extends Error {
  readonly file: string;
  readonly issues: readonly ConfigIssue[];
  /** Line of the first problem. */
  declare readonly line: number | undefined;
  /** Key of the first problem. */
  readonly key: string;
  constructor(file: string, issues: readonly ConfigIssue[]) {
    super(issues.map((i) => formatIssue(file, i)).join("\n"));
    this.name = "ConfigError";
    this.file = file;
    this.issues = issues;
    // The engine gives every Error an own `line` (of the throw site): replace it.
    Object.defineProperty(this, "line", { value: issues[0]?.line, enumerable: true, writable: false, configurable: true });
    this.key = issues[0]?.key ?? "";
  }
}

function formatIssue(file: string, i: ConfigIssue): string {
  const where = i.line === undefined ? file : `${file}:${i.line}`;
  return i.key === "" ? `${where}: ${i.detail}` : `${where}: ${i.key}: ${i.detail}`;
}

export interface ParseOptions {
  /** Which features count as compiled in (default: this build's). */
  isCompiled?: (feature: string) => boolean;
  /** Profile named in "not in this build" errors (default: this build's). */
  profile?: string;
}

/** Read and validate a config file. Throws ConfigError. */
export function loadConfig(path: string, opts: ParseOptions = {}): HeliosConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : String((e as Error).message);
    throw new ConfigError(path, [{ line: undefined, key: "", detail: `cannot read config: ${reason}` }]);
  }
  return parseConfig(text, path, opts);
}

/** Validate TOML text; `path` names the file in messages and anchors relative file paths. */
export function parseConfig(text: string, path: string, opts: ParseOptions = {}): HeliosConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const detail = e.message.replace(/^Invalid TOML document: /, "").split("\n")[0]!;
    throw new ConfigError(path, [{ line: e.line, key: "", detail: `TOML syntax error: ${detail}` }]);
  }
  return buildConfig(doc, path, new KeyLocator(text), opts);
}

/** Validate an already-parsed document (no line numbers without a locator). */
export function buildConfig(
  doc: Record<string, unknown>,
  path: string,
  locator?: KeyLocator,
  opts: ParseOptions = {},
): HeliosConfig {
  const v = new Checker(path, locator, opts);
  const cfg = v.run(doc);
  if (v.issues.length > 0) throw new ConfigError(path, sortIssues(v.issues));
  return cfg;
}

/**
 * One module section checked exactly as the loader checks it (field schema, then the module's own
 * checks); returns the module's settings. Throws ConfigError. For tests and tools.
 */
export function moduleSettings(section: string, raw: Record<string, unknown>, path = "proxy.toml"): unknown {
  const v = new Checker(path, undefined, {});
  const modules: Record<string, Table> = {};
  v.moduleSection(section, raw, modules);
  if (v.issues.length > 0) throw new ConfigError(path, v.issues);
  const mod = moduleFor(section)!;
  return mod.configure ? mod.configure(modules[section]!) : modules[section];
}

function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues
    .map((issue, n) => ({ issue, n }))
    .sort((a, b) => (a.issue.line ?? Infinity) - (b.issue.line ?? Infinity) || a.n - b.n)
    .map((x) => x.issue);
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** How a found value reads in a message. */
export function describeValue(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (v instanceof Date) return `a date (${v.toISOString()})`;
  if (Array.isArray(v)) return "an array";
  if (isTable(v)) return "a table";
  return String(v);
}

/** What kind of value was found, without the value. */
function kindOf(v: unknown): string {
  if (typeof v === "string") return "a string";
  if (typeof v === "number" || typeof v === "bigint") return "a number";
  if (typeof v === "boolean") return "a boolean";
  if (v instanceof Date) return "a date";
  return describeValue(v);
}

function rangeText(f: FieldSpec): string {
  const { min, minExclusive } = f;
  const max = f.max === Number.MAX_SAFE_INTEGER ? undefined : f.max;
  if (min !== undefined && max !== undefined) return minExclusive ? ` > ${min} and <= ${max}` : ` in ${min}..${max}`;
  if (min !== undefined) return minExclusive ? ` > ${min}` : ` >= ${min}`;
  if (max !== undefined) return ` <= ${max}`;
  return "";
}

/** Checks one value against its spec; returns the detail of the problem, or undefined when valid. */
function checkValue(value: unknown, f: FieldSpec): string | undefined {
  // A secret is never echoed: a mistyped password would land in the reload response and the log.
  const got = `, got ${f.secret ? kindOf(value) : describeValue(value)}`;
  switch (f.kind) {
    case "string":
      return typeof value === "string" ? undefined : `expected a string${got}`;
    case "bool":
      return typeof value === "boolean" ? undefined : `expected true or false${got}`;
    case "enum":
      return typeof value === "string" && f.values!.includes(value)
        ? undefined
        : `expected one of ${f.values!.map((x) => (x === "" ? '""' : x)).join("|")}${got}`;
    case "address":
      return typeof value === "string" && parseAddress(value) !== undefined
        ? undefined
        : `expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432")${got}`;
    case "host":
      return typeof value === "string" && isValidHost(value) ? undefined : `expected a host name or IP address${got}`;
    case "strings":
      return Array.isArray(value) && value.every((x) => typeof x === "string") ? undefined : `expected an array of strings${got}`;
    case "table":
    case "map":
      return isTable(value) ? undefined : `expected a table${got}`;
    case "tables":
      return Array.isArray(value) && value.every(isTable) ? undefined : `expected an array of tables ([[...]] entries)${got}`;
    case "int":
    case "number": {
      const ok =
        typeof value === "number" &&
        Number.isFinite(value) &&
        (f.kind === "number" || Number.isInteger(value)) &&
        (f.min === undefined || (f.minExclusive ? value > f.min : value >= f.min)) &&
        (f.max === undefined || value <= f.max);
      return ok ? undefined : `expected ${f.kind === "int" ? "an integer" : "a number"}${rangeText(f)}${got}`;
    }
  }
}

/** Closest candidate within edit distance 2, for "did you mean". */
function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function displayKey(path: KeyPath): string {
  let out = "";
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : out === "" ? seg : `.${seg}`;
  return out;
}

class Checker {
  readonly issues: ConfigIssue[] = [];
  private readonly baseDir: string;
  private readonly isCompiled: (feature: string) => boolean;
  private readonly profile: string;

  constructor(
    private readonly file: string,
    private readonly loc: KeyLocator | undefined,
    opts: ParseOptions,
  ) {
    this.baseDir = dirname(resolve(file || "."));
    this.isCompiled = opts.isCompiled ?? isFeatureCompiled;
    this.profile = opts.profile ?? buildProfile();
  }

  private add(path: KeyPath, detail: string, key = displayKey(path), linePath: KeyPath = path): void {
    this.issues.push({ line: this.loc?.lineOf(linePath), key, detail });
  }

  run(doc: Table): HeliosConfig {
    const sections: Record<string, unknown> = {};
    const modules: Record<string, Table> = {};
    for (const [name, value] of Object.entries(doc)) {
      if (Object.hasOwn(SCHEMA, name)) continue;
      if (moduleSectionFeature(name) !== undefined) this.moduleSection(name, value, modules);
      else if (isTable(value) || (Array.isArray(value) && value.length > 0 && value.every(isTable))) {
        const near = suggest(name, [...CORE_SECTIONS, ...MODULE_SECTION_NAMES, ...Object.keys(UNBUILT_SECTIONS)]);
        this.add([name], near ? `unknown section (did you mean [${near}]?)` : `unknown section (valid: ${CORE_SECTIONS.join(", ")}, or a module section: ${MODULE_SECTION_NAMES.join(", ")})`, `[${name}]`);
      } else this.add([name], "unknown key at top level (keys belong in a section such as [proxy])");
    }
    for (const name of CORE_SECTIONS) {
      const spec: SectionSpec = SCHEMA[name];
      const raw = doc[name];
      if (spec.kind === "table") {
        if (raw !== undefined && !isTable(raw)) {
          this.add([name], `expected a [${name}] table, got ${describeValue(raw)}`, `[${name}]`);
          sections[name] = this.fields(spec, undefined, [name]);
        } else sections[name] = this.fields(spec, raw, [name]);
      } else if (raw === undefined) sections[name] = [];
      else if (!Array.isArray(raw) || !raw.every(isTable)) {
        this.add([name], `expected [[${name}]] entries (an array of tables), got ${describeValue(raw)}`, `[[${name}]]`);
        sections[name] = [];
      } else sections[name] = raw.map((entry, i) => this.fields(spec, entry, [name, i]));
    }
    const cfg = { source: this.file ? resolve(this.file) : "", ...sections, modules } as unknown as HeliosConfig;
    if (this.issues.length === 0) this.crossChecks(cfg);
    return cfg;
  }

  /** Every field of one table: defaults for absent keys, errors for bad and unknown ones; nested tables recursively. */
  private fields(spec: { readonly fields: Readonly<Record<string, FieldSpec>> }, raw: Table | undefined, base: KeyPath): Table {
    const out: Table = {};
    for (const [key, f] of Object.entries(spec.fields)) {
      const path = [...base, key];
      if (raw === undefined || !Object.hasOwn(raw, key)) {
        if (f.required) this.add(path, "required key is missing");
        out[key] = f.kind === "table" ? this.fields(f as Required<Pick<FieldSpec, "fields">>, undefined, path) : f.kind === "tables" ? [] : f.kind === "map" ? {} : Array.isArray(f.default) ? [...f.default] : f.default;
        continue;
      }
      const value = raw[key];
      const problem = checkValue(value, f);
      if (problem !== undefined) {
        this.add(path, problem);
        out[key] = value;
      } else if (f.kind === "table") out[key] = this.fields(f as Required<Pick<FieldSpec, "fields">>, value as Table, path);
      else if (f.kind === "tables") out[key] = (value as Table[]).map((entry, i) => this.fields(f as Required<Pick<FieldSpec, "fields">>, entry, [...path, i]));
      else if (f.kind === "map") out[key] = this.mapEntries(f.item!, value as Table, path);
      else out[key] = value;
    }
    for (const key of Object.keys(raw ?? {})) {
      if (Object.hasOwn(spec.fields, key)) continue;
      const near = suggest(key, Object.keys(spec.fields));
      this.add([...base, key], near ? `unknown key (did you mean ${near}?)` : `unknown key (valid: ${Object.keys(spec.fields).join(", ")})`);
    }
    return out;
  }

  /** A table of free keys whose values all meet `item`. */
  private mapEntries(item: FieldSpec, raw: Table, base: KeyPath): Table {
    const out: Table = {};
    for (const [key, value] of Object.entries(raw)) {
      const problem = checkValue(value, item);
      if (problem !== undefined) this.add([...base, key], problem);
      out[key] = value;
    }
    return out;
  }

  /**
   * A module's section: refused when the feature is not implemented or not in this build (unless it
   * only says `enabled = false`); else checked against the module's field schema like a core section,
   * then handed to the module's own cross-key checks. Stored with defaults filled in.
   */
  moduleSection(name: string, value: unknown, modules: Record<string, Table>): void {
    const feature = moduleSectionFeature(name)!;
    const label = `[${name}]`;
    const onlyDisabled = isTable(value) && value.enabled === false;
    if (moduleRow(name) === undefined) {
      if (!onlyDisabled) this.add([name], `${feature} is not implemented in this version (\`heliosproxy features\` lists what is)`, label);
      return;
    }
    if (!this.isCompiled(feature)) {
      // A section that only says `enabled = false` may stay in a config shared between builds.
      if (!onlyDisabled) this.add([name], `${feature} is not in this build (profile: ${this.profile})`, label);
      return;
    }
    if (!isTable(value)) {
      this.add([name], `expected a ${label} table, got ${describeValue(value)}`, label);
      return;
    }
    const mod = moduleFor(name)!;
    if (mod.apiVersion !== HOOKS_API_VERSION) {
      this.add([name], `module ${mod.name} ${mod.version} targets hook API ${mod.apiVersion}, this build has ${HOOKS_API_VERSION}`, label);
      return;
    }
    const before = this.issues.length;
    const filled = this.fields(moduleSpec(name)!, value, [name]);
    modules[name] = filled;
    if (this.issues.length > before || mod.configure === undefined) return;
    try {
      mod.configure(filled);
    } catch (e) {
      // "rules.1.group": numeric segments are array indexes (the line of the entry's own [[...]] header).
      if (e instanceof ModuleConfigError) this.add([name, ...e.key.split(".").map((seg) => (/^\d+$/.test(seg) ? Number(seg) : seg))], e.detail);
      else this.add([name], (e as Error).message, label);
    }
  }

  /** The provider must be in this build; Patroni needs URLs; who promotes must be unambiguous. */
  private checkTopology(cfg: HeliosConfig): void {
    const { topology, failover } = cfg;
    const pf = topologyProviderFeature(topology.provider)!;
    if (!this.isCompiled(pf)) this.add(["topology", "provider"], `${pf} is not in this build (profile: ${this.profile})`);
    if (topology.provider === "patroni") {
      if (topology.patroni_urls.length === 0) this.add(["topology", "patroni_urls"], `required when topology.provider = "patroni"`, "topology.patroni_urls", ["topology", "provider"]);
      for (const [i, u] of topology.patroni_urls.entries()) {
        if (!/^https?:\/\/[^/\s]+\/?$/.test(u)) this.add(["topology", "patroni_urls", i], `expected a base URL such as "http://10.0.0.1:8008", got ${JSON.stringify(u)}`, "topology.patroni_urls", ["topology", "patroni_urls"]);
      }
    }
    if (failover.policy === "auto" && (topology.provider === "patroni" || topology.provider === "heliosdb"))
      this.add(["failover", "policy"], `"auto" conflicts with topology.provider = "${topology.provider}", which promotes by itself (use "off")`);
  }

  /** etcd needs reachable endpoints; TLS files must exist (relative to the config file); a client certificate needs its key. */
  private checkCoordination(cfg: HeliosConfig): void {
    const c = cfg.coordination;
    if (c.backend === "none") {
      if (c.endpoints.length > 0) this.add(["coordination", "endpoints"], `only used with coordination.backend = "etcd" (backend is "none")`);
      return;
    }
    if (c.endpoints.length === 0) this.add(["coordination", "endpoints"], `required when coordination.backend = "etcd"`, "coordination.endpoints", ["coordination", "backend"]);
    for (const [i, u] of c.endpoints.entries()) {
      if (!/^https?:\/\/[^/\s]+\/?$/.test(u)) this.add(["coordination", "endpoints", i], `expected a URL such as "http://10.0.0.1:2379", got ${JSON.stringify(u)}`, "coordination.endpoints", ["coordination", "endpoints"]);
    }
    if (!/^\/[^\s]*[^/\s]$/.test(c.key_prefix)) this.add(["coordination", "key_prefix"], `expected a key path such as "/heliosproxy/orders" (leading "/", no trailing "/"), got ${JSON.stringify(c.key_prefix)}`);
    if (c.username === "" && c.password !== "") this.add(["coordination", "password"], "needs coordination.username");
    if ((c.cert_file === "") !== (c.key_file === "")) this.add(["coordination", c.cert_file === "" ? "key_file" : "cert_file"], "coordination.cert_file and coordination.key_file go together");
    if (c.advertise_admin_url !== "" && !/^https?:\/\/[^/\s]+\/?$/.test(c.advertise_admin_url))
      this.add(["coordination", "advertise_admin_url"], `expected a URL such as "http://10.0.0.5:9090", got ${JSON.stringify(c.advertise_admin_url)}`);
    if (c.proxy_name !== "" && !/^[A-Za-z0-9_.:-]+$/.test(c.proxy_name)) this.add(["coordination", "proxy_name"], `expected letters, digits, "_", "-", "." or ":", got ${JSON.stringify(c.proxy_name)}`);
    for (const key of ["ca_file", "cert_file", "key_file"] as const) {
      if (c[key] === "") continue;
      const abs = isAbsolute(c[key]) ? c[key] : resolve(this.baseDir, c[key]);
      if (!existsSync(abs) || !statSync(abs).isFile()) this.add(["coordination", key], `file not found: ${abs}`);
      c[key] = abs;
    }
  }

  /** Rules spanning several keys; run only when every key is individually valid. */
  private crossChecks(cfg: HeliosConfig): void {
    const { proxy, pool, tls, auth } = cfg;
    if (pool.reset_query_always && pool.reset_query.trim() === "")
      this.add(["pool", "reset_query_always"], "needs a non-empty pool.reset_query");
    if (pool.min_connections > pool.max_connections)
      this.add(["pool", "min_connections"], `expected at most pool.max_connections (${pool.max_connections}), got ${pool.min_connections}`);
    const listen = parseAddress(proxy.listen_address)!;
    const admin = parseAddress(proxy.admin_address)!;
    if (listen.port === admin.port && (listen.host === admin.host || isWildcard(listen.host) || isWildcard(admin.host)))
      this.add(["proxy", "admin_address"], `must differ from proxy.listen_address (${proxy.listen_address})`);

    this.checkNodes(cfg.nodes);
    this.checkUsers(cfg.users, cfg);
    this.checkTopology(cfg);
    this.checkCoordination(cfg);

    if (tls.mode !== "disable") {
      for (const key of ["cert_file", "key_file"] as const)
        if (tls[key] === "") this.add(["tls", key], `required when tls.mode = "${tls.mode}"`, `tls.${key}`, ["tls", "mode"]);
    }
    if ((tls.server_sslmode === "verify-ca" || tls.server_sslmode === "verify-full") && tls.server_ca_file === "")
      this.add(["tls", "server_sslmode"], `"${tls.server_sslmode}" needs tls.server_ca_file`);
    for (const key of ["cert_file", "key_file", "ca_file", "server_ca_file"] as const) {
      if (tls[key] === "") continue;
      const abs = isAbsolute(tls[key]) ? tls[key] : resolve(this.baseDir, tls[key]);
      if (!existsSync(abs) || !statSync(abs).isFile()) this.add(["tls", key], `file not found: ${abs}`);
      tls[key] = abs;
    }
    if (auth.auth_query !== "" && auth.auth_user === "") this.add(["auth", "auth_query"], "needs auth.auth_user (the user that runs it)");
  }

  private checkNodes(nodes: NodeEntry[]): void {
    if (nodes.length === 0) {
      this.add(["nodes"], "at least one [[nodes]] entry is required (host = ..., port = 5432)", "nodes");
      return;
    }
    const names = new Map<string, number>();
    const endpoints = new Map<string, number>();
    nodes.forEach((n, i) => {
      if (n.name === "") n.name = `node${i + 1}`;
      else if (!/^[A-Za-z0-9_.-]+$/.test(n.name)) this.add(["nodes", i, "name"], `expected letters, digits, "_", "-" or ".", got ${describeValue(n.name)}`);
      if (n.host.startsWith("[")) n.host = n.host.slice(1, -1);
      const seen = names.get(n.name);
      if (seen !== undefined) this.add(["nodes", i, "name"], `duplicate node name "${n.name}" (also nodes[${seen}])`);
      else names.set(n.name, i);
      const ep = `${n.host.toLowerCase()}:${n.port}`;
      const dup = endpoints.get(ep);
      if (dup !== undefined) this.add(["nodes", i, "host"], `duplicate node ${ep} (also nodes[${dup}])`);
      else endpoints.set(ep, i);
      if (n.sync && n.role !== "standby") this.add(["nodes", i, "sync"], `only a standby can be synchronous (role = "${n.role}")`);
    });
  }

  private checkUsers(users: UserEntry[], cfg: HeliosConfig): void {
    const names = new Map<string, number>();
    users.forEach((u, i) => {
      if (u.name === "") this.add(["users", i, "name"], "expected a non-empty user name");
      const seen = names.get(u.name);
      if (seen !== undefined) this.add(["users", i, "name"], `duplicate user "${u.name}" (also users[${seen}])`);
      else names.set(u.name, i);
      const scram = u.password.startsWith("SCRAM-SHA-256$");
      const md5 = /^md5[0-9a-f]{32}$/.test(u.password);
      if (u.server_password === "" && !scram && !md5) u.server_password = u.password;
      const method = u.auth_method || cfg.auth.method;
      if (method === "md5" && scram) this.add(["users", i, "password"], "md5 authentication needs a plain or md5 password, got a SCRAM verifier");
      if (method === "scram-sha-256" && md5) this.add(["users", i, "password"], "scram-sha-256 authentication needs a plain password or SCRAM verifier, got an md5 hash");
    });
  }
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::";
}
