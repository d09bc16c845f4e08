// An embedded PostgreSQL for the demo when no server binaries are installed: PGlite (PostgreSQL in WebAssembly) served on a loopback port.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Most connections the socket server takes at once (the proxy's pool, its health checks, a direct psql). */
const MAX_CONNECTIONS = 8;

interface PGliteLike {
  exec(sql: string): Promise<unknown>;
  query<T>(sql: string): Promise<{ rows: T[] }>;
  close(): Promise<void>;
}

interface SocketServerLike {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * One PGlite database in memory, in this process, answering the PostgreSQL protocol on 127.0.0.1.
 * Single node: no WAL shipping, no standbys, no promotion. Every database name and user reach the
 * same database as "postgres".
 */
export class EmbeddedPg {
  readonly host = "127.0.0.1";
  private destroyed = false;

  private constructor(
    readonly port: number,
    /** `SELECT version()`: "PostgreSQL 18.x (PGlite 0.x) on wasm32...". */
    readonly version: string,
    /** Temp directory for files beside the database (removed by destroy()). */
    readonly baseDir: string,
    private readonly db: PGliteLike,
    private readonly server: SocketServerLike,
  ) {}

  static async start(o: { port: number; onProgress?: (line: string) => void }): Promise<EmbeddedPg> {
    const say = o.onProgress ?? (() => {});
    let mods: [typeof import("@electric-sql/pglite"), typeof import("@electric-sql/pglite-socket")];
    try {
      mods = await Promise.all([import("@electric-sql/pglite"), import("@electric-sql/pglite-socket")]);
    } catch (e) {
      throw new Error(`the embedded PostgreSQL (@electric-sql/pglite) is not available here (${(e as Error).message}); install the PostgreSQL server binaries, or run the demo from the npm package (npx heliosproxy demo)`);
    }
    const [{ PGlite }, { PGLiteSocketServer }] = mods;
    say("starting PGlite (PostgreSQL compiled to WebAssembly, in memory)");
    const db = await PGlite.create();
    const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: o.port, maxConnections: MAX_CONNECTIONS });
    try {
      await server.start();
    } catch (e) {
      await db.close();
      throw e;
    }
    const version = (await db.query<{ v: string }>("SELECT version() AS v")).rows[0]!.v;
    return new EmbeddedPg(o.port, version, mkdtempSync(join(tmpdir(), "helios-embedded-")), db, server);
  }

  /** Run SQL (several statements allowed) directly on the database. */
  async setup(sql: string): Promise<void> {
    await this.db.exec(sql);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.server.stop();
      await this.db.close();
    } finally {
      rmSync(this.baseDir, { recursive: true, force: true });
    }
  }
}
