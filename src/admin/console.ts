// SQL admin console on the proxy port (virtual database `heliosproxy`, alias `pgbouncer`): parsing, permissions, dispatch.

import type { ProxyContext } from "../core/context.ts";
import { Be, TxStatus } from "../protocol/codes.ts";
import { MessageWriter } from "../protocol/writer.ts";
import { log } from "../util/log.ts";
import { kill, pause, reconnect, reload, resume } from "./console-control.ts";
import {
  HELP_TEXT,
  sampleStats,
  showClients,
  showConfig,
  showDatabases,
  showLists,
  showNodes,
  showFailovers,
  showPools,
  showServers,
  showState,
  showStats,
  showStatsAverages,
  showStatsTotals,
  showTotals,
  showUsers,
  showVersion,
} from "./console-show.ts";
import { ConsoleError, ConsoleErrors, ConsoleSqlState, Oid, clip, writeNotice, writeResult, writeTag, type ResultSet } from "./console-wire.ts";
import type { ShowResult } from "../core/hooks.ts";
import type { ConsoleAnswerer, ConsoleClient } from "../core/console.ts";

export { CONSOLE_DATABASES } from "./console-wire.ts";
export type { ConsoleClient, ConsoleRole } from "../core/console.ts";

/** One word of a statement: a bare word, a "quoted identifier", a 'string' or "=". */
interface Token {
  readonly text: string;
  readonly kind: "word" | "ident" | "string" | "equals";
}

/** The statement being run: its command word, arguments and the console that runs it. */
interface Invocation {
  readonly console: AdminConsole;
  readonly name: string;
  readonly args: readonly Token[];
  readonly w: MessageWriter;
}

interface Command {
  /** Only admin users may run it (anything but SHOW and ignored SETs). */
  readonly admin: boolean;
  run(inv: Invocation): void | Promise<void>;
}

const SHOWS: Record<string, (ctx: ProxyContext) => ResultSet> = {
  pools: showPools,
  clients: showClients,
  servers: showServers,
  stats: showStats,
  stats_totals: showStatsTotals,
  stats_averages: showStatsAverages,
  totals: showTotals,
  databases: showDatabases,
  users: showUsers,
  nodes: showNodes,
  failovers: showFailovers,
  config: showConfig,
  version: showVersion,
  lists: showLists,
  state: showState,
};

/** PgBouncer SHOW targets with nothing behind them here: refused with 0A000 and what to use instead. */
const SHOWS_REFUSED: Record<string, string> = {
  mem: "HeliosProxy keeps no PgBouncer-style slab caches; process memory is in GET /metrics (process_resident_memory_bytes)",
  fds: "HeliosProxy has no online restart (takeover) that passes sockets on; open descriptors are in GET /metrics (process_open_fds)",
  dns_hosts: "HeliosProxy keeps no DNS cache: node host names are resolved by the system resolver on each server connect",
  dns_zones: "HeliosProxy keeps no DNS cache: node host names are resolved by the system resolver on each server connect",
};

/** Session settings some drivers SET on connect: accepted and ignored, as PgBouncer does. */
const IGNORED_SETTINGS = new Set(["client_encoding", "default_transaction_isolation", "standard_conforming_strings", "datestyle", "timezone", "extra_float_digits", "application_name"]);

/** Longest database name an argument may carry (PostgreSQL's NAMEDATALEN - 1). */
const MAX_NAME = 63;

/** The optional database argument of PAUSE, RESUME, RECONNECT and KILL. */
function databaseArg(inv: Invocation): string | null {
  const a = inv.args;
  if (a.length === 0) return null;
  const t = a[0]!;
  if (a.length > 1 || (t.kind !== "word" && t.kind !== "ident")) {
    throw ConsoleErrors.badArguments(inv.name, `expected at most one database name, got "${clip(a.map((x) => x.text).join(" "))}"`);
  }
  if (t.text.length === 0 || Buffer.byteLength(t.text) > MAX_NAME) {
    throw new ConsoleError(ConsoleSqlState.NameTooLong, `${inv.name}: database name must be 1 to ${MAX_NAME} bytes`);
  }
  return t.text;
}

