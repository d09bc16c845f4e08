// Unit tests for SCRAM-SHA-256, md5 password auth and secret helpers (protocol/scram, md5, secrets).
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  clearScramCache,
  deriveScramVerifier,
  formatScramVerifier,
  mockScramVerifier,
  parseScramVerifier,
  saslprepPassword,
  scramCacheSize,
  scramClientFinal,
  scramClientFirst,
  scramServerFinal,
  scramServerFirst,
  verifyServerFinal,
  type ScramVerifier,
} from "../../src/protocol/scram.ts";
import { isMd5Hash, md5PasswordHash, md5Response, verifyMd5Response } from "../../src/protocol/md5.ts";
import { constantTimeEqual, randomBytes, redactSecrets } from "../../src/protocol/secrets.ts";

// Made by PostgreSQL 15: SET password_encryption='scram-sha-256'; CREATE ROLE ... PASSWORD <pw>;
// SELECT rolpassword FROM pg_authid. The non-ASCII ones exercise SASLprep (written as U&'' literals).
const PG_VERIFIER_PW =
  "SCRAM-SHA-256$4096:zW2yb+dMJh9vmy4Jo3D6ig==$jYmbuuy///Jy1JPga7Ez4afPtlk/u05r8BvLPQ9ON54=:OuKXsqaM6h1EnWZxJCO3wAciBvU2X7KwvlsU+LZY8I8=";
const PG_SASLPREP_FIXTURES: [string, string, string][] = [
  // [what it tests, password, verifier]
  ["NFD input is composed by NFKC", "pa\u0308sswo\u0308rd", "SCRAM-SHA-256$4096:ipTiq0RBzeZ/8ApaqdHCWA==$eNJiHN4eBuFAA/6TdWNSrOV8TKh8wq/CReSfa+Rsmr4=:C1jwbBZz1IY06mDMcrAkBOwxwVZqtFColpph6NOwHnc="],
  ["compatibility character (roman numeral nine)", "\u2168", "SCRAM-SHA-256$4096:R8ktBGcMcAv7cMORv1ADUA==$7PdNoLjg+VRNcAshiNQ4DGogKMDwYPN4Bb3bsda5Dmk=:h88c7B+ZyD044gEAgeop1rGwPd7Wc2/QGXJjCFQXpzI="],
  ["non-ASCII space and soft hyphen mapped", "\u00A0pw\u00AD", "SCRAM-SHA-256$4096:OfWogGjf7XoSs/vaHBCeew==$3OZEPeCyZofqYSU+1ZQXM73rmIGjd6md6eaSD3ryGXc=:kjb4FcJSCRanQy+xQx41XGk6bKE/xL836c4Yd2AiSD8="],
  ["prohibited control character: raw bytes", "\u00E9\u0007", "SCRAM-SHA-256$4096:BK9cTYFB2/egqPFfxI08Dg==$DkNrWgdeBwc+5yLTh0zkD2sd1yKinAoP0GBeL77/7Sk=:iXo5Y0JZd47GIK4RSbKLrg3EEjuyQCtvQ94L/QPz5tc="],
  ["right-to-left only: normalised", "\uFB2A", "SCRAM-SHA-256$4096:Q9sAA1nzDLRbu97N6NBjkA==$hxkXjzC+tvPitFR1SQ1K1pqqtvZ9DMIq1hVAyLG+fdg=:hoZY0ZAtGkeOP0xPATEI9VelZlU80OF69CR2FflbdDA="],
  ["mixed bidi: raw bytes", "\uFB2Aa", "SCRAM-SHA-256$4096:fSkzLxgVHYe0AeCMjk6yvA==$zGh3T9sYPZRKsaA1p6Z07k3tP7sHBXGb8jrSsUNF/Qk=:KhF/BEh4zVtvMbMAE/8nKTWZZ9wm18C/MkXotAr8MOc="],
];
// PostgreSQL 15: SET password_encryption='md5'; CREATE ROLE alice PASSWORD 'pw'; rolpassword.
const PG_MD5_ALICE_PW = "md5aa7bb6fc2700e717ae61ec5c1567469c";
// "md5" + md5(md5hex("pw" + "alice") + 01 02 03 04), computed independently.
const MD5_RESPONSE_ALICE_PW_1234 = "md527972593be6fc26d3f4484e91163efdf";

