// Test fixture: a real etcd and two Patroni members managing PostgreSQL (as the postgres OS user) on free ports, with switchover and cleanup.

import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { PG_OS_USER, giveToPostgres, isRoot, pgBinDir, pgCommand, run, shQuote } from "../../src/devcluster/pg-bin.ts";
import { freePort } from "../../src/util/net.ts";

export interface PatroniMemberInfo {
  /** Patroni member name (pg1, pg2). */
  readonly name: string;
  readonly host: string;
  /** PostgreSQL port. */
  readonly port: number;
  /** Patroni REST API base URL. */
  readonly restUrl: string;
}

/** One member of GET /cluster. */
export interface PatroniClusterMember {
  name: string;
  role: string;
  state: string;
  host?: string;
  port?: number;
  lag?: number | string;
  timeline?: number;
}

export interface PatroniCluster {
  readonly members: readonly PatroniMemberInfo[];
  /** etcd client URL. */
  readonly etcdUrl: string;
  readonly baseDir: string;
  member(name: string): PatroniMemberInfo;
  /** GET /cluster from the first member whose REST API answers. */
  clusterState(): Promise<PatroniClusterMember[]>;
  /** The leader's member name, once there is one running (waits up to 30 s). */
  leader(): Promise<string>;
  /** Wait until there is a running leader, every member is running and every other member streams from it. */
  waitStreaming(timeoutMs?: number): Promise<void>;
  /** Patroni switchover (REST POST /switchover) to member `to`; resolves once `to` is the running leader. */
  switchover(to: string): Promise<void>;
  /** The last lines Patroni and etcd logged (for failure messages). */
  logs(): string;
  /** Kill Patroni, stop PostgreSQL, stop etcd, remove the directory. Safe to call twice. */
  destroy(): Promise<void>;
}

export interface PatroniOptions {
  /** Members (default 2). */
  members?: number;
  /** Milliseconds to wait for a leader and streaming replicas (default 90 s). */
  startTimeoutMs?: number;
}

/** `count` distinct free ports. */
function freePorts(count: number): number[] {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(freePort());
  return [...ports];
}

/** Command line running `cmd` as the postgres OS user when we are root (PostgreSQL refuses root). */
function asPostgresUser(cmd: string[]): string[] {
  if (!isRoot()) return cmd;
  const runuser = Bun.which("runuser") ?? ["/usr/sbin/runuser", "/sbin/runuser"].find((p) => existsSync(p)) ?? "runuser";
  return [runuser, "-u", PG_OS_USER, "--", ...cmd];
}

async function getJson(url: string, timeoutMs = 1000): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}

