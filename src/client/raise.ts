// Errors the proxy makes a server raise, so they land in order with its replies and fail an open transaction as PostgreSQL's own would.

import { queryMessage } from "../protocol/messages.ts";

/** A Query that makes the server raise this error. */
export function raiseQuery(code: string, message: string): Uint8Array {
  return queryMessage(raiseSql(code, message));
}

/** A DO block that raises this error. */
export function raiseSql(code: string, message: string): string {
  const tag = `hp${Math.floor(Math.random() * 1e9)}`;
  return `DO $${tag}$BEGIN RAISE EXCEPTION USING ERRCODE = '${code}', MESSAGE = '${message.replaceAll("'", "''")}'; END$${tag}$`;
}