const SECRET = new Uint8Array(32).fill(7);

/** Run the whole exchange: the proxy as client (password) against the proxy as server (verifier). */
async function exchange(password: string, verifier: ScramVerifier) {
  const cf = scramClientFirst();
  const sf = scramServerFirst(cf.message, verifier);
  if (!sf.ok) throw new Error(sf.error);
  const cfin = await scramClientFinal(password, cf.nonce, sf.serverFirst);
  if (!cfin.ok) throw new Error(cfin.error);
  const sfin = scramServerFinal(sf.state, cfin.message);
  return { cf, sf, cfin, sfin };
}

/** A server state plus a valid client-final-message for it, to tamper with. */
async function prepared(password = "pw") {
  const verifier = await deriveScramVerifier("pw");
  const cf = scramClientFirst();
  const sf = scramServerFirst(cf.message, verifier);
  if (!sf.ok) throw new Error(sf.error);
  const cfin = await scramClientFinal(password, cf.nonce, sf.serverFirst);
  if (!cfin.ok) throw new Error(cfin.error);
  return { verifier, cf, state: sf.state, serverFirst: sf.serverFirst, clientFinal: cfin.message, cfin };
}

describe("SCRAM verifiers", () => {
  test("parses a verifier made by PostgreSQL", () => {
    const v = parseScramVerifier(PG_VERIFIER_PW);
    expect(v).not.toBeNull();
    expect(v!.iterations).toBe(4096);
    expect(v!.salt.length).toBe(16);
    expect(v!.storedKey.length).toBe(32);
    expect(v!.serverKey.length).toBe(32);
    expect(formatScramVerifier(v!)).toBe(PG_VERIFIER_PW);
  });

  test("deriveScramVerifier matches PostgreSQL's StoredKey and ServerKey", async () => {
    const pg = parseScramVerifier(PG_VERIFIER_PW)!;
    const ours = await deriveScramVerifier("pw", pg.salt, pg.iterations);
    expect(ours.storedKey).toEqual(pg.storedKey);
    expect(ours.serverKey).toEqual(pg.serverKey);
    expect(formatScramVerifier(ours)).toBe(PG_VERIFIER_PW);
  });

  for (const [what, password, fixture] of PG_SASLPREP_FIXTURES) {
    test(`SASLprep matches PostgreSQL: ${what}`, async () => {
      const pg = parseScramVerifier(fixture)!;
      const ours = await deriveScramVerifier(password, pg.salt, pg.iterations);
      expect(formatScramVerifier(ours)).toBe(fixture);
    });
  }

  test("SASLprep leaves ASCII alone, including control characters", () => {
    expect(saslprepPassword("p\u0007w")).toEqual(new TextEncoder().encode("p\u0007w"));
    expect(new TextDecoder().decode(saslprepPassword("\u2168"))).toBe("IX");
  });

  test("rejects things that are not verifiers", () => {
    const bad = [
      "",
      "pw",
      PG_MD5_ALICE_PW,
      PG_VERIFIER_PW.replace("4096", "0"),
      PG_VERIFIER_PW.replace("4096", "99999999999"),
      PG_VERIFIER_PW.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
      PG_VERIFIER_PW.replace("zW2yb+dMJh9vmy4Jo3D6ig==", "zW2yb+dMJh9vmy4Jo3D6ig="),
      PG_VERIFIER_PW.replace("zW2yb+dMJh9vmy4Jo3D6ig==", ""),
      PG_VERIFIER_PW.slice(0, -4),
      PG_VERIFIER_PW + "$x",
      "SCRAM-SHA-256$4096:c2FsdA==$c2hvcnQ=:c2hvcnQ=",
    ];
    for (const s of bad) expect(parseScramVerifier(s)).toBeNull();
  });

  test("rejects an empty password, empty salt and absurd iteration counts", async () => {
    await expect(deriveScramVerifier("")).rejects.toThrow(RangeError);
    await expect(deriveScramVerifier("pw", new Uint8Array(0))).rejects.toThrow(RangeError);
    await expect(deriveScramVerifier("pw", randomBytes(16), 0)).rejects.toThrow(RangeError);
    await expect(deriveScramVerifier("pw", randomBytes(16), 1e8)).rejects.toThrow(RangeError);
    await expect(deriveScramVerifier("pw", randomBytes(16), 1.5)).rejects.toThrow(RangeError);
  });

  test("fresh derivations get fresh salts", async () => {
    const a = await deriveScramVerifier("pw");
    const b = await deriveScramVerifier("pw");
    expect(a.salt).not.toEqual(b.salt);
    expect(a.storedKey).not.toEqual(b.storedKey);
  });

  test("a login storm derives once per (password, salt, iterations)", async () => {
    clearScramCache();
    const salt = randomBytes(16);
    const results = await Promise.all(Array.from({ length: 20 }, () => deriveScramVerifier("storm", salt, 4096)));
    expect(scramCacheSize()).toBe(1);
    for (const r of results) expect(r.storedKey).toEqual(results[0]!.storedKey);
    await deriveScramVerifier("storm", salt, 4097);
    await deriveScramVerifier("storm2", salt, 4096);
    expect(scramCacheSize()).toBe(3);
    // Mutating a returned verifier does not corrupt the cache.
    results[0]!.storedKey.fill(0);
    expect((await deriveScramVerifier("storm", salt, 4096)).storedKey).toEqual(results[1]!.storedKey);
  });

  test("derivation does not block the event loop (50 concurrent, fresh salts)", async () => {
    clearScramCache();
    let ticks = 0;
    let timeoutFired = false;
    const interval = setInterval(() => ticks++, 0);
    setTimeout(() => (timeoutFired = true), 0);
    let done = false;
    const all = Promise.all(Array.from({ length: 50 }, () => deriveScramVerifier("pw"))).then((r) => {
      done = true;
      return r;
    });
    // Wait on timers, not on the derivations: if derivation blocked, these would all fire late.
    let ticksBeforeDone = 0;
    const watch = setInterval(() => {
      if (!done) ticksBeforeDone = ticks;
    }, 0);
    const results = await all;
    clearInterval(interval);
    clearInterval(watch);
    expect(timeoutFired).toBe(true);
    expect(ticksBeforeDone).toBeGreaterThan(0);
    expect(new Set(results.map((r) => formatScramVerifier(r))).size).toBe(50);
  });
});

