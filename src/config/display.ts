// Renders a loaded config as flat key/value rows for admin SHOW CONFIG, with passwords and secrets masked.

import { CORE_SECTIONS, SCHEMA, type SectionSpec } from "./schema.ts";
import type { HeliosConfig } from "./types.ts";

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export const MASK = "********";
const SECRET_KEY = /(password|passwd|secret|token|api_?key|private_?key|credential)/i;

function displayValue(v: unknown): string {
  if (Array.isArray(v)) return v.map(displayValue).join(",");
  if (typeof v === "string") return maskUrl(v);
  return String(v);
}

/** Masks the password in "scheme://user:password@host" strings. */
function maskUrl(v: string): string {
  return v.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]+@/i, `$1${MASK}@`);
}

function flatten(prefix: string, value: unknown, secret: boolean, out: { key: string; value: string }[]): void {
  if (isTable(value)) {
    for (const [k, v] of Object.entries(value)) flatten(`${prefix}.${k}`, v, secret || (SECRET_KEY.test(k) && !/_(file|path)$/.test(k)), out);
  } else if (Array.isArray(value) && value.some(isTable)) {
    value.forEach((v, i) => flatten(`${prefix}[${i}]`, v, secret, out));
  } else {
    out.push({ key: prefix, value: secret && value !== "" ? MASK : displayValue(value) });
  }
}

/** The config as flat key/value rows, every password and secret masked. */
export function formatConfigForDisplay(cfg: HeliosConfig): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  for (const name of CORE_SECTIONS) {
    const spec: SectionSpec = SCHEMA[name];
    const value = cfg[name] as unknown;
    const entries: [string, unknown][] = spec.kind === "table" ? [[name, value]] : (value as unknown[]).map((e, i) => [`${name}[${i}]`, e]);
    for (const [prefix, entry] of entries) {
      for (const [key, f] of Object.entries(spec.fields)) {
        const v = (entry as Table)[key];
        out.push({ key: `${prefix}.${key}`, value: f.secret && v !== "" ? MASK : displayValue(v) });
      }
    }
  }
  for (const [name, table] of Object.entries(cfg.modules)) flatten(name, table, false, out);
  return out;
}
