// The [query_cache] config section: keys, ranges and defaults, and the checks spanning keys.

import { ModuleConfigError } from "../../core/hooks.ts";
import { moduleConfig } from "../../config/schema.ts";

/** One `[[query_cache.rules]]` entry: what it matches (every non-empty key must) and what it decides. */
export interface CacheRule {
  /** A table the statement reads (unqualified name, as PostgreSQL folds it); "" = any. */
  table: string;
  /** The statement's fingerprint, as GET /queries shows it; "" = any. */
  fingerprint: string;
  /** The session's login user; "" = any. */
  user: string;
  /** Seconds an entry of a matching statement lives; 0 = the section's ttl_secs. */
  ttl_secs: number;
  /** false: never cache matching statements. */
  cache: boolean;
}

export interface QueryCacheSettings {
  enabled: boolean;
  /** "all": every cacheable statement; "allow_list": only statements matched by a rule or a `cache` hint. */
  mode: "all" | "allow_list";
  /** How invalidation learns of writes: "proxy" (writes through this proxy, TTL for the rest), "wal" (also every commit on the primary, from a logical replication stream). */
  invalidation: "proxy" | "wal";
  /** wal: the publication streamed (made FOR ALL TABLES in each database when missing). */
  wal_publication: string;
  /** wal: temporary slots are named this plus a random suffix. */
  wal_slot_prefix: string;
  /** wal: a stream silent this long counts as lost (the cache is flushed and bypassed until it runs again). */
  wal_timeout_secs: number;
  /** Longest life of an entry: the staleness bound for writes that bypass the proxy. */
  ttl_secs: number;
  /** Bytes of the hot tier (exact reply bytes). */
  l1_max_bytes: number;
  /** Bytes of the warm tier (compressed entries aged out of L1); 0: no warm tier. */
  l2_max_bytes: number;
  l2_compression: "zstd" | "gzip";
  /** A reply larger than this streams through uncached. */
  max_result_bytes: number;
  /** Functions never cached beside the built-in time-dependent and volatile ones. */
  deny_functions: string[];
  /** Functions that neither write nor vary with time or chance: statements calling them may be cached. */
  cacheable_functions: string[];
  /** Relation or function name -> the tables behind it (views, functions reading tables). */
  dependencies: Record<string, string[]>;
  /** Table -> other tables its writes reach (triggers, ON DELETE CASCADE). */
  cascades: Record<string, string[]>;
  /** Function name -> the tables it may write; a call of any other unknown function counts as a write to every table. */
  function_writes: Record<string, string[]>;
  rules: CacheRule[];
}

const MAX_BYTES = 2 ** 40;
const YEAR = 31_536_000;
const NAMES = { kind: "strings", doc: "Table names." } as const;

