// The open client sessions of one proxy, kept by the client layer: the process-wide context needs no session type.

import type { ProxyContext } from "../core/context.ts";
import type { ClientSession } from "./session.ts";

const byContext = new WeakMap<ProxyContext, Set<ClientSession>>();

/** Every open client connection of `ctx` (logged in or not). */
export function clientsOf(ctx: ProxyContext): Set<ClientSession> {
  let set = byContext.get(ctx);
  if (set === undefined) byContext.set(ctx, (set = new Set()));
  return set;
}
