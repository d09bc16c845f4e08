// Query cache with invalidation = "wal": how long a write made directly on PostgreSQL stays hidden by a cached reply (p50/p99); writes docs/benchmarks.md.
//
//   bun bench/query-cache-wal.ts [--writes N] [--no-doc] [--note TEXT]
//
// It starts its own PostgreSQL (wal_level = logical, on a free port, as the postgres OS user) and a proxy in front of it.

import pg from "pg";
import { startPgInstance, waitFor } from "../test/support/pg-instance.ts";
import { startProxy } from "../test/support/proxy.ts";
import { codeVersion, commandLine, fmt, parseFlags, updateDoc } from "./lib.ts";

let writes = 1000;
let doc = true;
let note = "";
parseFlags(
  process.argv.slice(2),
  (code) => {
    console.log("usage: bun bench/query-cache-wal.ts [--writes N] [--no-doc] [--note TEXT]");
    process.exit(code);
  },
  { "--writes": (v) => (writes = Number(v())), "--no-doc": () => (doc = false), "--note": (v) => (note = v()) },
);

const inst = await startPgInstance({ conf: { wal_level: "logical" } });
const proxy = await startProxy({ nodes: [{ host: "127.0.0.1", port: inst.port }], toml: `[auth]\nmethod = "trust"\n[query_cache]\ninvalidation = "wal"\nttl_secs = 3600\n` });
const connect = async (port: number) => {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
  await c.connect();
  return c;
};
const hits = async (): Promise<number> => ((await (await fetch(`http://127.0.0.1:${proxy.adminPort}/cache`)).json()) as { hits: number }).hits;
try {
  await inst.psql("CREATE TABLE kv (id int PRIMARY KEY, v int); INSERT INTO kv VALUES (1, 0)");
  const direct = await connect(inst.port);
  const via = await connect(proxy.port);
  const read = async () => (await via.query("SELECT v FROM kv WHERE id = $1", [1])).rows[0].v as number;
  const gaps: number[] = [];
  let staleReads = 0;
  for (let i = 1; i <= writes; i++) {
    // The entry is cached (a read answered by the cache), then the row changes behind the proxy's back.
    await waitFor("a cached reply", async () => {
      const h = await hits();
      await read();
      return (await hits()) > h ? true : undefined;
    }, 15_000, 1);
    await direct.query("UPDATE kv SET v = $1 WHERE id = 1", [i]);
    const t0 = performance.now();
    while ((await read()) !== i) {
      staleReads++;
      if (performance.now() - t0 > 10_000) throw new Error(`write ${i} hidden for 10 s`);
    }
    gaps.push(performance.now() - t0);
  }
  await direct.end();
  await via.end();
  gaps.sort((a, b) => a - b);
  const at = (q: number) => gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))]!;
  const line = `Direct \`UPDATE\` acknowledged -> first fresh read through the proxy, ${fmt(writes)} writes: p50 ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms, max ${gaps.at(-1)!.toFixed(2)} ms; stale reads seen meanwhile: ${fmt(staleReads)} (each a full round trip through the proxy).`;
  console.log(line);
  if (doc)
    updateDoc(
      "query-cache-wal",
      [
        "### Query cache: writes that bypass the proxy (invalidation = \"wal\")",
        "",
        "```",
        commandLine("bench/query-cache-wal.ts"),
        "```",
        "",
        `- Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}; HeliosProxy code: commit ${codeVersion()}; load average at the end: ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`,
        "- Setup: a PostgreSQL started by the script (wal_level = logical, fsync off) on the same machine; one client writes directly, one reads through the proxy (a cached point select) until it sees the write.",
        ...(note === "" ? [] : [`- Note: ${note}`]),
        "",
        line,
      ].join("\n"),
    );
} finally {
  await proxy.stop();
  await inst.destroy();
}
