// Config loading: defaults, every class of error with its line, module sections, the shipped examples.

import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError, formatConfigForDisplay, loadConfig, MASK, parseConfig, type ParseOptions } from "../../src/config/load.ts";
import { KeyLocator } from "../../src/config/locate.ts";
import { SCHEMA, parseAddress } from "../../src/config/schema.ts";
import {
  buildProfile,
  compiledFeatures,
  FEATURE_NAMES,
  isFeatureCompiled,
  moduleSectionFeature,
  moduleSpec,
} from "../../src/modules/index.ts";

const NODE = '[[nodes]]\nhost = "127.0.0.1"\n';
const CONFIG_DIR = resolve(import.meta.dir, "../../config");

function parse(text: string, opts?: ParseOptions) {
  return parseConfig(text, "proxy.toml", opts);
}

function errorOf(text: string, opts?: ParseOptions): ConfigError {
  try {
    parse(text, opts);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("defaults", () => {
  test("every section is filled in from one node", () => {
    const c = parse(NODE);
    expect(c.proxy).toEqual({
      listen_address: "127.0.0.1:6432",
      admin_address: "127.0.0.1:9090",
      login_timeout_secs: 15,
      shutdown_timeout_secs: 30,
      log_level: "info",
      log_format: "text",
      log_connections: true,
      log_disconnections: true,
      metrics_public: false,
    });
    expect(c.pool).toEqual({
      mode: "transaction",
      min_connections: 0,
      max_connections: 20,
      idle_timeout_secs: 300,
      server_lifetime_secs: 3600,
      wait_timeout_secs: 30,
      reset_query: "DISCARD ALL",
      reset_query_always: false,
      stateless_functions: [],
      prepared_statements_per_server: 1000,
      connect_timeout_secs: 5,
    });
    expect(c.limits.max_client_conn).toBe(10000);
    expect(c.limits.max_message_bytes).toBe(1073741824);
    expect(c.timeouts).toEqual({ query_timeout_secs: 0, idle_in_transaction_timeout_secs: 0, client_idle_timeout_secs: 0 });
    expect(c.tls.mode).toBe("disable");
    expect(c.tls.server_sslmode).toBe("disable");
    expect(c.auth.method).toBe("scram-sha-256");
    expect(c.auth.admin_users).toEqual([]);
    expect(c.health).toEqual({
      check_interval_secs: 5,
      check_timeout_secs: 1,
      check_query: "SELECT 1",
      failure_threshold: 3,
      recovery_threshold: 1,
      user: "postgres",
      password: "",
      database: "postgres",
    });
    expect(c.load_balancer).toEqual({ strategy: "round_robin", read_write_split: false, read_safe_functions: [] });
    expect(c.users).toEqual([]);
    expect(c.modules).toEqual({});
    expect(c.source).toBe(resolve("proxy.toml"));
  });

  test("node defaults and generated names", () => {
    const c = parse(`${NODE}[[nodes]]\nhost = "db2"\nrole = "standby"\nsync = true\n[[nodes]]\nname = "dr"\nhost = "[::1]"\nport = 6000\n`);
    expect(c.nodes).toEqual([
      { name: "node1", host: "127.0.0.1", port: 5432, role: "primary", sync: false, weight: 1 },
      { name: "node2", host: "db2", port: 5432, role: "standby", sync: true, weight: 1 },
      { name: "dr", host: "::1", port: 6000, role: "primary", sync: false, weight: 1 },
    ]);
  });

  test("fractional seconds are allowed", () => {
    expect(parse(`[health]\ncheck_interval_secs = 0.5\n${NODE}`).health.check_interval_secs).toBe(0.5);
  });

  test("users: server_password falls back to a plain password only", () => {
    const c = parse(`${NODE}[[users]]\nname = "a"\npassword = "pw"\n[[users]]\nname = "b"\npassword = "md5${"0".repeat(32)}"\nauth_method = "md5"\n`);
    expect(c.users[0]).toEqual({ name: "a", password: "pw", server_password: "pw", auth_method: "", pool_mode: "", max_connections: 0 });
    expect(c.users[1]!.server_password).toBe("");
  });
});

describe("errors name file, line, key and what was expected", () => {
  test("bad enum (the documented example)", () => {
    const text = `# proxy\n[proxy]\nlisten_address = "0.0.0.0:6432"\n\n[pool]\nmax_connections = 10\nmode = "sesion"\n${NODE}`;
    const e = errorOf(text);
    expect(e.message).toBe('proxy.toml:7: pool.mode: expected one of session|transaction|statement, got "sesion"');
    expect([e.file, e.line, e.key]).toEqual(["proxy.toml", 7, "pool.mode"]);
  });

  test("failover.synchronous and sync_wait_timeout_secs", () => {
    expect(errorOf(`[failover]\nsynchronous = "sometimes"\n${NODE}`).message).toBe('proxy.toml:2: failover.synchronous: expected one of remaining|strict|keep|off, got "sometimes"');
    expect(errorOf(`[failover]\nsync_wait_timeout_secs = 0\n${NODE}`).message).toBe("proxy.toml:2: failover.sync_wait_timeout_secs: expected a number > 0 and <= 86400, got 0");
  });

  test("reset_query_always without a reset_query", () => {
    expect(errorOf(`[pool]\nreset_query = ""\nreset_query_always = true\n${NODE}`).message).toBe(
      "proxy.toml:3: pool.reset_query_always: needs a non-empty pool.reset_query",
    );
  });

  test("unknown key, with a suggestion", () => {
    expect(errorOf(`[pool]\nmode = "session"\nmax_conections = 5\n${NODE}`).message).toBe(
      "proxy.toml:3: pool.max_conections: unknown key (did you mean max_connections?)",
    );
    expect(errorOf(`${NODE}zzz = 1\n`).message).toStartWith("proxy.toml:3: nodes[0].zzz: unknown key (valid: name, host,");
  });

  test("unknown section and top-level key", () => {
    expect(errorOf(`${NODE}\n[polo]\nmode = "x"\n`).message).toBe("proxy.toml:4: [polo]: unknown section (did you mean [pool]?)");
    expect(errorOf(`${NODE}[[whatever_this_is]]\na = 1\n`).message).toStartWith("proxy.toml:3: [whatever_this_is]: unknown section (valid: proxy, pool,");
    expect(errorOf(`listen_address = "1.2.3.4:5"\n${NODE}`).message).toBe(
      "proxy.toml:1: listen_address: unknown key at top level (keys belong in a section such as [proxy])",
    );
  });

  test("wrong types", () => {
    const cases: [string, string][] = [
      ['[pool]\nmax_connections = "100"', '2: pool.max_connections: expected an integer in 1..100000, got "100"'],
      ["[pool]\nmax_connections = 10.5", "2: pool.max_connections: expected an integer in 1..100000, got 10.5"],
      ['[load_balancer]\nread_write_split = "yes"', '2: load_balancer.read_write_split: expected true or false, got "yes"'],
      ["[pool]\nreset_query = 1", "2: pool.reset_query: expected a string, got 1"],
      ['[auth]\nadmin_users = "admin"', '2: auth.admin_users: expected an array of strings, got "admin"'],
      ["[auth]\nadmin_users = [1]", "2: auth.admin_users: expected an array of strings, got an array"],
      ["[pool]\nmode = 1979-05-27", "2: pool.mode: expected one of session|transaction|statement, got a date (1979-05-27)"],
      ["pool = 3", "1: [pool]: expected a [pool] table, got 3"],
    ];
    for (const [text, msg] of cases) expect(errorOf(`${text}\n${NODE}`).message).toBe(`proxy.toml:${msg}`);
    expect(errorOf('[nodes]\nhost = "x"\n').message).toBe("proxy.toml:1: [[nodes]]: expected [[nodes]] entries (an array of tables), got a table");
  });

  test("out of range values", () => {
    const cases: [string, string][] = [
      ["[health]\ncheck_interval_secs = 0", "health.check_interval_secs: expected a number > 0 and <= 3600, got 0"],
      ["[health]\nfailure_threshold = 0", "health.failure_threshold: expected an integer in 1..1000, got 0"],
      ["[limits]\nmax_message_bytes = 1000", "limits.max_message_bytes: expected an integer in 65536..1073741824, got 1000"],
      ["[limits]\nmax_message_bytes = 2147483647", "limits.max_message_bytes: expected an integer in 65536..1073741824, got 2147483647"],
      ["[pool]\nidle_timeout_secs = -1", "pool.idle_timeout_secs: expected a number in 0..31536000, got -1"],
      ["[[nodes]]\nhost = \"h\"\nport = 0", "nodes[1].port: expected an integer in 1..65535, got 0"],
    ];
    for (const [text, msg] of cases) expect(errorOf(`${NODE}${text}\n`).message).toContain(msg);
  });

  test("addresses", () => {
    for (const good of ["127.0.0.1:6432", "0.0.0.0:1", "[::1]:6432", "[::]:65535", "db.example.com:5432", "[fe80::1%eth0]:6432", "localhost:6432"]) {
      const port = Number(good.slice(good.lastIndexOf(":") + 1));
      expect(parseAddress(good)?.port).toBe(port);
    }
    for (const bad of ["localhost", "host:0", "host:65536", "host:", ":6432", "[::1:6432", "::1:6432", "[::1]6432", "a b:1", "256.1.1.1:5", "host:12a", "[zz::1]:5", ""]) {
      expect(parseAddress(bad)).toBeUndefined();
    }
    expect(errorOf(`[proxy]\nlisten_address = "localhost"\n${NODE}`).message).toBe(
      'proxy.toml:2: proxy.listen_address: expected "host:port" with port 1..65535 (IPv6 as "[::1]:6432"), got "localhost"',
    );
    expect(errorOf(`[[nodes]]\nhost = "bad host"\n`).message).toBe('proxy.toml:2: nodes[0].host: expected a host name or IP address, got "bad host"');
    expect(errorOf(`[proxy]\nlisten_address = "0.0.0.0:7000"\nadmin_address = "127.0.0.1:7000"\n${NODE}`).message).toBe(
      "proxy.toml:3: proxy.admin_address: must differ from proxy.listen_address (0.0.0.0:7000)",
    );
  });

  test("min_connections above max_connections", () => {
    expect(errorOf(`[pool]\nmax_connections = 10\nmin_connections = 50\n${NODE}`).message).toBe(
      "proxy.toml:3: pool.min_connections: expected at most pool.max_connections (10), got 50",
    );
  });

  test("nodes: none, missing host, duplicates, sync primary", () => {
    expect(errorOf("[pool]\nmode = \"session\"\n").message).toBe("proxy.toml: nodes: at least one [[nodes]] entry is required (host = ..., port = 5432)");
    expect(errorOf(`${NODE}\n[[nodes]]\nport = 5433\n`).message).toBe("proxy.toml:4: nodes[1].host: required key is missing");
    expect(errorOf(`${NODE}${NODE}`).message).toBe("proxy.toml:4: nodes[1].host: duplicate node 127.0.0.1:5432 (also nodes[0])");
    expect(errorOf(`${NODE}name = "a"\n[[nodes]]\nhost = "b"\nname = "a"\n`).message).toBe('proxy.toml:6: nodes[1].name: duplicate node name "a" (also nodes[0])');
    expect(errorOf(`${NODE}sync = true\n`).message).toBe('proxy.toml:3: nodes[0].sync: only a standby can be synchronous (role = "primary")');
  });

  test("users and auth", () => {
    expect(errorOf(`${NODE}[[users]]\npassword = "x"\n`).message).toBe("proxy.toml:3: users[0].name: required key is missing");
    expect(errorOf(`${NODE}[[users]]\nname = "a"\n[[users]]\nname = "a"\n`).message).toBe('proxy.toml:6: users[1].name: duplicate user "a" (also users[0])');
    expect(errorOf(`${NODE}[[users]]\nname = "a"\npassword = "SCRAM-SHA-256$4096:x"\nauth_method = "md5"\n`).message).toContain(
      "proxy.toml:5: users[0].password: md5 authentication needs a plain or md5 password",
    );
    expect(errorOf(`[auth]\nauth_query = "SELECT 1"\n${NODE}`).message).toBe("proxy.toml:2: auth.auth_query: needs auth.auth_user (the user that runs it)");
  });

  test("tls: mode needs files, files must exist, verify modes need a CA", () => {
    expect(errorOf(`[tls]\nmode = "require"\n${NODE}`).message).toBe(
      'proxy.toml:2: tls.cert_file: required when tls.mode = "require"\nproxy.toml:2: tls.key_file: required when tls.mode = "require"',
    );
    expect(errorOf(`[tls]\nmode = "allow"\ncert_file = "/nonexistent/c.pem"\nkey_file = "/nonexistent/k.pem"\n${NODE}`).message).toContain(
      "proxy.toml:3: tls.cert_file: file not found: /nonexistent/c.pem",
    );
    expect(errorOf(`[tls]\nserver_sslmode = "verify-full"\n${NODE}`).message).toBe('proxy.toml:2: tls.server_sslmode: "verify-full" needs tls.server_ca_file');
    const dir = mkdtempSync(join(tmpdir(), "helios-cfg-"));
    for (const f of ["c.pem", "k.pem"]) writeFileSync(join(dir, f), "x");
    const path = join(dir, "proxy.toml");
    writeFileSync(path, `[tls]\nmode = "require"\ncert_file = "c.pem"\nkey_file = "${join(dir, "k.pem")}"\n${NODE}`);
    const c = loadConfig(path);
    expect(c.tls.cert_file).toBe(join(dir, "c.pem")); // relative to the config file
    expect(c.tls.key_file).toBe(join(dir, "k.pem"));
    rmSync(dir, { recursive: true, force: true });
  });

  test("syntax errors carry their line", () => {
    const e = errorOf(`[pool]\nmode = "session"\n\nmax_connections = \n${NODE}`);
    expect(e.line).toBe(4);
    expect(e.message).toStartWith("proxy.toml:4: TOML syntax error: ");
    expect(e.message).not.toContain("\n");
    expect(errorOf(`[pool]\nmode = "a"\nmode = "b"\n`).message).toStartWith("proxy.toml:3: TOML syntax error: ");
  });

  test("all problems are reported, in line order", () => {
    const e = errorOf(`[pool]\nmode = "x"\n[health]\nfailure_threshold = 0\n[nope]\n${NODE}`);
    expect(e.issues.map((i) => i.line)).toEqual([2, 4, 5]);
    expect(e.message.split("\n")).toHaveLength(3);
  });

  test("a missing file", () => {
    expect(() => loadConfig("/nonexistent/proxy.toml")).toThrow("/nonexistent/proxy.toml: cannot read config: file not found");
  });
});

describe("line lookup", () => {
  test("survives multi-line strings, arrays, inline tables, dotted keys, nested tables", () => {
    const text = [
      '[pool]', // 1
      'reset_query = """', // 2
      'mode = "not a key"', // 3
      '"""', // 4
      'mode = "session"', // 5
      "[auth]", // 6
      'admin_users = ["a",', // 7
      '  "b"]', // 8
      'proxy.log_level = "info"', // 9 (dotted key inside [auth] -> auth.proxy.log_level)
      "[[nodes]]", // 10
      'host = "a"', // 11
      "[nodes.extra]", // 12
      "x = 1", // 13
      "[[nodes]]", // 14
      "  port = 1 # c", // 15
      'inline = { a = 1, "b.c" = 2 }', // 16
    ].join("\n");
    const loc = new KeyLocator(text);
    expect(loc.exactLineOf(["pool", "mode"])).toBe(5);
    expect(loc.exactLineOf(["auth", "proxy", "log_level"])).toBe(9);
    expect(loc.exactLineOf(["nodes", 0, "extra", "x"])).toBe(13);
    expect(loc.exactLineOf(["nodes", 1])).toBe(14);
    expect(loc.exactLineOf(["nodes", 1, "port"])).toBe(15);
    expect(loc.exactLineOf(["nodes", 1, "inline", "b.c"])).toBe(16);
    expect(loc.lineOf(["nodes", 1, "host"])).toBe(14);
  });

  test("errors inside inline tables point at their line", () => {
    expect(errorOf('nodes = [\n  { host = "a" },\n  { host = "b", port = "x" },\n]\n').message).toBe(
      'proxy.toml:3: nodes[1].port: expected an integer in 1..65535, got "x"',
    );
  });
});

describe("feature modules", () => {
  test("registry", () => {
    expect(buildProfile()).toBe("dev");
    expect(compiledFeatures().map((f) => f.name)).toEqual([...FEATURE_NAMES]);
    expect(compiledFeatures().every((f) => f.enabled)).toBe(true);
    expect(moduleSectionFeature("transaction_replay")).toBe("ha-tr");
    expect(moduleSectionFeature("query_cache")).toBe("query-cache");
    expect(moduleSectionFeature("pool")).toBeUndefined();
    expect(isFeatureCompiled("schema-routing")).toBe(true);
    expect(isFeatureCompiled("query-cache")).toBe(true);
    expect(isFeatureCompiled("rate-limiting")).toBe(false);
    expect(isFeatureCompiled("no-such-feature")).toBe(false);
  });

  test("a module section is checked against its schema and stored with defaults", () => {
    const c = parse(`${NODE}[routing_hints]\nnode_hint_users = ["app"]\n`);
    expect(c.modules).toEqual({ routing_hints: { enabled: true, allow_node_hints: true, node_hint_users: ["app"] } });
    expect(errorOf(`${NODE}[routing_hints]\nallow_node_hint = false\nnode_hint_users = 3\n`).message).toBe(
      "proxy.toml:4: routing_hints.allow_node_hint: unknown key (did you mean allow_node_hints?)\n" +
        "proxy.toml:5: routing_hints.node_hint_users: expected an array of strings, got 3",
    );
    expect(errorOf(`${NODE}[lag_routing]\nmax_lag_ms = -5\n`).message).toBe("proxy.toml:4: lag_routing.max_lag_ms: expected a number in 0..3600000, got -5");
    expect(errorOf(`${NODE}[schema_routing.temperature]\nmax_tabels = 20\n`).message).toBe(
      "proxy.toml:4: schema_routing.temperature.max_tabels: unknown key (did you mean max_tables?)",
    );
    expect(errorOf(`${NODE}[query_analytic]\nmax_queries = 5\n`).message).toBe("proxy.toml:3: [query_analytic]: unknown section (did you mean [query_analytics]?)");
  });

  test("a section of a feature this version does not implement fails, naming it, unless enabled = false", () => {
    expect(errorOf(`${NODE}[rate_limiting]\nper_user_qps = -5\n`).message).toBe(
      "proxy.toml:3: [rate_limiting]: rate-limiting is not implemented in this version (`heliosproxy features` lists what is)",
    );
    expect(errorOf(`${NODE}[auth_proxy]\njwks_url = "https://x"\n`).message).toContain("[auth_proxy]: auth-proxy is not implemented");
    expect(errorOf(`${NODE}[graphql_gateway]\nmax_depth = 4\n`).message).toContain("[graphql_gateway]: graphql-gateway is not implemented");
    for (const section of ["circuit_breaker", "multi_tenancy", "wasm_plugins", "distribcache", "query_rewriting"])
      expect(errorOf(`${NODE}[${section}]\nx = 1\n`).message).toContain("is not implemented in this version");
    expect(parse(`${NODE}[rate_limiting]\nenabled = false\n`).modules).toEqual({});
  });

  test("[query_cache]: its keys are checked; invalidation = \"wal\" takes names a replication command can carry", () => {
    expect(parse(`${NODE}[query_cache]\nttl_secs = 30\n`).modules.query_cache).toMatchObject({ enabled: true, ttl_secs: 30, mode: "all", invalidation: "proxy" });
    expect(errorOf(`${NODE}[query_cache]\nl1_size = "banana"\n`).message).toContain("query_cache.l1_size: unknown key");
    expect(parse(`${NODE}[query_cache]\ninvalidation = "wal"\n`).modules.query_cache).toMatchObject({ invalidation: "wal", wal_publication: "heliosproxy_cache", wal_slot_prefix: "heliosproxy_cache", wal_timeout_secs: 5 });
    expect(errorOf(`${NODE}[query_cache]\ninvalidation = "wal"\nwal_publication = "My Pub"\n`).message).toContain('wal_publication: expected a lower-case name of letters, digits and _ (at most 63), got "My Pub"');
    expect(errorOf(`${NODE}[query_cache]\nwal_slot_prefix = "${"s".repeat(55)}"\n`).message).toContain("wal_slot_prefix: expected a lower-case name");
    expect(errorOf(`${NODE}[query_cache]\nwal_timeout_secs = 0\n`).message).toContain("wal_timeout_secs");
    expect(errorOf(`${NODE}[query_cache]\nl1_max_bytes = 8192\nmax_result_bytes = 9000\n`).message).toContain("max_result_bytes: expected at most l1_max_bytes (8192), got 9000");
    expect(errorOf(`${NODE}[[query_cache.rules]]\nttl_secs = 5\n`).message).toContain("a rule needs table, fingerprint or user");
  });

  test("a section of a feature missing from the build fails", () => {
    const opts = { isCompiled: (f: string) => f !== "lag-routing" && f !== "heliosdb-topology", profile: "default" };
    expect(errorOf(`${NODE}\n[lag_routing]\nmax_lag_ms = 10\n`, opts).message).toBe(
      "proxy.toml:4: [lag_routing]: lag-routing is not in this build (profile: default)",
    );
    expect(parse(`${NODE}[lag_routing]\nenabled = false\n`, opts).modules).toEqual({});
    expect(errorOf(`${NODE}[topology]\nprovider = "heliosdb"\n`, opts).message).toBe(
      "proxy.toml:4: topology.provider: heliosdb-topology is not in this build (profile: default)",
    );
    expect(parse(`${NODE}[topology]\nprovider = "postgres"\n`, opts).topology.provider).toBe("postgres");
  });

  test("[topology] and [failover]: Patroni needs URLs; auto failover conflicts with a provider that promotes by itself", () => {
    expect(parse(NODE).failover.policy).toBe("manual");
    expect(parse(NODE).topology.provider).toBe("postgres");
    expect(errorOf(`${NODE}[topology]\nprovider = "patroni"\n`).message).toBe(
      'proxy.toml:4: topology.patroni_urls: required when topology.provider = "patroni"',
    );
    expect(errorOf(`${NODE}[topology]\nprovider = "patroni"\npatroni_urls = ["10.0.0.1:8008"]\n`).message).toBe(
      'proxy.toml:5: topology.patroni_urls: expected a base URL such as "http://10.0.0.1:8008", got "10.0.0.1:8008"',
    );
    expect(errorOf(`${NODE}[topology]\nprovider = "heliosdb"\n[failover]\npolicy = "auto"\n`).message).toBe(
      'proxy.toml:6: failover.policy: "auto" conflicts with topology.provider = "heliosdb", which promotes by itself (use "off")',
    );
    expect(errorOf(`${NODE}[failover]\npolicy = "sometimes"\n`).message).toStartWith("proxy.toml:4: failover.policy: expected one of auto|manual|off, got \"sometimes\"");
    expect(parse(`${NODE}[failover]\npolicy = "auto"\nbuffer_timeout_secs = 2.5\n`).failover.buffer_timeout_secs).toBe(2.5);
  });
});

describe("shipped examples", () => {
  const files = readdirSync(CONFIG_DIR).filter((f) => f.endsWith(".toml"));

  test("there are examples", () => {
    expect(files).toEqual(expect.arrayContaining(["proxy.example.toml", "minimal.toml", "session.toml"]));
  });

  for (const f of files) {
    test(`${f} validates`, () => {
      expect(loadConfig(join(CONFIG_DIR, f)).nodes[0]!.host).toBe("127.0.0.1");
    });
  }

  test("proxy.example.toml has every key at its default", () => {
    const text = readFileSync(join(CONFIG_DIR, "proxy.example.toml"), "utf8");
    const c = parseConfig(text, "proxy.example.toml");
    const d = parse(NODE);
    for (const [name, spec] of Object.entries(SCHEMA)) {
      for (const key of Object.keys(spec.fields)) expect(text).toMatch(new RegExp(`^(# )?${key} = `, "m"));
      if (spec.kind === "table") expect((c as unknown as Record<string, unknown>)[name]).toEqual((d as unknown as Record<string, unknown>)[name]);
    }
    expect(c.nodes).toEqual(d.nodes);
    expect(parse(`[pool]\nmode = "session"\n${NODE}`).pool.mode).toBe("session");
  });

  test("minimal.toml is the product example on this machine", () => {
    const c = loadConfig(join(CONFIG_DIR, "minimal.toml"));
    expect(c.proxy.listen_address).toBe("127.0.0.1:6432");
    expect(c.nodes).toHaveLength(1);
    expect(loadConfig(join(CONFIG_DIR, "session.toml")).pool.mode).toBe("session");
  });
});

describe("display", () => {
  test("flat rows with defaults; a key marked secret is masked, in core and module sections alike", () => {
    const c = parse(
      `[auth]\nauth_user = "pgb"\nauth_query = "SELECT 1"\nauth_password = "s3cret"\n${NODE}` +
        `[[users]]\nname = "app"\npassword = "pw"\n[lag_routing]\nmax_lag_ms = 50\n[tracing.headers]\nauthorization = "Bearer t0k"\n`,
    );
    const rows = Object.fromEntries(formatConfigForDisplay(c, moduleSpec).map((r) => [r.key, r]));
    expect(rows["pool.mode"]).toEqual({ key: "pool.mode", value: "transaction", default: "transaction", changeable: true });
    expect(rows["nodes[0].host"]!.value).toBe("127.0.0.1");
    expect(rows["proxy.listen_address"]!.changeable).toBe(false);
    expect(rows["auth.auth_password"]!.value).toBe(MASK);
    expect(rows["users[0].password"]!.value).toBe(MASK);
    expect(rows["users[0].server_password"]!.value).toBe(MASK);
    expect(rows["lag_routing.max_lag_ms"]).toEqual({ key: "lag_routing.max_lag_ms", value: "50", default: "0", changeable: false });
    expect(rows["lag_routing.read_your_writes"]).toMatchObject({ value: "off", default: "off" });
    expect(rows["tracing.headers.authorization"]!.value).toBe(MASK);
    expect(rows["tracing.endpoint"]).toMatchObject({ value: "http://127.0.0.1:4318/v1/traces", default: "http://127.0.0.1:4318/v1/traces" });
    const all = JSON.stringify(rows);
    for (const secret of ["s3cret", "t0k", '"pw"']) expect(all).not.toContain(secret);
  });
});
