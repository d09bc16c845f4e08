// etcd v3 over its HTTP/JSON gateway: leases, ranges, puts, compare-and-swap transactions and a prefix watch (keys and values base64).

import { readFileSync } from "node:fs";
import type { CoordinationSection } from "../../config/types.ts";

export interface EtcdKv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  lease: string;
}

export interface EtcdEvent {
  type: "PUT" | "DELETE";
  kv: EtcdKv;
}

/** One condition of a transaction (etcd's Compare). */
export type EtcdCompare =
  | { key: string; target: "VALUE"; value: string }
  | { key: string; target: "CREATE" | "MOD"; revision: number };

export type EtcdOp = { put: string; value: string; lease?: string } | { delete: string };

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");
const unb64 = (s: string | undefined): string => (s === undefined ? "" : Buffer.from(s, "base64").toString("utf8"));

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, "utf8");
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]!++;
      return end.toString("base64");
    }
  }
  return b64("\0");
}

function kvOf(raw: Record<string, string | undefined>): EtcdKv {
  return {
    key: unb64(raw.key),
    value: unb64(raw.value),
    createRevision: Number(raw.create_revision ?? 0),
    modRevision: Number(raw.mod_revision ?? 0),
    lease: raw.lease ?? "0",
  };
}

function compareJson(c: EtcdCompare): Record<string, string> {
  if (c.target === "VALUE") return { key: b64(c.key), target: "VALUE", result: "EQUAL", value: b64(c.value) };
  return { key: b64(c.key), target: c.target, result: "EQUAL", [c.target === "CREATE" ? "create_revision" : "mod_revision"]: String(c.revision) };
}

function opJson(o: EtcdOp): Record<string, unknown> {
  if ("delete" in o) return { request_delete_range: { key: b64(o.delete) } };
  return { request_put: { key: b64(o.put), value: b64(o.value), ...(o.lease ? { lease: o.lease } : {}) } };
}

export class EtcdError extends Error {}

export class EtcdClient {
  private current = 0;
  private token: string | null = null;
  private readonly tls: { ca?: string; cert?: string; key?: string } | undefined;

  constructor(private readonly s: CoordinationSection) {
    const read = (f: string) => (f === "" ? undefined : readFileSync(f, "utf8"));
    const tls = { ca: read(s.ca_file), cert: read(s.cert_file), key: read(s.key_file) };
    this.tls = tls.ca || tls.cert ? tls : undefined;
  }

  /** POST a gateway call to the first endpoint that answers, starting at the one that answered last. */
  async call(path: string, body: unknown, timeoutMs = this.s.request_timeout_secs * 1000): Promise<Record<string, any>> {
    const n = this.s.endpoints.length;
    let error = "no endpoints";
    for (let i = 0; i < n; i++) {
      const at = (this.current + i) % n;
      const base = this.s.endpoints[at]!.replace(/\/+$/, "");
      try {
        const out = await this.post(base, path, body, timeoutMs);
        this.current = at;
        return out;
      } catch (e) {
        if (e instanceof EtcdError) throw e;
        error = `${base}: ${(e as Error).message}`;
      }
    }
    throw new Error(`etcd unreachable (${error})`);
  }

