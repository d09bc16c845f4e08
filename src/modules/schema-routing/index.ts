// Schema routing module: reads of chosen tables/schemas, cold data and workload classes (analytics, vector, OLTP) go to node groups.

import { HOOKS_API_VERSION, type ModuleHost, type ProxyModule, type ShowResult } from "../../core/hooks.ts";
import { clock } from "../../util/clock.ts";
import { loadParser } from "../../sql/classify.ts";
import { config, parseSettings, WORKLOAD_CLASSES, type SchemaRoutingSettings } from "./config.ts";
import { REASONS, SchemaRouter } from "./router.ts";

export type { SchemaRoutingSettings } from "./config.ts";

/** Every node a group names must be in [[nodes]]: known only once the cluster exists, so checked at start. */
export function checkGroupNodes(s: SchemaRoutingSettings, host: Pick<ModuleHost, "nodes">): void {
  const known = host.nodes().map((n) => n.name);
  for (const [group, nodes] of Object.entries(s.groups)) {
    for (const n of nodes) {
      if (!known.includes(n)) throw new Error(`schema_routing.groups.${group}: node ${JSON.stringify(n)} is not in [[nodes]] (nodes: ${known.join(", ")})`);
    }
  }
}

const secs = (ms: number) => Math.round(ms) / 1000;

/** GET /schema-routing: the configuration, decisions so far and table temperatures. */
export function report(r: SchemaRouter): Record<string, unknown> {
  const s = r.settings;
  const now = clock.now;
  const t = r.temperatures;
  return {
    groups: s.groups,
    default_schema: s.default_schema,
    rules: s.rules.map((rule, i) => ({ ...rule, decisions: r.ruleDecisions[i] })),
    workloads: Object.fromEntries(WORKLOAD_CLASSES.filter((c) => s.workloads[c] !== undefined).map((c) => [c, { group: s.workloads[c], decisions: r.decisions[REASONS.indexOf(c)] }])),
    temperature: {
      ...s.temperature,
      tables: t === null ? [] : [...t.map.values()].filter((x) => x.reads > 0).sort((a, b) => (a.name < b.name ? -1 : 1)).map((x) => ({
        table: x.name,
        reads: x.reads,
        idle_secs: secs(now - x.lastRead),
        state: t.isCold(x, now) ? "cold" : "hot",
      })),
    },
    decisions: Object.fromEntries(REASONS.map((reason, i) => [reason, r.decisions[i]])),
    cache: { texts: r.cacheSize(), hits: r.hits, misses: r.misses },
  };
}

function groupNodes(s: SchemaRoutingSettings, group: string): string {
  return (s.groups[group] ?? [group]).join(",");
}

/** SHOW SCHEMA_ROUTING: one row per way a read can be routed, with its group, nodes and count. */
export function showDecisions(r: SchemaRouter): ShowResult {
  const s = r.settings;
  const rows: (string | number)[][] = s.rules.map((rule, i) => [`rule ${i}: ${[...rule.tables, ...rule.schemas.map((x) => x + ".*")].join(" ")}`, rule.group, groupNodes(s, rule.group), r.ruleDecisions[i]!]);
  const cold = s.temperature.cold_group;
  if (cold !== "") {
    rows.push(["cold table", cold, groupNodes(s, cold), r.decisions[REASONS.indexOf("cold_rule")]!]);
    rows.push(["cold observed", cold, groupNodes(s, cold), r.decisions[REASONS.indexOf("cold_observed")]!]);
  }
  for (const c of WORKLOAD_CLASSES) {
    const g = s.workloads[c];
    if (g !== undefined) rows.push([`workload ${c}`, g, groupNodes(s, g), r.decisions[REASONS.indexOf(c)]!]);
  }
  rows.push(["none", "", "", r.decisions[REASONS.indexOf("none")]!]);
  rows.push(["not a read", "", "", r.decisions[REASONS.indexOf("not_read")]!]);
  rows.push(["in a transaction", "", "", r.decisions[REASONS.indexOf("in_transaction")]!]);
  rows.push(["routing hint", "", "", r.decisions[REASONS.indexOf("hinted")]!]);
  return { columns: ["decision", "group", "nodes", "requests"], rows };
}

/** SHOW SCHEMA_ROUTING_TABLES: tables seen in reads, their read count, idle seconds and temperature. */
export function showTables(r: SchemaRouter): ShowResult {
  const t = r.temperatures;
  const now = clock.now;
  const rows = t === null ? [] : [...t.map.values()].filter((x) => x.reads > 0).sort((a, b) => (a.name < b.name ? -1 : 1)).map((x) => [x.name, x.reads, secs(now - x.lastRead), t.isCold(x, now) ? "cold" : "hot"]);
  return { columns: ["table", "reads", "idle_secs", "state"], rows };
}

const schemaRouting: ProxyModule<SchemaRoutingSettings> = {
  name: "schema_routing",
  feature: "schema-routing",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,

  config,
  configure: parseSettings,

  async start(settings, host) {
    checkGroupNodes(settings, host);
    // Routed reads are checked for writes by the parser even when the automatic split is off.
    await loadParser();
    const router = new SchemaRouter(settings, clock);
    host.addRoute("GET", "/schema-routing", { summary: "Schema routing: groups, rules, workloads and table temperatures, with the decisions each made", returns: "The routing report" }, () => Response.json(report(router)));
    host.addShow("schema_routing", () => showDecisions(router));
    host.addShow("schema_routing_tables", () => showTables(router));
    return {
      onQuery: (q) => router.decide(q),
    };
  },
};

export default schemaRouting;
