// Command line: `heliosproxy [run] --config FILE`, `check-config`, `features`, `version`, `health`, `demo`.

import { defineCommand, runMain } from "citty";
import { ConfigError, loadConfig } from "../config/load.ts";
import type { HeliosConfig } from "../config/types.ts";
import { buildProfile, compiledFeatures } from "../modules/index.ts";
import { configureLogging, log } from "../util/log.ts";
import { watchParent } from "./parent-watch.ts";

const VERSION = (require("../../package.json") as { version: string }).version;

const configArg = {
  config: {
    type: "string",
    alias: "c",
    valueHint: "FILE",
    description: "Path of the TOML config (default: $HELIOSPROXY_CONFIG)",
  },
} as const;

function configPath(given: string | undefined): string {
  const path = given || process.env.HELIOSPROXY_CONFIG;
  if (!path) {
    process.stderr.write("heliosproxy: no config file: pass --config FILE (or set HELIOSPROXY_CONFIG)\n");
    process.exit(1);
  }
  return path;
}

/** Loads the config or prints why it cannot be used and exits 1. */
function loadOrExit(path: string): HeliosConfig {
  try {
    return loadConfig(path);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(e.message + "\n");
    process.exit(1);
  }
}

function summary(cfg: HeliosConfig): string {
  const { proxy, pool } = cfg;
  const lines = [
    `listen ${proxy.listen_address}, admin ${proxy.admin_address}`,
    `pool: ${pool.mode} mode, ${pool.min_connections}..${pool.max_connections} server connections per pool`,
    `load balancer: ${cfg.load_balancer.strategy}${cfg.load_balancer.read_write_split ? ", read/write split" : ""}`,
    `nodes: ${cfg.nodes.map((n) => `${n.name}=${n.host.includes(":") ? `[${n.host}]` : n.host}:${n.port} (${n.role}${n.sync ? ", sync" : ""})`).join(", ")}`,
    `users: ${cfg.users.length === 0 ? "none listed" : cfg.users.map((u) => u.name).join(", ")}; auth ${cfg.auth.method}`,
    `tls: clients ${cfg.tls.mode}, servers ${cfg.tls.server_sslmode}`,
    `modules: ${Object.keys(cfg.modules).join(", ") || "none"}`,
  ];
  return lines.map((l) => `  ${l}`).join("\n");
}

function versionLine(): string {
  return `heliosproxy ${VERSION} (profile: ${buildProfile()}, bun ${Bun.version})`;
}

const run = defineCommand({
  meta: { name: "run", description: "Start the proxy (the default command)" },
  args: configArg,
  async run({ args }) {
    const path = configPath(args.config);
    const cfg = loadOrExit(path);
    configureLogging(cfg.proxy.log_level, cfg.proxy.log_format);
    log.info("starting heliosproxy", { version: VERSION, profile: buildProfile(), config: cfg.source });
    const { startProxy } = await import("../proxy.ts");
    try {
      await startProxy(cfg, { configPath: path });
    } catch (e) {
      log.error("heliosproxy stopped on an error", { error: e });
      process.exit(1);
    }
  },
});

const checkConfig = defineCommand({
  meta: { name: "check-config", description: "Validate a config file and print a summary" },
  args: configArg,
  run({ args }) {
    const cfg = loadOrExit(configPath(args.config));
    process.stdout.write(`ok\n${summary(cfg)}\n`);
  },
});

const features = defineCommand({
  meta: { name: "features", description: "List the feature modules compiled into this binary" },
  run() {
    const rows = compiledFeatures().map((f) => `${f.name.padEnd(20)}${f.enabled ? "on" : "off"}`);
    process.stdout.write(`profile: ${buildProfile()}\n${rows.join("\n")}\n`);
  },
});

const version = defineCommand({
  meta: { name: "version", description: "Print the version and build profile" },
  run() {
    process.stdout.write(versionLine() + "\n");
  },
});

const main = defineCommand({
  meta: { name: "heliosproxy", version: VERSION, description: "PostgreSQL wire-protocol proxy" },
  args: configArg,
  default: "run",
  subCommands: {
    run,
    "check-config": checkConfig,
    features,
    version,
    health: () => import("./health.ts").then((m) => m.default),
    demo: () => import("./demo.ts").then((m) => m.default),
  },
});

watchParent();
await runMain(main);
