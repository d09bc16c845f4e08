// Feature registry: the only reader of the FEATURE_* compile-time constants; maps config sections to features and modules.

import type { ProxyModule } from "../core/hooks.ts";

// Set per profile by `scripts/build.ts` (`--define FEATURE_X=true|false`) and to true for
// development and `bun test` by bunfig.toml. When nothing defines a flag (bun run from outside
// the project directory) it counts as compiled in, like a dev build.
declare const FEATURE_POOL_MODES: boolean;
declare const FEATURE_HA_TR: boolean;
declare const FEATURE_QUERY_CACHE: boolean;
declare const FEATURE_ROUTING_HINTS: boolean;
declare const FEATURE_LAG_ROUTING: boolean;
declare const FEATURE_QUERY_REWRITING: boolean;
declare const FEATURE_QUERY_ANALYTICS: boolean;
declare const FEATURE_SCHEMA_ROUTING: boolean;
declare const FEATURE_AUTH_PROXY: boolean;
declare const FEATURE_RATE_LIMITING: boolean;
declare const FEATURE_CIRCUIT_BREAKER: boolean;
declare const FEATURE_MULTI_TENANCY: boolean;
declare const FEATURE_WASM_PLUGINS: boolean;
declare const FEATURE_GRAPHQL_GATEWAY: boolean;
declare const FEATURE_DISTRIBCACHE: boolean;
declare const FEATURE_POSTGRES_TOPOLOGY: boolean;
declare const FEATURE_HELIOSDB_TOPOLOGY: boolean;
declare const FEATURE_OBSERVABILITY: boolean;
declare const BUILD_PROFILE: string;

// Each test is written out in full so the bundler folds it to a literal and drops dead branches.
const FLAGS: Readonly<Record<string, boolean>> = {
  "pool-modes": typeof FEATURE_POOL_MODES === "undefined" || FEATURE_POOL_MODES,
  "ha-tr": typeof FEATURE_HA_TR === "undefined" || FEATURE_HA_TR,
  "query-cache": typeof FEATURE_QUERY_CACHE === "undefined" || FEATURE_QUERY_CACHE,
  "routing-hints": typeof FEATURE_ROUTING_HINTS === "undefined" || FEATURE_ROUTING_HINTS,
  "lag-routing": typeof FEATURE_LAG_ROUTING === "undefined" || FEATURE_LAG_ROUTING,
  "query-rewriting": typeof FEATURE_QUERY_REWRITING === "undefined" || FEATURE_QUERY_REWRITING,
  "query-analytics": typeof FEATURE_QUERY_ANALYTICS === "undefined" || FEATURE_QUERY_ANALYTICS,
  "schema-routing": typeof FEATURE_SCHEMA_ROUTING === "undefined" || FEATURE_SCHEMA_ROUTING,
  "auth-proxy": typeof FEATURE_AUTH_PROXY === "undefined" || FEATURE_AUTH_PROXY,
  "rate-limiting": typeof FEATURE_RATE_LIMITING === "undefined" || FEATURE_RATE_LIMITING,
  "circuit-breaker": typeof FEATURE_CIRCUIT_BREAKER === "undefined" || FEATURE_CIRCUIT_BREAKER,
  "multi-tenancy": typeof FEATURE_MULTI_TENANCY === "undefined" || FEATURE_MULTI_TENANCY,
  "wasm-plugins": typeof FEATURE_WASM_PLUGINS === "undefined" || FEATURE_WASM_PLUGINS,
  "graphql-gateway": typeof FEATURE_GRAPHQL_GATEWAY === "undefined" || FEATURE_GRAPHQL_GATEWAY,
  distribcache: typeof FEATURE_DISTRIBCACHE === "undefined" || FEATURE_DISTRIBCACHE,
  "postgres-topology": typeof FEATURE_POSTGRES_TOPOLOGY === "undefined" || FEATURE_POSTGRES_TOPOLOGY,
  "heliosdb-topology": typeof FEATURE_HELIOSDB_TOPOLOGY === "undefined" || FEATURE_HELIOSDB_TOPOLOGY,
  observability: typeof FEATURE_OBSERVABILITY === "undefined" || FEATURE_OBSERVABILITY,
};

