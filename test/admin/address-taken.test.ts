// A second proxy on a taken admin_address fails to start and names the address; the first keeps it.

import { expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, configText, freePort, startProxy, writeConfig } from "../support/proxy.ts";

const ROOT = join(import.meta.dir, "..", "..");

test("same admin_address, another listen_address: the second exits non-zero naming the admin address", async () => {
  await using first = await startProxy();
  const port = freePort();
  const config = writeConfig(configText(port, first.adminPort));
  const second = Bun.spawn([BUN, `--config=${join(ROOT, "bunfig.toml")}`, join(ROOT, "src/cli/main.ts"), "--config", config], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const killer = setTimeout(() => second.kill("SIGKILL"), 20000);
  const [out, err, code] = await Promise.all([new Response(second.stdout).text(), new Response(second.stderr).text(), second.exited]);
  clearTimeout(killer);
  expect(code).not.toBe(0);
  expect(out + err).toContain(`127.0.0.1:${first.adminPort}`);
  // The first proxy still answers on it, alone.
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`http://127.0.0.1:${first.adminPort}/health`);
    expect(res.status).toBe(200);
  }
});
