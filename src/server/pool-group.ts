// The pools of one (database, user, tenant): one per node, sharing login credentials and reported parameters.

import type { Pool, PoolShared } from "./pool.ts";

export class PoolGroup {
  /** Node name -> pool. */
  readonly pools = new Map<string, Pool>();

  /** clock.now since when every pool of the group has been empty (0: not empty). */
  emptySince = 0;

  constructor(
    readonly database: string,
    readonly user: string,
    /** Chosen by an onStartup hook ("" without one): tenants never share servers. */
    readonly tenant: string,
    readonly shared: PoolShared,
  ) {}
}
