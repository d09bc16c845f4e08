// The whole tree type-checks clean (strict, bun-types, no unused code): `tsc --noEmit -p .`.

import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");

test("tsc --noEmit reports no errors", async () => {
  const proc = Bun.spawn([join(ROOT, "node_modules/.bin/tsc"), "--noEmit", "-p", ROOT], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(out.split("\n").filter((l) => l.includes("error TS"))).toEqual([]);
  expect(code).toBe(0);
}, 60000);
