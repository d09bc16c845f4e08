// `heliosproxy health [--admin URL] [--live]`: asks a running proxy's /readyz (or /livez) and exits 0 when it answers 200, else 1.

import { defineCommand } from "citty";
import { parseAddress } from "../config/schema.ts";

/** Where the admin API is reachable from this host: a wildcard bind is asked on loopback. */
export function adminUrlFor(address: string): string | null {
  const a = parseAddress(address);
  if (!a) return null;
  const host = a.host === "0.0.0.0" || a.host === "" ? "127.0.0.1" : a.host === "::" ? "::1" : a.host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${a.port}`;
}

/** The admin URL: --admin, else the config's admin_address (--config or $HELIOSPROXY_CONFIG), else the default. */
async function resolveAdmin(admin: string | undefined, config: string | undefined): Promise<string> {
  if (admin) return /^https?:\/\//.test(admin) ? admin : `http://${admin}`;
  const path = config || process.env.HELIOSPROXY_CONFIG;
  if (!path) return "http://127.0.0.1:9090";
  const { ConfigError, loadConfig } = await import("../config/load.ts");
  try {
    const url = adminUrlFor(loadConfig(path).proxy.admin_address);
    if (url !== null) return url;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
  }
  process.stderr.write("heliosproxy health: cannot tell the admin address from the config; pass --admin URL\n");
  process.exit(1);
}

export default defineCommand({
  meta: { name: "health", description: "Exit 0 when a running proxy is ready (GET /readyz; --live: /livez), else 1" },
  args: {
    admin: { type: "string", valueHint: "URL", description: "Admin API base URL (default: the config's admin_address, else http://127.0.0.1:9090)" },
    config: { type: "string", alias: "c", valueHint: "FILE", description: "Config whose admin_address to ask (default: $HELIOSPROXY_CONFIG)" },
    live: { type: "boolean", description: "Ask /livez (the process answers) instead of /readyz" },
    timeout: { type: "string", default: "3", valueHint: "SECS", description: "Give up after this many seconds" },
  },
  async run({ args }) {
    const secs = Number(args.timeout);
    if (!Number.isFinite(secs) || secs <= 0 || secs > 300) {
      process.stderr.write(`heliosproxy health: --timeout: expected seconds between 0 and 300, got ${JSON.stringify(args.timeout)}\n`);
      process.exit(1);
    }
    const base = await resolveAdmin(args.admin, args.config);
    const url = `${base.replace(/\/+$/, "")}${args.live ? "/livez" : "/readyz"}`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(secs * 1000) });
      const body = (await res.text()).trim();
      process.stdout.write(`${url}: ${res.status} ${body}\n`);
      process.exit(res.status === 200 ? 0 : 1);
    } catch (e) {
      const why = (e as Error).name === "TimeoutError" ? `no answer within ${secs} s` : (e as Error).message;
      process.stdout.write(`${url}: ${why}\n`);
      process.exit(1);
    }
  },
});
