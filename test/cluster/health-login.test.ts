// A node that refuses the health checker's login (pg_hba wants a password the checker lacks) is alive: never marked down, reported in /nodes, clients served through reloads.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { adminApi } from "../support/pg-cluster.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, waitFor, type PgInstance } from "../support/pg-instance.ts";
import { loginOutcome } from "../support/wire.ts";

let inst: PgInstance;
let proxy: RunningProxy;

beforeAll(async () => {
  inst = await startPgInstance({ databases: ["hl"], hba: ["host all all 127.0.0.1/32 scram-sha-256"] });
  await inst.psql("CREATE ROLE hl_user LOGIN PASSWORD 'pw-1'");
  // The checker logs in as postgres without a password: every probe is refused with 28P01.
  proxy = await startProxy({
    nodes: [{ host: "127.0.0.1", port: inst.port }],
    toml: "[health]\ncheck_interval_secs = 0.1\nfailure_threshold = 1\ncheck_timeout_secs = 1\n",
  });
}, 60000);

afterAll(async () => {
  await proxy?.stop();
  await inst?.destroy();
}, 60000);

interface NodeRow { id: string; state: string; last_error: string | null }
const node1 = async (): Promise<NodeRow> => ((await adminApi(proxy, "GET", "/nodes")).body.nodes as NodeRow[])[0]!;

test("refused health logins are no misses: the node stays up, /nodes says why, and logins around reloads are answered", async () => {
  await waitFor("a refused probe to be reported", async () => ((await node1()).last_error ?? "").includes("cannot log in"), 10000);
  const seen = await node1();
  expect(seen.state).toBe("up");
  expect(seen.last_error).toContain('as "postgres"');
  expect(seen.last_error).toContain("[health] user and password");
  expect(proxy.output()).toContain("health checker cannot log in");

  // Each reload restarts the checker, which probes at once; the node must stay up through all of them.
  for (let i = 2; i <= 6; i++) {
    await inst.psql(`ALTER ROLE hl_user PASSWORD 'pw-${i}'`);
    proxy.proc.kill("SIGHUP");
    await waitFor(`the reload to take pw-${i}`, async () => (await loginOutcome(proxy.port, { user: "hl_user", database: "hl" }, `pw-${i}`)) === "ok", 10000);
  }
  // Far more probes than failure_threshold have been refused by now.
  await Bun.sleep(500);
  expect((await node1()).state).toBe("up");
  expect(await loginOutcome(proxy.port, { user: "hl_user", database: "hl" }, "pw-6")).toBe("ok");
  expect(await loginOutcome(proxy.port, { user: "hl_user", database: "hl" }, "pw-5")).toBe("28P01");
  expect(proxy.output()).not.toContain("is down");
}, 60000);
