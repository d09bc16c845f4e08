// A dev-cluster node that fails to start says why: the end of its server log is in the error, not only pg_ctl's "could not start server".

import { afterAll, expect, test } from "bun:test";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { startPgCluster, type PgCluster } from "../support/pg-cluster.ts";

let c: PgCluster | null = null;
afterAll(async () => {
  await c?.destroy();
});

test("a start that fails carries the server's own message", async () => {
  c = await startPgCluster({ standbys: [] });
  const node = c.node("node1");
  await c.stopNode("node1");
  appendFileSync(join(node.dataDir, "postgresql.conf"), "\nshared_buffers = 'not a size'\n");
  const err = await c.startNode("node1").then(() => null, (e: Error) => e.message);
  expect(err).toContain("could not start server");
  expect(err).toContain("node1 postgres.log");
  expect(err).toMatch(/invalid value for parameter "shared_buffers"/);
});
