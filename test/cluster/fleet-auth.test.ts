// Coordination against an etcd with authentication and one over https: proxies log in with [coordination] username/password (a wrong password leaves a proxy degraded) and verify etcd's certificate with ca_file; pause and the manual primary are shared; a stopped leader hands over at once.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { startEtcd, type EtcdServer } from "../support/etcd.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { adminApi } from "../support/pg-cluster.ts";
import { makeTlsFiles } from "../support/pg-instance.ts";

let etcd: EtcdServer;
/** Two names for the local server: the manual provider's primary can be moved between them. */
const NODES = [
  { host: "127.0.0.1", port: 5432, role: "primary" },
  { host: "localhost", port: 5432, role: "standby" },
];
const proxies: RunningProxy[] = [];

async function etcdCall(path: string, body: unknown): Promise<void> {
  const r = await fetch(`${etcd.url}${path}`, { method: "POST", body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${await r.text()}`);
}

const toml = (name: string, password: string) =>
  `[topology]\nprovider = "manual"\n[coordination]\nbackend = "etcd"\nendpoints = ["${etcd.url}"]\nkey_prefix = "/heliosproxy/auth-test"\nlease_ttl_secs = 5\nusername = "root"\npassword = "${password}"\nproxy_name = "${name}"\n`;

beforeAll(async () => {
  etcd = await startEtcd();
  await etcdCall("/v3/auth/user/add", { name: "root", password: "rootpw" });
  await etcdCall("/v3/auth/user/grant", { user: "root", role: "root" });
  await etcdCall("/v3/auth/enable", {});
  for (const [name, pw] of [["a1", "rootpw"], ["a2", "rootpw"], ["a3", "wrong"]] as const) proxies.push(await startProxy({ toml: toml(name, pw), nodes: NODES }));
}, 30_000);

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await etcd?.destroy();
});

async function until<T>(what: string, check: () => Promise<T | null | false>, limitMs: number): Promise<T> {
  const deadline = performance.now() + limitMs;
  for (;;) {
    const v = await check().catch(() => null);
    if (v) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await Bun.sleep(25);
  }
}

test("with the right password the proxies join and elect a leader; with a wrong one a proxy is degraded and says why", async () => {
  const fleet = await until("a leader seen by a1 and a2", async () => {
    const f = (await adminApi(proxies[0]!, "GET", "/fleet")).body;
    const g = (await adminApi(proxies[1]!, "GET", "/fleet")).body;
    return f.leader !== null && f.leader === g.leader && f.proxies.length === 2 ? f : null;
  }, 10_000);
  expect(fleet.leader).toBe("a1");
  const metrics = (await adminApi(proxies[0]!, "GET", "/metrics")).body as string;
  expect(metrics).toContain("heliosproxy_fleet_leader 1");
  expect(metrics).toContain("heliosproxy_fleet_etcd_reachable 1");
  expect(metrics).toContain("heliosproxy_fleet_proxies 2");
  expect(fleet.proxies.map((m: { name: string }) => m.name).sort()).toEqual(["a1", "a2"]);
  const bad = await until("a3 to report its failed login", async () => {
    const h = (await adminApi(proxies[2]!, "GET", "/health")).body;
    return String(h.degraded?.[0]).includes("authentication as root failed") ? h : null;
  }, 5000);
  expect(bad.status).toBe("degraded");
  // The shared keys are not readable without logging in.
  const anon = await fetch(`${etcd.url}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: Buffer.from("/heliosproxy/auth-test/leader").toString("base64") }) });
  expect(((await anon.json()) as { error?: string }).error).toContain("user name is empty");
});

