// N+1 detection: the same fingerprint from one session K times within a sliding window; one report and one warning per episode.

import type { SessionCtx } from "../../core/hooks.ts";
import { log } from "../../util/log.ts";
import type { QueryStats } from "./stats.ts";

export interface NPlusOneReport {
  readonly fingerprint: string;
  readonly query: string;
  readonly sessionId: number;
  readonly applicationName: string;
  readonly user: string;
  readonly database: string;
  /** Calls in the episode so far: K at detection, then every further call closer than the window to the one before. */
  count: number;
  /** performance.now() of the first call of the K that tripped the detector, and of the latest call. */
  readonly firstAt: number;
  lastAt: number;
}

/** One (session, fingerprint): the times of its last K-1 calls and the episode it is in, if any. */
class Tracker {
  readonly times: Float64Array;
  /** Next slot to write (the oldest of the last K-1 calls once full). */
  at = 0;
  filled = 0;
  last = 0;
  report: NPlusOneReport | null = null;

  constructor(k: number) {
    this.times = new Float64Array(k - 1);
  }
}

/** A session's trackers, and the one it used last (a session repeating itself, the case that matters, skips the map). */
class SessionTrackers {
  readonly byFingerprint = new Map<string, Tracker>();
  lastFingerprint = "";
  last: Tracker | null = null;
}

/** More trackers than this in one session: those idle longer than the window are dropped (then all, if still too many). */
const MAX_TRACKERS_PER_SESSION = 1024;

export class NPlusOneDetector {
  private readonly sessions = new Map<number, SessionTrackers>();
  /** Newest last. */
  private reports: NPlusOneReport[] = [];
  /** Episodes detected since start or reset. */
  detected = 0;

  constructor(
    readonly threshold: number,
    readonly windowMs: number,
    private readonly maxReports: number,
  ) {}

  /** A call of `e` from session `s` at `now` (performance.now()); true when it starts an N+1 episode. */
  see(s: SessionCtx, e: QueryStats, now: number): boolean {
    let st = this.sessions.get(s.id);
    if (st === undefined) this.sessions.set(s.id, (st = new SessionTrackers()));
    let t = st.lastFingerprint === e.fingerprint ? st.last : null;
    if (t === null) {
      const trackers = st.byFingerprint;
      t = trackers.get(e.fingerprint) ?? null;
      if (t === null) {
        if (trackers.size >= MAX_TRACKERS_PER_SESSION) this.prune(trackers, now);
        trackers.set(e.fingerprint, (t = new Tracker(this.threshold)));
      }
      st.lastFingerprint = e.fingerprint;
      st.last = t;
    }
    const k = this.threshold;
    const gap = now - t.last;
    t.last = now;
    if (t.report !== null) {
      if (gap <= this.windowMs) {
        t.report.count++;
        t.report.lastAt = now;
        return false;
      }
      t.report = null; // the episode is over
      t.filled = 0;
    }
    // The ring holds the K-1 calls before this one: with it, K calls, the oldest at `oldest`.
    const ring = t.times;
    const full = t.filled === ring.length;
    const oldest = ring[t.at]!;
    ring[t.at] = now;
    t.at = t.at + 1 === ring.length ? 0 : t.at + 1;
    if (!full) {
      t.filled++;
      return false;
    }
    if (now - oldest > this.windowMs) return false;
    // The K-th call within the window: a new episode.
    this.detected++;
    t.report = { fingerprint: e.fingerprint, query: e.query, sessionId: s.id, applicationName: s.applicationName, user: s.user, database: s.database, count: k, firstAt: oldest, lastAt: now };
    this.reports.push(t.report);
    if (this.reports.length > this.maxReports) this.reports.shift();
    log.warn("N+1 query pattern", {
      session_id: s.id,
      application_name: s.applicationName,
      user: s.user,
      database: s.database,
      fingerprint: e.fingerprint,
      count: k,
      window_ms: this.windowMs,
      query: e.query,
    });
    return true;
  }

  /** The session ended: its trackers go. */
  close(s: SessionCtx): void {
    this.sessions.delete(s.id);
  }

  /** Reports, newest first. */
  list(): readonly NPlusOneReport[] {
    return this.reports.slice().reverse();
  }

  /** Sessions with state (for tests and SHOW). */
  get trackedSessions(): number {
    return this.sessions.size;
  }

  reset(): void {
    this.reports = [];
    this.detected = 0;
    this.sessions.clear();
  }

  private prune(trackers: Map<string, Tracker>, now: number): void {
    for (const [fp, t] of trackers) if (now - t.last > this.windowMs) trackers.delete(fp);
    if (trackers.size >= MAX_TRACKERS_PER_SESSION) trackers.clear();
  }
}