/** Every feature flag, in the order of the product's table. */
export const FEATURE_NAMES: readonly string[] = Object.keys(FLAGS);

/** Pseudo-feature of sections that belong to the always-present core. */
export const CORE = "core";

/**
 * Top-level config sections owned by modules (or by optional core parts) -> the feature that
 * provides them. Section names use underscores; feature names use dashes.
 */
export const MODULE_SECTIONS: Readonly<Record<string, string>> = {
  transaction_replay: "ha-tr",
  query_cache: "query-cache",
  routing_hints: "routing-hints",
  lag_routing: "lag-routing",
  query_rewriting: "query-rewriting",
  query_analytics: "query-analytics",
  schema_routing: "schema-routing",
  auth_proxy: "auth-proxy",
  rate_limiting: "rate-limiting",
  circuit_breaker: "circuit-breaker",
  multi_tenancy: "multi-tenancy",
  wasm_plugins: "wasm-plugins",
  graphql_gateway: "graphql-gateway",
  distribcache: "distribcache",
  observability: "observability",
  tracing: "observability",
};

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
  return FEATURE_NAMES.map((name) => ({ name, enabled: FLAGS[name] === true }));
}

/** Whether a feature (dash form, e.g. "query-cache", or "core") is in this build. */
export function isFeatureCompiled(feature: string): boolean {
  return feature === CORE || FLAGS[feature] === true;
}

/** The feature behind a top-level config section, or undefined if the section is not a module's. */
export function moduleSectionFeature(section: string): string | undefined {
  return Object.hasOwn(MODULE_SECTIONS, section) ? MODULE_SECTIONS[section] : undefined;
}

/** The feature behind a topology provider, or undefined for an unknown provider. */
export function topologyProviderFeature(provider: string): string | undefined {
  return Object.hasOwn(TOPOLOGY_PROVIDERS, provider) ? TOPOLOGY_PROVIDERS[provider] : undefined;
}

// Module implementations, loaded on first use. Each entry sits behind its flag so a disabled
// module (and every library only it imports) is absent from the compiled binary.
const LOADERS: Record<string, () => ProxyModule> = {};
if (typeof FEATURE_HA_TR === "undefined" || FEATURE_HA_TR) {
  LOADERS.transaction_replay = () => require("./transaction-replay/index.ts").default as ProxyModule;
}
if (typeof FEATURE_LAG_ROUTING === "undefined" || FEATURE_LAG_ROUTING) {
  LOADERS.lag_routing = () => require("./lag-routing/index.ts").default as ProxyModule;
}
if (typeof FEATURE_ROUTING_HINTS === "undefined" || FEATURE_ROUTING_HINTS) {
  LOADERS.routing_hints = () => require("./routing-hints/index.ts").default as ProxyModule;
}
if (typeof FEATURE_QUERY_ANALYTICS === "undefined" || FEATURE_QUERY_ANALYTICS) {
  LOADERS.query_analytics = () => require("./query-analytics/index.ts").default as ProxyModule;
}
if (typeof FEATURE_SCHEMA_ROUTING === "undefined" || FEATURE_SCHEMA_ROUTING) {
  LOADERS.schema_routing = () => require("./schema-routing/index.ts").default as ProxyModule;
}
if (typeof FEATURE_GRAPHQL_GATEWAY === "undefined" || FEATURE_GRAPHQL_GATEWAY) {
  LOADERS.graphql_gateway = () => require("./graphql-gateway/index.ts").default as ProxyModule;
}
if (typeof FEATURE_OBSERVABILITY === "undefined" || FEATURE_OBSERVABILITY) {
  LOADERS.tracing = () => require("./observability/index.ts").default as ProxyModule;
}

const loaded = new Map<string, ProxyModule>();

/** The module implementing a config section, if this build has one. */
export function moduleFor(section: string): ProxyModule | undefined {
  let mod = loaded.get(section);
  if (mod === undefined) {
    const load = LOADERS[section];
    if (load === undefined) return undefined;
    mod = load();
    loaded.set(section, mod);
  }
  return mod;
}

/** Section names of the module implementations present in this build. */
export function availableModules(): string[] {
  return Object.keys(LOADERS);
}
