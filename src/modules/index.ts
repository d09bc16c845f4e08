// Feature registry: one row per feature flag (its profiles, config section and loader); the only reader of the FEATURE_* constants.

import type { ProxyModule } from "../core/hooks.ts";
import { moduleSectionSpec, type SectionSpec } from "../config/schema.ts";

// Set per profile by `scripts/build.ts` (`--define FEATURE_X=true|false`, one per row below).
// Development and `bun test` define none: a flag nothing defines counts as compiled in.
declare const FEATURE_POOL_MODES: boolean;
declare const FEATURE_HA_TR: boolean;
declare const FEATURE_QUERY_CACHE: boolean;
declare const FEATURE_ROUTING_HINTS: boolean;
declare const FEATURE_LAG_ROUTING: boolean;
declare const FEATURE_QUERY_ANALYTICS: boolean;
declare const FEATURE_SCHEMA_ROUTING: boolean;
declare const FEATURE_POSTGRES_TOPOLOGY: boolean;
declare const FEATURE_HELIOSDB_TOPOLOGY: boolean;
declare const FEATURE_OBSERVABILITY: boolean;
declare const BUILD_PROFILE: string;

/** Build profiles besides "all" (which has every row). */
export type Profile = "default" | "ha";

/** One feature flag. A module lands by adding its folder and its row here (and nothing else). */
export interface FeatureRow {
  /** Flag name ("lag-routing"); its build-time constant is FEATURE_LAG_ROUTING. */
  readonly feature: string;
  /** Profiles besides "all" that compile it in. */
  readonly profiles: readonly Profile[];
  /** Whether this binary has it. Written out per row so the bundler folds it to a literal. */
  readonly compiled: boolean;
  /** Top-level config section of its module; absent for core parts behind a flag (topology providers, pool modes). */
  readonly section?: string;
  /** Loads the module; absent when compiled out, so the module and every library only it imports are not in the binary. */
  readonly load?: () => ProxyModule;
}

// Each test is written out in full (`typeof X === "undefined" || X`) so the bundler folds it to a
// literal and drops the loader of a module left out of the profile.
export const FEATURES: readonly FeatureRow[] = [
  {
    feature: "pool-modes",
    profiles: ["default", "ha"],
    compiled: typeof FEATURE_POOL_MODES === "undefined" || FEATURE_POOL_MODES,
  },
  {
    feature: "ha-tr",
    profiles: ["ha"],
    compiled: typeof FEATURE_HA_TR === "undefined" || FEATURE_HA_TR,
    section: "transaction_replay",
    load: typeof FEATURE_HA_TR === "undefined" || FEATURE_HA_TR ? () => require("./transaction-replay/index.ts").default : undefined,
  },
  {
    feature: "query-cache",
    profiles: [],
    compiled: typeof FEATURE_QUERY_CACHE === "undefined" || FEATURE_QUERY_CACHE,
    section: "query_cache",
    load: typeof FEATURE_QUERY_CACHE === "undefined" || FEATURE_QUERY_CACHE ? () => require("./query-cache/index.ts").default : undefined,
  },
  {
    feature: "routing-hints",
    profiles: ["default", "ha"],
    compiled: typeof FEATURE_ROUTING_HINTS === "undefined" || FEATURE_ROUTING_HINTS,
    section: "routing_hints",
    load: typeof FEATURE_ROUTING_HINTS === "undefined" || FEATURE_ROUTING_HINTS ? () => require("./routing-hints/index.ts").default : undefined,
  },
  {
    feature: "lag-routing",
    profiles: ["ha"],
    compiled: typeof FEATURE_LAG_ROUTING === "undefined" || FEATURE_LAG_ROUTING,
    section: "lag_routing",
    load: typeof FEATURE_LAG_ROUTING === "undefined" || FEATURE_LAG_ROUTING ? () => require("./lag-routing/index.ts").default : undefined,
  },
  {
    feature: "query-analytics",
    profiles: ["default", "ha"],
    compiled: typeof FEATURE_QUERY_ANALYTICS === "undefined" || FEATURE_QUERY_ANALYTICS,
    section: "query_analytics",
    load: typeof FEATURE_QUERY_ANALYTICS === "undefined" || FEATURE_QUERY_ANALYTICS ? () => require("./query-analytics/index.ts").default : undefined,
  },
  {
    feature: "schema-routing",
    profiles: [],
    compiled: typeof FEATURE_SCHEMA_ROUTING === "undefined" || FEATURE_SCHEMA_ROUTING,
    section: "schema_routing",
    load: typeof FEATURE_SCHEMA_ROUTING === "undefined" || FEATURE_SCHEMA_ROUTING ? () => require("./schema-routing/index.ts").default : undefined,
  },
  {
    feature: "observability",
    profiles: ["default", "ha"],
    compiled: typeof FEATURE_OBSERVABILITY === "undefined" || FEATURE_OBSERVABILITY,
    section: "tracing",
    load: typeof FEATURE_OBSERVABILITY === "undefined" || FEATURE_OBSERVABILITY ? () => require("./observability/index.ts").default : undefined,
  },
  {
    feature: "postgres-topology",
    profiles: ["default", "ha"],
    compiled: typeof FEATURE_POSTGRES_TOPOLOGY === "undefined" || FEATURE_POSTGRES_TOPOLOGY,
  },
  {
    feature: "heliosdb-topology",
    profiles: ["ha"],
    compiled: typeof FEATURE_HELIOSDB_TOPOLOGY === "undefined" || FEATURE_HELIOSDB_TOPOLOGY,
  },
];