describe("SCRAM exchange", () => {
  test("proxy-as-client against proxy-as-server with the same password succeeds", async () => {
    const verifier = await deriveScramVerifier("correct horse");
    const { cf, sf, cfin, sfin } = await exchange("correct horse", verifier);
    expect(cf.message).toBe(`n,,n=,r=${cf.nonce}`);
    expect(cf.nonce).toMatch(/^[A-Za-z0-9+/]{24}$/);
    expect(sf.serverFirst).toMatch(new RegExp(`^r=${cf.nonce.replace(/[+/]/g, "\\$&")}[A-Za-z0-9+/]{24},s=[A-Za-z0-9+/=]{24},i=4096$`));
    expect(cfin.message).toMatch(/^c=biws,r=[^,]+,p=[A-Za-z0-9+/=]{44}$/);
    expect(sfin.ok).toBe(true);
    if (sfin.ok) {
      expect(sfin.serverFinal).toMatch(/^v=[A-Za-z0-9+/=]{44}$/);
      expect(verifyServerFinal(sfin.serverFinal, cfin.expectedServerSignature)).toBe(true);
    }
  });

  test("works against PostgreSQL's own verifier and with a non-ASCII password", async () => {
    const { sfin } = await exchange("pw", parseScramVerifier(PG_VERIFIER_PW)!);
    expect(sfin.ok).toBe(true);
    const [, pw, fixture] = PG_SASLPREP_FIXTURES[0]!;
    expect((await exchange(pw.normalize("NFC"), parseScramVerifier(fixture)!)).sfin.ok).toBe(true);
  });

  test("accepts the client-first message as bytes", async () => {
    const verifier = await deriveScramVerifier("pw");
    const cf = scramClientFirst();
    const sf = scramServerFirst(new TextEncoder().encode(cf.message), verifier);
    expect(sf.ok).toBe(true);
  });

  test("wrong password fails with 28P01", async () => {
    const verifier = await deriveScramVerifier("pw");
    const { sfin } = await exchange("wrong", verifier);
    expect(sfin).toMatchObject({ ok: false, sqlstate: "28P01" });
  });

  test("tampered nonce fails", async () => {
    const { state, clientFinal } = await prepared();
    const tampered = clientFinal.replace(/,r=([^,]+),/, (_m, n: string) => `,r=${n.slice(0, -1)}${n.endsWith("A") ? "B" : "A"},`);
    expect(tampered).not.toBe(clientFinal);
    expect(scramServerFinal(state, tampered)).toMatchObject({ ok: false, sqlstate: "08P01" });
  });

  test("tampered proof fails with 28P01", async () => {
    const { state, clientFinal } = await prepared();
    const proof = clientFinal.slice(clientFinal.indexOf(",p=") + 3);
    const bytes = Buffer.from(proof, "base64");
    bytes[0]! ^= 1;
    const tampered = clientFinal.replace(proof, bytes.toString("base64"));
    expect(scramServerFinal(state, tampered)).toMatchObject({ ok: false, sqlstate: "28P01" });
  });

  test("tampered server nonce in server-first is caught by the client", async () => {
    const verifier = await deriveScramVerifier("pw");
    const cf = scramClientFirst();
    const sf = scramServerFirst(cf.message, verifier);
    if (!sf.ok) throw new Error(sf.error);
    const other = scramClientFirst();
    const forged = sf.serverFirst.replace(cf.nonce, other.nonce);
    expect(await scramClientFinal("pw", cf.nonce, forged)).toMatchObject({ ok: false });
  });

  test("channel binding data must match the GS2 header", async () => {
    const { state, clientFinal } = await prepared();
    // "eSws" is base64 of "y,,": the client claimed "n" in client-first.
    expect(scramServerFinal(state, clientFinal.replace("c=biws", "c=eSws"))).toMatchObject({ ok: false, sqlstate: "08P01" });
  });

  test("a client that said 'y' must send c=eSws", async () => {
    const verifier = await deriveScramVerifier("pw");
    const cf = scramClientFirst();
    const sf = scramServerFirst("y" + cf.message.slice(1), verifier);
    if (!sf.ok) throw new Error(sf.error);
    const cfin = await scramClientFinal("pw", cf.nonce, sf.serverFirst);
    if (!cfin.ok) throw new Error(cfin.error);
    expect(scramServerFinal(sf.state, cfin.message)).toMatchObject({ ok: false, sqlstate: "08P01" });
  });

  test("a server state is good for one attempt", async () => {
    const { state, clientFinal } = await prepared();
    expect(scramServerFinal(state, clientFinal).ok).toBe(true);
    expect(scramServerFinal(state, clientFinal).ok).toBe(false);
  });

  test("a wrong server signature is rejected by the client", async () => {
    const { state, clientFinal, cfin } = await prepared();
    const sfin = scramServerFinal(state, clientFinal);
    if (!sfin.ok) throw new Error(sfin.error);
    expect(verifyServerFinal(sfin.serverFinal, cfin.expectedServerSignature)).toBe(true);
    const sig = Buffer.from(sfin.serverFinal.slice(2), "base64");
    sig[31]! ^= 0x80;
    expect(verifyServerFinal(`v=${sig.toString("base64")}`, cfin.expectedServerSignature)).toBe(false);
    for (const bad of ["", "v=", "e=invalid-proof", "v=!!!!", `${sfin.serverFinal},x=1`, sfin.serverFinal.slice(0, 20), "v=" + "A".repeat(2000)]) {
      expect(verifyServerFinal(bad, cfin.expectedServerSignature)).toBe(false);
    }
  });

  test("malformed client-first messages fail without throwing", async () => {
    const verifier = await deriveScramVerifier("pw");
    const cases: [string | Uint8Array, string][] = [
      ["", "08P01"],
      ["x", "08P01"],
      ["n", "08P01"],
      ["n,", "08P01"],
      ["n,,", "08P01"],
      ["n,,n=", "08P01"],
      ["n,,r=abc", "08P01"],
      ["n,,n=,r=", "08P01"],
      ["n,,n=,r=ab cd", "08P01"],
      ["n,,n=,r=abc\u00e9", "08P01"],
      ["n,,n=,r=abc\0", "08P01"],
      ["n,,n=a,b,r=abc", "08P01"],
      ["n,,n=,x=1,r=abc", "08P01"],
      ["p=tls-server-end-point,,n=,r=abc", "08P01"],
      ["n,a=bob,n=,r=abc", "0A000"],
      ["n,,m=ext,n=,r=abc", "0A000"],
      ["n,,n=,r=" + "a".repeat(1100), "08P01"],
      [new Uint8Array([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61]), "08P01"],
      [new Uint8Array(5000), "08P01"],
    ];
    for (const [msg, sqlstate] of cases) {
      const r = scramServerFirst(msg, verifier);
      expect(r).toMatchObject({ ok: false, sqlstate });
    }
    // Extensions after the nonce are allowed and ignored, as in PostgreSQL.
    expect(scramServerFirst("n,,n=bob,r=abc,x=1", verifier).ok).toBe(true);
    // A broken verifier fails closed.
    expect(scramServerFirst("n,,n=,r=abc", {} as ScramVerifier).ok).toBe(false);
  });

  test("malformed client-final messages fail without throwing", async () => {
    const base = await prepared();
    const good = base.clientFinal;
    const nonce = base.state.nonce;
    const proof = good.slice(good.indexOf(",p=") + 3);
    const cases: (string | Uint8Array)[] = [
      "",
      "c=biws",
      `c=biws,r=${nonce}`,
      `c=biws,r=${nonce},p=`,
      `c=biws,r=${nonce},p=${proof.slice(0, 20)}`,
      `c=biws,r=${nonce},p=${proof}x`,
      `c=biws,r=${nonce},p=${proof},x=1`,
      `c=biws,r=${nonce},p=${proof},p=${proof}`,
      `r=${nonce},c=biws,p=${proof}`,
      `c=bi,r=${nonce},p=${proof}`,
      `c=,r=${nonce},p=${proof}`,
      `c=biws,r=,p=${proof}`,
      `c=biws,r=${nonce}\0,p=${proof}`,
      `c=biws,r=${nonce},p=${proof}` + ",x=" + "a".repeat(3000),
      new Uint8Array([0xc3, 0x28]),
    ];
    for (const msg of cases) {
      const { state } = await prepared();
      const r = scramServerFinal(state, msg);
      expect(r.ok).toBe(false);
    }
    // Extensions between the nonce and the proof are part of the signed message.
    const withExt = good.replace(",p=", ",x=1,p=");
    const { state } = await prepared();
    expect(scramServerFinal(state, withExt).ok).toBe(false); // proof was computed without x=1
    expect(scramServerFinal(null as unknown as typeof state, good).ok).toBe(false);
  });

  test("malformed or hostile server-first messages fail the client cleanly", async () => {
    const { nonce } = scramClientFirst();
    const salt = Buffer.from(randomBytes(16)).toString("base64");
    const srv = nonce + "SERVERNONCE";
    const cases = [
      "",
      "e=other-error",
      `r=${srv},s=${salt}`,
      `r=${srv},s=${salt},i=4096,x=1`,
      `r=${nonce},s=${salt},i=4096`,
      `r=XYZ${srv},s=${salt},i=4096`,
      `r=${srv},s=,i=4096`,
      `r=${srv},s=!!!,i=4096`,
      `r=${srv},s=${salt},i=0`,
      `r=${srv},s=${salt},i=-1`,
      `r=${srv},s=${salt},i=abc`,
      `r=${srv},s=${salt},i=100000000`,
      `r=${srv},s=${salt},i=4096.5`,
      `s=${salt},r=${srv},i=4096`,
      `r=${srv} x,s=${salt},i=4096`,
      // RELIABILITY A19: a 100 KB nonce from a malicious upstream.
      `r=${nonce}${"A".repeat(100 * 1024)},s=${salt},i=4096`,
    ];
    for (const sf of cases) {
      const r = await scramClientFinal("pw", nonce, sf);
      expect(r.ok).toBe(false);
    }
    expect((await scramClientFinal("", nonce, `r=${srv},s=${salt},i=4096`)).ok).toBe(false);
    expect((await scramClientFinal("pw", "bad nonce", `r=${srv},s=${salt},i=4096`)).ok).toBe(false);
    expect((await scramClientFinal("pw", nonce, `r=${srv},s=${salt},i=4096`)).ok).toBe(true);
  });
});

