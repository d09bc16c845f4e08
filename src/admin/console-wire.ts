// Admin console replies on the wire: typed result sets, command tags and the console's errors.

import { Be } from "../protocol/codes.ts";
import { errorResponse, noticeResponse } from "../protocol/errors.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import type { MessageWriter } from "../protocol/writer.ts";

export { CONSOLE_DATABASES } from "../core/console.ts";

/** Column type oids the console reports (PgBouncer reports its counters as int8). */
export const enum Oid {
  Int8 = 20,
  Text = 25,
  Float8 = 701,
}

export interface Column {
  readonly name: string;
  readonly oid: Oid;
}

export type Cell = string | number | null;

export interface ResultSet {
  readonly columns: readonly Column[];
  readonly rows: readonly Cell[][];
}

const TYPE_OF: Record<string, Oid> = { t: Oid.Text, i: Oid.Int8, f: Oid.Float8 };

/** Columns from a compact spec: "database:t cl_active:i lag_seconds:f" (t text, i int8, f float8). */
export function columns(spec: string): Column[] {
  return spec
    .trim()
    .split(/\s+/)
    .map((c) => {
      const [name, t] = c.split(":");
      const oid = TYPE_OF[t ?? "t"];
      if (!name || oid === undefined) throw new Error(`bad column spec "${c}"`);
      return { name, oid };
    });
}

function cellText(c: Cell, oid: Oid): string | null {
  if (c === null) return null;
  if (typeof c === "string") return c;
  if (!Number.isFinite(c)) return null;
  if (oid === Oid.Int8) return String(Math.trunc(c));
  return String(Math.round(c * 1000) / 1000);
}

/** RowDescription, one DataRow per row, then CommandComplete `tag`. */
export function writeResult(w: MessageWriter, r: ResultSet, tag = "SHOW"): void {
  const cols = r.columns;
  w.msg(Be.RowDescription).int16(cols.length);
  for (const c of cols) {
    w.cstr(c.name).int32(0).int16(0).int32(c.oid).int16(c.oid === Oid.Text ? -1 : 8).int32(-1).int16(0);
  }
  w.end();
  for (const row of r.rows) {
    w.msg(Be.DataRow).int16(cols.length);
    for (let i = 0; i < cols.length; i++) {
      const v = cellText(row[i] ?? null, cols[i]!.oid);
      if (v === null) w.int32(-1);
      else w.int32(Buffer.byteLength(v)).str(v);
    }
    w.end();
  }
  w.msg(Be.CommandComplete).cstr(tag).end();
}

export function writeTag(w: MessageWriter, tag: string): void {
  w.msg(Be.CommandComplete).cstr(tag).end();
}

export function writeNotice(w: MessageWriter, message: string, detail?: string, severity: "NOTICE" | "WARNING" = "NOTICE"): void {
  w.bytes(noticeResponse({ severity, code: severity === "WARNING" ? "01000" : SqlState.SuccessfulCompletion, message, detail }));
}

/** SQLSTATEs used only by the console (PostgreSQL's errcodes names). */
export const ConsoleSqlState = {
  ObjectNotInPrerequisiteState: "55000",
  ConfigFileError: "F0000",
  NameTooLong: "42622",
} as const;

/** A console command failed: becomes an ERROR (never FATAL); the session stays usable. */
export class ConsoleError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly detail?: string,
    readonly hint?: string,
  ) {
    super(message);
  }

  write(w: MessageWriter): void {
    w.bytes(errorResponse({ severity: "ERROR", code: this.code, message: this.message, detail: this.detail, hint: this.hint }));
  }
}

export const ConsoleErrors = {
  syntax: (what: string) => new ConsoleError(SqlState.SyntaxError, `invalid command "${clip(what)}", use SHOW HELP;`),
  unknownShow: (what: string) => new ConsoleError(SqlState.SyntaxError, `unknown SHOW target "${clip(what)}", use SHOW HELP;`),
  badArguments: (cmd: string, why: string) => new ConsoleError(SqlState.SyntaxError, `${cmd}: ${why}`),
  adminOnly: (cmd: string, user: string) =>
    new ConsoleError(
      SqlState.InsufficientPrivilege,
      `permission denied for ${cmd}: user "${clip(user)}" is a stats user`,
      undefined,
      "stats users may run SHOW commands only; admin_users may change state",
    ),
  unsupported: (cmd: string, hint: string) => new ConsoleError(SqlState.FeatureNotSupported, `${cmd} is not supported by HeliosProxy`, undefined, hint),
  noSuchDatabase: (db: string) =>
    new ConsoleError(SqlState.InvalidCatalogName, `no such database: "${clip(db)}"`, "the proxy has no pool for this database"),
  consoleDatabase: (cmd: string, db: string) => new ConsoleError(SqlState.InvalidCatalogName, `cannot ${cmd} the admin console database "${db}"`),
  state: (message: string) => new ConsoleError(ConsoleSqlState.ObjectNotInPrerequisiteState, message),
  reloadFailed: (detail: string) =>
    new ConsoleError(ConsoleSqlState.ConfigFileError, "RELOAD failed, keeping the running configuration", detail),
  internal: (message: string) => new ConsoleError(SqlState.InternalError, `admin command failed: ${message}`),
} as const;

/** User text echoed back in messages: bounded and on one line. */
export function clip(s: string, max = 80): string {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length > max ? `${one.slice(0, max)}...` : one;
}