/**
 * Config sections of features the product plans and this version does not implement: a config
 * naming one fails ("not implemented") unless it says only `enabled = false`. A module that lands
 * moves its section from here to its row.
 */
export const UNBUILT_SECTIONS: Readonly<Record<string, string>> = {
  query_rewriting: "query-rewriting",
  auth_proxy: "auth-proxy",
  rate_limiting: "rate-limiting",
  circuit_breaker: "circuit-breaker",
  multi_tenancy: "multi-tenancy",
  wasm_plugins: "wasm-plugins",
  graphql_gateway: "graphql-gateway",
  distribcache: "distribcache",
};

/** Every feature flag, in the order of the rows. */
export const FEATURE_NAMES: readonly string[] = FEATURES.map((r) => r.feature);

/** Pseudo-feature of sections that belong to the always-present core. */
export const CORE = "core";

const BY_SECTION = new Map(FEATURES.filter((r) => r.section !== undefined).map((r) => [r.section!, r]));
const BY_FEATURE = new Map(FEATURES.map((r) => [r.feature, r]));

/** Sections of every module row (compiled in or not). */
export const MODULE_SECTION_NAMES: readonly string[] = [...BY_SECTION.keys()];

/** `[topology] provider = "..."` -> the feature that implements it. */
export const TOPOLOGY_PROVIDERS: Readonly<Record<string, string>> = {
  manual: CORE,
  patroni: CORE,
  postgres: "postgres-topology",
  heliosdb: "heliosdb-topology",
};

/** The profile this binary was built with ("dev" when run from source). */
export function buildProfile(): string {
  return typeof BUILD_PROFILE === "undefined" ? "dev" : BUILD_PROFILE;
}

export function compiledFeatures(): { name: string; enabled: boolean }[] {
  return FEATURES.map((r) => ({ name: r.feature, enabled: r.compiled }));
}

/** Whether a feature (dash form, e.g. "lag-routing", or "core") is in this build. */
export function isFeatureCompiled(feature: string): boolean {
  return feature === CORE || BY_FEATURE.get(feature)?.compiled === true;
}

/** The row of a module's config section, or undefined when no module owns it. */
export function moduleRow(section: string): FeatureRow | undefined {
  return BY_SECTION.get(section);
}

/** The feature behind a top-level config section (implemented or not), or undefined if the section is not a module's. */
export function moduleSectionFeature(section: string): string | undefined {
  return BY_SECTION.get(section)?.feature ?? (Object.hasOwn(UNBUILT_SECTIONS, section) ? UNBUILT_SECTIONS[section] : undefined);
}

/** The feature behind a topology provider, or undefined for an unknown provider. */
export function topologyProviderFeature(provider: string): string | undefined {
  return Object.hasOwn(TOPOLOGY_PROVIDERS, provider) ? TOPOLOGY_PROVIDERS[provider] : undefined;
}

const loaded = new Map<string, ProxyModule>();

/** The module implementing a config section, if this build has one. Loaded on first use. */
export function moduleFor(section: string): ProxyModule | undefined {
  let mod = loaded.get(section);
  if (mod === undefined) {
    const load = BY_SECTION.get(section)?.load;
    if (load === undefined) return undefined;
    mod = load();
    loaded.set(section, mod);
  }
  return mod;
}

/** The full schema of a module's section (its fields plus `enabled`), if this build has the module. */
export function moduleSpec(section: string): SectionSpec | undefined {
  const mod = moduleFor(section);
  return mod === undefined ? undefined : moduleSectionSpec(mod.config);
}

/** Section names of the module implementations present in this build. */
export function availableModules(): string[] {
  return FEATURES.filter((r) => r.load !== undefined).map((r) => r.section!);
}
