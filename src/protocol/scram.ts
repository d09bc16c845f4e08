// SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL speaks it: verifiers, SASLprep, the server and client exchanges.
import { createHash, createHmac, pbkdf2 as nodePbkdf2 } from "node:crypto";
import { constantTimeEqual, randomBytes } from "./secrets.ts";

export const SCRAM_MECHANISM = "SCRAM-SHA-256";
export const SCRAM_DEFAULT_ITERATIONS = 4096;
/** Highest iteration count the proxy accepts from an upstream server or derives itself. */
export const SCRAM_MAX_ITERATIONS = 10_000_000;
export const SCRAM_SALT_LEN = 16;
/** Raw nonce bytes (PostgreSQL's SCRAM_RAW_NONCE_LEN); 24 base64 characters on the wire. */
export const SCRAM_NONCE_LEN = 18;
/** Size limits (bytes) for SCRAM messages, checked before anything is parsed. */
export const SCRAM_MAX_CLIENT_FIRST = 1024;
export const SCRAM_MAX_CLIENT_FINAL = 2048;
export const SCRAM_MAX_SERVER_FIRST = 2048;
export const SCRAM_MAX_SERVER_FINAL = 1024;

const KEY_LEN = 32;
const INT32_MAX = 0x7fffffff;
const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A stored SCRAM secret: "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". */
export interface ScramVerifier {
  iterations: number;
  salt: Uint8Array;
  storedKey: Uint8Array;
  serverKey: Uint8Array;
}

/** Why an exchange step failed, with the SQLSTATE PostgreSQL would report. */
export interface ScramFailure {
  ok: false;
  sqlstate: "08P01" | "0A000" | "28P01";
  error: string;
}

const fail = (sqlstate: ScramFailure["sqlstate"], error: string): ScramFailure => ({ ok: false, sqlstate, error });
const malformed = (detail: string): ScramFailure => fail("08P01", `malformed SCRAM message: ${detail}`);

// ---------------------------------------------------------------------------------------------
// Encoding helpers

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function toB64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

/** Strict base64 decode: null on any character or padding outside RFC 4648. */
function fromB64(s: string): Uint8Array | null {
  if (!B64.test(s)) return null;
  return new Uint8Array(Buffer.from(s, "base64"));
}

function hmac(key: Uint8Array, data: string | Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Decode a message given as text or bytes, enforcing a byte limit first. */
function messageText(msg: unknown, max: number): string | null {
  if (typeof msg === "string") {
    if (msg.length > max) return null;
    return encoder.encode(msg).length > max ? null : msg;
  }
  if (msg instanceof Uint8Array) {
    if (msg.length > max) return null;
    try {
      return utf8.decode(msg);
    } catch {
      return null;
    }
  }
  return null;
}

/** A nonce is printable ASCII except ','. */
function validNonce(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2c) return false;
  }
  return true;
}

