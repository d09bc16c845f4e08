// Renders a loaded config as flat rows (key, value, default, changeable) for SHOW CONFIG and GET /config; a key marked secret in its schema is masked.

import { CORE_SECTIONS, SCHEMA, type FieldSpec, type SectionSpec } from "./schema.ts";
import type { HeliosConfig } from "./types.ts";
import { RESTART_KEYS } from "./restart-keys.ts";

type Table = Record<string, unknown>;

export const MASK = "********";

export interface ConfigRow {
  readonly key: string;
  readonly value: string;
  /** The default from the schema; null for required keys and entries of free-key tables. */
  readonly default: string | null;
  /** Whether a RELOAD applies a new value (module settings apply at start). */
  readonly changeable: boolean;
}

/** Keys a RELOAD does not apply (bound or built at start). */
const NOT_RELOADED = new RegExp(`^(${RESTART_KEYS.map((k) => k.replace(".", "\\.")).join("|")}|nodes\\[\\d+\\]\\.(name|role|sync|weight))$`);

function text(v: unknown): string {
  return Array.isArray(v) ? v.map(text).join(",") : String(v);
}

/** The one masking rule: a key whose spec says secret shows MASK once set. */
function shown(f: FieldSpec, v: unknown): string {
  return f.secret && v !== "" && v !== undefined ? MASK : text(v);
}

/** Rows of one table's fields; nested tables, arrays of tables and free-key tables become dotted keys. */
function rows(fields: Readonly<Record<string, FieldSpec>>, table: Table, prefix: string, module: boolean, out: ConfigRow[]): void {
  for (const [key, f] of Object.entries(fields)) {
    const v = table[key];
    const at = `${prefix}.${key}`;
    if (f.kind === "table") rows(f.fields!, (v ?? {}) as Table, at, module, out);
    else if (f.kind === "tables") ((v ?? []) as Table[]).forEach((entry, i) => rows(f.fields!, entry, `${at}[${i}]`, module, out));
    else if (f.kind === "map") {
      for (const [k, item] of Object.entries((v ?? {}) as Table)) out.push({ key: `${at}.${k}`, value: shown(f.item!, item), default: null, changeable: !module });
    } else {
      out.push({ key: at, value: shown(f, v), default: f.default === undefined ? null : text(f.default), changeable: !module && !NOT_RELOADED.test(at) });
    }
  }
}

/**
 * The config as flat rows, every secret masked: the core sections, then each module section with
 * its defaults, by the schema the module declares (`specOf`, given the section name).
 */
export function formatConfigForDisplay(cfg: HeliosConfig, specOf: (section: string) => SectionSpec | undefined): ConfigRow[] {
  const out: ConfigRow[] = [];
  for (const name of CORE_SECTIONS) {
    const spec: SectionSpec = SCHEMA[name];
    const value = cfg[name] as unknown;
    if (spec.kind === "table") rows(spec.fields, value as Table, name, false, out);
    else (value as Table[]).forEach((entry, i) => rows(spec.fields, entry, `${name}[${i}]`, false, out));
  }
  for (const [name, table] of Object.entries(cfg.modules)) {
    const spec = specOf(name);
    if (spec !== undefined) rows(spec.fields, table, name, true, out);
  }
  return out;
}
