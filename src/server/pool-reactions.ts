// How the pools follow the cluster (node lost or usable again, a new primary) and a reload (limits, passwords, backends).

import { TxStatus } from "../protocol/codes.ts";
import type { ServerEndpoint } from "./connection.ts";
import type { Pool, PoolSettings } from "./pool.ts";

/**
 * A new epoch: servers of the old primary are never reused and its waiters go to the new one; the
 * proxy's own pools (keyed to the primary) are dropped and made again on demand.
 */
export function primaryMoved(pools: Iterable<Pool>, own: Map<string, Pool>, from: string, why: string): void {
  for (const p of pools) {
    if (p.node !== from) continue;
    p.recycle(why);
    p.rerouteWaiters();
  }
  for (const [key, p] of own) {
    p.recycle("primary moved");
    own.delete(key);
  }
}

/** A node went down or was drained: its idle servers close, leased ones finish and are not reused, and its waiters are routed again. */
export function nodeLost(pools: Iterable<Pool>, node: string, why: string): void {
  for (const p of pools) {
    if (p.node !== node) continue;
    p.suspended = true;
    p.recycle(why);
    p.rerouteWaiters();
  }
}

/** A node came back or was undrained: its pools may grow again (if it is usable). */
export function nodeUsable(pools: Iterable<Pool>, node: string, usable: boolean): void {
  for (const p of pools) if (p.node === node) p.suspended = !usable;
}

/** Servers on `node` inside a transaction or a request (what a switchover waits for). */
export function busyServers(pools: Iterable<Pool>, node: string): number {
  let n = 0;
  for (const p of pools) {
    if (p.node !== node) continue;
    for (const s of p.all) if (s.lessee !== null && (s.txStatus !== TxStatus.Idle || s.owed > 0)) n++;
  }
  return n;
}

/** What a reloaded config says about one pool's user and node. */
export interface ReloadedPools {
  settings(user: string): PoolSettings;
  /** The server password of a listed user; undefined for a user not listed (passthrough, auth_query). */
  password(user: string): string | null | undefined;
  /** Where a node is now; undefined when the reload removed it. */
  endpoint(node: string): ServerEndpoint | undefined;
}

/**
 * After a reload: new limits apply at once; a pool whose server password or backend changed
 * closes its idle servers (busy ones finish and are not reused). Unchanged pools keep theirs.
 */
export function applyReload(pools: Iterable<Pool>, next: ReloadedPools): void {
  for (const p of pools) {
    p.settings = next.settings(p.user);
    const listed = next.password(p.user);
    const password = listed === undefined ? p.creds.password : listed;
    // Passthrough users prove themselves to the server again after a reload (passwords may have changed).
    if (listed === undefined) p.shared.passthrough = "unknown";
    const endpoint = next.endpoint(p.node);
    if (endpoint === undefined) {
      p.recycle("node removed by reload");
      continue;
    }
    const moved = p.endpoint.host !== endpoint.host || p.endpoint.port !== endpoint.port ||
      p.endpoint.sslmode !== endpoint.sslmode || p.endpoint.ca !== endpoint.ca;
    if (moved || password !== p.creds.password) {
      p.creds = { ...p.creds, password };
      p.endpoint = endpoint;
      p.recycle(moved ? "backend changed by reload" : "password changed by reload");
    }
  }
}
