// The command line run as users run it: exit codes and output of check-config, features, version; log output.

import { afterAll, describe, expect, test } from "bun:test";
import { FEATURE_NAMES } from "../../src/modules/index.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const MAIN = join(ROOT, "src/cli/main.ts");
const BIN = join(ROOT, "bin/heliosproxy.cjs");
const VERSION = (require("../../package.json") as { version: string }).version;
const dir = mkdtempSync(join(tmpdir(), "helios-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function run(args: string[], opts: { cmd?: string[]; cwd?: string; env?: Record<string, string> } = {}) {
  const env: Record<string, string | undefined> = { ...process.env, HELIOSPROXY_CONFIG: undefined, NO_COLOR: "1", ...opts.env };
  const p = Bun.spawnSync([...(opts.cmd ?? [process.execPath, MAIN]), ...args], { cwd: opts.cwd ?? ROOT, env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

const good = file("good.toml", '[pool]\nmode = "session"\n[[nodes]]\nhost = "127.0.0.1"\n[[nodes]]\nhost = "10.0.0.2"\nrole = "standby"\nsync = true\n');
const bad = file("bad.toml", '[pool]\nmode = "sesion"\n[[nodes]]\nhost = "127.0.0.1"\nportt = 5432\n');

describe("check-config", () => {
  test("a valid file: ok, a summary, exit 0", () => {
    const r = run(["check-config", "--config", good]);
    expect(r.code).toBe(0);
    expect(r.out).toStartWith("ok\n");
    expect(r.out).toContain("pool: session mode, 0..20 server connections per pool");
    expect(r.out).toContain("nodes: node1=127.0.0.1:5432 (primary), node2=10.0.0.2:5432 (standby, sync)");
    expect(r.err).toBe("");
  });

  test("an invalid file: every problem with file and line on stderr, exit 1", () => {
    const r = run(["check-config", "-c", bad]);
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toBe(
      `${bad}:2: pool.mode: expected one of session|transaction|statement, got "sesion"\n` +
        `${bad}:5: nodes[0].portt: unknown key (did you mean port?)\n`,
    );
  });

  test("a relative path is reported as given", () => {
    const r = run(["check-config", "--config", "bad.toml"], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.err).toStartWith('bad.toml:2: pool.mode: expected one of');
  });

  test("a missing file, and no file at all", () => {
    const missing = run(["check-config", "--config", join(dir, "nope.toml")]);
    expect(missing.code).toBe(1);
    expect(missing.err).toBe(`${join(dir, "nope.toml")}: cannot read config: file not found\n`);
    const none = run(["check-config"]);
    expect(none.code).toBe(1);
    expect(none.err).toContain("no config file: pass --config FILE");
  });

  test("HELIOSPROXY_CONFIG stands in for --config", () => {
    expect(run(["check-config"], { env: { HELIOSPROXY_CONFIG: good } }).code).toBe(0);
  });

  test("the shipped examples pass", () => {
    for (const f of ["minimal.toml", "session.toml", "proxy.example.toml"]) {
      expect(run(["check-config", "--config", `config/${f}`]).code).toBe(0);
    }
  });

  test("the default command is run, and it validates first", () => {
    const r = run(["--config", bad]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${bad}:2: pool.mode:`);
  });
});

describe("features and version", () => {
  test("features lists the profile and every flag that has code, nothing planned", () => {
    const r = run(["features"]);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines[0]).toBe("profile: dev");
    // Exactly the rows of src/modules/index.ts: features with code, none merely planned.
    expect(lines.slice(1).map((l) => l.split(" ")[0])).toEqual([...FEATURE_NAMES]);
    expect(lines).not.toContain(`${"rate-limiting".padEnd(20)}on`);
    expect(lines).toContain(`${"schema-routing".padEnd(20)}on`);
    expect(lines.slice(1).every((l) => /^[a-z-]+ +(on|off)$/.test(l))).toBe(true);
  });

  test("version", () => {
    const r = run(["version"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`heliosproxy ${VERSION} (profile: dev, bun ${Bun.version})\n`);
    expect(run(["--version"]).out.trim()).toBe(VERSION);
  });

  test("unknown command", () => {
    const r = run(["frobnicate"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("Unknown command");
  });
});

describe("bin/heliosproxy.cjs (npx heliosproxy)", () => {
  const node = Bun.which("node");
  test("runs the CLI from any directory and forwards the exit code", () => {
    expect(node).not.toBeNull();
    const v = run(["version"], { cmd: [node!, BIN], cwd: tmpdir() });
    expect(v.code).toBe(0);
    expect(v.out).toBe(`heliosproxy ${VERSION} (profile: dev, bun ${Bun.version})\n`);
    expect(run(["features"], { cmd: [node!, BIN], cwd: tmpdir() }).out).toContain(`${"ha-tr".padEnd(20)}on`);
    const b = run(["check-config", "--config", bad], { cmd: [node!, BIN], cwd: tmpdir() });
    expect(b.code).toBe(1);
    expect(b.err).toContain("pool.mode: expected one of");
  });
});

describe("logging", () => {
  const script = (body: string) => [
    process.execPath,
    "-e",
    `import { configureLogging, log, logEnabled } from ${JSON.stringify(join(ROOT, "src/util/log.ts"))};\n${body}`,
  ];

  test("json: one object per line on stderr, level filtering", () => {
    const r = run([], {
      cmd: script(`configureLogging("debug", "json");
        log.info("listening", { address: "127.0.0.1:6432", err: new Error("boom") });
        log.debug("detail");
        log.trace("hidden");
        console.log(logEnabled("debug"), logEnabled("trace"));`),
    });
    expect(r.code).toBe(0);
    expect(r.out).toBe("true false\n");
    const lines = r.err.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: "info", msg: "listening", address: "127.0.0.1:6432", err: { message: "boom", name: "Error" } });
    expect(Date.parse(lines[0].time)).toBeGreaterThan(0);
    expect(lines[1]).toMatchObject({ level: "debug", msg: "detail" });
  });

  test("text: one line per message with key=value fields", () => {
    const r = run([], {
      cmd: script(`configureLogging("warn", "text");
        log.info("hidden");
        log.warn("node down", { node: "node1", reason: "connection refused" });
        log.error("x");`),
    });
    const lines = r.err.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z WARN  node down node=node1 reason="connection refused"$/);
    expect(lines[1]).toMatch(/ERROR x$/);
    expect(r.out).toBe("");
  });

  test("silent writes nothing", () => {
    const r = run([], { cmd: script(`configureLogging("silent"); log.error("nope");`) });
    expect(r.err).toBe("");
  });
});
