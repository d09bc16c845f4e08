// Settings a reload cannot apply to a running proxy (bound at start): named in a warning when a reload changes them.

import type { HeliosConfig } from "./types.ts";

/** Flat config keys (as SHOW CONFIG names them) that only take effect after a restart. */
export const RESTART_KEYS = [
  "proxy.listen_address",
  "proxy.admin_address",
  // The fleet membership (lease, name, prefix) is made at start.
  "coordination.backend",
  "coordination.endpoints",
  "coordination.key_prefix",
  "coordination.lease_ttl_secs",
  "coordination.request_timeout_secs",
  "coordination.username",
  "coordination.password",
  "coordination.ca_file",
  "coordination.cert_file",
  "coordination.key_file",
  "coordination.proxy_name",
  "coordination.advertise_admin_url",
] as const;

/** The restart-only keys whose value differs between the running and the reloaded config, as "key: old -> new". */
export function restartOnlyChanges(running: HeliosConfig, next: HeliosConfig): string[] {
  const out: string[] = [];
  for (const key of RESTART_KEYS) {
    const [section, field] = key.split(".") as ["proxy" | "coordination", string];
    const before = (running[section] as unknown as Record<string, unknown>)[field];
    const after = (next[section] as unknown as Record<string, unknown>)[field];
    if (JSON.stringify(before) !== JSON.stringify(after)) out.push(`${key}: ${field === "password" ? "changed" : `${String(before)} -> ${String(after)}`}`);
  }
  return out;
}
