// The npm bin wrapper (bin/heliosproxy.cjs) run as users and supervisors run it: SIGHUP/SIGINT/SIGTERM reach the proxy, the exit status is the proxy's, `npx` stops cleanly.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { configText, freePort, waitForPort, writeConfig } from "../support/proxy.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "bin/heliosproxy.cjs");
const node = Bun.which("node");
const npx = Bun.which("npx");

interface Started {
  proc: ReturnType<typeof Bun.spawn>;
  port: number;
  adminPort: number;
  output(): string;
}

async function start(cmd: string[]): Promise<Started> {
  const port = freePort();
  const adminPort = freePort();
  const config = writeConfig(configText(port, adminPort).replace('log_level = "warn"', 'log_level = "info"'));
  let out = "";
  const proc = Bun.spawn([...cmd, "--config", config], { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  for (const s of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[])
    void (async () => {
      const dec = new TextDecoder();
      for await (const c of s) out += dec.decode(c);
    })();
  await waitForPort(adminPort, 30_000);
  // An answer means start-up ran to its end, signal handlers included (a bound port alone does not).
  expect((await fetch(`http://127.0.0.1:${adminPort}/livez`)).status).toBe(200);
  return { proc, port, adminPort, output: () => out };
}

/** Resolves with the exit of `proc`, or fails after `ms`. */
async function exitWithin(proc: Started["proc"], ms: number): Promise<{ code: number | null; signal: string | null }> {
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit within ${ms} ms`)), ms));
  await Promise.race([proc.exited, timer]);
  return { code: proc.exitCode, signal: proc.signalCode === null ? null : String(proc.signalCode) };
}

async function portClosed(port: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const open = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (s) => (s.end(), true),
      () => false,
    );
    if (!open) return true;
    await Bun.sleep(50);
  }
  return false;
}

/** Direct children of a process, from /proc. */
function childrenOf(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
  return text === "" ? [] : text.split(/\s+/).map(Number);
}

describe("bin/heliosproxy.cjs", () => {
  test("SIGHUP reaches the proxy (a reload), then SIGINT stops it and the wrapper exits 0", async () => {
    const p = await start([node!, BIN]);
    p.proc.kill("SIGHUP");
    const end = Date.now() + 10_000;
    while (!p.output().includes("configuration reloaded") && Date.now() < end) await Bun.sleep(25);
    expect(p.output()).toContain("configuration reloaded");
    expect(p.proc.exitCode).toBeNull();
    p.proc.kill("SIGINT");
    expect(await exitWithin(p.proc, 15_000)).toEqual({ code: 0, signal: null });
    expect(p.output()).toContain("shutting down");
    expect(await portClosed(p.port, 2000)).toBe(true);
  });

  test("SIGTERM stops the proxy; the wrapper exits 0", async () => {
    const p = await start([node!, BIN]);
    p.proc.kill("SIGTERM");
    expect(await exitWithin(p.proc, 15_000)).toEqual({ code: 0, signal: null });
    expect(await portClosed(p.adminPort, 2000)).toBe(true);
  });

  test("a proxy killed by a signal takes the wrapper down with the same signal", async () => {
    const p = await start([node!, BIN]);
    const kids = childrenOf(p.proc.pid);
    expect(kids).toHaveLength(1);
    process.kill(kids[0]!, "SIGKILL");
    expect(await exitWithin(p.proc, 10_000)).toEqual({ code: null, signal: "SIGKILL" });
  });

  // npm exec runs bins under `sh -c`, which dies on SIGTERM without passing it on (and holds SIGINT
  // until its child ends): the wrapper sees its parent go and stops the proxy.
  test("under npx, SIGTERM to the npx process stops the proxy too (nothing left running)", async () => {
    expect(npx).not.toBeNull();
    const p = await start([npx!, "--offline", "heliosproxy"]);
    p.proc.kill("SIGTERM");
    await exitWithin(p.proc, 15_000);
    expect(await portClosed(p.port, 10_000)).toBe(true);
    expect(await portClosed(p.adminPort, 2000)).toBe(true);
  });
});
