// Topology set from outside: the manual provider (POST /topology/primary) and the heliosdb provider (events pushed to POST /topology/events, no role polling).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pg from "pg";
import { PG_HOST, PG_PORT, startProxy, type RunningProxy } from "../support/proxy.ts";
import { adminApi } from "../support/pg-cluster.ts";

// Two names for the machine's one PostgreSQL: enough to see where the proxy sends writes.
const NODES = `[[nodes]]\nname = "alpha"\nhost = "${PG_HOST}"\nport = ${PG_PORT}\nrole = "primary"\n[[nodes]]\nname = "beta"\nhost = "localhost"\nport = ${PG_PORT}\nrole = "standby"\n`;
const HEALTH = "[health]\ncheck_interval_secs = 0.2\n";

async function servedBy(p: RunningProxy): Promise<string[]> {
  const cl = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "test" });
  await cl.connect();
  await cl.query("SELECT 1");
  await cl.end();
  const pools = (await adminApi(p, "GET", "/pools")).body.pools as { node: string; xact_count: number }[];
  return pools.filter((x) => x.xact_count > 0).map((x) => x.node).sort();
}

async function start(provider: string): Promise<RunningProxy> {
  return startProxy({ nodes: [], toml: `${NODES}${HEALTH}[topology]\nprovider = "${provider}"\n` });
}

describe("provider heliosdb", () => {
  let p: RunningProxy;
  beforeAll(async () => {
    p = await start("heliosdb");
  });
  afterAll(async () => {
    await p?.stop();
  });

  test("probes do not decide roles: both nodes say they are primaries, the config's roles stand", async () => {
    await Bun.sleep(500);
    const t = (await adminApi(p, "GET", "/topology")).body;
    expect(t).toMatchObject({ primary: "alpha", standbys: ["beta"], epoch: 0, provider: "heliosdb" });
    expect(t.nodes.map((n: { timeline: number | null }) => n.timeline)).toEqual([1, 1]);
    expect(await servedBy(p)).toEqual(["alpha"]);
  });

  test("a pushed PrimaryChanged moves writes at once; the old primary is fenced out of rotation", async () => {
    const r = await adminApi(p, "POST", "/topology/events", {}, { type: "PrimaryChanged", node: "beta" });
    expect(r).toEqual({ status: 200, body: { applied: 1, primary: "beta", epoch: 1 } });
    const t = (await adminApi(p, "GET", "/topology")).body;
    expect(t).toMatchObject({ primary: "beta", fenced: ["alpha"], standbys: [], epoch: 1 });
    expect(await servedBy(p)).toEqual(["alpha", "beta"]);
  });

  test("a batch of events applies in order; health follows the orchestrator, not the probes", async () => {
    const r = await adminApi(p, "POST", "/topology/events", {}, {
      events: [
        { type: "PrimaryChanged", node: "alpha" },
        { type: "LagChanged", node: "beta", lag_bytes: 4096, lag_seconds: 0.5 },
        { type: "NodeDown", node: "beta", reason: "maintenance" },
      ],
    });
    expect(r.body).toEqual({ applied: 3, primary: "alpha", epoch: 2 });
    await Bun.sleep(500); // probes of beta succeed meanwhile: under heliosdb they measure, they do not overrule
    const beta = (await adminApi(p, "GET", "/nodes/beta")).body;
    expect(beta).toMatchObject({ state: "down", last_error: "maintenance" });
    expect((await adminApi(p, "POST", "/topology/events", {}, { type: "NodeUp", node: "beta" })).body.applied).toBe(1);
    expect((await adminApi(p, "GET", "/nodes/beta")).body.state).toBe("up");
  });

  test("bad events are refused whole with a message naming the field; nothing applies", async () => {
    const bad = async (body: unknown) => {
      const r = await adminApi(p, "POST", "/topology/events", {}, body);
      expect(r.status).toBe(400);
      return r.body.message as string;
    };
    expect(await bad({ type: "PrimaryChanged", node: "gamma" })).toBe('node: expected one of alpha, beta, got "gamma"');
    expect(await bad({ type: "Promote", node: "beta" })).toBe('type: expected PrimaryChanged, NodeDown, NodeUp or LagChanged, got "Promote"');
    expect(await bad({ type: "LagChanged", node: "beta", lag_bytes: -1 })).toBe("lag_bytes: expected a number >= 0 or null");
    expect(await bad({ events: [{ type: "PrimaryChanged", node: "beta" }, { type: "NodeUp" }] })).toBe("events[1].node: expected one of alpha, beta, got undefined");
    expect(await bad([1, 2])).toBe("expected a JSON object");
    const notJson = await fetch(`http://127.0.0.1:${p.adminPort}/topology/events`, { method: "POST", body: "{" });
    expect(notJson.status).toBe(400);
    expect((await adminApi(p, "GET", "/topology")).body).toMatchObject({ primary: "alpha", epoch: 2 });
  });

  test("POST /topology/primary is for the manual provider only", async () => {
    const r = await adminApi(p, "POST", "/topology/primary", {}, { node: "beta" });
    expect(r.status).toBe(409);
    expect(r.body.message).toStartWith('topology.provider is "heliosdb"');
  });
});

describe("provider manual", () => {
  let p: RunningProxy;
  beforeAll(async () => {
    p = await start("manual");
  });
  afterAll(async () => {
    await p?.stop();
  });

  test("POST /topology/primary moves the primary; events are refused; unknown nodes are 400", async () => {
    expect((await adminApi(p, "POST", "/topology/primary", {}, { node: "nobody" })).status).toBe(400);
    const r = await adminApi(p, "POST", "/topology/primary", {}, { node: "beta" });
    expect(r).toEqual({ status: 200, body: { primary: "beta", epoch: 1 } });
    expect(await servedBy(p)).toEqual(["beta"]);
    const ev = await adminApi(p, "POST", "/topology/events", {}, { type: "PrimaryChanged", node: "alpha" });
    expect(ev.status).toBe(409);
    expect((await adminApi(p, "GET", "/failovers")).body).toMatchObject({ provider: "manual", primary: "beta", epoch: 1, policy: "manual" });
  });
});
