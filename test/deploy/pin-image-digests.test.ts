// scripts/pin-image-digests.sh on a copy of the Dockerfile, with a stand-in `crane` (the registries are out of reach here): both base images pinned, the tag kept, nothing written on failure.

import { describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const SCRIPT = join(ROOT, "scripts/pin-image-digests.sh");
const BUILD_TAG = "node:26-bookworm-slim";
const RUNTIME_TAG = "gcr.io/distroless/cc-debian12:nonroot";
const digest = (c: string) => `sha256:${c.repeat(64)}`;

/** A directory for PATH holding only the tools the script uses, plus a `crane` answering from `answers` (exit 1 for other refs). */
function toolDir(answers: Record<string, string> | null): string {
  const dir = mkdtempSync(join(tmpdir(), "helios-pin-"));
  for (const tool of ["bash", "sed", "dirname", "tr"]) symlinkSync(Bun.which(tool)!, join(dir, tool));
  if (answers) {
    const cases = Object.entries(answers).map(([ref, out]) => `  '${ref}') echo '${out}' ;;`);
    writeFileSync(
      join(dir, "crane"),
      `#!${Bun.which("bash")}\necho "$*" >> "${dir}/crane.log"\n[ "$1" = digest ] || exit 2\ncase "$2" in\n${cases.join("\n")}\n  *) echo "MANIFEST_UNKNOWN: $2" >&2; exit 1 ;;\nesac\n`,
    );
    chmodSync(join(dir, "crane"), 0o755);
  }
  return dir;
}

/** Runs the script on a fresh copy of the project's Dockerfile (or on `text`). */
function pin(tools: string, text?: string) {
  const file = join(mkdtempSync(join(tmpdir(), "helios-pin-df-")), "Dockerfile");
  if (text === undefined) copyFileSync(join(ROOT, "Dockerfile"), file);
  else writeFileSync(file, text);
  const before = readFileSync(file, "utf8");
  const r = Bun.spawnSync([Bun.which("bash")!, SCRIPT, file], { env: { PATH: tools }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString(), before, after: readFileSync(file, "utf8") };
}

describe("scripts/pin-image-digests.sh", () => {
  test("pins both base images to tag@digest, asks the registry by tag, and changes no other line", () => {
    const tools = toolDir({ [BUILD_TAG]: digest("a"), [RUNTIME_TAG]: digest("b") });
    const r = pin(tools);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.after).toContain(`\nARG BUILD_IMAGE=${BUILD_TAG}@${digest("a")}\n`);
    expect(r.after).toContain(`\nARG RUNTIME_IMAGE=${RUNTIME_TAG}@${digest("b")}\n`);
    expect(r.out).toBe(`BUILD_IMAGE=${BUILD_TAG}@${digest("a")}\nRUNTIME_IMAGE=${RUNTIME_TAG}@${digest("b")}\n`);
    const changed = r.before.split("\n").filter((l, i) => l !== r.after.split("\n")[i]);
    expect(changed.map((l) => l.split("=")[0])).toEqual(["ARG BUILD_IMAGE", "ARG RUNTIME_IMAGE"]);
    expect(readFileSync(join(tools, "crane.log"), "utf8")).toBe(`digest ${BUILD_TAG}\ndigest ${RUNTIME_TAG}\n`);
  });

  test("run again on a pinned file: the new digests replace the old, the tags stay", () => {
    const pinned = pin(toolDir({ [BUILD_TAG]: digest("a"), [RUNTIME_TAG]: digest("b") })).after;
    const tools = toolDir({ [BUILD_TAG]: digest("c"), [RUNTIME_TAG]: digest("d") });
    const r = pin(tools, pinned);
    expect(r.code).toBe(0);
    expect(r.after).toMatch(new RegExp(`^ARG BUILD_IMAGE=${BUILD_TAG}@${digest("c")}$`, "m"));
    expect(r.after).toMatch(new RegExp(`^ARG RUNTIME_IMAGE=${RUNTIME_TAG.replaceAll(".", "\\.")}@${digest("d")}$`, "m"));
    expect(readFileSync(join(tools, "crane.log"), "utf8")).toBe(`digest ${BUILD_TAG}\ndigest ${RUNTIME_TAG}\n`);
  });

  test("one image the registry does not resolve: exit 1 naming it, and the Dockerfile is left as it was", () => {
    const r = pin(toolDir({ [BUILD_TAG]: digest("a") }));
    expect(r.code).toBe(1);
    expect(r.err).toContain(`cannot resolve ${RUNTIME_TAG}`);
    expect(r.after).toBe(r.before);
  });

  test("an answer that is not a sha256 digest: exit 1, nothing written", () => {
    const r = pin(toolDir({ [BUILD_TAG]: "sha256:xyz", [RUNTIME_TAG]: digest("b") }));
    expect(r.code).toBe(1);
    expect(r.err).toContain(`no digest for ${BUILD_TAG} (got "sha256:xyz")`);
    expect(r.after).toBe(r.before);
  });

  test("no crane, skopeo or docker: exit 1 saying what it needs, nothing written", () => {
    const r = pin(toolDir(null));
    expect(r.code).toBe(1);
    expect(r.err).toContain("need crane, skopeo or docker buildx");
    expect(r.after).toBe(r.before);
  });
});
