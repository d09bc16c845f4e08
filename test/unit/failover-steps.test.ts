// The failover controller's decisions with fake deps (no node is reached): policy, holds, refusals before anything irreversible, records.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import type { FailoverSection } from "../../src/config/types.ts";
import { Cluster, type NodeStatus } from "../../src/cluster/cluster.ts";
import type { HealthChecker } from "../../src/cluster/health.ts";
import { CUT_OFF_GRACE_MS, FailoverController, FailoverRefused, type FailoverDeps } from "../../src/cluster/failover.ts";
import type { FleetHooks } from "../../src/cluster/coordination/hooks.ts";
import { SwitchoverBuffer } from "../../src/cluster/switchover-buffer.ts";
import { configureLogging } from "../../src/util/log.ts";

const DEFAULTS = parseConfig('[[nodes]]\nhost = "127.0.0.1"\n', "f.toml").failover;

beforeAll(() => configureLogging("silent", "text"));
afterAll(() => configureLogging("info", "text"));

/** A controller over an in-memory cluster; `busy` counts what it asked of the proxy around it. */
function controller(o: { policy?: FailoverSection["policy"]; standby?: boolean; fleet?: Partial<FleetHooks>; probing?: boolean } = {}) {
  const cluster = new Cluster([
    { name: "node1", host: "127.0.0.1", port: 1, role: "primary", sync: false, weight: 1 },
    ...(o.standby ? [{ name: "node2", host: "127.0.0.1", port: 2, role: "standby" as const, sync: false, weight: 1 }] : []),
  ]);
  const settings: FailoverSection = { ...DEFAULTS, policy: o.policy ?? "manual" };
  const buffer = new SwitchoverBuffer({ timeoutMs: 1000, maxClients: 10 });
  const deps: FailoverDeps = {
    cluster: () => cluster,
    settings: () => settings,
    // Probing: the node named primary answers at once (what awaitWritablePrimary waits for).
    health: () => (o.probing ? ({ probeNow: async () => true } as unknown as HealthChecker) : null),
    buffer,
    endpoint: (n) => ({ host: n.host, port: n.port, name: n.name }),
    creds: () => ({ user: "postgres", database: "postgres", password: null }),
    timeoutSecs: () => 1,
    busyServers: () => 0,
    ...(o.fleet ? { fleet: () => o.fleet as FleetHooks } : {}),
    endRequest: () => false,
  };
  const c = new FailoverController(deps);
  // As the proxy wires them (src/proxy.ts, onClusterEvent).
  cluster.subscribe((e) => {
    if (e.type !== "PrimaryChanged") return;
    c.primaryChanged(e);
    c.awaitWritablePrimary(`waiting for ${e.to}`);
  });
  return { c, cluster, buffer };
}

async function refusal(p: Promise<unknown>): Promise<FailoverRefused> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FailoverRefused) return e;
    throw e;
  }
  throw new Error("not refused");
}

test("policy off: a primary down holds nothing and promotes nothing; the API is refused with 409", async () => {
  const { c, buffer } = controller({ policy: "off", standby: true });
  c.primaryDown("node1", "connection refused");
  expect([buffer.active, c.history().length, c.alarm]).toEqual([false, 0, ""]);
  const r = await refusal(c.failover({ trigger: "api", force: true }));
  expect([r.status, r.message]).toEqual([409, "failover.policy = off: the proxy does not promote standbys"]);
  expect(c.history()).toHaveLength(0);
});

test("policy manual: a primary down holds requests and raises the alarm; the primary back releases them", () => {
  const { c, buffer } = controller({ policy: "manual", standby: true });
  c.primaryDown("node1", "connection refused");
  expect(buffer.active).toBe(true);
  expect(c.alarm).toBe("primary node1 is down (connection refused); failover.policy = manual: POST /failover to promote a standby");
  expect(c.history()).toHaveLength(0);
  c.primaryUp("node1");
  expect([buffer.active, c.alarm]).toEqual([false, ""]);
});

test("the API's failover of a healthy primary needs force; refused before any record", async () => {
  const { c } = controller({ standby: true });
  const r = await refusal(c.failover({ trigger: "api" }));
  expect(r.status).toBe(409);
  expect(r.message).toStartWith("the primary node1 is up and answering");
  expect(c.history()).toHaveLength(0);
});

test("no safe candidate: the failover is recorded refused, nothing fenced, the hold released while the primary is up", async () => {
  const { c, buffer } = controller({ standby: false });
  const r = await refusal(c.failover({ trigger: "api", force: true }));
  expect([r.status, r.message]).toEqual([409, "no safe candidate (no standbys)"]);
  const rec = c.history().at(-1)!;
  expect([rec.kind, rec.trigger, rec.result, rec.from, rec.to, rec.fence]).toEqual(["failover", "api", "refused", "node1", null, "not attempted"]);
  expect(rec.steps.map((s) => s.step)).toEqual(["refused: no safe candidate (no standbys)"]);
  expect([buffer.active, c.inProgress]).toEqual([false, null]);
  expect(c.finished()).toEqual([{ kind: "failover", trigger: "api", result: "refused", count: 1 }]);
});