/** Split "a=x,b=y" into attributes; null if any part is not `<letter>=...`. */
function attributes(s: string): { name: string; value: string }[] | null {
  const out: { name: string; value: string }[] = [];
  for (const part of s.split(",")) {
    if (part.length < 2 || part[1] !== "=") return null;
    const name = part[0]!;
    if (!((name >= "a" && name <= "z") || (name >= "A" && name <= "Z"))) return null;
    out.push({ name, value: part.slice(2) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SASLprep (RFC 4013), the "lite" form PostgreSQL uses for passwords: ASCII passes unchanged; a
// password with prohibited characters is used as raw bytes rather than rejected. As in
// PostgreSQL's pg_saslprep, the prohibited and bidi checks look at the mapped, pre-NFKC text.
// Unassigned code points are judged by the runtime's Unicode version (RFC 3454 uses 3.2), and
// LCat is approximated by letters and spacing marks outside the RandALCat table.

const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/u;
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/u;
const PROHIBITED =
  /[\u0000-\u001F\u007F-\u009F\u0340\u0341\u06DD\u070F\u180E\u200C-\u200F\u2028-\u202E\u2060-\u2063\u206A-\u206F\u2FF0-\u2FFB\uD800-\uDFFF\uE000-\uF8FF\uFDD0-\uFDEF\uFEFF\uFFF9-\uFFFF\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\u{F0000}-\u{10FFFF}\p{Cn}]/u;
// RFC 3454 table D.1 (characters with bidi property R or AL).
const RAND_AL_CAT =
  /[\u05BE\u05C0\u05C3\u05D0-\u05EA\u05F0-\u05F4\u061B\u061F\u0621-\u063A\u0640-\u064A\u066D-\u066F\u0671-\u06D5\u06DD\u06E5\u06E6\u06FA-\u06FE\u0700-\u070D\u0710\u0712-\u072C\u0780-\u07A5\u07B1\u200F\uFB1D\uFB1F-\uFB28\uFB2A-\uFB36\uFB38-\uFB3C\uFB3E\uFB40\uFB41\uFB43\uFB44\uFB46-\uFBB1\uFBD3-\uFD3D\uFD50-\uFD8F\uFD92-\uFDC7\uFDF0-\uFDFC\uFE70-\uFE74\uFE76-\uFEFC]/u;
const L_CAT = /[\p{L}\p{Mc}]/u;

/** The bytes PostgreSQL hashes for `password`: SASLprep'd when allowed, else the raw UTF-8. */
export function saslprepPassword(password: string): Uint8Array {
  const raw = encoder.encode(password);
  if (/^[\x00-\x7f]*$/.test(password)) return raw;
  const mapped: string[] = [];
  for (const ch of password) {
    if (NON_ASCII_SPACE.test(ch)) mapped.push(" ");
    else if (!MAPPED_TO_NOTHING.test(ch)) mapped.push(ch);
  }
  if (mapped.length === 0) return raw;
  let randAL = false;
  for (const ch of mapped) {
    if (PROHIBITED.test(ch)) return raw;
    if (RAND_AL_CAT.test(ch)) randAL = true;
  }
  if (randAL) {
    for (const ch of mapped) if (L_CAT.test(ch) && !RAND_AL_CAT.test(ch)) return raw;
    if (!RAND_AL_CAT.test(mapped[0]!) || !RAND_AL_CAT.test(mapped[mapped.length - 1]!)) return raw;
  }
  return encoder.encode(mapped.join("").normalize("NFKC"));
}

// ---------------------------------------------------------------------------------------------
// Key derivation with a bounded cache: login storms derive once. Entries hold derived keys only,
// keyed by a keyed SHA-256 of (password, salt) and the iteration count, so no cleartext is kept.

interface DerivedKeys {
  clientKey: Uint8Array;
  storedKey: Uint8Array;
  serverKey: Uint8Array;
}

const CACHE_MAX = 1024;
const CACHE_KEY_SECRET = randomBytes(32);
const cache = new Map<string, Promise<DerivedKeys>>();

function cacheKey(pw: Uint8Array, salt: Uint8Array, iterations: number): string {
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, pw.length);
  const h = createHmac("sha256", CACHE_KEY_SECRET).update(len).update(pw).update(salt).digest("hex");
  return `${h}:${iterations}`;
}

/** PBKDF2-HMAC-SHA-256 on the runtime's worker threads (the callback form never blocks the loop). */
function pbkdf2(pw: Uint8Array, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    nodePbkdf2(pw, salt, iterations, KEY_LEN, "sha256", (err, key) => {
      if (err) reject(err);
      else resolve(new Uint8Array(key));
    });
  });
}

async function computeKeys(pw: Uint8Array, salt: Uint8Array, iterations: number): Promise<DerivedKeys> {
  const salted = await pbkdf2(pw, salt, iterations);
  const clientKey = hmac(salted, "Client Key");
  const keys = { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, "Server Key") };
  salted.fill(0);
  return keys;
}

/** Derive (or fetch from the cache) the SCRAM keys for a password; never blocks the event loop. */
function deriveKeys(password: string, salt: Uint8Array, iterations: number): Promise<DerivedKeys> {
  const pw = saslprepPassword(password);
  const key = cacheKey(pw, salt, iterations);
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key); // refresh recency
    cache.set(key, hit);
    return hit;
  }
  const p = computeKeys(pw, salt, iterations);
  cache.set(key, p);
  p.catch(() => cache.delete(key));
  while (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
  return p;
}

/** Number of entries in the derivation cache (for tests and metrics). */
export function scramCacheSize(): number {
  return cache.size;
}

/** Forget every cached derivation (password rotation, tests). */
export function clearScramCache(): void {
  cache.clear();
}

// ---------------------------------------------------------------------------------------------
// Verifiers

const VERIFIER = /^SCRAM-SHA-256\$([0-9]{1,10}):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

