// Secret handling: constant-time comparison, random bytes, and redaction of secrets in logs and admin output.
import { createHmac, timingSafeEqual } from "node:crypto";

const encoder = new TextEncoder();

/** Per-process key for comparing values of unequal length without leaking where they differ. */
const COMPARE_KEY = randomBytes(32);

function toBytes(x: Uint8Array | string): Uint8Array {
  return typeof x === "string" ? encoder.encode(x) : x;
}

/**
 * Compare two secrets in time independent of their content. Strings are compared as UTF-8.
 * Both sides are HMAC'd with a per-process key first, so values of different lengths take the
 * same path and the comparison never exits early.
 */
export function constantTimeEqual(a: Uint8Array | string, b: Uint8Array | string): boolean {
  const ab = toBytes(a);
  const bb = toBytes(b);
  const ha = createHmac("sha256", COMPARE_KEY).update(ab).digest();
  const hb = createHmac("sha256", COMPARE_KEY).update(bb).digest();
  const sameDigest = timingSafeEqual(ha, hb);
  const sameLength = ab.length === bb.length;
  return sameDigest && sameLength;
}

/** `n` cryptographically random bytes (a plain Uint8Array). */
export function randomBytes(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`randomBytes: bad length ${n}`);
  const out = new Uint8Array(n);
  // getRandomValues fills at most 65536 bytes per call.
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}

const MASK = "***";

// A SQL or conninfo literal after PASSWORD / ENCRYPTED PASSWORD / password=: '...' with '' or
// backslash escapes (E'', U&''), or a dollar-quoted $tag$...$tag$. Unterminated literals are masked
// to the end of the text: masking too much is safe, too little is not. '' followed by more text is
// a doubled quote inside a literal (DOUBLED_QUOTE_PASSWORD), not an empty password.
const QUOTED_PASSWORD =
  /(?<![A-Za-z0-9])((?:ENCRYPTED\s+)?(?:PG)?PASSWORD)(\s*(?:=\s*)?)(?:(?:[Ee]|[Uu]&)?'(?!'[^'])(?:[^'\\]|''|\\[\s\S]?)*(?:'|$)|\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?(?:\$\3\$|$))/gi;
// A conninfo password quoted inside a SQL literal, its quotes doubled: dblink('... password=''a b'' ...').
const DOUBLED_QUOTE_PASSWORD = /(?<![A-Za-z0-9])((?:PG)?PASSWORD)(\s*=\s*)''(?:[^']|'''')*(?:''|$)/gi;
// password=value without quotes (conninfo, URI query, environment): up to whitespace, &, " or the
// quote that ends the SQL literal holding the conninfo.
const BARE_PASSWORD = /(?<![A-Za-z0-9])((?:PG)?PASSWORD|PASSWD|PWD)(\s*=\s*)(?!['\s])[^\s&"']+/gi;
// "password": "..." in JSON.
const JSON_SECRET =
  /("(?:[A-Za-z_]{0,32}password|passwd|pwd|secret|token|access_token|refresh_token|api_?key)"\s*:\s*)"(?:[^"\\]|\\[\s\S]?)*(?:"|$)/gi;
// scheme://user:password@host
const URI_USERINFO = /(\b[A-Za-z][A-Za-z0-9+.-]{0,31}:\/\/[^\s:/@]*:)[^\s@/]*@/g;
// Stored SCRAM verifiers and md5 hashes.
const SCRAM_VERIFIER = /SCRAM-SHA-256\$[A-Za-z0-9+/=:$]*/g;
const MD5_HASH = /(?<![A-Za-z0-9])md5[0-9a-fA-F]{32}(?![0-9a-fA-F])/g;
// The proof in a SCRAM client-final-message (c=...,r=...,p=<proof>).
const SCRAM_PROOF = /(\bc=[A-Za-z0-9+/=]{0,256},r=[^\s,]*,(?:[A-Za-z]=[^\s,]*,){0,8}p=)[A-Za-z0-9+/=]+/g;
// Authorization: Bearer <token>, and bare JWTs.
const BEARER = /\b(Bearer)(\s+)[A-Za-z0-9\-._~+/]+=*/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;

/**
 * Mask secrets in text bound for logs or admin output: `PASSWORD '...'` in SQL (ALTER/CREATE
 * ROLE/USER, ENCRYPTED PASSWORD, user mapping and server options), `password=...` in conninfo
 * strings (also inside SQL literals, as dblink takes them) and URIs,
 * JSON password/token fields, SCRAM verifiers and proofs, md5 hashes, bearer tokens and JWTs.
 */
export function redactSecrets(text: string): string {
  if (typeof text !== "string" || text.length === 0) return text;
  return text
    .replace(DOUBLED_QUOTE_PASSWORD, `$1$2''${MASK}''`)
    .replace(QUOTED_PASSWORD, `$1$2'${MASK}'`)
    .replace(BARE_PASSWORD, `$1$2${MASK}`)
    .replace(JSON_SECRET, `$1"${MASK}"`)
    .replace(URI_USERINFO, `$1${MASK}@`)
    .replace(SCRAM_VERIFIER, () => `SCRAM-SHA-256$${MASK}`)
    .replace(MD5_HASH, `md5${MASK}`)
    .replace(SCRAM_PROOF, `$1${MASK}`)
    .replace(BEARER, `$1$2${MASK}`)
    .replace(JWT, MASK);
}
