// Typed readers for module config keys: each throws ModuleConfigError naming the key and what was expected.

import { ModuleConfigError } from "../core/hooks.ts";

export function boolKey(key: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new ModuleConfigError(key, `expected true or false, got ${JSON.stringify(value)}`);
  return value;
}

export function numberKey(key: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max)
    throw new ModuleConfigError(key, `expected a number between ${min} and ${max}, got ${JSON.stringify(value)}`);
  return value;
}

export function enumKey<T extends string>(key: string, value: unknown, values: readonly T[]): T {
  if (typeof value !== "string" || !values.includes(value as T)) throw new ModuleConfigError(key, `expected one of ${values.join("|")}, got ${JSON.stringify(value)}`);
  return value as T;
}

export function stringsKey(key: string, value: unknown, what = "strings"): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw new ModuleConfigError(key, `expected an array of ${what}, got ${JSON.stringify(value)}`);
  return value as string[];
}

export function unknownKey(key: string, valid: readonly string[]): ModuleConfigError {
  return new ModuleConfigError(key, `unknown key (valid: ${valid.join(", ")})`);
}