test("a target that is not a standby is a 400; one that is not safe a 409 naming why", async () => {
  const { c, cluster } = controller({ standby: true });
  expect((await refusal(c.failover({ trigger: "api", force: true, target: "node9" }))).status).toBe(400);
  cluster.setHealth("node2", "down", "unreachable");
  const r = await refusal(c.failover({ trigger: "api", force: true, target: "node2" }));
  expect(r.status).toBe(409);
  expect(r.message).toStartWith("target node2 is not a safe candidate: ");
  expect(c.history().map((h) => h.result)).toEqual(["refused", "refused"]);
});

test("auto policy with the primary down and no candidate: refused, requests stay held until the primary answers again", async () => {
  const { c, cluster, buffer } = controller({ policy: "auto", standby: false });
  cluster.setHealth("node1", "down", "connection refused");
  c.primaryDown("node1", "connection refused");
  for (const until = performance.now() + 2000; c.history().at(-1)?.result !== "refused" && performance.now() < until; ) await Bun.sleep(5);
  expect(c.history().map((h) => [h.trigger, h.result])).toEqual([["auto", "refused"]]);
  expect(buffer.active).toBe(true);
  expect(c.alarm).toBe("failover from node1 refused: no safe candidate (no standbys)");
  cluster.setHealth("node1", "up");
  c.primaryUp("node1");
  expect(buffer.active).toBe(false);
});

test("a fleet that says another proxy decides: the down primary is held, not promoted here; the API is refused with its reason", async () => {
  const { c, buffer } = controller({ policy: "auto", standby: true, fleet: { refusal: () => "proxy b leads the fleet" } });
  c.primaryDown("node1", "connection refused");
  expect([buffer.active, c.history().length]).toEqual([true, 0]);
  const r = await refusal(c.failover({ trigger: "api", force: true }));
  expect([r.status, r.message]).toEqual([409, "proxy b leads the fleet"]);
});

/** node2 as a probe finds it just promoted (out of recovery, newer timeline). */
const PROMOTED: NodeStatus = { inRecovery: false, timeline: 2, systemId: "1", walLsn: 100, receiveLsn: null, replayLsn: null, replicas: [] };

test("a primary change found by probing while cut off from the fleet: followed after the grace, with no N0, and a record learnt later gives it none", async () => {
  const { c, cluster, buffer } = controller({ policy: "auto", standby: true, probing: true, fleet: { refusal: () => "etcd is unreachable", awaitRecord: () => false, followsByProbing: () => true } });
  c.primaryDown("node1", "connection refused");
  expect(buffer.active).toBe(true);
  const commitEpoch = cluster.epoch;
  cluster.setStatus("node2", PROMOTED);
  cluster.setPrimary("node2", "node reports it is the primary on the newest timeline");
  // Followed after the grace (the leader reads N0 first), with no N0 for the change here.
  expect(buffer.active).toBe(true);
  await Bun.sleep(CUT_OFF_GRACE_MS + 200);
  expect(buffer.active).toBe(false);
  expect(c.n0After(commitEpoch)).toBeNull();
  // etcd answers again and the leader's record of that very change arrives: still no N0 for commits in doubt across it.
  c.adopt({ epoch: 1, state: "done", kind: "failover", from: "node1", to: "node2", n0: "900", fence: "", leader: "p1", started_at: "", done_at: "" });
  expect(c.n0After(commitEpoch)).toBeNull();
  // A later change made by the fleet's record carries its N0.
  const next = cluster.epoch;
  c.adopt({ epoch: 2, state: "done", kind: "failover", from: "node2", to: "node1", n0: "1200", fence: "", leader: "p1", started_at: "", done_at: "" });
  expect(c.n0After(next)).toBe("1200");
  expect(c.n0After(commitEpoch)).toBeNull();
});

test("in touch with the fleet: a change found by probing holds requests until the record, whose N0 it then uses", () => {
  let awaiting = true;
  const { c, cluster, buffer } = controller({ policy: "auto", standby: true, probing: true, fleet: { refusal: () => "p1 leads the fleet", awaitRecord: () => awaiting } });
  const commitEpoch = cluster.epoch;
  cluster.setStatus("node2", PROMOTED);
  cluster.setPrimary("node2", "node reports it is the primary on the newest timeline");
  // Held although the old primary was never seen down here: no write reaches node2 before the leader's N0 is known.
  expect(buffer.active).toBe(true);
  expect(c.n0After(commitEpoch)).toBeNull();
  awaiting = false;
  c.adopt({ epoch: 1, state: "done", kind: "failover", from: "node1", to: "node2", n0: "900", fence: "", leader: "p1", started_at: "", done_at: "" });
  expect(buffer.active).toBe(false);
  expect(c.n0After(commitEpoch)).toBe("900");
});

test("a record for another change than the one found by probing gives it no N0", () => {
  const { c, cluster } = controller({ policy: "auto", standby: true, probing: true, fleet: { refusal: () => "p1 leads the fleet", awaitRecord: () => true } });
  const commitEpoch = cluster.epoch;
  cluster.setStatus("node2", PROMOTED);
  cluster.setPrimary("node2", "node reports it is the primary on the newest timeline");
  c.adopt({ epoch: 3, state: "done", kind: "failover", from: "node3", to: "node2", n0: "900", fence: "", leader: "p1", started_at: "", done_at: "" });
  expect(c.n0After(commitEpoch)).toBeNull();
});
