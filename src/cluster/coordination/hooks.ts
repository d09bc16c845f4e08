// What the failover controller asks of the fleet: may this proxy act, win an epoch, publish the record; and the record every proxy follows.

import type { FailoverKind, FailoverRecord } from "../failover.ts";

/** One failover or switchover as the fleet keeps it in etcd (key <prefix>/failover). */
export interface FleetRecord {
  /** The fleet epoch, won by compare-and-swap before anything was promoted. */
  epoch: number;
  /** promoting: epoch won, N0 not recorded yet; done: N0 recorded, writes may go to `to`; failed: given up by its leader. */
  state: "promoting" | "done" | "failed";
  kind: FailoverKind;
  from: string;
  to: string;
  /** pg_snapshot_xmax(pg_current_snapshot()) on `to` before it took writes (null while promoting). */
  n0: string | null;
  fence: string;
  /** The proxy that won the epoch. */
  leader: string;
  started_at: string;
  /** When the record was completed (null while promoting). */
  done_at: string | null;
}

export interface FleetHooks {
  /** Null when this proxy may change the primary now; otherwise why it may not (not the leader, etcd unreachable, Patroni promotes). */
  refusal(): string | null;
  /** Win the next fleet epoch for `rec` (or take over `resume`'s); throws FailoverRefused when it is not won. */
  claim(rec: FailoverRecord, resume?: FleetRecord): Promise<number>;
  /** Write the finished record (N0 included) while this proxy still holds the epoch; throws when it cannot. */
  publish(rec: FailoverRecord): Promise<void>;
  /** The change of `rec`'s epoch failed here: mark its record failed (while this proxy still leads) so nobody finishes it. */
  abandon(rec: FailoverRecord): Promise<void>;
  /**
   * The primary moved to `to` by probing while requests were held for the lost one: true when the
   * fleet's record for it is still to come (the fleet releases the hold then, or at a deadline).
   */
  awaitRecord(to: string): boolean;
  /** etcd does not answer (or its watch is down) and the postgres provider finds promotions by probing: the fleet's records (N0) cannot reach this proxy. */
  followsByProbing(): boolean;
}
