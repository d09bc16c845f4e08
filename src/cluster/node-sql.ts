// A short-lived admin connection to one node, for the failover controller: run statements, read rows, close.

import { ServerConnection, type ServerEndpoint, type ServerOwner } from "../server/connection.ts";
import type { ServerCredentials } from "../server/login.ts";
import { runQuery } from "../server/query-runner.ts";

/** Raised by NodeSql.query for an error reply or a lost connection. */
export class NodeSqlError extends Error {
  constructor(
    readonly node: string,
    readonly code: string,
    message: string,
  ) {
    super(`${node}: ${code} ${message}`);
  }
}

export class NodeSql implements ServerOwner {
  private constructor(
    readonly node: string,
    private readonly conn: ServerConnection,
  ) {}

  /** Log in to the node (the health checker's user: failover needs a superuser). Rejects with NodeSqlError. */
  static async open(endpoint: ServerEndpoint, creds: ServerCredentials, timeoutMs: number): Promise<NodeSql> {
    const owner = { serverClosed() {} };
    const conn = new ServerConnection(endpoint, owner);
    try {
      await conn.open(creds, { application_name: "heliosproxy-failover" }, timeoutMs);
    } catch (e) {
      const err = e as { code?: string; message: string };
      throw new NodeSqlError(endpoint.name, err.code ?? "08006", err.message);
    }
    return new NodeSql(endpoint.name, conn);
  }

  serverClosed(): void {}

  /** Rows of one statement as text; throws NodeSqlError on an error reply or timeout. */
  async query(sql: string, params?: string[], timeoutMs = 5000): Promise<(string | null)[][]> {
    const r = await runQuery(this.conn, sql, params, timeoutMs);
    if (r.error) throw new NodeSqlError(this.node, r.error.code, r.error.message);
    return r.rows;
  }

  /** The first column of the first row (null when no row or NULL). */
  async value(sql: string, params?: string[], timeoutMs = 5000): Promise<string | null> {
    const rows = await this.query(sql, params, timeoutMs);
    return rows[0]?.[0] ?? null;
  }

  close(): void {
    this.conn.close("failover step done");
  }
}

/** Open, run `fn`, always close. */
export async function withNode<T>(endpoint: ServerEndpoint, creds: ServerCredentials, timeoutMs: number, fn: (db: NodeSql) => Promise<T>): Promise<T> {
  const db = await NodeSql.open(endpoint, creds, timeoutMs);
  try {
    return await fn(db);
  } finally {
    db.close();
  }
}

/**
 * primary_conninfo with host and port replaced (hostaddr dropped), every other setting kept:
 * what a standby needs to follow a new primary. Values are re-quoted as libpq expects.
 */
export function rewriteConninfo(conninfo: string, host: string, port: number): string {
  const pairs: [string, string][] = [];
  const re = /\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(conninfo)) !== null) {
    if (m[0].trim() === "") break;
    let v = m[2]!;
    if (v.startsWith("'")) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
    pairs.push([m[1]!, v]);
  }
  const kept = pairs.filter(([k]) => k !== "host" && k !== "port" && k !== "hostaddr");
  const all: [string, string][] = [["host", host], ["port", String(port)], ...kept];
  return all.map(([k, v]) => `${k}=${/^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/[\\']/g, (c) => `\\${c}`)}'`}`).join(" ");
}

/** A string as an SQL literal (standard_conforming_strings on). */
export function sqlLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
