// [coordination]: defaults, and every bad key or combination is an error naming file:line.

import { expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { prefixEnd } from "../../src/cluster/coordination/etcd-client.ts";

const NODE = '[[nodes]]\nhost = "127.0.0.1"\n';

function messageOf(text: string): string {
  try {
    parseConfig(text, "proxy.toml");
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

test("defaults: no coordination", () => {
  expect(parseConfig(NODE, "proxy.toml").coordination).toEqual({
    backend: "none", endpoints: [], key_prefix: "/heliosproxy/default", lease_ttl_secs: 10, request_timeout_secs: 1, username: "", password: "",
    ca_file: "", cert_file: "", key_file: "", proxy_name: "", advertise_admin_url: "",
  });
});

test("a valid etcd fleet config", () => {
  const c = parseConfig(`${NODE}[coordination]\nbackend = "etcd"\nendpoints = ["http://10.0.0.1:2379", "https://etcd.internal:2379"]\nkey_prefix = "/heliosproxy/orders"\nlease_ttl_secs = 5\nusername = "helios"\npassword = "pw"\n`, "proxy.toml");
  expect(c.coordination).toMatchObject({ backend: "etcd", endpoints: ["http://10.0.0.1:2379", "https://etcd.internal:2379"], key_prefix: "/heliosproxy/orders", lease_ttl_secs: 5 });
});

test("bad keys and combinations name file:line", () => {
  expect(messageOf(`${NODE}[coordination]\nbackend = "zookeeper"\n`)).toBe("proxy.toml:4: coordination.backend: expected one of none|etcd, got \"zookeeper\"");
  expect(messageOf(`${NODE}[coordination]\nbackend = "etcd"\nendpoint = ["http://a:2379"]\n`)).toContain("proxy.toml:5: coordination.endpoint: unknown key (did you mean endpoints?)");
  expect(messageOf(`${NODE}[coordination]\nbackend = "etcd"\n`)).toBe("proxy.toml:4: coordination.endpoints: required when coordination.backend = \"etcd\"");
  expect(messageOf(`${NODE}[coordination]\nendpoints = ["http://a:2379"]\n`)).toBe("proxy.toml:4: coordination.endpoints: only used with coordination.backend = \"etcd\" (backend is \"none\")");
  expect(messageOf(`${NODE}[coordination]\nbackend = "etcd"\nendpoints = ["a:2379"]\n`)).toBe("proxy.toml:5: coordination.endpoints: expected a URL such as \"http://10.0.0.1:2379\", got \"a:2379\"");
  expect(messageOf(`${NODE}[coordination]\nbackend = "etcd"\nendpoints = ["http://a:2379"]\nkey_prefix = "helios/"\n`)).toContain("proxy.toml:6: coordination.key_prefix: expected a key path");
  expect(messageOf(`${NODE}[coordination]\nlease_ttl_secs = 1\n`)).toBe("proxy.toml:4: coordination.lease_ttl_secs: expected an integer in 2..3600, got 1");
  expect(messageOf(`${NODE}[coordination]\nbackend = "etcd"\nendpoints = ["https://a:2379"]\ncert_file = "/etc/hostname"\n`)).toBe("proxy.toml:6: coordination.cert_file: coordination.cert_file and coordination.key_file go together");
  expect(messageOf(`${NODE}[coordination]\nbackend = "etcd"\nendpoints = ["https://a:2379"]\nca_file = "no-such-ca.pem"\n`)).toContain("proxy.toml:6: coordination.ca_file: file not found: ");
  expect(messageOf(`${NODE}[coordination]\nbackend = "etcd"\nendpoints = ["http://a:2379"]\npassword = "pw"\n`)).toBe("proxy.toml:6: coordination.password: needs coordination.username");
});

test("a prefix's range end is the next key after every key under it", () => {
  expect(Buffer.from(prefixEnd("/a/"), "base64").toString()).toBe("/a0");
  expect(Buffer.from(prefixEnd("ab"), "base64").toString()).toBe("ac");
});