describe("mock SCRAM verifier for unknown users", () => {
  test("salt is stable across calls and differs per user and per secret", () => {
    const a1 = mockScramVerifier("ghost", SECRET);
    const a2 = mockScramVerifier("ghost", SECRET);
    const b = mockScramVerifier("phantom", SECRET);
    const c = mockScramVerifier("ghost", new Uint8Array(32).fill(8));
    expect(a1.salt).toEqual(a2.salt);
    expect(a1.salt.length).toBe(16);
    expect(a1.iterations).toBe(4096);
    expect(a1.salt).not.toEqual(b.salt);
    expect(a1.salt).not.toEqual(c.salt);
    expect(a1.storedKey).not.toEqual(a2.storedKey);
  });

  test("the exchange looks like a real one and always fails with 28P01", async () => {
    const real = await deriveScramVerifier("pw");
    const mock = mockScramVerifier("ghost", SECRET);
    const shape = /^r=[A-Za-z0-9+/]{48},s=[A-Za-z0-9+/=]{24},i=4096$/;
    const cfReal = scramClientFirst();
    const cfMock = scramClientFirst();
    const r = scramServerFirst(cfReal.message, real);
    const m = scramServerFirst(cfMock.message, mock);
    if (!r.ok || !m.ok) throw new Error("server-first failed");
    expect(r.serverFirst).toMatch(shape);
    expect(m.serverFirst).toMatch(shape);
    // The same salt is offered on every attempt.
    const again = scramServerFirst(scramClientFirst().message, mockScramVerifier("ghost", SECRET));
    if (!again.ok) throw new Error("server-first failed");
    expect(again.serverFirst.split(",s=")[1]).toBe(m.serverFirst.split(",s=")[1]);

    const cfin = await scramClientFinal("pw", cfMock.nonce, m.serverFirst);
    if (!cfin.ok) throw new Error(cfin.error);
    expect(scramServerFinal(m.state, cfin.message)).toMatchObject({ ok: false, sqlstate: "28P01" });
  });

  test("even keys that would match cannot make a mock succeed", async () => {
    const mock = mockScramVerifier("ghost", SECRET);
    const real = await deriveScramVerifier("pw", mock.salt, mock.iterations);
    mock.storedKey = real.storedKey;
    mock.serverKey = real.serverKey;
    const { sfin } = await exchange("pw", mock);
    expect(sfin).toMatchObject({ ok: false, sqlstate: "28P01" });
  });
});