export const config = moduleConfig<QueryCacheSettings>("Result cache for read-only statements: L1 exact reply bytes, L2 compressed, invalidated by writes through the proxy (or every commit, from a logical replication stream) and TTL.", {
  mode: { kind: "enum", default: "all", values: ["all", "allow_list"], doc: "all: every cacheable statement; allow_list: only statements a rule or a /*+ cache */ hint names." },
  invalidation: { kind: "enum", default: "proxy", values: ["proxy", "wal"], doc: "proxy: writes through this proxy drop entries at commit, writes elsewhere are bounded by ttl_secs; wal: also every commit on the primary, read from a logical replication stream (wal_level = logical)." },
  wal_publication: { kind: "string", default: "heliosproxy_cache", doc: "wal: the publication streamed; created FOR ALL TABLES in each database the cache serves when missing (an existing one must be FOR ALL TABLES)." },
  wal_slot_prefix: { kind: "string", default: "heliosproxy_cache", doc: "wal: temporary replication slots (one per database, gone with the proxy's connection) are named this plus a random suffix." },
  wal_timeout_secs: { kind: "int", default: 5, min: 1, max: 3600, doc: "wal: a stream with no message for this long counts as lost: the cache is flushed and not used until it runs again." },
  ttl_secs: { kind: "int", default: 60, min: 1, max: YEAR, doc: "Longest life of an entry (the staleness bound for writes that bypass the proxy)." },
  l1_max_bytes: { kind: "int", default: 64 * 1024 * 1024, min: 4096, max: MAX_BYTES, doc: "Bytes of the hot tier (exact reply bytes)." },
  l2_max_bytes: { kind: "int", default: 256 * 1024 * 1024, min: 0, max: MAX_BYTES, doc: "Bytes of the warm tier, entries aged out of L1 kept compressed (0 = no warm tier)." },
  l2_compression: { kind: "enum", default: "zstd", values: ["zstd", "gzip"], doc: "Compression of the warm tier." },
  max_result_bytes: { kind: "int", default: 1024 * 1024, min: 64, max: 1 << 30, doc: "A reply larger than this streams through uncached." },
  deny_functions: { kind: "strings", default: [], doc: "Functions never cached, beside the built-in time-dependent and volatile ones." },
  cacheable_functions: { kind: "strings", default: [], doc: "Functions that neither write nor vary with time or chance: statements calling them may be cached." },
  dependencies: { kind: "map", item: NAMES, doc: "Function (or relation) name = [\"table\", ...]: tables it reads beside what the catalog shows, so their writes drop its entries." },
  cascades: { kind: "map", item: NAMES, doc: "Table = [\"table\", ...]: the tables its triggers write (a table with triggers otherwise counts as a write to everything)." },
  function_writes: { kind: "map", item: NAMES, doc: "Function = [\"table\", ...]: the tables it may write (any other unknown function counts as a write to every table)." },
  rules: {
    kind: "tables",
    doc: "[[query_cache.rules]]: statements matching every given key are cached with this TTL, or not at all.",
    fields: {
      table: { kind: "string", default: "", doc: "A table the statement reads (\"\" = any)." },
      fingerprint: { kind: "string", default: "", doc: "The statement's fingerprint, as GET /queries shows it (\"\" = any)." },
      user: { kind: "string", default: "", doc: "The session's login user (\"\" = any)." },
      ttl_secs: { kind: "int", default: 0, min: 0, max: YEAR, doc: "Life of matching entries (0 = ttl_secs of the section)." },
      cache: { kind: "bool", default: true, doc: "false: never cache matching statements." },
    },
  },
});

const lower = (names: readonly string[]) => names.map((n) => n.toLowerCase());
const lowerMap = (m: Readonly<Record<string, readonly string[]>>) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k.toLowerCase(), lower(v)]));

/** Checks beyond each key's own range, on the validated section; names folded to lower case. */
export function configure(section: Readonly<Record<string, unknown>>): QueryCacheSettings {
  const s = section as unknown as QueryCacheSettings;
  const ident = /^[a-z_][a-z0-9_]*$/;
  if (!ident.test(s.wal_publication) || s.wal_publication.length > 63) throw new ModuleConfigError("wal_publication", `expected a lower-case name of letters, digits and _ (at most 63), got "${s.wal_publication}"`);
  if (!ident.test(s.wal_slot_prefix) || s.wal_slot_prefix.length > 54) throw new ModuleConfigError("wal_slot_prefix", `expected a lower-case name of letters, digits and _ (at most 54: a 9-character suffix is added), got "${s.wal_slot_prefix}"`);
  if (s.max_result_bytes > s.l1_max_bytes) throw new ModuleConfigError("max_result_bytes", `expected at most l1_max_bytes (${s.l1_max_bytes}), got ${s.max_result_bytes}`);
  s.rules.forEach((r, i) => {
    if (r.table === "" && r.fingerprint === "" && r.user === "") throw new ModuleConfigError(`rules[${i}]`, "a rule needs table, fingerprint or user");
  });
  return {
    ...s,
    deny_functions: lower(s.deny_functions),
    cacheable_functions: lower(s.cacheable_functions),
    dependencies: lowerMap(s.dependencies),
    cascades: lowerMap(s.cascades),
    function_writes: lowerMap(s.function_writes),
    rules: s.rules.map((r) => ({ ...r, fingerprint: r.fingerprint.toLowerCase() })),
  };
}
