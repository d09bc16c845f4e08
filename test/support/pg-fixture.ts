// One PostgreSQL instance per test file, a monitor connection to it and proxies in front of it, all cleaned up after.

import { afterAll, beforeAll } from "bun:test";
import type pg from "pg";
import { pgClient } from "./clients.ts";
import { startPgInstance, type PgInstance, type PgInstanceOptions } from "./pg-instance.ts";
import { startProxy, type ProxyOptions, type RunningProxy } from "./proxy.ts";

export interface PgFixture {
  /** The instance (started in beforeAll). */
  readonly inst: PgInstance;
  /** A direct connection to its `postgres` database, for pg_stat_activity and the like. */
  readonly monitor: pg.Client;
  /** Start a proxy in front of the instance; stopped in afterAll. */
  proxyWith(o?: ProxyOptions): Promise<RunningProxy>;
  /** Stop a proxy started some other way in afterAll too. */
  adopt(p: RunningProxy): RunningProxy;
  /** Open a new monitor connection (after the instance was restarted). */
  reconnectMonitor(): Promise<void>;
}

/** Call at the top of a test file. `setup` runs once after the instance is up (roles, tables...). */
export function usePgInstance(opts: PgInstanceOptions = {}, setup?: (inst: PgInstance) => Promise<unknown>): PgFixture {
  let inst: PgInstance | undefined;
  let monitor: pg.Client | undefined;
  const proxies: RunningProxy[] = [];
  beforeAll(async () => {
    inst = await startPgInstance(opts);
    if (setup) await setup(inst);
    monitor = await pgClient(inst.port, { database: "postgres" });
  }, 60000);
  afterAll(async () => {
    await monitor?.end().catch(() => {});
    for (const p of proxies) await p.stop();
    await inst?.destroy();
  }, 60000);
  return {
    get inst() {
      if (!inst) throw new Error("usePgInstance: the instance is not started yet");
      return inst;
    },
    get monitor() {
      if (!monitor) throw new Error("usePgInstance: the instance is not started yet");
      return monitor;
    },
    async proxyWith(o: ProxyOptions = {}) {
      return this.adopt(await startProxy({ nodes: [{ host: "127.0.0.1", port: this.inst.port }], ...o }));
    },
    adopt(p: RunningProxy) {
      proxies.push(p);
      return p;
    },
    async reconnectMonitor() {
      await monitor?.end().catch(() => {});
      monitor = await pgClient(this.inst.port, { database: "postgres" });
    },
  };
}
