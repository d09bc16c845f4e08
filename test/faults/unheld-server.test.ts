// A server connection whose backend ends while nobody holds it (leased, not yet attached): the proxy's own queries on it answer 08006 at once instead of waiting for a reply that never comes.

import { expect, test } from "bun:test";
import { ServerConnection } from "../../src/server/connection.ts";
import { runQuery } from "../../src/server/query-runner.ts";
import { PG_PORT, pgClient } from "../support/clients.ts";

test("backend terminated while the connection is unheld: it closes itself, and runQuery on it fails at once with 08006", async () => {
  const closed: ServerConnection[] = [];
  const s = new ServerConnection({ host: "127.0.0.1", port: PG_PORT, name: "node1" }, { serverClosed: (c) => closed.push(c) });
  await s.open({ user: "postgres", database: "test", password: null }, { application_name: "unheld-server-test" }, 5000);
  expect(s.closed).toBe(false);
  const ok = await runQuery(s, "SELECT 1");
  expect(ok.rows).toEqual([["1"]]);
  expect(s.lessee).toBeNull();

  const admin = await pgClient(PG_PORT);
  try {
    const r = await admin.query("SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE application_name = 'unheld-server-test'");
    expect(r.rows).toEqual([{ t: true }]);
  } finally {
    await admin.end();
  }
  for (let i = 0; i < 100 && !s.closed; i++) await Bun.sleep(20);
  expect(s.closed).toBe(true);
  expect(closed).toEqual([s]);

  const started = performance.now();
  const lost = await runQuery(s, "SELECT 1");
  expect(lost.error?.code).toBe("08006");
  expect(lost.rows).toEqual([]);
  // Not the 5 s reply timeout: nothing was waited for.
  expect(performance.now() - started).toBeLessThan(100);
});
