import { test, expect } from "bun:test";
import { startProxy, psql } from "/work/main/test/support/proxy.ts";
test("smoke", async () => {
  await using p = await startProxy();
  const r = await psql(p.port, ["-Atc", "select 41+1"]);
  expect(r.stdout.trim()).toBe("42");
});
