// `heliosproxy demo`: a local primary + sync standby + async standby with the proxy in front (config/demo.toml), or one embedded PGlite node without server binaries; Ctrl-C removes it all.

import { defineCommand } from "citty";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import DEMO_TOML from "../../config/demo.toml" with { type: "text" };
import { ConfigError, loadConfig, parseConfig } from "../config/load.ts";
import { parseAddress } from "../config/schema.ts";
import type { HeliosConfig } from "../config/types.ts";
import { DevCluster, type StandbyKind } from "../devcluster/cluster.ts";
import { EmbeddedPg } from "../devcluster/embedded.ts";
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

/** What the proxy is put in front of: the cluster from the installed binaries, or one embedded PGlite node. */
interface DemoBackends {
  /** The banner's "mode:" line. */
  readonly mode: string;
  readonly baseDir: string;
  /** Primary first, then the standbys as in [[nodes]]. */
  readonly nodes: readonly { name: string; role: "primary" | "standby"; sync: boolean; host: string; port: number }[];
  setup(sql: string): Promise<void>;
  destroy(): Promise<void>;
  /** Suggested commands for the banner. */
  tryLines(url: string): string[];
}

async function clusterBackends(standbys: StandbyKind[]): Promise<DemoBackends> {
  say(`demo: building a local cluster with PostgreSQL from ${pgBinDir()}`);
  const cluster = await DevCluster.create({ standbys, onProgress: (l) => say(`demo: ${l}`) });
  try {
    say(`demo: creating database "${DATABASE}" with a sample table (accounts, 1000 rows)`);
    await cluster.createDatabase(DATABASE);
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
  const nodes = [cluster.primary(), ...cluster.standbys()];
  return {
    mode: `cluster: PostgreSQL from ${pgBinDir()}, a primary and ${standbys.length} streaming standby${standbys.length === 1 ? "" : "s"}`,
    baseDir: cluster.baseDir,
    nodes,
    setup: (sql) => cluster.setup(sql, DATABASE),
    destroy: () => cluster.destroy(),
    tryLines: (url) => [
      `psql ${url} -c 'SELECT inet_server_port(), count(*) FROM accounts'   # reads go to the standbys`,
      `psql ${url} -c "INSERT INTO accounts (owner) VALUES ('me') RETURNING inet_server_port()"   # writes to the primary`,
    ],
  };
}

async function embeddedBackends(): Promise<DemoBackends> {
  const pg = await EmbeddedPg.start({ port: freePort(), onProgress: (l) => say(`demo: ${l}`) });
  say(`demo: creating a sample table (accounts, 1000 rows)`);
  return {
    mode: `embedded: ${pg.version.replace(/ on wasm32.*$/, "")} in this process, one node (no standbys: replication, failover and read/write split are not shown)`,
    baseDir: pg.baseDir,
    nodes: [{ name: "node1", role: "primary", sync: false, host: pg.host, port: pg.port }],
    setup: (sql) => pg.setup(sql),
    destroy: () => pg.destroy(),
    tryLines: (url) => [
      `psql ${url} -c 'SELECT count(*), sum(balance) FROM accounts'`,
      `psql ${url} -c "INSERT INTO accounts (owner) VALUES ('me') RETURNING id"`,
    ],
  };
}

/** Embedded when asked, or when no PostgreSQL server binaries are installed (saying so). */
function wantsEmbedded(asked: boolean): boolean {
  if (asked) return true;
  try {
    pgBinDir();
    return false;
  } catch (e) {
    say(`demo: ${(e as Error).message.split("\n")[0]}`);
    say("demo: running an embedded PostgreSQL (PGlite) instead");
    return true;
  }
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
    embedded: {
      type: "boolean",
      description: "One embedded PGlite node instead of a cluster from the installed PostgreSQL (the default when none is installed; also HELIOSPROXY_DEMO_EMBEDDED=1)",
    },
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
    const embedded = wantsEmbedded(args.embedded === true || process.env.HELIOSPROXY_DEMO_EMBEDDED === "1");

    let backends: DemoBackends | null = null;
    let stopProxy: (() => Promise<void>) | null = null;
    let stopping = false;
    const shutdown = async (why: string, code: number) => {
      if (stopping) {
        say("demo: still stopping...");
        return;
      }
      stopping = true;
      say(`demo: ${why}: stopping the proxy and removing the ${embedded ? "embedded database" : "cluster"}`);
      try {
        await stopProxy?.();
      } finally {
        await backends?.destroy();
        say("demo: done");
        process.exit(code);
      }
    };
    process.on("SIGINT", () => void shutdown("interrupted", 0));
    process.on("SIGTERM", () => void shutdown("terminated", 0));

    try {
      backends = embedded ? await embeddedBackends() : await clusterBackends(standbys);
      if (stopping) return;
      await backends.setup(SAMPLE_SQL);

      // The effective config: the demo settings with the nodes' and the proxy's ports filled in.
      const raw = parseToml(text) as { proxy?: Record<string, unknown>; pool?: Record<string, unknown>; nodes: Record<string, unknown>[] };
      raw.proxy = { ...raw.proxy, listen_address: `${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${port}`, admin_address: `${admin.host.includes(":") ? `[${admin.host}]` : admin.host}:${adminPort}` };
      const dev = backends.nodes;
      let next = 1;
      raw.nodes.forEach((n, i) => {
        const node = base.nodes[i]!.role === "primary" ? dev[0]! : dev[next++];
        if (node === undefined) return;
        n.host = node.host;
        n.port = node.port;
      });
      if (embedded) {
        // One node; PGlite runs one statement at a time, so the proxy's pool holds one server connection and queues the rest.
        raw.nodes = raw.nodes.filter((_, i) => base.nodes[i]!.role === "primary");
        raw.pool = { ...raw.pool, max_connections: 1, min_connections: 0 };
      }
      const path = join(backends.baseDir, "proxy.toml");
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
      say(`  mode:       ${backends.mode}`);
      say(`  connect:    psql ${url}`);
      say(`  dashboard:  http://${connectHost(admin.host)}:${adminPort}/`);
      say(`  nodes:      ${roles.join(", ")}`);
      say(`  data:       ${embedded ? "in memory" : backends.baseDir} (proxy config: ${path})`);
      backends.tryLines(url).forEach((l, i) => say(`  ${i === 0 ? "try:" : "    "}        ${l}`));
      say(`Press Ctrl-C to stop: the proxy stops and the ${embedded ? "embedded database is" : "cluster is"} removed.`);
    } catch (e) {
      process.stderr.write(`heliosproxy demo: ${(e as Error).message}\n`);
      await shutdown("failed", 1);
    }
  },
});
