// The [schema_routing] config slice: node groups, table/schema rules, workload classes and data temperature, validated key by key.

import { ModuleConfigError } from "../../core/hooks.ts";
import { boolKey, numberKey, unknownKey } from "../config-keys.ts";

/** Group names that need no [schema_routing.groups] entry: the router's own targets. */
export const BUILTIN_GROUPS: readonly string[] = ["primary", "standby", "any"];

export const WORKLOAD_CLASSES = ["analytics", "vector", "oltp"] as const;
export type WorkloadClass = (typeof WORKLOAD_CLASSES)[number];

export interface RuleSettings {
  /** Table globs: `name` (any schema) or `schema.name`; `*` and `?` wildcards. */
  tables: string[];
  /** Schema globs: every table of these schemas. */
  schemas: string[];
  group: string;
}

export interface TemperatureSettings {
  /** Table globs that are always cold. */
  cold_tables: string[];
  /** Where cold reads go ("" when temperature is not used). */
  cold_group: string;
  /** Watch reads: a table not read for cold_after_secs is cold. */
  observe: boolean;
  cold_after_secs: number;
  /** Most tables whose reads are tracked. */
  max_tables: number;
}

export interface SchemaRoutingSettings {
  enabled: boolean;
  /** Schema a bare table name is taken to be in when a rule names `schema.table`. */
  default_schema: string;
  /** Query texts whose decision is remembered. */
  cache_size: number;
  groups: Record<string, string[]>;
  rules: RuleSettings[];
  workloads: Partial<Record<WorkloadClass, string>>;
  temperature: TemperatureSettings;
}

const TOP_KEYS = ["enabled", "default_schema", "cache_size", "groups", "rules", "workloads", "temperature"];
const RULE_KEYS = ["tables", "schemas", "group"];
const TEMPERATURE_KEYS = ["cold_tables", "cold_group", "observe", "cold_after_secs", "max_tables"];

