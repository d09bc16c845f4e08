// Concurrent first logins of a (database, user, tenant) share one unlisted pool group, so together they stay within its pool limit (RELIABILITY C3).

import { expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { ProxyContext } from "../../src/core/context.ts";

const ctx = new ProxyContext(parseConfig(`[[nodes]]\nhost = "127.0.0.1"\nport = 5432\n`, "t.toml"));
const listed = (db: string) => [...ctx.clientPools(db)].length;

test("logins in progress share one unlisted group; the first to succeed lists it and later logins get the listed one", () => {
  const a = ctx.loginGroup("g1", "u");
  const b = ctx.loginGroup("g1", "u");
  expect(b).toBe(a);
  expect(ctx.loginGroup("g1", "u", "tenant-x")).not.toBe(a);
  expect(ctx.loginGroup("g2", "u")).not.toBe(a);
  ctx.nodePool(a, ctx.cluster.primary());
  expect(listed("g1")).toBe(0);
  expect(ctx.listGroup(a)).toBe(a);
  expect(listed("g1")).toBe(1);
  // The other login in progress ends on the now listed group: nothing is closed or listed twice.
  expect(ctx.listGroup(b)).toBe(a);
  ctx.dropUnlisted(b);
  expect(ctx.loginGroup("g1", "u")).toBe(a);
  expect(listed("g1")).toBe(1);
});

test("a refused login closes the shared unlisted group only when it was the last login on it", () => {
  const a = ctx.loginGroup("g3", "u");
  const b = ctx.loginGroup("g3", "u");
  const pool = ctx.nodePool(a, ctx.cluster.primary());
  let closed = 0;
  pool.closeAll = () => void closed++;
  ctx.dropUnlisted(a);
  expect(closed).toBe(0);
  expect(ctx.loginGroup("g3", "u")).toBe(b);
  ctx.dropUnlisted(b);
  expect(closed).toBe(0);
  ctx.dropUnlisted(b);
  expect(closed).toBe(1);
  // Nothing left behind: the next login starts a new group, nothing was listed.
  expect(ctx.loginGroup("g3", "u")).not.toBe(a);
  expect(listed("g3")).toBe(0);
});
