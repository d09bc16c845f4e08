// Test fixture for failover tests: a cluster (synchronous_standby_names as SYNC_LAYOUT says) with the ledger table in database "app" and one proxy in front of it (no read/write split, pool 20), per test file.

import { afterAll, beforeAll } from "bun:test";
import { LEDGER_DDL } from "./ledger.ts";
import { startClusterProxy, SYNC_LAYOUT, usePgCluster, type ClusterProxyOptions, type PgCluster } from "./pg-cluster.ts";
import type { RunningProxy } from "./proxy.ts";

/**
 * Built in beforeAll, the proxy stopped in afterAll (the cluster after it, by usePgCluster).
 * Call the returned functions inside tests to get them.
 */
export function useLedgerClusterProxy(o: Pick<ClusterProxyOptions, "health" | "toml"> & { syncNames?: "primary" | "every-node" }): { cluster: () => PgCluster; proxy: () => RunningProxy } {
  const cluster = usePgCluster({ databases: ["app"], syncNames: o.syncNames ?? SYNC_LAYOUT });
  let proxy: RunningProxy | null = null;
  beforeAll(async () => {
    const c = cluster();
    await c.setup(LEDGER_DDL, "app");
    proxy = await startClusterProxy(c, { split: false, maxConnections: 20, health: o.health, toml: o.toml });
  }, 60_000);
  afterAll(async () => {
    await proxy?.stop();
  });
  return {
    cluster,
    proxy: () => {
      if (!proxy) throw new Error("the proxy is not started (useLedgerClusterProxy must be called at the top of the file)");
      return proxy;
    },
  };
}
