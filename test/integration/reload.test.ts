// SIGHUP reload: a broken file keeps the running configuration; a valid one takes effect without a restart.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { configText, freePort, psql, startProxyWithConfig, writeConfig, type RunningProxy } from "../support/proxy.ts";

let proxy: RunningProxy;
let port: number;
let admin: number;

beforeAll(async () => {
  port = freePort();
  admin = freePort();
  const path = writeConfig(configText(port, admin, { toml: "[limits]\nmax_client_conn = 100" }));
  proxy = await startProxyWithConfig(path, port, admin);
});

afterAll(async () => {
  await proxy.stop();
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await Bun.sleep(25);
}

test("a broken config on SIGHUP is reported with its line and the old one keeps serving", async () => {
  writeFileSync(proxy.configPath, configText(port, admin) + '\n[pool]\nmode = "sesion"\n');
  proxy.proc.kill("SIGHUP");
  await waitFor(() => proxy.output().includes("reload failed"));
  expect(proxy.output()).toMatch(/reload failed.*proxy\.toml:\d+/);
  const r = await psql(port, ["-Atc", "select 7"]);
  expect(r.stdout.trim()).toBe("7");
});

test("a valid config on SIGHUP applies new limits to new logins", async () => {
  writeFileSync(proxy.configPath, configText(port, admin, { toml: "[limits]\nmax_client_conn = 1" }));
  proxy.proc.kill("SIGHUP");
  await Bun.sleep(800);
  // One client holds the only slot; the next is refused with 53300.
  const holder = Bun.spawn(["psql", "-X", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "test", "-c", "select pg_sleep(1.5)"], { stdout: "ignore", stderr: "ignore" });
  await Bun.sleep(500);
  const refused = await psql(port, ["-Atc", "select 1"]);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain("too many clients already (max_client_conn = 1)");
  expect(await holder.exited).toBe(0);
});
