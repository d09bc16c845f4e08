// Process logger on consola: levels, text or JSON lines (one object per line), always to stderr.

import { createConsola, LogLevels, type ConsolaReporter, type LogObject } from "consola/core";
import type { LogLevel } from "../config/types.ts";
import { redactSecrets } from "../protocol/secrets.ts";

export type LogFormat = "text" | "json";
export type LogFields = Record<string, unknown>;

const LEVEL_NAMES: Record<number, string> = { 0: "error", 1: "warn", 2: "info", 3: "info", 4: "debug", 5: "trace" };

let format: LogFormat = "text";

/** Errors and other non-plain values as something JSON can carry. */
function plain(v: unknown): unknown {
  if (v instanceof Error) {
    const out: Record<string, unknown> = { message: v.message, name: v.name };
    const code = (v as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    return out;
  }
  if (typeof v === "bigint") return String(v);
  return v;
}

/** Field values with passwords and tokens masked: statements, errors and conninfo strings end up in logs. */
function masked(fields: LogFields): LogFields {
  return maskValue(fields, 0) as LogFields;
}

function maskValue(v: unknown, depth: number): unknown {
  const p = plain(v);
  if (typeof p === "string") return redactSecrets(p);
  if (typeof p !== "object" || p === null || depth > 8) return p;
  if (Array.isArray(p)) return p.map((x) => maskValue(x, depth + 1));
  if (p instanceof Date) return p;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(p)) out[k] = maskValue(x, depth + 1);
  return out;
}

function textValue(v: unknown): string {
  const p = plain(v);
  if (typeof p === "string") return /^[^\s"=]+$/.test(p) ? p : JSON.stringify(p);
  if (typeof p === "object" && p !== null) return JSON.stringify(p);
  return String(p);
}

function render(obj: LogObject): string {
  const [rawMsg, raw] = obj.args as [unknown, LogFields | undefined];
  const msg = redactSecrets(String(rawMsg));
  const fields = raw === undefined ? raw : masked(raw);
  const level = LEVEL_NAMES[obj.level] ?? String(obj.type);
  const time = obj.date.toISOString();
  if (format === "json") {
    const rec: Record<string, unknown> = { time, level, msg: String(msg) };
    if (fields) for (const [k, v] of Object.entries(fields)) if (!(k in rec)) rec[k] = plain(v);
    return JSON.stringify(rec);
  }
  let line = `${time} ${level.toUpperCase().padEnd(5)} ${String(msg)}`;
  if (fields) for (const [k, v] of Object.entries(fields)) line += ` ${k}=${textValue(v)}`;
  return line;
}

const reporter: ConsolaReporter = {
  log(obj) {
    process.stderr.write(render(obj) + "\n");
  },
};

const consola = createConsola({
  level: LogLevels.info,
  reporters: [reporter],
  throttle: 0, // every line counts in a server log
});

/** Set level and format; called once the config is loaded (and again on reload). */
export function configureLogging(level: LogLevel, fmt: LogFormat = format): void {
  consola.level = LogLevels[level];
  format = fmt;
}

/** True when a message at `level` would be written: guard costly debug output with it. */
export function logEnabled(level: Exclude<LogLevel, "silent">): boolean {
  return consola.level >= LogLevels[level];
}

export const log = {
  error(msg: string, fields?: LogFields): void {
    consola.error(msg, fields);
  },
  warn(msg: string, fields?: LogFields): void {
    consola.warn(msg, fields);
  },
  info(msg: string, fields?: LogFields): void {
    consola.info(msg, fields);
  },
  debug(msg: string, fields?: LogFields): void {
    consola.debug(msg, fields);
  },
  trace(msg: string, fields?: LogFields): void {
    consola.trace(msg, fields);
  },
};
