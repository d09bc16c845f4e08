// onStartup before authentication (refusal with a SQLSTATE, user/database rewrite, tenant as pool key, TLS SNI name) and onServerEvent, through an in-process proxy and real clients.

import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import pg from "pg";
import { startProxy, type RunningProxy } from "../../src/proxy.ts";
import { parseConfig } from "../../src/config/load.ts";
import { freePort } from "../../src/util/net.ts";
import { configureLogging } from "../../src/util/log.ts";
import type { ClusterEvent, SessionCtx, StartupCtx, StartupDecision } from "../../src/core/hooks.ts";
import { runStartupHooks } from "../../src/core/startup-hooks.ts";
import { makeTlsFiles } from "../support/pg-instance.ts";

let proxy: RunningProxy;
let seen: StartupCtx[] = [];
let decide: (s: StartupCtx) => void | StartupDecision = () => {};
const events: ClusterEvent[] = [];

beforeAll(async () => {
  const certs = await makeTlsFiles();
  const cfg = parseConfig(
    `[proxy]\nlisten_address = "127.0.0.1:${freePort()}"\nadmin_address = "127.0.0.1:${freePort()}"\nlog_level = "error"\n` +
      `[auth]\nmethod = "trust"\n[tls]\nmode = "allow"\ncert_file = "${certs.serverCert}"\nkey_file = "${certs.serverKey}"\n[[nodes]]\nhost = "127.0.0.1"\n`,
    "startup.toml",
  );
  proxy = await startProxy(cfg, { configPath: "" });
  proxy.ctx.startupHooks = [
    (s) => {
      // What a hook sees is a copy taken now: later rewrites must not change it.
      seen.push({ ...s, params: new Map(s.params) });
      return decide(s);
    },
  ];
  proxy.ctx.serverEvent = (e) => void events.push(e);
});

afterAll(async () => {
  await proxy?.stop();
  configureLogging("info", "text"); // the in-process proxy set the shared logger to "error"
});

beforeEach(() => {
  seen = [];
  decide = () => {};
});

async function connect(o: { user?: string; database?: string; ssl?: pg.ClientConfig["ssl"]; application_name?: string } = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: o.user ?? "postgres", database: o.database ?? "test", ssl: o.ssl, application_name: o.application_name });
  await c.connect();
  return c;
}

test("the hook sees the startup parameters before authentication; no TLS, no server name", async () => {
  const c = await connect({ application_name: "billing" });
  await c.end();
  expect(seen).toHaveLength(1);
  const s = seen[0]!;
  expect([s.session.user, s.session.database, s.session.id, s.session.tls, s.serverName]).toEqual(["postgres", "test", 0, false, ""]);
  expect(s.params.get("application_name")).toBe("billing");
  expect(s.params.get("user")).toBe("postgres");
});

test("a Reject refuses the client with its SQLSTATE before any password is asked", async () => {
  decide = () => ({ kind: "reject", sqlstate: "53300", message: "tenant quota reached" });
  const err = await connect().then(
    (c) => c.end().then(() => null),
    (e: Error & { code?: string; severity?: string }) => e,
  );
  expect(err).not.toBeNull();
  expect([err!.code, err!.message, err!.severity]).toEqual(["53300", "tenant quota reached", "FATAL"]);
});

test("user and database rewritten: the client logs in as the rewritten ones; tenants get pools of their own", async () => {
  decide = (s) => {
    const [user, tenant] = s.session.user.split(".");
    return { kind: "startup", user, tenant, database: s.session.database === "alias" ? "test" : undefined };
  };
  const a = await connect({ user: "postgres.tenant_a", database: "alias" });
  const b = await connect({ user: "postgres.tenant_b" });
  try {
    expect((await a.query("SELECT current_user AS u, current_database() AS d")).rows[0]).toEqual({ u: "postgres", d: "test" });
    expect((await b.query("SELECT current_user AS u, current_database() AS d")).rows[0]).toEqual({ u: "postgres", d: "test" });
    const tenants = [...proxy.ctx.groups.values()].filter((g) => g.user === "postgres" && g.database === "test").map((g) => g.tenant).sort();
    expect(tenants).toEqual(expect.arrayContaining(["tenant_a", "tenant_b"]));
    // Each tenant's group has its own pool on the node: no server is shared between them.
    const serversOf = (t: string) => [...proxy.ctx.groups.values()].find((g) => g.tenant === t)!.pools.get("node1")!.all;
    for (const s of serversOf("tenant_a")) expect(serversOf("tenant_b")).not.toContain(s);
  } finally {
    await a.end();
    await b.end();
  }
});

test("over TLS the hook gets the SNI name the client sent", async () => {
  const c = await connect({ ssl: { rejectUnauthorized: false, servername: "tenant-c.db.example" } });
  try {
    expect((await c.query("SELECT 1 AS one")).rows[0].one).toBe(1);
  } finally {
    await c.end();
  }
  expect(seen.map((s) => [s.serverName, s.session.tls])).toEqual([["tenant-c.db.example", true]]);
});

test("several hooks: each sees the rewrites before it, a later tenant replaces an earlier one, the first Reject ends the run, a throw refuses with XX000", () => {
  const session: SessionCtx = { id: 0, user: "app.t1", database: "shop", applicationName: "", remoteAddress: "unix", tls: false, startedAt: 0 };
  const users: string[] = [];
  const params = new Map([["user", "app.t1"], ["database", "shop"]]);
  const out = runStartupHooks(
    [
      (s) => ({ kind: "startup", user: s.session.user.split(".")[0], tenant: s.session.user.split(".")[1] }),
      (s) => void users.push(s.session.user),
      () => ({ kind: "startup", tenant: "t2", database: "shop_t2" }),
    ],
    session,
    params,
    "",
  );
  expect(out).toEqual({ user: "app", database: "shop_t2", tenant: "t2", reject: null });
  expect(users).toEqual(["app"]);
  expect([params.get("user"), params.get("database")]).toEqual(["app", "shop_t2"]);
  let after = 0;
  const refused = runStartupHooks([() => ({ kind: "reject", sqlstate: "28000", message: "no" }), () => void after++], session, new Map(), "");
  expect([refused.reject?.sqlstate, after]).toEqual(["28000", 0]);
  configureLogging("silent", "text");
  const thrown = runStartupHooks([() => { throw new Error("bug"); }], session, new Map(), "");
  configureLogging("error", "text");
  expect(thrown.reject?.sqlstate).toBe("XX000");
});

test("onServerEvent: the modules hear cluster events after the pools reacted", async () => {
  events.length = 0;
  proxy.ctx.cluster.setDrained("node1", true);
  expect(events).toContainEqual({ type: "NodeDrained", node: "node1", drained: true });
  const suspended = [...proxy.ctx.allPools()].filter((p) => p.node === "node1").every((p) => p.suspended);
  expect(suspended).toBe(true);
  proxy.ctx.cluster.setDrained("node1", false);
  expect(events.at(-1)).toEqual({ type: "NodeDrained", node: "node1", drained: false });
  const c = await connect();
  expect((await c.query("SELECT 2 AS two")).rows[0].two).toBe(2);
  await c.end();
});
