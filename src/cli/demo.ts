// `heliosproxy demo`: a local primary + sync standby + async standby with the proxy in front (config/demo.toml); Ctrl-C removes it all.

import { defineCommand } from "citty";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import DEMO_TOML from "../../config/demo.toml" with { type: "text" };
import { ConfigError, loadConfig, parseConfig } from "../config/load.ts";
import { parseAddress } from "../config/schema.ts";
import type { HeliosConfig } from "../config/types.ts";
import { DevCluster, type StandbyKind } from "../devcluster/cluster.ts";
import { freePort, pgBinDir, portInUse } from "../devcluster/pg-bin.ts";
import { configureLogging } from "../util/log.ts";

const DATABASE = "demo";

/** The sample data: small enough to load in a moment, big enough to query. */
const SAMPLE_SQL = `
CREATE TABLE accounts (
  id      serial PRIMARY KEY,
  owner   text NOT NULL,
  balance numeric(12, 2) NOT NULL DEFAULT 0,
  created timestamptz NOT NULL DEFAULT now()
);
INSERT INTO accounts (owner, balance)
SELECT 'user' || g, round((random() * 10000)::numeric, 2) FROM generate_series(1, 1000) g;
`;

const say = (line: string) => process.stdout.write(`${line}\n`);

function fail(message: string): never {
  process.stderr.write(`heliosproxy demo: ${message}\n`);
  process.exit(1);
}

/** The port to use: the one asked for (0 = any free), else the configured one when free, else a free one. */
async function choosePort(asked: string | undefined, configured: number, what: string): Promise<number> {
  if (asked !== undefined) {
    const n = Number(asked);
    if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`--${what}: expected a port number, got ${JSON.stringify(asked)}`);
    return n === 0 ? freePort() : n;
  }
  if (!(await portInUse(configured))) return configured;
  const p = freePort();
  say(`demo: port ${configured} is taken; using ${p} for the ${what === "port" ? "proxy" : "admin API"}`);
  return p;
}

/** Standby kinds in [[nodes]] order; exactly one primary. */
function topology(cfg: HeliosConfig): StandbyKind[] {
  const primaries = cfg.nodes.filter((n) => n.role === "primary");
  if (primaries.length !== 1) fail(`${cfg.source || "config"}: the demo needs exactly one [[nodes]] entry with role = "primary"`);
  return cfg.nodes.filter((n) => n.role === "standby").map((n) => (n.sync ? "sync" : "async"));
}

function connectHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}

export default defineCommand({
  meta: { name: "demo", description: "Run a local primary + sync standby + async standby with the proxy in front (Ctrl-C removes it)" },
  args: {
    config: { type: "string", alias: "c", valueHint: "FILE", description: "Demo settings (default: config/demo.toml)" },
    port: { type: "string", valueHint: "PORT", description: "Proxy port (default: from the config when free; 0 = any free port)" },
    "admin-port": { type: "string", valueHint: "PORT", description: "Admin API and dashboard port (same rules)" },
  },
  async run({ args }) {
    const source = args.config ?? "config/demo.toml";
    let text: string;
    try {
      text = args.config ? readFileSync(args.config, "utf8") : (DEMO_TOML as unknown as string);
    } catch (e) {
      fail(`cannot read ${source}: ${(e as Error).message}`);
    }
    let base: HeliosConfig;
    try {
      base = parseConfig(text, source);
    } catch (e) {
      if (e instanceof ConfigError) fail(e.message);
      throw e;
    }
    const standbys = topology(base);
    const listen = parseAddress(base.proxy.listen_address)!;
    const admin = parseAddress(base.proxy.admin_address)!;
    const port = await choosePort(args.port, listen.port, "port");
    const adminPort = await choosePort(args["admin-port"], admin.port, "admin-port");
    try {
      pgBinDir();
    } catch (e) {
      fail((e as Error).message);
    }

    say(`demo: building a local cluster with PostgreSQL from ${pgBinDir()}`);
    let cluster: DevCluster | null = null;
    let stopProxy: (() => Promise<void>) | null = null;
    let stopping = false;
    const shutdown = async (why: string, code: number) => {
      if (stopping) {
        say("demo: still stopping...");
        return;
      }
      stopping = true;
      say(`demo: ${why}: stopping the proxy and removing the cluster`);
      try {
        await stopProxy?.();
      } finally {
        await cluster?.destroy();
        say("demo: done");
        process.exit(code);
      }
    };
    process.on("SIGINT", () => void shutdown("interrupted", 0));
    process.on("SIGTERM", () => void shutdown("terminated", 0));

    try {
      cluster = await DevCluster.create({ standbys, onProgress: (l) => say(`demo: ${l}`) });
      say(`demo: creating database "${DATABASE}" with a sample table (accounts, 1000 rows)`);
      await cluster.createDatabase(DATABASE);
      await cluster.setup(SAMPLE_SQL, DATABASE);

      // The effective config: the demo settings with the cluster's and the proxy's ports filled in.
      const raw = parseToml(text) as { proxy?: Record<string, unknown>; nodes: Record<string, unknown>[] };
      raw.proxy = { ...raw.proxy, listen_address: `${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${port}`, admin_address: `${admin.host.includes(":") ? `[${admin.host}]` : admin.host}:${adminPort}` };
      const dev = [cluster.primary(), ...cluster.standbys()];
      let next = 1;
      raw.nodes.forEach((n, i) => {
        const node = base.nodes[i]!.role === "primary" ? dev[0]! : dev[next++]!;
        n.host = node.host;
        n.port = node.port;
      });
      const path = join(cluster.baseDir, "proxy.toml");
      writeFileSync(path, `# Written by heliosproxy demo from ${source}; edit and send SIGHUP to reload.\n${stringifyToml(raw)}\n`);
      const cfg = loadConfig(path);
      configureLogging(cfg.proxy.log_level, cfg.proxy.log_format);

      // The proxy's own SIGINT/SIGTERM handlers exit at once; the demo's remove the cluster first.
      const before = { SIGINT: process.listeners("SIGINT"), SIGTERM: process.listeners("SIGTERM") };
      const { startProxy } = await import("../proxy.ts");
      const running = await startProxy(cfg, { configPath: path });
      stopProxy = running.stop;
      for (const sig of ["SIGINT", "SIGTERM"] as const) {
        for (const l of process.listeners(sig)) if (!before[sig].includes(l)) process.removeListener(sig, l);
      }
      if (stopping) return;

      const url = `postgresql://postgres@${connectHost(listen.host)}:${running.port}/${DATABASE}`;
      const roles = dev.map((n) => `${n.name} ${n.role === "primary" ? "primary" : n.sync ? "sync standby" : "async standby"} :${n.port}`);
      say("");
      say("HeliosProxy demo is running.");
      say(`  connect:    psql ${url}`);
      say(`  dashboard:  http://${connectHost(admin.host)}:${adminPort}/`);
      say(`  nodes:      ${roles.join(", ")}`);
      say(`  data:       ${cluster.baseDir} (proxy config: ${path})`);
      say(`  try:        psql ${url} -c 'SELECT inet_server_port(), count(*) FROM accounts'   # reads go to the standbys`);
      say(`              psql ${url} -c "INSERT INTO accounts (owner) VALUES ('me') RETURNING inet_server_port()"   # writes to the primary`);
      say("Press Ctrl-C to stop: the proxy stops and the cluster is removed.");
    } catch (e) {
      process.stderr.write(`heliosproxy demo: ${(e as Error).message}\n`);
      await shutdown("failed", 1);
    }
  },
});
