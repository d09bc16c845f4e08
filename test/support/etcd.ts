// Test fixture: one real etcd (Debian's etcd-server) on free loopback ports with a temporary data directory, plain or https; can be stopped and started again on the same data.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "../../src/util/net.ts";

export interface EtcdServer {
  readonly url: string;
  readonly dir: string;
  /** Kill etcd at once (kill -9): clients see it gone. */
  stop(): Promise<void>;
  /** Start it again on the same ports and data; resolves once it reports healthy. */
  start(): Promise<void>;
  /** Keys under `prefix` as text (key -> value). */
  list(prefix: string): Promise<Map<string, string>>;
  destroy(): Promise<void>;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** tls: serve clients over https with this certificate and key (PEM files). */
export async function startEtcd(o: { tls?: { certFile: string; keyFile: string; caFile: string } } = {}): Promise<EtcdServer> {
  const dir = mkdtempSync(join(tmpdir(), "helios-etcd-"));
  const client = freePort();
  let peerPort = freePort();
  while (peerPort === client) peerPort = freePort();
  const url = `${o.tls ? "https" : "http"}://127.0.0.1:${client}`;
  const tlsArgs = o.tls ? [`--cert-file=${o.tls.certFile}`, `--key-file=${o.tls.keyFile}`] : [];
  const fetchTls = o.tls ? { tls: { ca: readFileSync(o.tls.caFile, "utf8") } } : {};
  const peer = `http://127.0.0.1:${peerPort}`;
  let proc: Subprocess | null = null;
  const start = async () => {
    proc = Bun.spawn(
      ["etcd", "--name=e1", `--data-dir=${join(dir, "data")}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=e1=${peer}`, "--initial-cluster-state=new", `--initial-cluster-token=${dir}`, "--log-level=warn", "--logger=zap", ...tlsArgs],
      { stdin: "ignore", stdout: "ignore", stderr: Bun.file(join(dir, "etcd.log")) },
    );
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(500), ...fetchTls } as RequestInit);
        if (((await r.json()) as { health?: string }).health === "true") return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy at ${url}`);
      await Bun.sleep(50);
    }
  };
  const stop = async () => {
    if (proc === null) return;
    proc.kill("SIGKILL");
    await proc.exited;
    proc = null;
  };
  await start();
  return {
    url,
    dir,
    stop,
    start,
    async list(prefix) {
      const end = Buffer.from(prefix);
      end[end.length - 1]!++;
      const r = await fetch(`${url}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: b64(prefix), range_end: end.toString("base64") }), ...fetchTls } as RequestInit);
      const out = (await r.json()) as { kvs?: { key: string; value?: string }[] };
      return new Map((out.kvs ?? []).map((kv) => [Buffer.from(kv.key, "base64").toString(), Buffer.from(kv.value ?? "", "base64").toString()]));
    },
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The [coordination] section of one proxy of a test fleet: etcd at `endpoint`, a 2 s lease. */
export function coordinationToml(name: string, endpoint: string, prefix: string): string {
  return ["[coordination]", 'backend = "etcd"', `endpoints = ["${endpoint}"]`, `key_prefix = "${prefix}"`, "lease_ttl_secs = 2", `proxy_name = "${name}"`].join("\n");
}
