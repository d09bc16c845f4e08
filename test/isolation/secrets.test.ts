// Passwords in statements and config never reach an admin surface or the log: analytics, slow log, SHOW QUERIES, journal, reload.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync, readFileSync } from "node:fs";
import { pgClient } from "../support/clients.ts";
import { usePgInstance } from "../support/pg-fixture.ts";
import { waitFor } from "../support/pg-instance.ts";
import { psql, type RunningProxy } from "../support/proxy.ts";

const fx = usePgInstance({ databases: ["app"] }, (inst) =>
  inst.psql(
    "CREATE EXTENSION dblink; CREATE EXTENSION postgres_fdw; CREATE FOREIGN DATA WRAPPER plain_fdw; CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw; CREATE ROLE target LOGIN",
    { db: "app" },
  ),
);

/** Each case: a statement carrying a password that must not be seen again (PORT: the instance's). */
const CASES: [string, string][] = [
  ["alter role", "ALTER ROLE target PASSWORD 'Pw1-alter-role'"],
  ["alter user encrypted", "ALTER USER target WITH ENCRYPTED PASSWORD 'Pw2-encrypted' VALID UNTIL 'infinity'"],
  ["create role", "CREATE ROLE made_here LOGIN PASSWORD 'Pw3-create-role'"],
  ["create user dollar", "CREATE USER made_too PASSWORD $$Pw4-dollar$$"],
  ["create server", "CREATE SERVER other FOREIGN DATA WRAPPER plain_fdw OPTIONS (host '127.0.0.1', password 'Pw5-server')"],
  ["user mapping", "CREATE USER MAPPING FOR target SERVER remote OPTIONS (user 'target', password 'Pw6-mapping')"],
  ["dblink conninfo", "SELECT dblink_connect('c1', 'host=127.0.0.1 port=PORT dbname=app user=postgres password=Pw7-dblink')"],
  ["dblink quoted conninfo", "SELECT dblink_connect('c2', 'host=127.0.0.1 port=PORT dbname=app user=postgres password=''Pw8-quoted x''')"],
];
const SECRETS = CASES.map(([, sql]) => /Pw\d-[A-Za-z-]+(?: x)?/.exec(sql)![0]);

let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await fx.proxyWith({
    toml: ["[auth]", 'method = "trust"', 'admin_users = ["postgres"]', "[query_analytics]", "slow_query_ms = 1", "log_parameters = true", "[transaction_replay]", "journal_parameters = true"].join("\n"),
  });
});

afterAll(async () => {
  await proxy?.stop();
});

const get = async (path: string): Promise<string> => await (await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`)).text();

function expectNoSecret(where: string, text: string): void {
  for (const s of SECRETS) if (text.includes(s)) throw new Error(`${where} shows the secret ${JSON.stringify(s)}`);
}

test("every case runs through the proxy and appears nowhere: /queries, /queries/slow, SHOW QUERIES, /journal, the log", async () => {
  const c = await pgClient(proxy.port, { database: "app" });
  for (const [, sql] of CASES) {
    // Slow enough for the slow log (slow_query_ms = 1), in one simple Query.
    await c.query(`SELECT pg_sleep(0.005); ${sql.replace("PORT", String(fx.inst.port))}`);
  }
  // Open a transaction with a password in it and read the journal while it is open.
  await c.query("BEGIN");
  await c.query("ALTER ROLE target PASSWORD 'Pw1-alter-role'");
  const journal = await get("/journal");
  expect(journal).toContain("ALTER ROLE target PASSWORD '***'");
  expectNoSecret("/journal", journal);
  await c.query("ROLLBACK");
  await c.end();

  const queries = await waitFor("the statements in /queries", async () => {
    const t = await get("/queries?limit=1000");
    return t.includes("made_here") && t.includes("dblink_connect") ? t : "";
  });
  expect(queries).toContain("PASSWORD '***'");
  expectNoSecret("/queries", queries);
  const slow = await get("/queries/slow");
  expect(slow).toContain("made_here");
  expectNoSecret("/queries/slow", slow);
  const show = (await psql(proxy.port, ["-A", "-c", "SHOW QUERIES"], { db: "heliosproxy" })).stdout;
  expect(show).toContain("made_here");
  expectNoSecret("SHOW QUERIES", show);
  // The slow-query log lines went out with the statements in them (log_parameters), masked.
  await waitFor("slow-query log lines", () => proxy.output().includes("made_here"));
  expectNoSecret("the log", proxy.output());
});

test("a failed reload with a mistyped password names the key, never the value", async () => {
  const original = readFileSync(proxy.configPath, "utf8");
  writeFileSync(proxy.configPath, `${original}\n[[users]]\nname = "app"\npassword = 918273645\n`);
  try {
    const res = await fetch(`http://127.0.0.1:${proxy.adminPort}/reload`, { method: "POST" });
    expect(res.status).toBe(400);
    const body = await res.text();
    expect(body).toContain("users[0].password");
    expect(body).toContain("expected a string, got a number");
    expect(body).not.toContain("918273645");
    await waitFor("the reload failure in the log", () => proxy.output().includes("users[0].password"));
    expect(proxy.output()).not.toContain("918273645");
  } finally {
    writeFileSync(proxy.configPath, original);
  }
});
