// PatroniProvider against a fake Patroni REST API (canned GET /cluster answers): roles, epoch, lag, health and URL fallback.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Cluster, type ClusterEvent } from "../../src/cluster/cluster.ts";
import { PatroniProvider } from "../../src/cluster/providers/patroni.ts";
import type { NodeEntry, TopologySection } from "../../src/config/types.ts";
import { freePort } from "../../src/util/net.ts";
import { configureLogging } from "../../src/util/log.ts";

/** A fake Patroni API: answers GET /cluster with whatever `reply` holds; `hang` never answers. */
function fakePatroni() {
  const state = { reply: { status: 200, body: {} as unknown }, hang: false, hits: 0 };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      if (new URL(req.url).pathname !== "/cluster") return new Response("not found", { status: 404 });
      state.hits++;
      if (state.hang) await Bun.sleep(5000);
      return Response.json(state.reply.body, { status: state.reply.status });
    },
  });
  return { state, server, url: `http://127.0.0.1:${server.port}` };
}

type Fake = ReturnType<typeof fakePatroni>;

const member = (name: string, role: string, port: number | null, extra: Record<string, unknown> = {}) => ({
  name,
  role,
  state: role === "leader" ? "running" : "streaming",
  api_url: `http://127.0.0.1:1/patroni`,
  ...(port === null ? {} : { host: "127.0.0.1", port }),
  timeline: 1,
  ...extra,
});

function nodes(): NodeEntry[] {
  // Node names differ from the Patroni member names: members are found by host:port.
  return [
    { name: "alpha", host: "127.0.0.1", port: 6001, role: "primary", sync: false, weight: 1 },
    { name: "beta", host: "127.0.0.1", port: 6002, role: "standby", sync: false, weight: 1 },
    { name: "pg-c", host: "10.0.0.3", port: 5432, role: "standby", sync: false, weight: 1 },
  ];
}

function settings(urls: string[], over: Partial<TopologySection> = {}): TopologySection {
  return { provider: "patroni", patroni_urls: urls, poll_interval_secs: 0.05, request_timeout_secs: 0.3, ...over };
}

/** Roles as [name, role] pairs. */
const roles = (c: Cluster) => c.snapshot().map((n) => [n.name, n.role]);

function setup(urls: string[]) {
  const cluster = new Cluster(nodes());
  const events: ClusterEvent[] = [];
  cluster.subscribe((e) => events.push(e));
  return { cluster, events, provider: new PatroniProvider(cluster, settings(urls)) };
}

/** Capture what the logger writes to stderr while `fn` runs. */
async function captureStderr(fn: () => Promise<void>): Promise<string> {
  // Test files share one process: another may have turned logging down.
  configureLogging("info", "text");
  const orig = process.stderr.write.bind(process.stderr);
  let out = "";
  process.stderr.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    await fn();
  } finally {
    process.stderr.write = orig;
  }
  return out;
}

let fake: Fake;
let other: Fake;
beforeAll(() => {
  fake = fakePatroni();
  other = fakePatroni();
});
afterAll(() => {
  fake.server.stop(true);
  other.server.stop(true);
});
afterEach(() => {
  fake.state.hang = other.state.hang = false;
  fake.state.hits = other.state.hits = 0;
});

const answer = (f: Fake, members: unknown[], status = 200) => {
  f.state.reply = { status, body: { members } };
};

