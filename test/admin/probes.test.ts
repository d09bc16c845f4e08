// Orchestrator probes and scrape access: /livez and /readyz without tokens, metrics_public, `heliosproxy health` exit codes, reload of restart-only keys.

import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { configText, freePort, startProxy, startProxyWithConfig, writeConfig } from "../support/proxy.ts";

const ROOT = resolve(import.meta.dir, "../..");

async function get(adminPort: number, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, { headers });
  return { status: res.status, type: res.headers.get("content-type") ?? "", body: await res.text() };
}

async function waitFor(cond: () => Promise<boolean>, ms = 10000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(25);
  }
  return false;
}

/** `heliosproxy health ...` as a user runs it. */
async function health(args: string[], env: Record<string, string | undefined> = {}) {
  const p = Bun.spawn([process.execPath, join(ROOT, "src/cli/main.ts"), "health", ...args], {
    cwd: ROOT,
    env: { ...process.env, HELIOSPROXY_CONFIG: undefined, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

/** A config whose admin API listens on every interface (as in a container). */
function wildcardAdmin(port: number, admin: number, extra = ""): string {
  return configText(port, admin, { toml: extra }).replace(`admin_address = "127.0.0.1:${admin}"`, `admin_address = "0.0.0.0:${admin}"`);
}

describe("beyond loopback with tokens set", () => {
  test("/livez and /readyz answer without a token and say nothing but ok; /health and /metrics still need one", async () => {
    const port = freePort();
    const admin = freePort();
    await using proxy = await startProxyWithConfig(writeConfig(wildcardAdmin(port, admin)), port, admin, { HELIOSPROXY_ADMIN_TOKEN: "probe-adm-1" });
    for (const path of ["/livez", "/readyz"]) {
      const r = await get(proxy.adminPort, path, { host: "10.1.2.3:9090" });
      expect(r).toEqual({ status: 200, type: "text/plain; charset=utf-8", body: "ok\n" });
    }
    expect((await get(proxy.adminPort, "/health")).status).toBe(401);
    expect((await get(proxy.adminPort, "/metrics")).status).toBe(401);
    expect((await get(proxy.adminPort, "/metrics", { authorization: "Bearer probe-adm-1" })).status).toBe(200);
  });

  test("metrics_public = true: /metrics needs no token, every other data route still does", async () => {
    const port = freePort();
    const admin = freePort();
    await using proxy = await startProxyWithConfig(writeConfig(wildcardAdmin(port, admin).replace("[pool]", "metrics_public = true\n[pool]")), port, admin, {
      HELIOSPROXY_ADMIN_TOKEN: "probe-adm-2",
    });
    const m = await get(proxy.adminPort, "/metrics");
    expect(m.status).toBe(200);
    expect(m.body).toContain('heliosproxy_node_up{node="node1"} 1');
    for (const path of ["/health", "/nodes", "/pools", "/topology"]) expect((await get(proxy.adminPort, path)).status).toBe(401);
    const post = await fetch(`http://127.0.0.1:${proxy.adminPort}/pause`, { method: "POST" });
    expect(post.status).toBe(401);
  });
});

describe("`heliosproxy health`", () => {
  test("0 on a ready proxy (address from --admin, from --config, from $HELIOSPROXY_CONFIG); 1 with nothing listening", async () => {
    const port = freePort();
    const admin = freePort();
    const configPath = writeConfig(wildcardAdmin(port, admin));
    await using proxy = await startProxyWithConfig(configPath, port, admin);
    const byUrl = await health(["--admin", `http://127.0.0.1:${proxy.adminPort}`]);
    expect(byUrl).toMatchObject({ code: 0, out: `http://127.0.0.1:${proxy.adminPort}/readyz: 200 ok\n` });
    // 0.0.0.0 in the config is asked on loopback.
    expect((await health(["--config", configPath])).code).toBe(0);
    expect((await health([], { HELIOSPROXY_CONFIG: configPath })).code).toBe(0);
    expect((await health(["--live", "--admin", `127.0.0.1:${proxy.adminPort}`])).out).toBe(`http://127.0.0.1:${proxy.adminPort}/livez: 200 ok\n`);
    const nobody = await health(["--admin", `http://127.0.0.1:${freePort()}`]);
    expect(nobody.code).toBe(1);
    expect(nobody.out).toContain("/readyz: ");
  });

  test("primary down: /readyz 503 not ready and health exits 1, while /livez and health --live stay 0", async () => {
    await using proxy = await startProxy({
      nodes: [{ host: "127.0.0.1", port: freePort(), role: "primary" }],
      toml: "[health]\ncheck_interval_secs = 0.1\ncheck_timeout_secs = 0.5\nfailure_threshold = 1",
    });
    expect(await waitFor(async () => (await get(proxy.adminPort, "/readyz")).status === 503)).toBe(true);
    expect((await get(proxy.adminPort, "/readyz")).body).toBe("not ready\n");
    expect((await get(proxy.adminPort, "/livez")).status).toBe(200);
    const admin = `http://127.0.0.1:${proxy.adminPort}`;
    expect(await health(["--admin", admin])).toMatchObject({ code: 1, out: `${admin}/readyz: 503 not ready\n` });
    expect((await health(["--live", "--admin", admin])).code).toBe(0);
  });

  test("a bad --timeout or an unusable config exits 1 with the reason", async () => {
    const t = await health(["--timeout", "soon"]);
    expect(t.code).toBe(1);
    expect(t.err).toContain("--timeout: expected seconds");
    const bad = writeConfig('[proxy]\nadmin_adress = "127.0.0.1:1"\n');
    const c = await health(["--config", bad]);
    expect(c.code).toBe(1);
    expect(c.err).toContain("unknown key");
  });
});

describe("reload", () => {
  test("a changed listen_address/admin_address is named in a warning and not applied; log_level applies at once", async () => {
    await using proxy = await startProxy();
    const text = readFileSync(proxy.configPath, "utf8");
    const newListen = `127.0.0.1:${freePort()}`;
    writeFileSync(
      proxy.configPath,
      text
        .replace(/listen_address = "[^"]+"/, `listen_address = "${newListen}"`)
        .replace(/admin_address = "[^"]+"/, `admin_address = "127.0.0.1:${freePort()}"`)
        .replace('log_level = "warn"', 'log_level = "info"'),
    );
    proxy.proc.kill("SIGHUP");
    // "configuration reloaded" is an info line: written only once the new log_level is live.
    expect(await waitFor(async () => proxy.output().includes("configuration reloaded"))).toBe(true);
    const out = proxy.output();
    expect(out).toContain(`reload: proxy.listen_address: 127.0.0.1:${proxy.port} -> ${newListen} needs a restart; still using the old value`);
    expect(out).toContain("reload: proxy.admin_address: ");
    // Still served where it was bound.
    expect((await get(proxy.adminPort, "/readyz")).status).toBe(200);
  });
});
