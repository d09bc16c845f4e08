// SIGHUP reload: a broken file keeps the running configuration; a valid one takes effect without a restart.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { configText, freePort, psql, startProxyWithConfig, writeConfig, type RunningProxy } from "../support/proxy.ts";
import { pgClient } from "../support/clients.ts";

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
  // The reload is in once GET /config shows the new value.
  const limit = async () => {
    const rows = ((await (await fetch(`http://127.0.0.1:${admin}/config`)).json()) as { settings: { key: string; value: string }[] }).settings;
    return rows.find((r) => r.key === "limits.max_client_conn")?.value;
  };
  const end = Date.now() + 5000;
  while ((await limit()) !== "1" && Date.now() < end) await Bun.sleep(25);
  expect(await limit()).toBe("1");
  // One client holds the only slot; the next is refused with 53300.
  const holder = await pgClient(port);
  try {
    const refused = await psql(port, ["-Atc", "select 1"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("too many clients already (max_client_conn = 1)");
    expect((await holder.query("SELECT 'still here' AS v")).rows[0].v).toBe("still here");
  } finally {
    await holder.end();
  }
});
