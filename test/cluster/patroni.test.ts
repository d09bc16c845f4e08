// HeliosProxy with [topology] provider = "patroni" in front of a real Patroni cluster (etcd + 2 members): writes follow the leader through a switchover.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pg from "pg";
import { startPatroniCluster, type PatroniCluster, type PatroniMemberInfo } from "../support/patroni.ts";
import { adminApi } from "../support/pg-cluster.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";

const fileStarted = performance.now();
let pc: PatroniCluster;
let proxy: RunningProxy;
let leader: PatroniMemberInfo;
let replica: PatroniMemberInfo;

/** The proxy's node name for a Patroni member: [[nodes]] are listed in member order, unnamed (node1, node2). */
const nodeOf = (m: PatroniMemberInfo) => `node${pc.members.indexOf(m) + 1}`;

async function direct(m: PatroniMemberInfo): Promise<pg.Client> {
  const c = new pg.Client({ host: m.host, port: m.port, user: "postgres", database: "postgres", connectionTimeoutMillis: 5000 });
  await c.connect();
  return c;
}

async function directQuery(m: PatroniMemberInfo, sql: string): Promise<any[]> {
  const c = await direct(m);
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

function proxyClient(): pg.Client {
  const c = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: "postgres", connectionTimeoutMillis: 10000, query_timeout: 20000 });
  c.on("error", () => {}); // a dropped backend shows up as the next query's error
  return c;
}

interface Topology {
  primary: string | null;
  /** Standbys that take traffic (not fenced). */
  standbys: string[];
  /** Old primaries replaced by a switchover that have not come back in recovery yet. */
  fenced: string[];
  epoch: number;
  provider: string;
  nodes: { id: string; role: string; state: string; fenced: boolean; lag_bytes: number | null }[];
}

const topology = async (): Promise<Topology> => (await adminApi(proxy, "GET", "/topology")).body as Topology;

/** Poll GET /topology until `ok` holds; the milliseconds that took. */
async function waitTopology(what: string, ok: (t: Topology) => boolean, limitMs = 10000): Promise<number> {
  const t0 = performance.now();
  let last: Topology | null = null;
  while (performance.now() - t0 < limitMs) {
    last = await topology();
    if (ok(last)) return performance.now() - t0;
    await Bun.sleep(25);
  }
  throw new Error(`GET /topology never showed ${what}: ${JSON.stringify(last)}\n${proxy.output().slice(-3000)}`);
}

beforeAll(async () => {
  pc = await startPatroniCluster();
  const leaderName = await pc.leader();
  leader = pc.member(leaderName);
  replica = pc.members.find((m) => m.name !== leaderName)!;
  await directQuery(leader, "CREATE TABLE writes (id bigserial PRIMARY KEY, tag text NOT NULL, port int NOT NULL DEFAULT inet_server_port())");
  // The config's roles are wrong on purpose: Patroni, not the config, decides who is primary.
  proxy = await startProxy({
    mode: "transaction",
    nodes: pc.members.map((m) => ({ host: m.host, port: m.port, role: m === leader ? "standby" : "primary" })),
    toml: [
      "[topology]",
      'provider = "patroni"',
      `patroni_urls = [${pc.members.map((m) => JSON.stringify(m.restUrl)).join(", ")}]`,
      "poll_interval_secs = 0.2",
      "[health]",
      "check_interval_secs = 0.5",
      "failure_threshold = 2",
      "[failover]",
      'policy = "off"',
    ].join("\n"),
  });
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await pc?.destroy();
  console.log(`patroni.test.ts wall time: ${Math.round(performance.now() - fileStarted)} ms`);
}, 60_000);

