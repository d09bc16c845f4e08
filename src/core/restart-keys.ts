// Settings a reload cannot apply to a running proxy (bound at start): named in a warning when a reload changes them.

import type { HeliosConfig } from "../config/types.ts";

/** Flat config keys (as SHOW CONFIG names them) that only take effect after a restart. */
export const RESTART_KEYS = ["proxy.listen_address", "proxy.admin_address"] as const;

/** The restart-only keys whose value differs between the running and the reloaded config, as "key: old -> new". */
export function restartOnlyChanges(running: HeliosConfig, next: HeliosConfig): string[] {
  const out: string[] = [];
  for (const key of RESTART_KEYS) {
    const [section, field] = key.split(".") as ["proxy", keyof HeliosConfig["proxy"]];
    const before = running[section][field];
    const after = next[section][field];
    if (before !== after) out.push(`${key}: ${String(before)} -> ${String(after)}`);
  }
  return out;
}
