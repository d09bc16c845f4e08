// Slow-query log: requests over the threshold (sampled) as one structured warning each, the last N kept for GET /queries/slow.

import type { ResultCtx } from "../../core/hooks.ts";
import { log } from "../../util/log.ts";
import { redactSecrets } from "../../protocol/secrets.ts";
import type { QueryStats } from "./stats.ts";

export interface SlowQuery {
  /** Milliseconds since the epoch when the request ended. */
  readonly at: number;
  readonly durationMs: number;
  /** Normalised text ($n for literals), or the client's text with log_parameters. */
  readonly query: string;
  readonly fingerprint: string;
  readonly intent: string;
  readonly rows: number;
  readonly node: string;
  readonly sessionId: number;
  readonly user: string;
  readonly database: string;
  readonly applicationName: string;
  /** SQLSTATE when the request failed. */
  readonly error: string | null;
}

export class SlowLog {
  /** Newest last. */
  private kept: SlowQuery[] = [];
  /** Slow requests logged since start or reset. */
  logged = 0;

  constructor(
    readonly thresholdMs: number,
    readonly sample: number,
    private readonly max: number,
    private readonly withParameters: boolean,
  ) {}

  /** Whether a request this long is logged (the sample drawn here). */
  wants(ms: number): boolean {
    return this.thresholdMs > 0 && ms >= this.thresholdMs && (this.sample >= 1 || Math.random() < this.sample);
  }

  add(r: ResultCtx, e: QueryStats, rows: number): void {
    const s = r.query.session;
    const q: SlowQuery = {
      at: Date.now(),
      durationMs: r.durationMs,
      query: this.withParameters ? redactSecrets(r.query.sql()) : e.query,
      fingerprint: e.fingerprint,
      intent: e.intent,
      rows,
      node: r.node,
      sessionId: s.id,
      user: s.user,
      database: s.database,
      applicationName: s.applicationName,
      error: r.error?.code ?? null,
    };
    this.logged++;
    if (this.max > 0) {
      this.kept.push(q);
      if (this.kept.length > this.max) this.kept.shift();
    }
    log.warn("slow query", {
      duration_ms: round3(q.durationMs),
      rows: q.rows,
      node: q.node,
      user: q.user,
      database: q.database,
      application_name: q.applicationName,
      session_id: q.sessionId,
      fingerprint: q.fingerprint,
      intent: q.intent,
      ...(q.error !== null ? { sqlstate: q.error } : {}),
      query: q.query,
    });
  }

  /** Kept slow queries, newest first. */
  list(): readonly SlowQuery[] {
    return this.kept.slice().reverse();
  }

  reset(): void {
    this.kept = [];
    this.logged = 0;
  }
}

export const round3 = (ms: number): number => Math.round(ms * 1000) / 1000;
