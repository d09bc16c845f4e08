// MD5 password authentication as PostgreSQL does it: stored "md5..." hashes, salted responses, verification.
import { createHash } from "node:crypto";
import { constantTimeEqual } from "./secrets.ts";

/** A stored PostgreSQL md5 hash: "md5" followed by 32 lowercase hex digits. */
const MD5_STORED = /^md5[0-9a-f]{32}$/;

function md5Hex(...parts: (string | Uint8Array)[]): string {
  const h = createHash("md5");
  for (const p of parts) h.update(p);
  return h.digest("hex");
}

/** True if `s` has the shape of a stored md5 hash (PostgreSQL treats such a password as already hashed). */
export function isMd5Hash(s: string): boolean {
  return MD5_STORED.test(s);
}

/** The hash PostgreSQL stores for `password_encryption = md5`: "md5" + md5(password + user). */
export function md5PasswordHash(user: string, password: string): string {
  return "md5" + md5Hex(password, user);
}

/**
 * The PasswordMessage body a client sends for AuthenticationMD5Password:
 * "md5" + md5(md5hex(password + user) + salt). `passwordOrHash` may be the plain password or a
 * stored "md5..." hash (pass-through authentication). Throws RangeError unless salt is 4 bytes.
 */
export function md5Response(passwordOrHash: string, user: string, salt4: Uint8Array): string {
  if (!(salt4 instanceof Uint8Array) || salt4.length !== 4) {
    throw new RangeError("md5 salt must be exactly 4 bytes");
  }
  const inner = isMd5Hash(passwordOrHash) ? passwordOrHash.slice(3) : md5Hex(passwordOrHash, user);
  return "md5" + md5Hex(inner, salt4);
}

/**
 * Check a client's md5 response against what the proxy stores for `user`: a plain password or an
 * "md5..." hash. A SCRAM verifier cannot answer md5 and fails; so do empty values and bad salts.
 * The final comparison is constant time.
 */
export function verifyMd5Response(stored: string, user: string, salt: Uint8Array, response: string): boolean {
  if (typeof stored !== "string" || typeof response !== "string") return false;
  if (stored.length === 0 || response.length === 0) return false;
  if (stored.startsWith("SCRAM-SHA-256$")) return false;
  if (!(salt instanceof Uint8Array) || salt.length !== 4) return false;
  const expected = md5Response(stored, user, salt);
  return constantTimeEqual(expected, response);
}