/** Parse a stored "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"; null if it is not one. */
export function parseScramVerifier(s: string): ScramVerifier | null {
  if (typeof s !== "string" || s.length > 1024) return null;
  const m = VERIFIER.exec(s);
  if (!m) return null;
  const iterations = Number(m[1]);
  if (iterations < 1 || iterations > INT32_MAX) return null;
  const salt = fromB64(m[2]!);
  const storedKey = fromB64(m[3]!);
  const serverKey = fromB64(m[4]!);
  if (!salt || salt.length === 0 || storedKey?.length !== KEY_LEN || serverKey?.length !== KEY_LEN) return null;
  return { iterations, salt, storedKey, serverKey };
}

/** Format a verifier the way PostgreSQL stores it in pg_authid.rolpassword. */
export function formatScramVerifier(v: ScramVerifier): string {
  return `${SCRAM_MECHANISM}$${v.iterations}:${toB64(v.salt)}$${toB64(v.storedKey)}:${toB64(v.serverKey)}`;
}

/**
 * Build a verifier from a password (what PostgreSQL stores for password_encryption=scram-sha-256).
 * PBKDF2 runs off the event loop. Rejects an empty password, an empty salt and an iteration
 * count outside 1..SCRAM_MAX_ITERATIONS.
 */
export async function deriveScramVerifier(
  password: string,
  salt: Uint8Array = randomBytes(SCRAM_SALT_LEN),
  iterations: number = SCRAM_DEFAULT_ITERATIONS,
): Promise<ScramVerifier> {
  if (typeof password !== "string" || password.length === 0) throw new RangeError("SCRAM password must not be empty");
  if (!(salt instanceof Uint8Array) || salt.length === 0) throw new RangeError("SCRAM salt must not be empty");
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > SCRAM_MAX_ITERATIONS) {
    throw new RangeError(`SCRAM iteration count out of range: ${iterations}`);
  }
  const keys = await deriveKeys(password, salt, iterations);
  return {
    iterations,
    salt: salt.slice(),
    storedKey: keys.storedKey.slice(),
    serverKey: keys.serverKey.slice(),
  };
}

const mocks = new WeakSet<ScramVerifier>();

/**
 * A verifier for a user that does not exist (or has no usable secret). Its salt is
 * HMAC-SHA256(secret, username) cut to 16 bytes, so it is the same on every attempt; its keys are
 * random and the exchange is marked to fail, so no proof ever matches, yet every message looks
 * like a real user's.
 */