describe("mapping GET /cluster onto the cluster", () => {
  test("the leader found by host:port becomes primary; replicas become standbys with their lag", async () => {
    const { cluster, events, provider } = setup([fake.url]);
    // pg1 is at beta's address, pg2 at alpha's; pg-c has no host and is found by name.
    answer(fake, [member("pg1", "leader", 6002), member("pg2", "replica", 6001, { lag: 4096 }), member("pg-c", "sync_standby", null, { lag: 0 })]);
    expect(await provider.poll()).toBe(true);
    expect(roles(cluster)).toEqual([["alpha", "standby"], ["beta", "primary"], ["pg-c", "standby"]]);
    expect(cluster.epoch).toBe(1);
    expect(cluster.node("alpha")!.lagBytes).toBe(4096);
    expect(cluster.node("pg-c")!.lagBytes).toBe(0);
    expect(cluster.node("beta")!.lagBytes).toBe(0);
    expect(events.filter((e) => e.type === "PrimaryChanged")).toEqual([{ type: "PrimaryChanged", from: "alpha", to: "beta", epoch: 1, reason: "patroni: leader pg1" }]);

    // The same answer again changes nothing: no new epoch, no event.
    const before = events.length;
    expect(await provider.poll()).toBe(true);
    expect(cluster.epoch).toBe(1);
    expect(events.length).toBe(before);
  });

  test("leader switch: the new leader becomes primary, the old one a standby, the epoch moves on", async () => {
    const { cluster, provider } = setup([fake.url]);
    answer(fake, [member("pg1", "leader", 6001), member("pg2", "replica", 6002, { lag: 0 })]);
    await provider.poll();
    expect(roles(cluster)).toEqual([["alpha", "primary"], ["beta", "standby"], ["pg-c", "standby"]]);
    expect(cluster.epoch).toBe(0); // alpha was primary already

    answer(fake, [member("pg1", "replica", 6001, { lag: 128 }), member("pg2", "leader", 6002)]);
    await provider.poll();
    expect(roles(cluster)).toEqual([["alpha", "standby"], ["beta", "primary"], ["pg-c", "standby"]]);
    expect(cluster.epoch).toBe(1);
    expect(cluster.node("alpha")!.lagBytes).toBe(128);

    answer(fake, [member("pg1", "leader", 6001), member("pg2", "replica", 6002, { lag: "unknown" })]);
    await provider.poll();
    expect(cluster.primary().name).toBe("alpha");
    expect(cluster.epoch).toBe(2);
    expect(cluster.node("beta")!.lagBytes).toBeNull();
  });

  test("no leader (election in progress) or only a standby_leader: nothing changes", async () => {
    const { cluster, events, provider } = setup([fake.url]);
    answer(fake, [member("pg1", "replica", 6001, { lag: 0, state: "running" }), member("pg2", "replica", 6002, { lag: 77, state: "stopped" })]);
    expect(await provider.poll()).toBe(true);
    answer(fake, [member("pg1", "standby_leader", 6002), member("pg2", "replica", 6001, { lag: 5 })]);
    expect(await provider.poll()).toBe(true);
    expect(roles(cluster)).toEqual([["alpha", "primary"], ["beta", "standby"], ["pg-c", "standby"]]);
    expect(cluster.epoch).toBe(0);
    expect(cluster.node("beta")!.lagBytes).toBeNull();
    expect(cluster.node("beta")!.health).toBe("up");
    expect(events).toEqual([]);
  });

  test("a member entering a down state is marked down once; never marked up by the provider", async () => {
    const { cluster, provider } = setup([fake.url]);
    answer(fake, [member("pg1", "leader", 6001), member("pg2", "replica", 6002, { lag: 0, state: "crashed" })]);
    await provider.poll();
    expect(cluster.node("beta")!.health).toBe("down");
    expect(cluster.node("beta")!.lastError).toBe("patroni: member pg2 is crashed");

    // The health checker brings it back up; the same Patroni state does not knock it down again.
    cluster.setHealth("beta", "up");
    await provider.poll();
    expect(cluster.node("beta")!.health).toBe("up");

    // Another down state marks it down again; running again leaves it down (only the health checker marks up).
    answer(fake, [member("pg1", "leader", 6001), member("pg2", "replica", 6002, { lag: 0, state: "start failed" })]);
    await provider.poll();
    expect(cluster.node("beta")!.health).toBe("down");
    answer(fake, [member("pg1", "leader", 6001), member("pg2", "replica", 6002, { lag: 0, state: "running" })]);
    await provider.poll();
    expect(cluster.node("beta")!.health).toBe("down");
  });

  test("a member matching no node is ignored; a leader matching no node changes nothing", async () => {
    const { cluster, provider } = setup([fake.url]);
    const log = await captureStderr(async () => {
      answer(fake, [member("elsewhere", "leader", 7777), member("pg2", "replica", 6002, { lag: 9 })]);
      await provider.poll();
      await provider.poll();
    });
    expect(roles(cluster)).toEqual([["alpha", "primary"], ["beta", "standby"], ["pg-c", "standby"]]);
    expect(cluster.epoch).toBe(0);
    expect(log.match(/member elsewhere .* matches no configured node/g)?.length).toBe(1);
  });
});