const show = (v: unknown): string => (v !== null && typeof v === "object" && !Array.isArray(v) ? "a table" : JSON.stringify(v));
const isTable = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;
/** One part of a glob: no dots, spaces or double quotes (quoted names with those cannot be matched). */
const GLOB_PART = /^[^.\s"]+$/;

function int(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new ModuleConfigError(key, `expected an integer ${min}..${max}, got ${show(v)}`);
  return v;
}

/** Check a glob: `name` or `schema.name`, each part non-empty. */
function checkPattern(key: string, v: unknown, schemaOnly = false): string {
  if (typeof v !== "string") throw new ModuleConfigError(key, `expected a ${schemaOnly ? "schema" : "table"} pattern string, got ${show(v)}`);
  const parts = v.split(".");
  if (parts.length > (schemaOnly ? 1 : 2) || !parts.every((p) => GLOB_PART.test(p)))
    throw new ModuleConfigError(key, schemaOnly ? `expected a schema name or glob such as "analytics" or "tenant_*", got ${show(v)}` : `expected "table" or "schema.table" (globs with * and ?), got ${show(v)}`);
  return v;
}

function patterns(key: string, v: unknown, schemaOnly = false): string[] {
  if (!Array.isArray(v)) throw new ModuleConfigError(key, `expected an array of ${schemaOnly ? "schema" : "table"} patterns, got ${show(v)}`);
  return v.map((p, i) => checkPattern(`${key}.${i}`, p, schemaOnly));
}

function groupRef(key: string, v: unknown, groups: Record<string, string[]>): string {
  if (typeof v !== "string") throw new ModuleConfigError(key, `expected a group name, got ${show(v)}`);
  if (!Object.hasOwn(groups, v) && !BUILTIN_GROUPS.includes(v)) {
    const known = [...Object.keys(groups), ...BUILTIN_GROUPS].join(", ");
    throw new ModuleConfigError(key, `unknown group ${JSON.stringify(v)} (groups: ${known})`);
  }
  return v;
}

function parseGroups(v: unknown): Record<string, string[]> {
  if (!isTable(v)) throw new ModuleConfigError("groups", `expected a table of group = ["node", ...], got ${show(v)}`);
  const out: Record<string, string[]> = {};
  for (const [name, nodes] of Object.entries(v)) {
    const key = `groups.${name}`;
    if (BUILTIN_GROUPS.includes(name)) throw new ModuleConfigError(key, `"${name}" is a built-in group (primary, standby, any); choose another name`);
    if (!IDENT.test(name)) throw new ModuleConfigError(key, `expected a group name of letters, digits and _, got ${JSON.stringify(name)}`);
    if (!Array.isArray(nodes) || nodes.length === 0) throw new ModuleConfigError(key, `expected a non-empty array of node names, got ${show(nodes)}`);
    out[name] = nodes.map((n, i) => {
      if (typeof n !== "string" || n === "") throw new ModuleConfigError(`${key}.${i}`, `expected a node name, got ${show(n)}`);
      return n;
    });
  }
  return out;
}

function parseRule(i: number, v: unknown, groups: Record<string, string[]>): RuleSettings {
  const at = `rules.${i}`;
  if (!isTable(v)) throw new ModuleConfigError(at, `expected a [[schema_routing.rules]] table, got ${show(v)}`);
  const rule: RuleSettings = { tables: [], schemas: [], group: "" };
  for (const [key, value] of Object.entries(v)) {
    if (key === "tables") rule.tables = patterns(`${at}.tables`, value);
    else if (key === "schemas") rule.schemas = patterns(`${at}.schemas`, value, true);
    else if (key === "group") rule.group = groupRef(`${at}.group`, value, groups);
    else throw unknownKey(`${at}.${key}`, RULE_KEYS);
  }
  if (rule.group === "") throw new ModuleConfigError(`${at}.group`, "required: the group this rule's reads go to");
  if (rule.tables.length + rule.schemas.length === 0) throw new ModuleConfigError(`${at}.tables`, "a rule needs at least one table or schema pattern");
  return rule;
}

function parseWorkloads(v: unknown, groups: Record<string, string[]>): Partial<Record<WorkloadClass, string>> {
  if (!isTable(v)) throw new ModuleConfigError("workloads", `expected a table of class = "group", got ${show(v)}`);
  const out: Partial<Record<WorkloadClass, string>> = {};
  for (const [key, value] of Object.entries(v)) {
    if (!(WORKLOAD_CLASSES as readonly string[]).includes(key)) throw unknownKey(`workloads.${key}`, WORKLOAD_CLASSES);
    out[key as WorkloadClass] = groupRef(`workloads.${key}`, value, groups);
  }
  return out;
}

function parseTemperature(v: unknown, groups: Record<string, string[]>): TemperatureSettings {
  if (!isTable(v)) throw new ModuleConfigError("temperature", `expected a [schema_routing.temperature] table, got ${show(v)}`);
  const t: TemperatureSettings = { ...DEFAULT_TEMPERATURE, cold_tables: [] };
  for (const [key, value] of Object.entries(v)) {
    const k = `temperature.${key}`;
    switch (key) {
      case "cold_tables":
        t.cold_tables = patterns(k, value);
        break;
      case "cold_group":
        t.cold_group = groupRef(k, value, groups);
        break;
      case "observe":
        t.observe = boolKey(k, value);
        break;
      case "cold_after_secs":
        t.cold_after_secs = numberKey(k, value, 0.001, 31_536_000);
        break;
      case "max_tables":
        t.max_tables = int(k, value, 16, 10_000_000);
        break;
      default:
        throw unknownKey(k, TEMPERATURE_KEYS);
    }
  }
  if (t.cold_group === "" && (t.observe || t.cold_tables.length > 0))
    throw new ModuleConfigError("temperature.cold_group", "required when cold_tables is set or observe = true: the group cold reads go to");
  return t;
}

const DEFAULT_TEMPERATURE: TemperatureSettings = { cold_tables: [], cold_group: "", observe: false, cold_after_secs: 3600, max_tables: 10_000 };

/** Validate the [schema_routing] section; throws ModuleConfigError naming the dotted key ("rules.0.group"). */
export function parseSettings(section: Readonly<Record<string, unknown>>): SchemaRoutingSettings {
  const out: SchemaRoutingSettings = {
    enabled: true,
    default_schema: "public",
    cache_size: 10_000,
    groups: {},
    rules: [],
    workloads: {},
    temperature: { ...DEFAULT_TEMPERATURE, cold_tables: [] },
  };
  for (const key of Object.keys(section)) if (!TOP_KEYS.includes(key)) throw unknownKey(key, TOP_KEYS);
  // Groups first: the other keys refer to them.
  if (section.groups !== undefined) out.groups = parseGroups(section.groups);
  for (const [key, value] of Object.entries(section)) {
    switch (key) {
      case "enabled":
        out.enabled = boolKey(key, value);
        break;
      case "default_schema":
        if (typeof value !== "string" || !GLOB_PART.test(value) || /[*?]/.test(value)) throw new ModuleConfigError(key, `expected a schema name, got ${show(value)}`);
        out.default_schema = value;
        break;
      case "cache_size":
        out.cache_size = int(key, value, 16, 10_000_000);
        break;
      case "rules":
        if (!Array.isArray(value)) throw new ModuleConfigError(key, `expected [[schema_routing.rules]] entries, got ${show(value)}`);
        out.rules = value.map((r, i) => parseRule(i, r, out.groups));
        break;
      case "workloads":
        out.workloads = parseWorkloads(value, out.groups);
        break;
      case "temperature":
        out.temperature = parseTemperature(value, out.groups);
        break;
    }
  }
  return out;
}

/**
 * A matcher for one glob against a table as (schema, name). A pattern without a dot matches the
 * name in any schema; `schema.name` matches both parts.
 */
export function compilePattern(pattern: string): (schema: string, name: string) => boolean {
  const dot = pattern.indexOf(".");
  const name = globPart(dot < 0 ? pattern : pattern.slice(dot + 1));
  if (dot < 0) return (_schema, n) => name(n);
  const schema = globPart(pattern.slice(0, dot));
  return (s, n) => schema(s) && name(n);
}

/** A schema glob: every table of the matching schemas. */
export function compileSchemaPattern(pattern: string): (schema: string, name: string) => boolean {
  const schema = globPart(pattern);
  return (s) => schema(s);
}

function globPart(glob: string): (s: string) => boolean {
  if (glob === "*") return () => true;
  if (!/[*?]/.test(glob)) return (s) => s === glob;
  const re = new RegExp("^" + glob.replace(/[\\^$+.()|{}[\]]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".") + "$");
  return (s) => re.test(s);
}
