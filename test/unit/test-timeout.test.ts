// Plain `bun test` from the project root runs with the per-test timeout of `npm test`, not Bun's 5 s default.

import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TEST_TIMEOUT_MS } from "../support/default-timeout.ts";

const ROOT = resolve(import.meta.dir, "../..");

test("npm test's --timeout is the preload's default", () => {
  const pkg = require("../../package.json") as { scripts: { test: string } };
  expect(pkg.scripts.test).toBe(`bun test --timeout ${TEST_TIMEOUT_MS}`);
});

test("a test longer than 5 s passes under plain `bun test`, and its errors keep their line numbers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "helios-timeout-"));
  try {
    const file = join(dir, "slow.test.ts");
    writeFileSync(
      file,
      [
        'import { expect, test } from "bun:test";',
        'test("slow", async () => { await Bun.sleep(5500); });',
        'test("where", () => { expect(new Error("here").stack).toContain("slow.test.ts:3"); });',
      ].join("\n"),
    );
    const p = Bun.spawn([process.execPath, "test", file], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect({ code, tail: (out + err).split("\n").filter((l) => / (pass|fail)$/.test(l)) }).toEqual({ code: 0, tail: [" 2 pass", " 0 fail"] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