async function until<T>(what: string, check: () => Promise<T | null | undefined | false>, timeoutMs: number, logs: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}\n${logs()}`);
    await Bun.sleep(100);
  }
}

/**
 * A detached shell that outlives a crashed or killed test process: once `ownerPid` is gone it kills
 * the pids listed in `pidFile`, stops PostgreSQL in `dataDirs` and removes `baseDir`. destroy() ends it first.
 */
function spawnJanitor(ownerPid: number, pidFile: string, dataDirs: string[], baseDir: string): number {
  const stops = dataDirs.map((d) => `if [ -f ${shQuote(join(d, "postmaster.pid"))} ]; then ${pgCommand("pg_ctl", ["stop", "-D", d, "-m", "immediate", "-w"]).map(shQuote).join(" ")}; fi`);
  const body = [
    `while kill -0 ${ownerPid} 2>/dev/null; do sleep 1; done`,
    `for p in $(cat ${shQuote(pidFile)}); do kill -9 "$p"; done`,
    ...stops,
    `rm -rf ${shQuote(baseDir)}`,
  ].join("; ");
  const r = Bun.spawnSync(["sh", "-c", `(${body}) </dev/null >/dev/null 2>&1 & echo $!`]);
  return Number(r.stdout.toString().trim());
}

function killPid(pid: number, signal: NodeJS.Signals = "SIGKILL"): void {
  try {
    if (pid > 0) process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function tail(path: string, chars = 3000): string {
  try {
    const t = readFileSync(path, "utf8");
    return t.length > chars ? t.slice(-chars) : t;
  } catch {
    return "";
  }
}

/** Patroni's configuration for one member (JSON is YAML). */
function patroniConfig(o: { scope: string; name: string; restPort: number; pgPort: number; etcdPort: number; dir: string }): string {
  const hba = ["local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"];
  return JSON.stringify(
    {
      scope: o.scope,
      namespace: "/helios-test/",
      name: o.name,
      log: { level: "INFO" },
      restapi: { listen: `127.0.0.1:${o.restPort}`, connect_address: `127.0.0.1:${o.restPort}` },
      etcd3: { hosts: [`127.0.0.1:${o.etcdPort}`] },
      bootstrap: {
        // ttl >= loop_wait + 2 * retry_timeout, as Patroni's docs ask.
        dcs: {
          ttl: 10,
          loop_wait: 1,
          retry_timeout: 4,
          maximum_lag_on_failover: 16777216,
          postgresql: {
            use_pg_rewind: true,
            use_slots: true,
            parameters: { wal_level: "replica", hot_standby: "on", max_wal_senders: 10, max_replication_slots: 10, wal_keep_size: "64MB", max_connections: 100 },
          },
        },
        initdb: [{ encoding: "UTF8" }, { locale: "C" }, "no-sync"],
        pg_hba: hba,
      },
      postgresql: {
        listen: `127.0.0.1:${o.pgPort}`,
        connect_address: `127.0.0.1:${o.pgPort}`,
        data_dir: join(o.dir, "data"),
        bin_dir: pgBinDir(),
        pgpass: join(o.dir, "pgpass"),
        authentication: { superuser: { username: "postgres" }, replication: { username: "postgres" } },
        pg_hba: hba,
        // Durability off for speed; WAL stays complete so replication, switchover and pg_rewind work.
        parameters: { unix_socket_directories: o.dir, fsync: "off", shared_buffers: "32MB", logging_collector: "off" },
      },
      tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
    },
    null,
    2,
  );
}

/** Start etcd and the Patroni members; resolves once there is a leader and the replicas stream. */
export async function startPatroniCluster(o: PatroniOptions = {}): Promise<PatroniCluster> {
  const count = o.members ?? 2;
  const baseDir = mkdtempSync(join(tmpdir(), "helios-patroni-"));
  giveToPostgres(baseDir, 0o755);
  const pidFile = join(baseDir, "pids");
  writeFileSync(pidFile, "");
  giveToPostgres(pidFile, 0o666);
  const [etcdClient, etcdPeer, ...rest] = freePorts(2 + 2 * count);
  const etcdUrl = `http://127.0.0.1:${etcdClient}`;
  const dirs = Array.from({ length: count }, (_, i) => join(baseDir, `pg${i + 1}`));
  const janitor = spawnJanitor(process.pid, pidFile, dirs.map((d) => join(d, "data")), baseDir);
  const members: PatroniMemberInfo[] = dirs.map((_, i) => ({
    name: `pg${i + 1}`,
    host: "127.0.0.1",
    port: rest[2 * i]!,
    restUrl: `http://127.0.0.1:${rest[2 * i + 1]}`,
  }));
  const procs: Subprocess[] = [];
  const logFiles = [join(baseDir, "etcd.log"), ...dirs.map((d) => join(d, "patroni.log"))];
  const logs = () => logFiles.map((f) => `--- ${f} ---\n${tail(f)}`).join("\n");
  let destroyed = false;

  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    // Patroni and etcd are killed outright (a Patroni shutting down gently would fail over or restart PostgreSQL), then PostgreSQL stops at once.
    const pids = readFileSync(pidFile, "utf8").split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) killPid(pid);
    for (const p of procs) p.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    await Promise.all(
      dirs.map(async (d) => {
        if (existsSync(join(d, "data", "postmaster.pid"))) await run(pgCommand("pg_ctl", ["stop", "-D", join(d, "data"), "-m", "immediate", "-w", "-t", "30"]));
      }),
    );
    rmSync(baseDir, { recursive: true, force: true });
    killPid(janitor);
  };

  const clusterState = async (): Promise<PatroniClusterMember[]> => {
    let error = "";
    for (const m of members) {
      try {
        return ((await getJson(`${m.restUrl}/cluster`)) as { members: PatroniClusterMember[] }).members;
      } catch (e) {
        error = (e as Error).message;
      }
    }
    throw new Error(`no Patroni REST API answered: ${error}`);
  };
  const runningLeader = async () => (await clusterState()).find((m) => m.role === "leader" && m.state === "running")?.name;
  const member = (name: string) => {
    const m = members.find((x) => x.name === name);
    if (!m) throw new Error(`no Patroni member ${name}`);
    return m;
  };
  const waitStreaming = async (timeoutMs = 60000) => {
    await until(
      "a running leader with every other member streaming from it",
      async () => {
        const state = await clusterState();
        const leader = state.find((m) => m.role === "leader" && m.state === "running")?.name;
        // Patroni 3.0 says "running" for a replica that is up; later versions say "streaming".
        if (!leader || state.length !== members.length || !state.every((m) => m.state === "running" || m.state === "streaming")) return false;
        const status = (await getJson(`${member(leader).restUrl}/patroni`)) as { role?: string; replication?: { application_name: string; state: string }[] };
        if (status.role !== "master" && status.role !== "primary") return false;
        const streaming = new Set((status.replication ?? []).filter((r) => r.state === "streaming").map((r) => r.application_name));
        return members.every((m) => m.name === leader || streaming.has(m.name));
      },
      timeoutMs,
      logs,
    );
  };

  try {
    const etcdDir = join(baseDir, "etcd");
    const peer = `http://127.0.0.1:${etcdPeer}`;
    const etcd = Bun.spawn(
      [
        "etcd",
        "--name=e1",
        `--data-dir=${etcdDir}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=e1=${peer}`,
        "--initial-cluster-state=new",
        `--initial-cluster-token=${baseDir}`,
        "--logger=zap",
        "--log-level=warn",
      ],
      { stdin: "ignore", stdout: "ignore", stderr: Bun.file(logFiles[0]!) },
    );
    procs.push(etcd);
    appendFileSync(pidFile, `${etcd.pid}\n`);
    await until("etcd to report healthy", async () => ((await getJson(`${etcdUrl}/health`)) as { health?: string }).health === "true", 20000, logs);

    const scope = `helios-${process.pid}-${etcdClient}`;
    for (let i = 0; i < count; i++) {
      const dir = dirs[i]!;
      mkdirSync(dir);
      giveToPostgres(dir, 0o700);
      const cfg = join(dir, "patroni.yml");
      const restPort = Number(new URL(members[i]!.restUrl).port);
      writeFileSync(cfg, patroniConfig({ scope, name: members[i]!.name, restPort, pgPort: members[i]!.port, etcdPort: etcdClient!, dir }));
      giveToPostgres(cfg, 0o600);
      // The shell records Patroni's own pid (runuser forks) before becoming Patroni.
      const sh = `echo $$ >> ${shQuote(pidFile)}; exec patroni ${shQuote(cfg)}`;
      const p = Bun.spawn(asPostgresUser(["sh", "-c", sh]), { cwd: dir, stdin: "ignore", stdout: "ignore", stderr: Bun.file(logFiles[i + 1]!) });
      procs.push(p);
    }
    await waitStreaming(o.startTimeoutMs ?? 90000);
  } catch (e) {
    const text = logs();
    await destroy();
    throw new Error(`${(e as Error).message}${(e as Error).message.includes("--- ") ? "" : `\n${text}`}`);
  }

  return {
    members,
    etcdUrl,
    baseDir,
    member,
    clusterState,
    leader: () => until("a running Patroni leader", runningLeader, 30000, logs),
    waitStreaming,
    async switchover(to) {
      const from = await until("a running Patroni leader", runningLeader, 30000, logs);
      if (from === to) throw new Error(`${to} is the leader already`);
      const res = await fetch(`${member(from).restUrl}/switchover`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ leader: from, candidate: to }),
        signal: AbortSignal.timeout(60000),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`POST /switchover ${from} -> ${to}: HTTP ${res.status} ${text}\n${logs()}`);
      await until(`${to} to be the running leader`, async () => (await runningLeader()) === to, 30000, logs);
    },
    logs,
    destroy,
  };
}