describe("provider patroni against a real Patroni cluster", () => {
  test("GET /topology names the Patroni leader as primary although the config said otherwise", async () => {
    const ms = await waitTopology(`${nodeOf(leader)} as primary`, (t) => t.primary === nodeOf(leader), 5000);
    const t = await topology();
    expect(t.provider).toBe("patroni");
    expect(t.primary).toBe(nodeOf(leader));
    // One primary change: from the configured (wrong) primary to the leader.
    expect(t.epoch).toBe(1);
    expect(t.nodes.map((n) => [n.id, n.role])).toEqual(pc.members.map((m) => [nodeOf(m), m === leader ? "primary" : "standby"]));
    // The configured primary was fenced by the change and takes traffic again once a probe finds it in recovery.
    await waitTopology(`${nodeOf(replica)} as an unfenced standby`, (x) => x.standbys.includes(nodeOf(replica)), 5000);
    console.log(`proxy followed the Patroni leader ${leader.name} (${nodeOf(leader)}) ${Math.round(ms)} ms after its first topology check`);
  });

  test("writes through the proxy land on the Patroni leader", async () => {
    const c = proxyClient();
    await c.connect();
    try {
      const ports: number[] = [];
      for (let i = 0; i < 10; i++) ports.push((await c.query("INSERT INTO writes (tag) VALUES ($1) RETURNING port", [`before-${i}`])).rows[0].port);
      expect(ports).toEqual(Array(10).fill(leader.port));
    } finally {
      await c.end();
    }
    const rows = await directQuery(leader, "SELECT count(*)::int AS n, min(port) AS lo, max(port) AS hi FROM writes WHERE tag LIKE 'before-%'");
    expect(rows[0]).toEqual({ n: 10, lo: leader.port, hi: leader.port });
  });

  test("a Patroni switchover moves the proxy's primary; writes after it land on the new leader", async () => {
    // Writers keep going through the switchover; each acknowledged write is remembered with the port that took it.
    const acked: { id: string; port: number }[] = [];
    const errors: { at: number; message: string }[] = [];
    let running = true;
    const writer = async (w: number) => {
      let c = proxyClient();
      let connected = false;
      let seq = 0;
      while (running) {
        try {
          if (!connected) {
            await c.connect();
            connected = true;
          }
          const r = await c.query("INSERT INTO writes (tag) VALUES ($1) RETURNING id::text, port", [`during-${w}-${seq++}`]);
          acked.push(r.rows[0]);
        } catch (e) {
          errors.push({ at: performance.now(), message: (e as Error).message });
          await c.end().catch(() => {});
          c = proxyClient();
          connected = false;
          await Bun.sleep(20);
        }
        await Bun.sleep(10);
      }
      await c.end().catch(() => {});
    };
    const writers = [0, 1, 2, 3].map(writer);
    await Bun.sleep(300);

    const t0 = performance.now();
    const switched = pc.switchover(replica.name).then(() => performance.now() - t0);
    const topologyMs = await waitTopology(`${nodeOf(replica)} as primary`, (t) => t.primary === nodeOf(replica), 20000);
    const switchoverMs = await switched;
    // Keep writing a moment after the switchover is complete.
    await Bun.sleep(500);
    running = false;
    await Promise.all(writers);

    const t = await topology();
    expect(t.primary).toBe(nodeOf(replica));
    expect(t.epoch).toBe(2);
    expect(t.nodes.find((n) => n.id === nodeOf(leader))!.role).toBe("standby");
    // The old leader is a standby: fenced until a probe finds it back in recovery, then listed among the standbys.
    expect([...t.fenced, ...t.standbys]).toEqual([nodeOf(leader)]);

    // A write made after the switchover completed: through the proxy, onto the new leader, visible there.
    const c = proxyClient();
    await c.connect();
    let after: { id: string; port: number };
    try {
      after = (await c.query("INSERT INTO writes (tag) VALUES ('after-switchover') RETURNING id::text, port")).rows[0];
    } finally {
      await c.end();
    }
    expect(after.port).toBe(replica.port);
    expect(await directQuery(replica, "SELECT tag, port FROM writes WHERE tag = 'after-switchover'")).toEqual([{ tag: "after-switchover", port: replica.port }]);
    expect((await directQuery(replica, "SELECT pg_is_in_recovery() AS r"))[0].r).toBe(false);

    // Every acknowledged write went to whichever node was the leader, and survived the switchover.
    const byPort = new Map<number, number>();
    for (const a of acked) byPort.set(a.port, (byPort.get(a.port) ?? 0) + 1);
    expect([...byPort.keys()].every((p) => p === leader.port || p === replica.port)).toBe(true);
    expect(byPort.get(replica.port) ?? 0).toBeGreaterThan(0);
    const present = await directQuery(replica, `SELECT count(*)::int AS n FROM writes WHERE id = ANY('{${acked.map((a) => a.id).join(",")}}'::bigint[])`);
    expect(present[0].n).toBe(acked.length);

    console.log(
      `switchover ${leader.name} -> ${replica.name}: Patroni done in ${Math.round(switchoverMs)} ms, proxy primary moved after ${Math.round(topologyMs)} ms; ` +
        `${acked.length} writes acknowledged (${byPort.get(leader.port) ?? 0} on the old leader, ${byPort.get(replica.port) ?? 0} on the new), ` +
        `${errors.length} client errors` +
        (errors.length ? ` between ${Math.round(errors[0]!.at - t0)} and ${Math.round(errors.at(-1)!.at - t0)} ms: ${JSON.stringify([...new Set(errors.map((e) => e.message))])}` : ""),
    );
  }, 60_000);

  test("the old leader rejoins as a streaming replica and the proxy lists it as an up standby", async () => {
    await pc.waitStreaming(30000);
    expect(await pc.leader()).toBe(replica.name);
    const ms = await waitTopology(`${nodeOf(leader)} as an up standby`, (t) => t.standbys.includes(nodeOf(leader)) && t.nodes.some((n) => n.id === nodeOf(leader) && n.state === "up"), 10000);
    const t = await topology();
    expect(t.primary).toBe(nodeOf(replica));
    expect(t.standbys).toEqual([nodeOf(leader)]);
    expect(t.fenced).toEqual([]);
    expect(t.epoch).toBe(2);
    expect((await directQuery(leader, "SELECT pg_is_in_recovery() AS r"))[0].r).toBe(true);
    console.log(`old leader ${leader.name} up as a standby in /topology ${Math.round(ms)} ms after it streamed again`);
  }, 60_000);
});
