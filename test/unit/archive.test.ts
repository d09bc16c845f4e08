// The release archive `npm run build` ships per profile: a .tar.gz holding the binary as `heliosproxy` and the LICENSE, with a sha256sum-checkable checksum file.

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { archiveBinary } from "../../scripts/build.ts";

const dir = mkdtempSync(join(tmpdir(), "helios-archive-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the archive holds the binary and the LICENSE; sha256sum -c accepts its checksum; the same binary packs the same bytes", async () => {
  // A stand-in for a compiled binary (compiling one is the build test's job).
  const path = join(dir, "heliosproxy-default");
  const body = Buffer.from(`#!/bin/sh\necho stand-in\n${"x".repeat(100_000)}\n`);
  writeFileSync(path, body, { mode: 0o755 });
  const a = await archiveBinary({ profile: "default", path, bytes: body.length, ms: 0 });
  const version = (require("../../package.json") as { version: string }).version;
  expect(basename(a.path)).toBe(`heliosproxy-${version}-default-${process.platform}-${process.arch}.tar.gz`);
  expect(a.bytes).toBeLessThan(body.length / 10);

  const list = Bun.spawnSync(["tar", "-tvzf", a.path], { stdout: "pipe" }).stdout.toString().trim().split("\n");
  expect(list.map((l) => l.split(/\s+/).at(-1))).toEqual(["heliosproxy", "LICENSE"]);
  expect(list.find((l) => l.endsWith(" heliosproxy"))).toStartWith("-rwxr-xr-x 0/0");
  const extracted = Bun.spawnSync(["tar", "-xzOf", a.path, "heliosproxy"], { stdout: "pipe" }).stdout;
  expect(Buffer.compare(Buffer.from(extracted), body)).toBe(0);

  expect(readFileSync(a.checksumPath, "utf8")).toBe(`${a.sha256}  ${basename(a.path)}\n`);
  const check = Bun.spawnSync(["sha256sum", "-c", basename(a.checksumPath)], { cwd: dir, stdout: "pipe" });
  expect({ code: check.exitCode, out: check.stdout.toString() }).toEqual({ code: 0, out: `${basename(a.path)}: OK\n` });

  const again = await archiveBinary({ profile: "default", path, bytes: body.length, ms: 0 });
  expect(again.sha256).toBe(a.sha256);
});
