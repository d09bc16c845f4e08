// Impossible connection state transitions: each one is a bug, logged as such and counted; the caller keeps its state.

import { log } from "./log.ts";

/** The connection kinds with a state machine. */
export type MachineKind = "client" | "server";

/** Transitions refused since start, per connection kind (heliosproxy_state_transition_bugs_total). */
export const transitionBugs: Record<MachineKind, number> = { client: 0, server: 0 };

/**
 * A state machine was asked for an edge it does not have: one error line naming both states and
 * the connection, and one more on the counter. The machine refuses the change (it stays in `from`).
 */
export function transitionBug(kind: MachineKind, id: number, from: string, to: string): void {
  transitionBugs[kind]++;
  log.error("bug: impossible state transition refused", { connection: kind, id, from, to });
}

/** A machine's edge table: edges[from] has bit (1 << to) set for each allowed transition; names[state] for the log. */
export interface EdgeTable {
  readonly kind: MachineKind;
  readonly edges: readonly number[];
  readonly names: readonly string[];
}

/** Whether `from` -> `to` is an edge of `table`; when it is not, the bug is logged and counted (the caller keeps `from`). */
export function edgeAllowed(table: EdgeTable, id: number, from: number, to: number): boolean {
  if ((table.edges[from]! & (1 << to)) !== 0) return true;
  transitionBug(table.kind, id, table.names[from]!, table.names[to]!);
  return false;
}
