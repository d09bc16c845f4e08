// The [schema_routing] config section: node groups, table/schema rules, workload classes and data temperature, and the checks spanning them.

import { ModuleConfigError } from "../../core/hooks.ts";
import { moduleConfig } from "../../config/schema.ts";

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

const show = (v: unknown): string => JSON.stringify(v);
const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;
/** One part of a glob: no dots, spaces or double quotes (quoted names with those cannot be matched). */
const GLOB_PART = /^[^.\s"]+$/;

export const config = moduleConfig<SchemaRoutingSettings>("Reads of chosen tables or schemas, cold data and workload classes go to node groups.", {
  default_schema: { kind: "string", default: "public", doc: "Schema a bare table name is taken to be in when a rule names `schema.table`." },
  cache_size: { kind: "int", default: 10_000, min: 16, max: 10_000_000, doc: "Query texts whose decision is remembered." },
  groups: { kind: "map", item: { kind: "strings", doc: "Node names of the group." }, doc: "Node groups: name = [\"node\", ...] (primary, standby and any are built in)." },
  rules: {
    kind: "tables",
    doc: "[[schema_routing.rules]]: reads touching these tables or schemas go to the group.",
    fields: {
      tables: { kind: "strings", default: [], doc: "Table globs: `name` (any schema) or `schema.name`; * and ? wildcards." },
      schemas: { kind: "strings", default: [], doc: "Schema globs: every table of these schemas." },
      group: { kind: "string", required: true, doc: "The group this rule's reads go to." },
    },
  },
  workloads: {
    kind: "table",
    doc: "Workload class -> group its reads go to.",
    fields: Object.fromEntries(WORKLOAD_CLASSES.map((c) => [c, { kind: "string", default: "", doc: `Group for ${c} reads ("" = no opinion).` }])),
  },
  temperature: {
    kind: "table",
    doc: "Data temperature: cold tables' reads go to cold_group.",
    fields: {
      cold_tables: { kind: "strings", default: [], doc: "Table globs that are always cold." },
      cold_group: { kind: "string", default: "", doc: "Where cold reads go (\"\" when temperature is not used)." },
      observe: { kind: "bool", default: false, doc: "Watch reads: a table not read for cold_after_secs is cold." },
      cold_after_secs: { kind: "number", default: 3600, min: 0.001, max: 31_536_000, doc: "Seconds without reads after which an observed table is cold." },
      max_tables: { kind: "int", default: 10_000, min: 16, max: 10_000_000, doc: "Most tables whose reads are tracked." },
    },
  },
});

/** Check a glob: `name` or `schema.name`, each part non-empty. */
function checkPattern(key: string, v: string, schemaOnly = false): string {
  const parts = v.split(".");
  if (parts.length > (schemaOnly ? 1 : 2) || !parts.every((p) => GLOB_PART.test(p)))
    throw new ModuleConfigError(key, schemaOnly ? `expected a schema name or glob such as "analytics" or "tenant_*", got ${show(v)}` : `expected "table" or "schema.table" (globs with * and ?), got ${show(v)}`);
  return v;
}

function patterns(key: string, v: readonly string[], schemaOnly = false): string[] {
  return v.map((p, i) => checkPattern(`${key}.${i}`, p, schemaOnly));
}

function groupRef(key: string, v: string, groups: Record<string, string[]>): string {
  if (!Object.hasOwn(groups, v) && !BUILTIN_GROUPS.includes(v)) {
    const known = [...Object.keys(groups), ...BUILTIN_GROUPS].join(", ");
    throw new ModuleConfigError(key, `unknown group ${JSON.stringify(v)} (groups: ${known})`);
  }
  return v;
}

function checkGroups(groups: Record<string, string[]>): void {
  for (const [name, nodes] of Object.entries(groups)) {
    const key = `groups.${name}`;
    if (BUILTIN_GROUPS.includes(name)) throw new ModuleConfigError(key, `"${name}" is a built-in group (primary, standby, any); choose another name`);
    if (!IDENT.test(name)) throw new ModuleConfigError(key, `expected a group name of letters, digits and _, got ${JSON.stringify(name)}`);
    if (nodes.length === 0) throw new ModuleConfigError(key, "expected a non-empty array of node names, got []");
    nodes.forEach((n, i) => {
      if (n === "") throw new ModuleConfigError(`${key}.${i}`, `expected a node name, got ""`);
    });
  }
}

function checkRule(i: number, rule: RuleSettings, groups: Record<string, string[]>): RuleSettings {
  const at = `rules.${i}`;
  patterns(`${at}.tables`, rule.tables);
  patterns(`${at}.schemas`, rule.schemas, true);
  groupRef(`${at}.group`, rule.group, groups);
  if (rule.tables.length + rule.schemas.length === 0) throw new ModuleConfigError(`${at}.tables`, "a rule needs at least one table or schema pattern");
  return rule;
}

/** Checks spanning keys of the validated [schema_routing] section (patterns, group references); throws ModuleConfigError naming the dotted key ("rules.0.group"). */
export function parseSettings(section: Readonly<Record<string, unknown>>): SchemaRoutingSettings {
  const s = section as unknown as SchemaRoutingSettings & { workloads: Record<WorkloadClass, string> };
  if (!GLOB_PART.test(s.default_schema) || /[*?]/.test(s.default_schema)) throw new ModuleConfigError("default_schema", `expected a schema name, got ${show(s.default_schema)}`);
  checkGroups(s.groups);
  s.rules.forEach((rule, i) => checkRule(i, rule, s.groups));
  const workloads: Partial<Record<WorkloadClass, string>> = {};
  for (const c of WORKLOAD_CLASSES) if (s.workloads[c] !== "") workloads[c] = groupRef(`workloads.${c}`, s.workloads[c], s.groups);
  const t = s.temperature;
  patterns("temperature.cold_tables", t.cold_tables);
  if (t.cold_group !== "") groupRef("temperature.cold_group", t.cold_group, s.groups);
  else if (t.observe || t.cold_tables.length > 0)
    throw new ModuleConfigError("temperature.cold_group", "required when cold_tables is set or observe = true: the group cold reads go to");
  return { ...s, workloads };
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
