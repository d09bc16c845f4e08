// synchronous_standby_names as data: parse and write it, a standby's application_name, and whether a node could commit after promotion (pure).

/** A parsed synchronous_standby_names: FIRST n / ANY n over names ("*" matches any standby). */
export interface SyncSpec {
  readonly method: "FIRST" | "ANY";
  readonly num: number;
  readonly names: readonly string[];
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/**
 * Parse the setting as PostgreSQL does: "" (no synchronous replication: null), "s1, s2" (FIRST 1),
 * "2 (s1, s2)" (FIRST 2), "FIRST n (...)", "ANY n (...)". Names may be double-quoted. A string
 * that does not parse is returned as an error message.
 */
export function parseSyncNames(setting: string): SyncSpec | null | string {
  const s = setting.trim();
  if (s === "") return null;
  const m = /^(?:(FIRST|ANY)\s+)?(\d+)\s*\((.*)\)$/is.exec(s);
  const method = (m?.[1]?.toUpperCase() ?? "FIRST") as "FIRST" | "ANY";
  const num = m ? Number(m[2]) : 1;
  const list = m ? m[3]! : s;
  const names = splitNames(list);
  if (typeof names === "string") return `synchronous_standby_names ${JSON.stringify(setting)}: ${names}`;
  if (names.length === 0 || num < 1) return `synchronous_standby_names ${JSON.stringify(setting)}: no standby named`;
  return { method, num, names };
}

function splitNames(list: string): string[] | string {
  const out: string[] = [];
  let i = 0;
  const n = list.length;
  for (;;) {
    while (i < n && /\s/.test(list[i]!)) i++;
    if (i >= n) return out.length === 0 ? out : "a name is missing after a comma";
    let name = "";
    if (list[i] === '"') {
      const end = list.indexOf('"', i + 1);
      if (end < 0) return "an unterminated quoted name";
      name = list.slice(i + 1, end);
      i = end + 1;
    } else {
      const start = i;
      while (i < n && list[i] !== "," && !/\s/.test(list[i]!)) i++;
      name = list.slice(start, i);
    }
    out.push(name);
    while (i < n && /\s/.test(list[i]!)) i++;
    if (i >= n) return out;
    if (list[i] !== ",") return `unexpected ${JSON.stringify(list.slice(i, i + 10))}`;
    i++;
  }
}

/** The setting text for `spec` (null: ""), names quoted when they need it. */
export function formatSyncNames(spec: SyncSpec | null): string {
  if (spec === null || spec.names.length === 0) return "";
  const names = spec.names.map((n) => (n === "*" || IDENT.test(n) ? n : `"${n.replaceAll('"', "")}"`));
  return `${spec.method} ${spec.num} (${names.join(", ")})`;
}

/** Does `name` in synchronous_standby_names match a standby's application_name (PostgreSQL compares without case)? */
export function namesMatch(listed: string, applicationName: string): boolean {
  return listed === "*" || listed.toLowerCase() === applicationName.toLowerCase();
}

/**
 * The application_name a standby streams with: from its primary_conninfo (keyword form or URI),
 * else its cluster_name, else PostgreSQL's default "walreceiver". Null when the conninfo is not readable.
 */
export function standbyApplicationName(conninfo: string | null, clusterName: string | null): string | null {
  if (conninfo === null) return null;
  let found: string | null = null;
  if (/^postgres(?:ql)?:\/\//i.test(conninfo.trim())) {
    const q = conninfo.indexOf("?");
    if (q >= 0) found = new URLSearchParams(conninfo.slice(q + 1)).get("application_name");
  } else {
    const re = /([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))/g;
    for (let m = re.exec(conninfo); m !== null; m = re.exec(conninfo)) {
      if (m[1] === "application_name") found = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3]!;
    }
  }
  if (found !== null && found !== "") return found;
  return clusterName !== null && clusterName !== "" ? clusterName : "walreceiver";
}

/**
 * Would a primary with `spec` acknowledge commits while `streamers` (application names) stream
 * from it? "" when it would; else which names it would wait for.
 */
export function syncShortfall(spec: SyncSpec | null, streamers: readonly string[]): string {
  if (spec === null) return "";
  const matched = new Set<string>();
  for (const s of streamers) if (spec.names.some((l) => namesMatch(l, s))) matched.add(s.toLowerCase());
  if (matched.size >= spec.num) return "";
  const missing = spec.names.filter((l) => l !== "*" && !streamers.some((s) => namesMatch(l, s)));
  return `needs ${spec.num} of (${spec.names.join(", ")}), ${matched.size} would stream${missing.length > 0 ? ` (${missing.join(", ")} would not)` : ""}`;
}

/**
 * What the controller sets on a new primary with standbys `streamers` (application names) in
 * mode remaining/strict: the old method and count where one is known (the count no larger than the
 * standbys there are), FIRST 1 otherwise. No standby: "" (remaining) or "*" (strict: wait for any).
 */
export function remainingSyncNames(previous: SyncSpec | null, streamers: readonly string[], strict: boolean): SyncSpec | null {
  const names = [...new Set(streamers)].sort();
  if (names.length === 0) return strict ? { method: previous?.method ?? "FIRST", num: 1, names: ["*"] } : null;
  return { method: previous?.method ?? "FIRST", num: Math.max(1, Math.min(previous?.num ?? 1, names.length)), names };
}