  private async post(base: string, path: string, body: unknown, timeoutMs: number, retried = false): Promise<Record<string, any>> {
    if (this.s.username !== "" && this.token === null) this.token = await this.authenticate(base, timeoutMs);
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(this.token ? { authorization: this.token } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      ...(this.tls ? { tls: this.tls } : {}),
    } as RequestInit);
    const out = (await res.json().catch(() => ({}))) as Record<string, any>;
    if (res.ok && out.error === undefined) return out;
    const message = String(out.message ?? out.error ?? `HTTP ${res.status}`);
    // An expired token: log in again once.
    if (!retried && this.s.username !== "" && /token/i.test(message)) {
      this.token = null;
      return this.post(base, path, body, timeoutMs, true);
    }
    throw new EtcdError(`etcd ${path}: ${message}`);
  }

  private async authenticate(base: string, timeoutMs: number): Promise<string> {
    const res = await fetch(`${base}/v3/auth/authenticate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: this.s.username, password: this.s.password }),
      signal: AbortSignal.timeout(timeoutMs),
      ...(this.tls ? { tls: this.tls } : {}),
    } as RequestInit);
    const out = (await res.json().catch(() => ({}))) as Record<string, any>;
    if (!res.ok || typeof out.token !== "string") throw new EtcdError(`etcd authentication as ${this.s.username} failed: ${String(out.message ?? out.error ?? `HTTP ${res.status}`)}`);
    return out.token;
  }

  /** A new lease; its id and the TTL etcd granted (it may raise a short one). */
  async grant(ttlSecs: number): Promise<{ id: string; ttl: number }> {
    const r = await this.call("/v3/lease/grant", { TTL: ttlSecs });
    return { id: String(r.ID), ttl: Number(r.TTL) };
  }

  /** Renew a lease: the seconds it has left, 0 when it is gone. */
  async keepAlive(id: string): Promise<number> {
    const r = await this.call("/v3/lease/keepalive", { ID: id });
    return Number(r.result?.TTL ?? 0);
  }

  async revoke(id: string): Promise<void> {
    await this.call("/v3/lease/revoke", { ID: id }).catch(() => {});
  }

  async get(key: string): Promise<EtcdKv | null> {
    const r = await this.call("/v3/kv/range", { key: b64(key) });
    const kv = (r.kvs as Record<string, string>[] | undefined)?.[0];
    return kv ? kvOf(kv) : null;
  }

  /** Every key under `prefix`, and the store's revision at the time. */
  async list(prefix: string): Promise<{ kvs: EtcdKv[]; revision: number }> {
    const r = await this.call("/v3/kv/range", { key: b64(prefix), range_end: prefixEnd(prefix) });
    return { kvs: ((r.kvs as Record<string, string>[] | undefined) ?? []).map(kvOf), revision: Number(r.header?.revision ?? 0) };
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call("/v3/kv/put", { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) });
  }

  async delete(key: string): Promise<void> {
    await this.call("/v3/kv/deleterange", { key: b64(key) });
  }

  /** Compare-and-swap: `then` applies when every condition holds, `otherwise` when one does not. */
  async txn(compare: EtcdCompare[], then: EtcdOp[], otherwise: EtcdOp[] = []): Promise<boolean> {
    const r = await this.call("/v3/kv/txn", { compare: compare.map(compareJson), success: then.map(opJson), failure: otherwise.map(opJson) });
    return r.succeeded === true;
  }

  /**
   * Watch every key under `prefix` from `fromRevision` on; `onEvent` gets each change. Resolves
   * when the stream ends (etcd gone, `signal` aborted); the caller lists again and watches anew.
   */
  async watch(prefix: string, fromRevision: number, onEvent: (e: EtcdEvent, revision: number) => void, signal: AbortSignal): Promise<void> {
    const base = this.s.endpoints[this.current]!.replace(/\/+$/, "");
    const res = await fetch(`${base}/v3/watch`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(this.token ? { authorization: this.token } : {}) },
      body: JSON.stringify({ create_request: { key: b64(prefix), range_end: prefixEnd(prefix), start_revision: String(fromRevision) } }),
      signal,
      ...(this.tls ? { tls: this.tls } : {}),
    } as RequestInit);
    if (!res.ok || res.body === null) throw new Error(`etcd watch: HTTP ${res.status}`);
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of res.body) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line === "") continue;
        const msg = JSON.parse(line) as { result?: { header?: { revision?: string }; events?: { type?: string; kv: Record<string, string> }[]; canceled?: boolean }; error?: unknown };
        if (msg.error !== undefined || msg.result?.canceled) throw new Error(`etcd watch ended: ${JSON.stringify(msg.error ?? msg.result)}`);
        const rev = Number(msg.result?.header?.revision ?? 0);
        for (const e of msg.result?.events ?? []) onEvent({ type: e.type === "DELETE" ? "DELETE" : "PUT", kv: kvOf(e.kv) }, rev);
      }
    }
  }
}
