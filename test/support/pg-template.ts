// Test fixture: one initdb'd data directory per machine (keyed by server version and initdb options), copied for every new test server instead of running initdb.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { INITDB_ARGS, type MakeDataDir } from "../../src/devcluster/node.ts";
import { asPostgresUser, giveToPostgres, runOk } from "../../src/devcluster/pg-bin.ts";

/** Bump when the layout below changes, so an old template is not used. */
const FORMAT = 1;
/** Written last into a finished template (which is then renamed into place). */
const MARKER = "complete";
/** A lock older than this whose holder cannot be checked is taken over. */
const LOCK_STALE_MS = 120_000;
const LOCK_WAIT_MS = 120_000;

const ready = new Map<string, Promise<string>>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function complete(root: string): boolean {
  return existsSync(join(root, MARKER)) && existsSync(join(root, "data", "global", "pg_control"));
}

/** mkdir as a lock between test processes; a lock whose holder is gone (or too old) is taken over. */
async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(join(lockDir, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let holder = 0;
      let age = 0;
      try {
        holder = Number(readFileSync(join(lockDir, "pid"), "utf8"));
        age = Date.now() - statSync(lockDir).mtimeMs;
      } catch {
        // just taken (no pid yet) or just released
      }
      if ((holder > 0 && !alive(holder)) || age > LOCK_STALE_MS) rmSync(lockDir, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`timed out after ${LOCK_WAIT_MS} ms waiting for ${lockDir} (held by pid ${holder})`);
      else await Bun.sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/** The template's directory (holding `data` and the marker) for `binDir`'s initdb, made if missing. */
async function template(binDir: string): Promise<string> {
  const version = (await runOk(asPostgresUser([join(binDir, "initdb"), "--version"]))).trim();
  const key = createHash("sha256").update(JSON.stringify({ FORMAT, binDir, version, INITDB_ARGS, uid: process.getuid?.() })).digest("hex").slice(0, 16);
  const root = join(tmpdir(), `helios-pgdata-template-${key}`);
  if (complete(root)) return root;
  return withLock(`${root}.lock`, async () => {
    if (complete(root)) return root;
    rmSync(root, { recursive: true, force: true });
    const staging = `${root}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging);
    giveToPostgres(staging, 0o755);
    try {
      await runOk(asPostgresUser([join(binDir, "initdb"), "-D", join(staging, "data"), ...INITDB_ARGS]), { cwd: staging });
      writeFileSync(join(staging, MARKER), `${version}\n${INITDB_ARGS.join(" ")}\n`);
      renameSync(staging, root);
    } catch (e) {
      rmSync(staging, { recursive: true, force: true });
      throw e;
    }
    return root;
  });
}

/**
 * A MakeDataDir that copies the template for `binDir` (cp -a: the postgres user's ownership and
 * mode 0700 kept; a reflink where the file system can). Copies share one system identifier: a test
 * that needs two clusters to differ there must run initdb itself.
 */
export function copyTemplate(binDir: string): MakeDataDir {
  return async (dataDir) => {
    let p = ready.get(binDir);
    if (!p) ready.set(binDir, (p = template(binDir)));
    let root = await p.catch((e) => {
      ready.delete(binDir);
      throw e;
    });
    // Removed since (a temp cleaner): made again.
    if (!complete(root)) {
      ready.delete(binDir);
      root = await template(binDir);
    }
    await runOk(["cp", "-a", "--reflink=auto", join(root, "data"), dataDir]);
  };
}