test("pause and the manual primary set through one proxy apply on the others", async () => {
  const paused = await adminApi(proxies[1]!, "POST", "/pause");
  expect(paused.body).toMatchObject({ paused: true, fleet: { shared: true } });
  await until("a1 paused", async () => (await adminApi(proxies[0]!, "GET", "/health")).body.paused === true, 3000);
  await adminApi(proxies[0]!, "POST", "/resume");
  await until("a2 resumed", async () => (await adminApi(proxies[1]!, "GET", "/health")).body.paused === false, 3000);
  const set = await adminApi(proxies[1]!, "POST", "/topology/primary", {}, { node: "node2" });
  expect(set.body).toMatchObject({ primary: "node2", fleet: { shared: true } });
  await until("a1 to take node2 as the primary", async () => (await adminApi(proxies[0]!, "GET", "/topology")).body.primary === "node2", 3000);
  // The proxy that cannot log in to etcd keeps its own view.
  expect((await adminApi(proxies[2]!, "GET", "/topology")).body.primary).toBe("node1");
  expect((await adminApi(proxies[2]!, "GET", "/health")).body.paused).toBe(false);
});

test("provider patroni in a fleet: even the leader does not promote (Patroni does)", async () => {
  const conf = toml("pat1", "rootpw").replace('provider = "manual"', 'provider = "patroni"\npatroni_urls = ["http://127.0.0.1:9"]').replace("/heliosproxy/auth-test", "/heliosproxy/patroni-test");
  await using p = await startProxy({ toml: `${conf}[failover]\npolicy = "manual"\n`, nodes: NODES });
  await until("pat1 to lead", async () => (await adminApi(p, "GET", "/fleet")).body.is_leader === true, 10_000);
  const r = await adminApi(p, "POST", "/failover", {}, { target: "node2", force: true });
  expect(r.status).toBe(409);
  expect(r.body.message).toContain('topology.provider = "patroni" promotes by itself');
});

test("a leader that stops revokes its lease: the next proxy leads at once, well before the TTL", async () => {
  const t0 = performance.now();
  expect(await proxies[0]!.stop()).toBe(0);
  await until("a2 to lead", async () => (await adminApi(proxies[1]!, "GET", "/fleet")).body.is_leader === true, 4000);
  const ms = performance.now() - t0;
  expect(ms).toBeLessThan(4000);
  const f = (await adminApi(proxies[1]!, "GET", "/fleet")).body;
  expect(f.proxies.map((m: { name: string }) => m.name)).toEqual(["a2"]);
  console.log(`leadership handed over ${ms.toFixed(0)} ms after the leader's SIGTERM (lease TTL 5 s)`);
});

test("etcd over https: a proxy with ca_file joins; one without it does not trust the certificate and is degraded", async () => {
  const tls = await makeTlsFiles();
  const secure = await startEtcd({ tls: { certFile: tls.serverCert, keyFile: tls.serverKey, caFile: tls.caCert } });
  const conf = (name: string, ca: string) =>
    `[coordination]\nbackend = "etcd"\nendpoints = ["${secure.url}"]\nkey_prefix = "/heliosproxy/tls-test"\nproxy_name = "${name}"\n${ca ? `ca_file = "${ca}"\n` : ""}`;
  await using trusted = await startProxy({ toml: conf("t1", tls.caCert) });
  await using untrusted = await startProxy({ toml: conf("t2", "") });
  try {
    const f = await until("t1 to lead over https", async () => {
      const v = (await adminApi(trusted, "GET", "/fleet")).body;
      return v.is_leader === true ? v : null;
    }, 10_000);
    expect(f.proxies.map((m: { name: string }) => m.name)).toEqual(["t1"]);
    const h = await until("t2 to report the untrusted certificate", async () => {
      const v = (await adminApi(untrusted, "GET", "/health")).body;
      return /certificate/i.test(String(v.degraded?.[0])) ? v : null;
    }, 5000);
    expect(h.status).toBe("degraded");
    expect((await secure.list("/heliosproxy/tls-test/members/")).size).toBe(1);
  } finally {
    await secure.destroy();
    rmSync(tls.dir, { recursive: true, force: true });
  }
});