export function mockScramVerifier(
  username: string,
  secret: Uint8Array,
  iterations: number = SCRAM_DEFAULT_ITERATIONS,
): ScramVerifier {
  const salt = hmac(secret, encoder.encode(username)).slice(0, SCRAM_SALT_LEN);
  const v: ScramVerifier = { iterations, salt, storedKey: randomBytes(KEY_LEN), serverKey: randomBytes(KEY_LEN) };
  mocks.add(v);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Server side: the proxy authenticating a client.

/** What the server keeps between server-first and client-final. */
export interface ScramServerState {
  readonly gs2Header: string;
  readonly clientFirstBare: string;
  readonly serverFirst: string;
  /** Client nonce + server nonce. */
  readonly nonce: string;
  readonly verifier: ScramVerifier;
  /** Set once scramServerFinal has run; a state is good for one attempt. */
  done: boolean;
}

/**
 * Handle a SASLInitialResponse body (client-first-message). Returns the server-first-message and
 * the state for the next step, or a failure. Never throws.
 */
export function scramServerFirst(
  clientFirstMessage: string | Uint8Array,
  verifier: ScramVerifier,
): { ok: true; serverFirst: string; state: ScramServerState } | ScramFailure {
  try {
    const msg = messageText(clientFirstMessage, SCRAM_MAX_CLIENT_FIRST);
    if (msg === null) return malformed("client-first-message too long or not UTF-8");
    if (msg.includes("\0")) return malformed("NUL in client-first-message");
    // gs2-header: cbind-flag "," [authzid] ","
    let rest: string;
    let gs2Header: string;
    if (msg.startsWith("n,") || msg.startsWith("y,")) {
      rest = msg.slice(2);
      gs2Header = msg.slice(0, 2);
    } else if (msg.startsWith("p=")) {
      return malformed("client requires channel binding, which this server does not offer");
    } else {
      return malformed("unexpected channel-binding flag");
    }
    if (rest.startsWith("a=")) return fail("0A000", "client uses authorization identity, but it is not supported");
    if (!rest.startsWith(",")) return malformed("bad GS2 header");
    gs2Header += ",";
    const clientFirstBare = rest.slice(1);
    const attrs = attributes(clientFirstBare);
    if (!attrs || attrs.length < 2) return malformed("bad client-first-message-bare");
    if (attrs[0]!.name === "m") return fail("0A000", "client requires an unsupported SCRAM extension");
    if (attrs[0]!.name !== "n") return malformed("expected username attribute");
    if (attrs[1]!.name !== "r") return malformed("expected nonce attribute");
    const clientNonce = attrs[1]!.value;
    if (!validNonce(clientNonce)) return malformed("non-printable characters in SCRAM nonce");
    if (!isVerifier(verifier)) return fail("28P01", "no usable SCRAM secret");

    const nonce = clientNonce + toB64(randomBytes(SCRAM_NONCE_LEN));
    const serverFirst = `r=${nonce},s=${toB64(verifier.salt)},i=${verifier.iterations}`;
    const state: ScramServerState = { gs2Header, clientFirstBare, serverFirst, nonce, verifier, done: false };
    return { ok: true, serverFirst, state };
  } catch {
    return malformed("unreadable client-first-message");
  }
}

function isVerifier(v: unknown): v is ScramVerifier {
  if (typeof v !== "object" || v === null) return false;
  const x = v as ScramVerifier;
  return (
    Number.isInteger(x.iterations) &&
    x.iterations >= 1 &&
    x.iterations <= INT32_MAX &&
    x.salt instanceof Uint8Array &&
    x.salt.length > 0 &&
    x.storedKey instanceof Uint8Array &&
    x.storedKey.length === KEY_LEN &&
    x.serverKey instanceof Uint8Array &&
    x.serverKey.length === KEY_LEN
  );
}

/**
 * Handle a SASLResponse body (client-final-message): check channel binding and nonce, verify the
 * ClientProof in constant time, and return the server-final-message. Wrong proofs (and every
 * proof against a mock verifier) fail with 28P01; malformed messages with 08P01. Never throws.
 */
export function scramServerFinal(
  state: ScramServerState,
  clientFinalMessage: string | Uint8Array,
): { ok: true; serverFinal: string; clientKey: Uint8Array } | ScramFailure {
  try {
    if (!state || typeof state !== "object" || !isVerifier(state.verifier)) return malformed("no SCRAM exchange in progress");
    if (state.done) return malformed("SCRAM exchange already finished");
    state.done = true;
    const msg = messageText(clientFinalMessage, SCRAM_MAX_CLIENT_FINAL);
    if (msg === null) return malformed("client-final-message too long or not UTF-8");
    if (msg.includes("\0")) return malformed("NUL in client-final-message");
    const attrs = attributes(msg);
    if (!attrs || attrs.length < 3) return malformed("bad client-final-message");
    const [c, r] = attrs;
    const p = attrs[attrs.length - 1]!;
    if (c!.name !== "c" || r!.name !== "r" || p.name !== "p") return malformed("unexpected attribute order");
    for (let i = 2; i < attrs.length - 1; i++) if (attrs[i]!.name === "p") return malformed("garbage after proof");
    const cbind = fromB64(c!.value);
    if (!cbind || !constantTimeEqual(cbind, state.gs2Header)) return malformed("SCRAM channel binding check failed");
    const proof = fromB64(p.value);
    if (!proof || proof.length !== KEY_LEN) return malformed("invalid ClientProof");
    if (!constantTimeEqual(r!.value, state.nonce)) return malformed("SCRAM nonce does not match");

    const withoutProof = msg.slice(0, msg.length - p.value.length - 3);
    const authMessage = `${state.clientFirstBare},${state.serverFirst},${withoutProof}`;
    const { storedKey, serverKey } = state.verifier;
    const clientKey = xor(proof, hmac(storedKey, authMessage));
    const proofOk = constantTimeEqual(sha256(clientKey), storedKey);
    const serverSignature = hmac(serverKey, authMessage);
    if (!proofOk || mocks.has(state.verifier)) return fail("28P01", "password authentication failed");
    // The recovered ClientKey lets the proxy log in to a server holding the same verifier.
    return { ok: true, serverFinal: `v=${toB64(serverSignature)}`, clientKey };
  } catch {
    return malformed("unreadable client-final-message");
  }
}

// ---------------------------------------------------------------------------------------------
// Client side: the proxy authenticating to PostgreSQL.

/**
 * The client-first-message (SASLInitialResponse body) and its nonce. Like libpq, the username is
 * left empty: PostgreSQL uses the startup packet's user.
 */
export function scramClientFirst(): { message: string; nonce: string } {
  const nonce = toB64(randomBytes(SCRAM_NONCE_LEN));
  return { message: `n,,n=,r=${nonce}`, nonce };
}

/**
 * Answer the server-first-message: check it (size, nonce extends ours, salt, iteration count),
 * derive the keys off the event loop, and return the client-final-message plus the
 * ServerSignature the server must send back. Never throws or rejects.
 */
export async function scramClientFinal(
  password: string,
  nonce: string,
  serverFirst: string | Uint8Array,
): Promise<{ ok: true; message: string; expectedServerSignature: Uint8Array } | { ok: false; error: string }> {
  if (typeof password !== "string" || password.length === 0) return { ok: false, error: "empty password" };
  return clientFinal(nonce, serverFirst, (salt, iterations) => deriveKeys(password, salt, iterations));
}

/** Keys recovered from a client's SCRAM exchange against the server's own verifier. */
export interface ScramClientKeys {
  clientKey: Uint8Array;
  verifier: ScramVerifier;
}

/**
 * Answer the server-first-message with a ClientKey instead of a password. Works only when the
 * server offers the salt and iteration count of the verifier the key was recovered against.
 */
export async function scramClientFinalWithKeys(
  keys: ScramClientKeys,
  nonce: string,
  serverFirst: string | Uint8Array,
): Promise<{ ok: true; message: string; expectedServerSignature: Uint8Array } | { ok: false; error: string }> {
  return clientFinal(nonce, serverFirst, async (salt, iterations) => {
    if (iterations !== keys.verifier.iterations || !constantTimeEqual(salt, keys.verifier.salt)) {
      throw new Error("server verifier differs from the one the client authenticated against");
    }
    return { clientKey: keys.clientKey, storedKey: keys.verifier.storedKey, serverKey: keys.verifier.serverKey };
  });
}

async function clientFinal(
  nonce: string,
  serverFirst: string | Uint8Array,
  keysFor: (salt: Uint8Array, iterations: number) => Promise<DerivedKeys>,
): Promise<{ ok: true; message: string; expectedServerSignature: Uint8Array } | { ok: false; error: string }> {
  try {
    if (typeof nonce !== "string" || !validNonce(nonce)) return { ok: false, error: "invalid client nonce" };
    const msg = messageText(serverFirst, SCRAM_MAX_SERVER_FIRST);
    if (msg === null) return { ok: false, error: "server-first-message too long or not UTF-8" };
    if (msg.startsWith("e=")) return { ok: false, error: `server error: ${msg.slice(2, 200)}` };
    const attrs = attributes(msg);
    if (!attrs || attrs.length !== 3) return { ok: false, error: "malformed server-first-message" };
    const [r, s, i] = attrs;
    if (r!.name !== "r" || s!.name !== "s" || i!.name !== "i") return { ok: false, error: "malformed server-first-message" };
    const fullNonce = r!.value;
    if (!validNonce(fullNonce) || fullNonce.length <= nonce.length || !fullNonce.startsWith(nonce)) {
      return { ok: false, error: "SCRAM nonce mismatch" };
    }
    const salt = fromB64(s!.value);
    if (!salt || salt.length === 0) return { ok: false, error: "malformed SCRAM salt" };
    if (!/^[0-9]{1,8}$/.test(i!.value)) return { ok: false, error: "malformed SCRAM iteration count" };
    const iterations = Number(i!.value);
    if (iterations < 1 || iterations > SCRAM_MAX_ITERATIONS) return { ok: false, error: "SCRAM iteration count out of range" };

    const keys = await keysFor(salt, iterations);
    const withoutProof = `c=biws,r=${fullNonce}`;
    const authMessage = `n=,r=${nonce},${msg},${withoutProof}`;
    const proof = xor(keys.clientKey, hmac(keys.storedKey, authMessage));
    const expectedServerSignature = hmac(keys.serverKey, authMessage);
    return { ok: true, message: `${withoutProof},p=${toB64(proof)}`, expectedServerSignature };
  } catch (e) {
    return { ok: false, error: e instanceof Error && e.message.startsWith("server verifier") ? e.message : "SCRAM client exchange failed" };
  }
}

/** Check the server-final-message ("v=<ServerSignature>") in constant time. Never throws. */
export function verifyServerFinal(serverFinal: string | Uint8Array, expected: Uint8Array): boolean {
  try {
    const msg = messageText(serverFinal, SCRAM_MAX_SERVER_FINAL);
    if (msg === null || !msg.startsWith("v=") || !(expected instanceof Uint8Array)) return false;
    const sig = fromB64(msg.slice(2));
    if (!sig) return false;
    return constantTimeEqual(sig, expected) && sig.length === KEY_LEN;
  } catch {
    return false;
  }
}
