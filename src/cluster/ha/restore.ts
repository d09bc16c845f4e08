// Re-creating a session's server-side state on a new server: prepared statements, LISTEN, advisory locks, WITH HOLD cursors.

import type { ServerConnection } from "../../server/connection.ts";
import { runMessages, runQuery } from "../../server/query-runner.ts";
import { Pending } from "../../server/response-queue.ts";
import { SyncMessage } from "../../protocol/messages.ts";
import type { SessionMigration } from "./session-migration.ts";

/**
 * Run the migration's restore plan on `server` (idle, leased, no client attached). Returns "" when
 * all of it holds, "lost" when the server went away meanwhile, else what could not be restored.
 */
export async function restoreSession(server: ServerConnection, m: SessionMigration, parses: ReadonlyMap<string, Uint8Array>): Promise<string> {
  for (const [name, parse] of parses) {
    const msgs = new Uint8Array(parse.length + SyncMessage.length);
    msgs.set(parse);
    msgs.set(SyncMessage, parse.length);
    const r = await runMessages(server, msgs, [Pending.Parse, Pending.Sync]);
    if (r.error !== undefined) return r.error.code === "08006" ? "lost" : `prepared statement "${name}": ${r.error.message}`;
  }
  for (const step of m.restorePlan()) {
    if (step.kind === "cursor") {
      const c = step.cursor;
      if (c.unknownPosition) return `the position of cursor "${c.name}" is not known`;
      const d = await runQuery(server, step.declare);
      if (d.error !== undefined) return d.error.code === "08006" ? "lost" : `cursor "${c.name}": ${d.error.message}`;
      if (step.fetch !== null) {
        const r = await runQuery(server, step.fetch);
        if (r.error !== undefined) return r.error.code === "08006" ? "lost" : `cursor "${c.name}": ${r.error.message}`;
        if (r.rows.length !== c.position || r.dataCrc !== c.crc) return `cursor "${c.name}": the rows before its position differ on the new server`;
      } else if (step.move !== null) {
        const r = await runQuery(server, step.move);
        if (r.error !== undefined) return r.error.code === "08006" ? "lost" : `cursor "${c.name}": ${r.error.message}`;
        if (r.tag !== `MOVE ${c.position}`) return `cursor "${c.name}": it could only move ${r.tag.slice(5) || 0} of ${c.position} rows on the new server`;
      }
      continue;
    }
    const r = await runQuery(server, step.sql);
    if (r.error !== undefined) return r.error.code === "08006" ? "lost" : `${step.sql}: ${r.error.message}`;
    if (step.kind === "lock" && r.rows[0]?.[0] !== "t") return `advisory lock ${step.lock.key2 === null ? step.lock.key1 : `${step.lock.key1}, ${step.lock.key2}`} is held by another session on the new server`;
  }
  return "";
}
