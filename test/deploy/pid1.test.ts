// The proxy as PID 1 of its own PID namespace (as in a container without an init): SIGHUP reloads and SIGTERM drains and exits 0, which the kernel delivers to PID 1 only when the process handles them.

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { configText, freePort, waitForPort, writeConfig } from "../support/proxy.ts";

const ROOT = resolve(import.meta.dir, "../..");
const unshare = Bun.which("unshare");
const isRoot = process.getuid?.() === 0;

test("as PID 1: SIGHUP reloads, SIGTERM stops it with exit code 0", async () => {
  // A PID namespace needs unshare (util-linux) and root, as the test machine has (scripts/setup-test-machine.sh).
  expect(unshare).not.toBeNull();
  expect(isRoot).toBe(true);
  const port = freePort();
  const adminPort = freePort();
  const config = writeConfig(configText(port, adminPort).replace('log_level = "warn"', 'log_level = "info"'));
  const proc = Bun.spawn(
    [unshare!, "--pid", "--fork", "--kill-child", process.execPath, `--config=${join(ROOT, "bunfig.toml")}`, join(ROOT, "src/cli/main.ts"), "--config", config],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  let out = "";
  for (const s of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[])
    void (async () => {
      for await (const c of s) out += new TextDecoder().decode(c);
    })();
  try {
    await waitForPort(adminPort, 30_000);
    // An answer means start-up ran to its end, signal handlers included (a bound port alone does not).
    expect((await fetch(`http://127.0.0.1:${adminPort}/livez`)).status).toBe(200);
    // The proxy is unshare's only child; inside its namespace it is PID 1.
    const [pid] = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
    const nsPid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]!.trim().split(/\s+/);
    expect(nsPid.at(-1)).toBe("1");

    process.kill(pid!, "SIGHUP");
    const end = Date.now() + 10_000;
    while (!out.includes("configuration reloaded") && Date.now() < end) await Bun.sleep(25);
    expect(out).toContain("configuration reloaded");

    process.kill(pid!, "SIGTERM");
    const code = await Promise.race([proc.exited, Bun.sleep(15_000).then(() => "no exit within 15 s")]);
    expect(code).toBe(0);
    expect(out).toContain("shutting down");
  } finally {
    if (proc.exitCode === null) proc.kill("SIGKILL");
  }
});