describe("md5", () => {
  test("stored hash matches PostgreSQL's", () => {
    expect(md5PasswordHash("alice", "pw")).toBe(PG_MD5_ALICE_PW);
    expect(isMd5Hash(PG_MD5_ALICE_PW)).toBe(true);
    expect(isMd5Hash(PG_MD5_ALICE_PW.toUpperCase())).toBe(false);
    expect(isMd5Hash("md5abc")).toBe(false);
  });

  test("response known answer, from a password or a stored hash", () => {
    const salt = new Uint8Array([1, 2, 3, 4]);
    expect(md5Response("pw", "alice", salt)).toBe(MD5_RESPONSE_ALICE_PW_1234);
    expect(md5Response(PG_MD5_ALICE_PW, "alice", salt)).toBe(MD5_RESPONSE_ALICE_PW_1234);
    expect(md5Response("pw", "alice", new Uint8Array([1, 2, 3, 5]))).not.toBe(MD5_RESPONSE_ALICE_PW_1234);
    expect(() => md5Response("pw", "alice", new Uint8Array(3))).toThrow(RangeError);
  });

  test("verification", () => {
    const salt = new Uint8Array([1, 2, 3, 4]);
    expect(verifyMd5Response("pw", "alice", salt, MD5_RESPONSE_ALICE_PW_1234)).toBe(true);
    expect(verifyMd5Response(PG_MD5_ALICE_PW, "alice", salt, MD5_RESPONSE_ALICE_PW_1234)).toBe(true);
    expect(verifyMd5Response("pw", "bob", salt, MD5_RESPONSE_ALICE_PW_1234)).toBe(false);
    expect(verifyMd5Response("px", "alice", salt, MD5_RESPONSE_ALICE_PW_1234)).toBe(false);
    expect(verifyMd5Response("pw", "alice", new Uint8Array([4, 3, 2, 1]), MD5_RESPONSE_ALICE_PW_1234)).toBe(false);
    expect(verifyMd5Response("pw", "alice", salt, "")).toBe(false);
    expect(verifyMd5Response("pw", "alice", salt, MD5_RESPONSE_ALICE_PW_1234 + "0")).toBe(false);
    expect(verifyMd5Response("", "alice", salt, md5Response("", "alice", salt))).toBe(false);
    expect(verifyMd5Response(PG_VERIFIER_PW, "alice", salt, MD5_RESPONSE_ALICE_PW_1234)).toBe(false);
    expect(verifyMd5Response("pw", "alice", new Uint8Array(8), MD5_RESPONSE_ALICE_PW_1234)).toBe(false);
  });
});

