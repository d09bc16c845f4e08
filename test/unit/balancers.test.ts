// One conformance suite for every load-balancing strategy, plus the pure routing decision.

import { describe, expect, test } from "bun:test";
import type { NodeView } from "../../src/cluster/cluster.ts";
import { LatencyBased, LeastConnections, RoundRobin, makeBalancer, type Balancer, type LoadInfo } from "../../src/router/balancers.ts";
import { route, routeView } from "../../src/router/route.ts";
import { nodeView } from "../support/node-views.ts";

const node = nodeView;

const noLoad: LoadInfo = { active: () => 0 };

function spread(b: Balancer, nodes: NodeView[], n: number, load: LoadInfo = noLoad): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const picked = b.pick(nodes, load)!;
    counts.set(picked.name, (counts.get(picked.name) ?? 0) + 1);
  }
  return counts;
}

const strategies: [string, () => Balancer][] = [
  ["round_robin", () => new RoundRobin()],
  ["least_connections", () => new LeastConnections()],
  ["latency", () => new LatencyBased()],
];

for (const [name, make] of strategies) {
  describe(`balancer conformance: ${name}`, () => {
    test("picks one of the candidates, never something else", () => {
      const b = make();
      const c = [node("a"), node("b"), node("c")];
      for (let i = 0; i < 50; i++) expect(c).toContain(b.pick(c, noLoad)!);
    });
    test("a single candidate is always picked", () => {
      const b = make();
      const only = node("only");
      for (let i = 0; i < 10; i++) expect(b.pick([only], noLoad)!.name).toBe("only");
    });
    test("weight 0 is never picked; all weights 0 gives null", () => {
      const b = make();
      const c = [node("a", { weight: 0 }), node("b")];
      for (let i = 0; i < 30; i++) expect(b.pick(c, noLoad)!.name).toBe("b");
      expect(b.pick([node("x", { weight: 0 })], noLoad)).toBeNull();
    });
    test("equal candidates under equal load all get traffic", () => {
      const counts = spread(make(), [node("a"), node("b"), node("c")], 300);
      expect(counts.size).toBe(3);
    });
    test("the strategy is what makeBalancer returns for its name", () => {
      expect(makeBalancer(name as never).name).toBe(name as never);
    });
  });
}

describe("strategy specifics", () => {
  test("round robin honours weights exactly over a cycle", () => {
    const counts = spread(new RoundRobin(), [node("a", { weight: 3 }), node("b", { weight: 1 })], 400);
    expect(counts.get("a")).toBe(300);
    expect(counts.get("b")).toBe(100);
  });
  test("least connections prefers the idler node, per unit of weight", () => {
    const active: Record<string, number> = { a: 5, b: 1, c: 3 };
    const load: LoadInfo = { active: (n) => active[n]! };
    expect(new LeastConnections().pick([node("a"), node("b"), node("c")], load)!.name).toBe("b");
    expect(new LeastConnections().pick([node("a", { weight: 10 }), node("b")], load)!.name).toBe("a");
  });
  test("latency prefers the fastest node and tries unmeasured ones first", () => {
    const fast = node("fast", { latencyMs: 0.5 });
    const slow = node("slow", { latencyMs: 4 });
    expect(new LatencyBased().pick([slow, fast])!.name).toBe("fast");
    expect(new LatencyBased().pick([slow, fast, node("new", { latencyMs: null })])!.name).toBe("new");
  });
});

describe("latency from request timings", () => {
  test("request timings, when known, outrank probe latency", () => {
    // Probes say a is faster; requests through a are slower: requests win.
    const a = node("a", { latencyMs: 0.5 });
    const b = node("b", { latencyMs: 2 });
    const load: LoadInfo = { active: () => 0, latencyMs: (n) => (n === "a" ? 8 : 1) };
    const picks = spread(new LatencyBased(), [a, b], 20, load);
    expect(picks.get("b")).toBe(20);
  });
});

describe("route", () => {
  const primary = node("p", { role: "primary" });
  const ctx = (nodes: NodeView[], split = true) => ({ ...routeView(nodes), readWriteSplit: split, balancer: new RoundRobin(), load: noLoad });
  test("writes go to the primary", () => {
    expect(route({ write: true }, ctx([primary, node("s1"), node("s2")])).name).toBe("p");
  });
  test("reads go to standbys when split, never to the primary", () => {
    const c = ctx([primary, node("s1"), node("s2")]);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(route({ write: false }, c).name);
    expect([...seen].sort()).toEqual(["s1", "s2"]);
  });
  test("reads stay on the primary without split", () => {
    expect(route({ write: false }, ctx([primary, node("s1")], false)).name).toBe("p");
  });
  test("down or drained standbys are skipped; none left -> primary", () => {
    expect(route({ write: false }, ctx([primary, node("s1", { health: "down" }), node("s2")])).name).toBe("s2");
    expect(route({ write: false }, ctx([primary, node("s1", { drained: true }), node("s2", { health: "down" })])).name).toBe("p");
  });
  test("weight-0 standbys never take reads", () => {
    expect(route({ write: false }, ctx([primary, node("s1", { weight: 0 }), node("s2")])).name).toBe("s2");
  });
  test("the primary is found by role, wherever it is listed", () => {
    expect(route({ write: true }, ctx([node("s1"), node("p2", { role: "primary" })])).name).toBe("p2");
  });
});

describe("route with a module's hint", () => {
  const nodes = [nodeView("p", { role: "primary" }), nodeView("s1", { lagBytes: 10, lagSeconds: 0.01 }), nodeView("s2", { lagBytes: 5000, lagSeconds: 2 }), nodeView("s3", { drained: true })];
  const ctx = { ...routeView(nodes), readWriteSplit: false, balancer: new RoundRobin(), load: noLoad };
  const go = (hint: Parameters<typeof route>[0]["hint"], write = false) => route({ write, hint }, ctx).name;

  test("writes ignore hints; primary/standby/any; lag limits; node names; groups", () => {
    expect(go({ kind: "route", target: "standby" }, true)).toBe("p");
    expect(go({ kind: "route", target: "primary" })).toBe("p");
    expect(new Set([go({ kind: "route", target: "standby" }), go({ kind: "route", target: "standby" })])).toEqual(new Set(["s1", "s2"]));
    expect(go({ kind: "route", target: "standby", maxLagMs: 100 })).toBe("s1");
    expect(go({ kind: "route", target: "standby", maxLagBytes: 1 })).toBe("p");
    expect(go({ kind: "route", target: "s2" })).toBe("s2");
    expect(go({ kind: "route", target: "s2", maxLagMs: 100 })).toBe("s1");
    expect(go({ kind: "route", target: "s3" })).not.toBe("s3");
    expect(go({ kind: "route", target: "p" })).toBe("p");
    expect(go({ kind: "route", target: "any", nodes: ["s2"] })).toBe("s2");
    expect(go({ kind: "route", target: "any", nodes: ["s3"] })).toBe("p");
    expect(go({ kind: "route", target: "any", nodes: ["p"] })).toBe("p");
    const anyPick = new Set(Array.from({ length: 6 }, () => go({ kind: "route", target: "any" })));
    expect(anyPick).toEqual(new Set(["p", "s1", "s2"]));
  });
});
