// The admin console as the client layer sees it: which databases are virtual, and the one call that answers a console session.

/** Virtual databases that reach the admin console instead of PostgreSQL. */
export const CONSOLE_DATABASES: ReadonlySet<string> = new Set(["heliosproxy", "pgbouncer"]);

export type ConsoleRole = "admin" | "stats";

/** Who is logged in to the console. */
export interface ConsoleClient {
  readonly user: string;
  readonly role: ConsoleRole;
}

/** The answering side of one console session: a simple Query's text in, the whole reply (ending with ReadyForQuery) out. */
export interface ConsoleAnswerer {
  execute(sql: string): Promise<Uint8Array>;
}

/** Opens the answering side for a console login; the admin layer installs it on the context (ProxyContext.openConsole). */
export type ConsoleOpener = (client: ConsoleClient) => ConsoleAnswerer;
