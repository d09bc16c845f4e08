// GraphQL gateway module: its [graphql_gateway] config slice and GraphQL query checks (depth limit).

import { Kind, parse, type SelectionSetNode } from "graphql";
import { HOOKS_API_VERSION, ModuleConfigError, type ProxyModule } from "../../core/hooks.ts";
import { parseAddress } from "../../config/schema.ts";

/** Present in a binary exactly when this module is compiled in (the build test looks for it). */
export const MODULE_MARKER = "HELIOS_MODULE_MARKER_graphql_gateway";

export interface GraphqlGatewaySettings {
  enabled: boolean;
  /** "host:port" the GraphQL HTTP endpoint listens on. */
  listen_address: string;
  /** Deepest selection nesting a query may have. */
  max_depth: number;
}

const DEFAULTS: GraphqlGatewaySettings = {
  enabled: true,
  listen_address: "127.0.0.1:8080",
  max_depth: 10,
};

export interface GraphqlGatewayModule extends ProxyModule<GraphqlGatewaySettings> {
  readonly marker: string;
  /** Selection depth of a GraphQL document; throws the library's GraphQLError on bad syntax. */
  queryDepth(query: string): number;
}

function selectionDepth(set: SelectionSetNode | undefined): number {
  if (set === undefined) return 0;
  let deepest = 0;
  for (const sel of set.selections) {
    const d = sel.kind === Kind.FRAGMENT_SPREAD ? 1 : selectionDepth(sel.selectionSet);
    if (d > deepest) deepest = d;
  }
  return deepest + 1;
}

const graphqlGateway: GraphqlGatewayModule = {
  name: "graphql_gateway",
  feature: "graphql-gateway",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,
  marker: MODULE_MARKER,

  configure(section) {
    const out = { ...DEFAULTS };
    for (const [key, value] of Object.entries(section)) {
      switch (key) {
        case "enabled":
          if (typeof value !== "boolean") throw new ModuleConfigError(key, `expected true or false, got ${JSON.stringify(value)}`);
          out.enabled = value;
          break;
        case "listen_address":
          if (typeof value !== "string" || parseAddress(value) === undefined)
            throw new ModuleConfigError(key, `expected "host:port" with port 1..65535, got ${JSON.stringify(value)}`);
          out.listen_address = value;
          break;
        case "max_depth":
          if (typeof value !== "number" || !Number.isInteger(value) || value < 1)
            throw new ModuleConfigError(key, `expected an integer >= 1, got ${JSON.stringify(value)}`);
          out.max_depth = value;
          break;
        default:
          throw new ModuleConfigError(key, "unknown key (expected enabled, listen_address, max_depth)");
      }
    }
    return out;
  },

  start() {
    return {};
  },

  queryDepth(query) {
    let deepest = 0;
    for (const def of parse(query).definitions) {
      if (def.kind === Kind.OPERATION_DEFINITION || def.kind === Kind.FRAGMENT_DEFINITION) {
        const d = selectionDepth(def.selectionSet);
        if (d > deepest) deepest = d;
      }
    }
    return deepest;
  },
};

export default graphqlGateway;
