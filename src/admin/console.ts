// SQL admin console on the proxy port (virtual database `heliosproxy`, alias `pgbouncer`).

import type { ProxyContext } from "../core/context.ts";
import { Be } from "../protocol/codes.ts";
import { errorResponse } from "../protocol/errors.ts";
import { SqlState } from "../protocol/sqlstate.ts";
import { MessageWriter } from "../protocol/writer.ts";

export const CONSOLE_DATABASES = new Set(["heliosproxy", "pgbouncer"]);

export type ConsoleRole = "admin" | "stats";

export interface ConsoleClient {
  readonly user: string;
  readonly role: ConsoleRole;
}

const VERSION = (require("../../package.json") as { version: string }).version;

export class AdminConsole {
  constructor(
    readonly ctx: ProxyContext,
    readonly client: ConsoleClient,
  ) {}

  /** Run one simple Query; the reply ends with ReadyForQuery. */
  async execute(sql: string): Promise<Uint8Array> {
    const w = new MessageWriter(256);
    const cmd = sql.trim().replace(/;\s*$/, "").toUpperCase();
    if (cmd === "SHOW VERSION") {
      w.msg(Be.RowDescription).int16(1).cstr("version").int32(0).int16(0).int32(25).int16(-1).int32(-1).int16(0).end();
      const v = `HeliosProxy ${VERSION}`;
      w.msg(Be.DataRow).int16(1).int32(Buffer.byteLength(v)).str(v).end();
      w.msg(Be.CommandComplete).cstr("SHOW").end();
    } else {
      w.bytes(errorResponse({ severity: "ERROR", code: SqlState.FeatureNotSupported, message: `unsupported admin command: ${sql.trim().slice(0, 60)}` }));
    }
    w.msg(Be.ReadyForQuery).byte(73).end();
    return w.take();
  }
}