describe("secrets", () => {
  test("constantTimeEqual", () => {
    expect(constantTimeEqual("abc", "abc")).toBe(true);
    expect(constantTimeEqual("abc", "abd")).toBe(false);
    expect(constantTimeEqual("abc", "abcd")).toBe(false);
    expect(constantTimeEqual("", "")).toBe(true);
    expect(constantTimeEqual("", "a")).toBe(false);
    expect(constantTimeEqual("é", new Uint8Array([0xc3, 0xa9]))).toBe(true);
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false);
  });

  test("randomBytes", () => {
    expect(randomBytes(0).length).toBe(0);
    expect(randomBytes(100_000).length).toBe(100_000);
    expect(randomBytes(16)).not.toEqual(randomBytes(16));
    expect(() => randomBytes(-1)).toThrow(RangeError);
  });

  const redactCases: [string, string][] = [
    ["ALTER ROLE bob PASSWORD 'hunter2'", "ALTER ROLE bob PASSWORD '***'"],
    ["alter user bob with encrypted password 'it''s secret' valid until 'infinity'", "alter user bob with encrypted password '***' valid until 'infinity'"],
    ["CREATE ROLE x LOGIN PASSWORD E'a\\'b' CONNECTION LIMIT 3", "CREATE ROLE x LOGIN PASSWORD '***' CONNECTION LIMIT 3"],
    ["CREATE USER x PASSWORD $$dollar'pw$$;", "CREATE USER x PASSWORD '***';"],
    ["CREATE USER x PASSWORD $t$dollar$pw$t$;", "CREATE USER x PASSWORD '***';"],
    ["ALTER ROLE x PASSWORD 'unterminated", "ALTER ROLE x PASSWORD '***'"],
    ["CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 'pw')", "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password '***')"],
    ["host=db user=bob password=hunter2 dbname=app", "host=db user=bob password=*** dbname=app"],
    ["host=db password = 'a b\\'c' port=5432", "host=db password = '***' port=5432"],
    ["postgresql://bob:hunter2@db:5432/app?sslmode=require", "postgresql://bob:***@db:5432/app?sslmode=require"],
    ["postgres://db/app?user=bob&password=hunter2&sslmode=require", "postgres://db/app?user=bob&password=***&sslmode=require"],
    ["PGPASSWORD=hunter2 psql", "PGPASSWORD=*** psql"],
    ['{"user":"bob","password":"hun\\"ter2"}', '{"user":"bob","password":"***"}'],
    [`rolpassword=${PG_VERIFIER_PW} next`, "rolpassword=SCRAM-SHA-256$*** next"],
    [`stored ${PG_VERIFIER_PW}`, "stored SCRAM-SHA-256$***"],
    [`hash ${PG_MD5_ALICE_PW}.`, "hash md5***."],
    ["client-final c=biws,r=abcDEF123,p=dHJ1bmNhdGVkcHJvb2Y=", "client-final c=biws,r=abcDEF123,p=***"],
    ["Authorization: Bearer abc.def-ghi_jkl=", "Authorization: Bearer ***"],
    ["token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl done", "token *** done"],
    ["SELECT 1; SET password_encryption = 'scram-sha-256'", "SELECT 1; SET password_encryption = 'scram-sha-256'"],
    ["SELECT md5('x'), passwords FROM t", "SELECT md5('x'), passwords FROM t"],
    ["CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', password 'pw')", "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', password '***')"],
    ["ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET password 'pw')", "ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET password '***')"],
    ["SELECT dblink('dbname=x user=y password=pw', 'select 1')", "SELECT dblink('dbname=x user=y password=***', 'select 1')"],
    ["SELECT dblink_connect('host=x password=''p w'''' x'' dbname=y')", "SELECT dblink_connect('host=x password=''***'' dbname=y')"],
    ["", ""],
  ];
  test("redactSecrets stays linear on hostile 100 KB inputs", () => {
    const n = 100_000;
    const hostile = [
      "PASSWORD '" + "''".repeat(n / 2) + "\\",
      "PASSWORD" + " ".repeat(n) + "x",
      '"password":"' + '\\"'.repeat(n / 2),
      '"password":"\\"'.repeat(n / 14),
      "eyJ" + "a.".repeat(n / 2),
      "c=".repeat(n / 2),
      "c=,r=x,".repeat(n / 7),
      "a://b:".repeat(n / 6),
    ];
    const t0 = performance.now();
    for (const s of hostile) redactSecrets(s);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  for (const [input, want] of redactCases) {
    test(`redactSecrets: ${JSON.stringify(input).slice(0, 60)}`, () => {
      expect(redactSecrets(input)).toBe(want);
    });
  }
});

describe("property: SCRAM parsers never throw", () => {
  const fragments = fc.constantFrom(
    "n", "y", "p", "a", "m", "r", "s", "i", "c", "v", "e", "x", "=", ",", "n,,", "y,,", "biws", "eSws",
    "r=", "s=", "i=", "p=", "c=", "AAAA", "==", "\0", "\u00e9", "4096", "0", "-1", "1",
  );
  const messy = fc.oneof(
    fc.string({ unit: "binary", maxLength: 300 }),
    fc.array(fragments, { maxLength: 40 }).map((a) => a.join("")),
  );

  test("scramServerFirst / scramServerFinal", async () => {
    const verifier = await deriveScramVerifier("pw");
    const mock = mockScramVerifier("ghost", SECRET);
    fc.assert(
      fc.property(messy, messy, fc.boolean(), (first, final, useMock) => {
        const v = useMock ? mock : verifier;
        const sf = scramServerFirst(first, v);
        expect(typeof sf.ok).toBe("boolean");
        const cf = scramClientFirst();
        const good = scramServerFirst(cf.message, v);
        if (!good.ok) throw new Error("valid client-first rejected");
        const r = scramServerFinal(good.state, final);
        expect(r.ok).toBe(false);
        const again = scramServerFirst(cf.message, v);
        if (!again.ok) throw new Error("valid client-first rejected");
        const withNonce = scramServerFinal(again.state, `c=biws,r=${again.state.nonce},${final}`);
        expect(withNonce.ok).toBe(false);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        expect(typeof scramServerFirst(bytes, verifier).ok).toBe("boolean");
      }),
      { numRuns: 300 },
    );
  });

  test("scramClientFinal / verifyServerFinal", async () => {
    const { nonce } = scramClientFirst();
    await fc.assert(
      fc.asyncProperty(messy, fc.boolean(), async (tail, prefixed) => {
        const sf = prefixed ? `r=${nonce}${tail}` : tail;
        const r = await scramClientFinal("pw", nonce, sf);
        expect(typeof r.ok).toBe("boolean");
        expect(verifyServerFinal(tail, new Uint8Array(32))).toBe(false);
      }),
      { numRuns: 300 },
    );
    await fc.assert(
      fc.asyncProperty(messy, messy, messy, async (pw, n, sf) => {
        const r = await scramClientFinal(pw, n, sf);
        expect(typeof r.ok).toBe("boolean");
      }),
      { numRuns: 300 },
    );
  });
});