function noArgs(inv: Invocation): void {
  if (inv.args.length > 0) throw ConsoleErrors.badArguments(inv.name, `takes no arguments, got "${clip(inv.args.map((x) => x.text).join(" "))}"`);
}

function unsupported(hint: string): Command {
  return {
    admin: true,
    run: (inv) => {
      throw ConsoleErrors.unsupported(inv.name, hint);
    },
  };
}

const COMMANDS: Record<string, Command> = {
  SHOW: {
    admin: false,
    run: (inv) => {
      const arg = inv.args[0];
      if (inv.args.length !== 1 || (arg!.kind !== "word" && arg!.kind !== "ident")) throw ConsoleErrors.syntax(["SHOW", ...inv.args.map((t) => t.text)].join(" "));
      const what = arg!.text.toLowerCase();
      if (what === "help") {
        writeNotice(inv.w, "Console usage", `\n\t${HELP_TEXT}`);
        writeTag(inv.w, "SHOW");
        return;
      }
      const show = SHOWS[what];
      if (show !== undefined) return writeResult(inv.w, show(inv.console.ctx));
      const fromModule = inv.console.ctx.moduleShows.get(what);
      const refused = SHOWS_REFUSED[what];
      if (fromModule === undefined && refused !== undefined) throw ConsoleErrors.unsupported(`SHOW ${what.toUpperCase()}`, refused);
      if (fromModule === undefined) throw ConsoleErrors.unknownShow(arg!.text);
      writeResult(inv.w, typedResult(fromModule()));
    },
  },
  PAUSE: { admin: true, run: (inv) => withTag(inv, pause(inv.console.ctx, databaseArg(inv), inv.console.client.user, inv.w)) },
  RESUME: { admin: true, run: (inv) => withTag(inv, resume(inv.console.ctx, databaseArg(inv), inv.console.client.user)) },
  RECONNECT: { admin: true, run: (inv) => withTag(inv, reconnect(inv.console.ctx, databaseArg(inv), inv.console.client.user)) },
  KILL: { admin: true, run: (inv) => withTag(inv, kill(inv.console.ctx, databaseArg(inv), inv.console.client.user, inv.w)) },
  RELOAD: {
    admin: true,
    run: (inv) => {
      noArgs(inv);
      return withTag(inv, reload(inv.console.ctx, inv.console.client.user));
    },
  },
  SET: { admin: false, run: (inv) => runSet(inv) },
  SUSPEND: unsupported("use PAUSE to hold new transactions and close server connections"),
  SHUTDOWN: unsupported("stop the proxy with SIGTERM; it finishes in-flight transactions first"),
  DISABLE: unsupported("use PAUSE <db> or KILL <db>"),
  ENABLE: unsupported("use RESUME <db>"),
  KILL_CLIENT: unsupported("use KILL <db>"),
  WAIT_CLOSE: unsupported("use PAUSE <db>, which waits for transactions to finish"),
};

/** Write the command's tag once its work (sync or async) is done. */
function withTag(inv: Invocation, work: void | Promise<void>): void | Promise<void> {
  if (work instanceof Promise) return work.then(() => writeTag(inv.w, inv.name));
  writeTag(inv.w, inv.name);
}

/** SET name = value / SET name TO value: the usual driver settings are ignored; proxy settings live in the config file. */
function runSet(inv: Invocation): void {
  const [key, op, value, ...rest] = inv.args;
  const opOk = op !== undefined && (op.kind === "equals" || (op.kind === "word" && op.text.toLowerCase() === "to"));
  if (key === undefined || key.kind === "string" || key.kind === "equals" || !opOk || value === undefined || value.kind === "equals" || rest.length > 0) {
    throw ConsoleErrors.badArguments("SET", "expected SET name = value");
  }
  if (IGNORED_SETTINGS.has(key.text.toLowerCase())) {
    writeNotice(inv.w, "SET ignored");
    writeTag(inv.w, "SET");
    return;
  }
  if (inv.console.client.role !== "admin") throw ConsoleErrors.adminOnly("SET", inv.console.client.user);
  throw ConsoleErrors.unsupported("SET of proxy settings", "change the config file and run RELOAD");
}