describe("API failures", () => {
  test("API down then up: the last known topology stays, one warning per failure streak, then the new answer applies", async () => {
    const { cluster, provider } = setup([fake.url]);
    answer(fake, [member("pg1", "replica", 6001, { lag: 0 }), member("pg2", "leader", 6002)]);
    expect(await provider.poll()).toBe(true);
    expect(cluster.primary().name).toBe("beta");

    const log = await captureStderr(async () => {
      answer(fake, [], 503);
      fake.state.reply.body = "Service Unavailable";
      for (let i = 0; i < 3; i++) expect(await provider.poll()).toBe(false);
      // Malformed answers count as failures too (same streak: no second warning).
      fake.state.reply = { status: 200, body: { nothing: true } };
      expect(await provider.poll()).toBe(false);
      expect(roles(cluster)).toEqual([["alpha", "standby"], ["beta", "primary"], ["pg-c", "standby"]]);
      expect(cluster.epoch).toBe(1);

      answer(fake, [member("pg1", "leader", 6001), member("pg2", "replica", 6002, { lag: 10 })]);
      expect(await provider.poll()).toBe(true);
      answer(fake, [], 500);
      expect(await provider.poll()).toBe(false);
    });
    expect(cluster.primary().name).toBe("alpha");
    expect(cluster.node("beta")!.lagBytes).toBe(10);
    expect(cluster.epoch).toBe(2);
    expect(log.match(/patroni API unavailable/g)?.length).toBe(2);
    expect(log.match(/patroni API answers again/g)?.length).toBe(1);
    expect(log).toContain("HTTP 503");
  });

  test("the second URL is used when the first refuses, errors or times out", async () => {
    const dead = `http://127.0.0.1:${freePort()}`;
    answer(other, [member("pg1", "replica", 6001, { lag: 0 }), member("pg2", "leader", 6002)]);

    const refused = setup([dead, other.url]);
    expect(await refused.provider.poll()).toBe(true);
    expect(refused.cluster.primary().name).toBe("beta");

    answer(fake, [], 500);
    const erroring = setup([fake.url, other.url]);
    expect(await erroring.provider.poll()).toBe(true);
    expect(erroring.cluster.primary().name).toBe("beta");
    expect(fake.state.hits).toBe(1);

    fake.state.hang = true;
    const hanging = setup([fake.url, other.url]);
    const t0 = performance.now();
    expect(await hanging.provider.poll()).toBe(true);
    const ms = performance.now() - t0;
    expect(hanging.cluster.primary().name).toBe("beta");
    expect(ms).toBeGreaterThanOrEqual(250); // request_timeout_secs = 0.3
    expect(ms).toBeLessThan(2000);

    // The URL that answered is tried first next time (no wait on the hanging one).
    const hitsBefore = fake.state.hits;
    const t1 = performance.now();
    expect(await hanging.provider.poll()).toBe(true);
    expect(performance.now() - t1).toBeLessThan(200);
    expect(fake.state.hits).toBe(hitsBefore);

    const none = setup([dead]);
    expect(await none.provider.poll()).toBe(false);
    expect(none.cluster.primary().name).toBe("alpha");
  });
});

describe("poll loop", () => {
  test("start() polls every poll_interval_secs; stop() ends it", async () => {
    const { cluster, provider } = setup([fake.url]);
    answer(fake, [member("pg1", "replica", 6001, { lag: 0 }), member("pg2", "leader", 6002)]);
    provider.start();
    try {
      const deadline = Date.now() + 2000;
      while (cluster.primary().name !== "beta" && Date.now() < deadline) await Bun.sleep(10);
      expect(cluster.primary().name).toBe("beta");
      answer(fake, [member("pg1", "leader", 6001), member("pg2", "replica", 6002, { lag: 0 })]);
      const deadline2 = Date.now() + 2000;
      while (cluster.primary().name !== "alpha" && Date.now() < deadline2) await Bun.sleep(10);
      expect(cluster.primary().name).toBe("alpha");
      expect(fake.state.hits).toBeGreaterThanOrEqual(2);
    } finally {
      provider.stop();
    }
    await Bun.sleep(100);
    const hits = fake.state.hits;
    answer(fake, [member("pg1", "replica", 6001, { lag: 0 }), member("pg2", "leader", 6002)]);
    await Bun.sleep(300);
    expect(fake.state.hits).toBe(hits);
    expect(cluster.primary().name).toBe("alpha");
    expect(cluster.epoch).toBe(2);
  });
});
