// A22: a TLS client that vanishes without close_notify is a clean EOF: nothing leaks, the server is reused.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect as tlsConnect } from "node:tls";
import { makeTlsFiles } from "../support/pg-instance.ts";
import { psql, startProxy, type RunningProxy } from "../support/proxy.ts";

let proxy: RunningProxy;

beforeAll(async () => {
  const tls = await makeTlsFiles();
  proxy = await startProxy({
    maxConnections: 1,
    toml: `[tls]\nmode = "require"\ncert_file = "${tls.serverCert}"\nkey_file = "${tls.serverKey}"`,
  });
});

afterAll(async () => {
  await proxy.stop();
});

/** SSLRequest, then TLS, then a startup packet and one query inside a transaction; resolves once the query answered. */
function tlsClientInTransaction(port: number): Promise<import("node:tls").TLSSocket> {
  return new Promise((resolve, reject) => {
    // node:tls must own the socket, so the SSLRequest is spoken on it first.
    const net = require("node:net") as typeof import("node:net");
    const sock = net.connect(port, "127.0.0.1", () => sock.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])));
    sock.once("data", (d: Buffer) => {
      if (d[0] !== 83) return reject(new Error("no TLS"));
      const t = tlsConnect({ socket: sock, rejectUnauthorized: false }, () => {
        const params = Buffer.from("user\0postgres\0database\0test\0\0");
        const startup = Buffer.alloc(8 + params.length);
        startup.writeInt32BE(startup.length, 0);
        startup.writeInt32BE(196608, 4);
        params.copy(startup, 8);
        t.write(startup);
      });
      let sentQuery = false;
      let seen = Buffer.alloc(0);
      t.on("data", (chunk: Buffer) => {
        seen = Buffer.concat([seen, chunk]);
        // ReadyForQuery 'I' after login, then 'T' after the query inside BEGIN.
        if (!sentQuery && seen.includes(Buffer.from([90, 0, 0, 0, 5, 73]))) {
          sentQuery = true;
          const q = Buffer.from("BEGIN; SELECT 1;\0");
          const msg = Buffer.alloc(5 + q.length);
          msg[0] = 81;
          msg.writeInt32BE(4 + q.length, 1);
          q.copy(msg, 5);
          t.write(msg);
          seen = Buffer.alloc(0);
        } else if (sentQuery && seen.includes(Buffer.from([90, 0, 0, 0, 5, 84]))) resolve(t);
      });
      t.on("error", reject);
    });
    sock.on("error", reject);
  });
}

test("a TLS client cut off mid-transaction without close_notify: the proxy rolls back and serves the next client", async () => {
  for (let i = 0; i < 3; i++) {
    const t = await tlsClientInTransaction(proxy.port);
    // Destroy the TCP socket under TLS: no close_notify alert is sent.
    t.destroy();
  }
  // max_connections = 1: each abrupt leaver's server was rolled back and reused.
  const r = await psql(proxy.port, ["-Atc", "select 'after' , count(*) from pg_stat_activity where state = 'idle in transaction' and application_name = ''"], {
    env: { PGSSLMODE: "require" },
  });
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe("after|0");
  expect(proxy.proc.exitCode).toBeNull();
});