/** Split a query string into statements at ';' outside quotes; null when a quote is left open. */
export function splitStatements(sql: string): string[] | null {
  const out: string[] = [];
  let start = 0;
  let quote = "";
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    if (quote !== "") {
      if (c === quote) quote = "";
    } else if (c === "'" || c === '"') quote = c;
    else if (c === ";") {
      out.push(sql.slice(start, i));
      start = i + 1;
    }
  }
  if (quote !== "") return null;
  out.push(sql.slice(start));
  return out.map((s) => s.trim()).filter((s) => s.length > 0);
}

const TOKEN = /\s*(?:"((?:[^"]|"")*)"|'((?:[^']|'')*)'|(=)|([^\s"'=]+))/y;

/** Words of one statement (quotes already known to be balanced). */
export function tokenize(stmt: string): Token[] {
  const out: Token[] = [];
  TOKEN.lastIndex = 0;
  for (;;) {
    const at = TOKEN.lastIndex;
    if (stmt.slice(at).trim() === "") return out;
    const m = TOKEN.exec(stmt);
    if (m === null) throw ConsoleErrors.syntax(stmt);
    if (m[1] !== undefined) out.push({ text: m[1].replaceAll('""', '"'), kind: "ident" });
    else if (m[2] !== undefined) out.push({ text: m[2].replaceAll("''", "'"), kind: "string" });
    else if (m[3] !== undefined) out.push({ text: "=", kind: "equals" });
    else out.push({ text: m[4]!, kind: "word" });
  }
}

export class AdminConsole implements ConsoleAnswerer {
  constructor(
    readonly ctx: ProxyContext,
    readonly client: ConsoleClient,
  ) {
    sampleStats(ctx); // a baseline for SHOW STATS averages
  }

  /** Run one simple Query (one or more statements); the reply always ends with ReadyForQuery. */
  async execute(sql: string): Promise<Uint8Array> {
    const w = new MessageWriter(1024);
    try {
      const statements = splitStatements(sql);
      if (statements === null) throw ConsoleErrors.syntax(sql);
      if (statements.length === 0) w.msg(Be.EmptyQueryResponse).end();
      for (const s of statements) await this.run(s, w);
    } catch (e) {
      let err: ConsoleError;
      if (e instanceof ConsoleError) err = e;
      else {
        log.error("admin console command failed", { user: this.client.user, error: (e as Error)?.stack ?? String(e) });
        err = ConsoleErrors.internal((e as Error)?.message ?? String(e));
      }
      err.write(w);
    }
    w.msg(Be.ReadyForQuery).byte(TxStatus.Idle).end();
    return w.take();
  }

  private async run(statement: string, w: MessageWriter): Promise<void> {
    const tokens = tokenize(statement);
    const head = tokens[0]!;
    const name = head.text.toUpperCase();
    const cmd = head.kind === "word" ? COMMANDS[name] : undefined;
    if (cmd === undefined) throw ConsoleErrors.syntax(statement);
    if (cmd.admin && this.client.role !== "admin") throw ConsoleErrors.adminOnly(name, this.client.user);
    await cmd.run({ console: this, name, args: tokens.slice(1), w });
  }
}

/** A module's rows with column types taken from the values: int8 for whole numbers, float8 for others, text otherwise. */
function typedResult(r: ShowResult): ResultSet {
  const cols = r.columns.map((name, i) => {
    let numbers = false;
    let fractions = false;
    for (const row of r.rows) {
      const v = row[i];
      if (typeof v === "string") return { name, oid: Oid.Text };
      if (typeof v === "number") {
        numbers = true;
        if (!Number.isInteger(v)) fractions = true;
      }
    }
    return { name, oid: fractions ? Oid.Float8 : numbers ? Oid.Int8 : Oid.Text };
  });
  return { columns: cols, rows: r.rows.map((row) => [...row]) };
}
