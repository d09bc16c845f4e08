// The npm bin wrapper (bin/heliosproxy.cjs) run as users and supervisors run it: SIGHUP/SIGINT/SIGTERM reach the proxy, the exit status is the proxy's, `npx` stops cleanly.

import { afterEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { configText, freePort, waitForPort, writeConfig } from "../support/proxy.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "bin/heliosproxy.cjs");
const node = Bun.which("node");
const npx = Bun.which("npx");

/** Processes a test started, so a failed one leaves nothing running behind it. */
const started: number[] = [];
afterEach(() => {
  for (const pid of started.splice(0).filter(alive)) process.kill(pid, "SIGKILL");
});

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
  started.push(proc.pid);
  await waitForPort(adminPort, 30_000);
  // An answer means start-up ran to its end, signal handlers included (a bound port alone does not).
  expect((await fetch(`http://127.0.0.1:${adminPort}/livez`)).status).toBe(200);
  started.push(...descendants(proc.pid).map((d) => d.pid));
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

/** Direct children of a process (started by any of its threads), from /proc. */
function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    const text = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
    return text === "" ? [] : text.split(/\s+/).map(Number);
  });
}

/** Every process below `pid`, with its command line. */
function descendants(pid: number): { pid: number; cmd: string }[] {
  return childrenOf(pid).flatMap((c) => [{ pid: c, cmd: readFileSync(`/proc/${c}/cmdline`, "utf8").replaceAll("\0", " ") }, ...descendants(c)]);
}

/** Running (a zombie waiting to be reaped counts as ended). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The processes of `pids` still running after `ms`, waiting for them to end until then. */
async function leftAfter(pids: number[], ms: number): Promise<number[]> {
  const end = Date.now() + ms;
  while (pids.some(alive) && Date.now() < end) await Bun.sleep(50);
  return pids.filter(alive);
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

  test("the wrapper killed outright (SIGKILL, nothing forwarded): the proxy sees its parent go and stops", async () => {
    const p = await start([node!, BIN]);
    const kids = childrenOf(p.proc.pid);
    expect(kids).toHaveLength(1);
    p.proc.kill("SIGKILL");
    expect(await portClosed(p.port, 10_000)).toBe(true);
    expect(await leftAfter(kids, 10_000)).toEqual([]);
  });

  // What the issue reported: `npx heliosproxy` ignored SIGINT sent to the npx process. npm forwards it to
  // the shell it runs the bin under; the project's .npmrc makes that bash, which execs the wrapper.
  test("under npx, SIGINT to the npx process alone stops the proxy; npx exits 0 and none of its processes is left", async () => {
    expect(npx).not.toBeNull();
    const p = await start([npx!, "--offline", "heliosproxy"]);
    const tree = descendants(p.proc.pid);
    expect(tree.map((t) => t.cmd).join("\n")).toContain("src/cli/main.ts");
    p.proc.kill("SIGINT");
    expect(await exitWithin(p.proc, 15_000)).toEqual({ code: 0, signal: null });
    expect(p.output()).toContain("shutting down");
    expect(await portClosed(p.port, 2000)).toBe(true);
    expect(await leftAfter(tree.map((t) => t.pid), 5000)).toEqual([]);
  });

  test("under npx, SIGHUP to the npx process is not npm's to forward: npm dies of it, the wrapper sees that and stops the proxy", async () => {
    expect(npx).not.toBeNull();
    const p = await start([npx!, "--offline", "heliosproxy"]);
    const tree = descendants(p.proc.pid);
    p.proc.kill("SIGHUP");
    await exitWithin(p.proc, 15_000);
    expect(await portClosed(p.port, 10_000)).toBe(true);
    expect(await leftAfter(tree.map((t) => t.pid), 5000)).toEqual([]);
  });

  // Where npm runs bins under dash (`sh -c`, npm's default outside this project): dash dies on SIGTERM without
  // passing it on, and the wrapper sees its parent go and stops the proxy.
  test("under npx with script-shell /bin/sh, SIGTERM to the npx process stops the proxy too (nothing left running)", async () => {
    expect(npx).not.toBeNull();
    const p = await start([npx!, "--offline", "--script-shell=/bin/sh", "heliosproxy"]);
    const tree = descendants(p.proc.pid);
    expect(tree.map((t) => t.cmd.split(" ")[0])).toContain("/bin/sh");
    p.proc.kill("SIGTERM");
    await exitWithin(p.proc, 15_000);
    expect(await portClosed(p.port, 10_000)).toBe(true);
    expect(await portClosed(p.adminPort, 2000)).toBe(true);
    expect(await leftAfter(tree.map((t) => t.pid), 5000)).toEqual([]);
  });
});
