// Logging in to PostgreSQL as a client: startup, authentication (SCRAM, md5, cleartext, trust), parameters.

import { AuthCode, Be } from "../protocol/codes.ts";
import { errorFields } from "../protocol/errors.ts";
import { readInt32 } from "../protocol/framing.ts";
import { passwordMessage, saslInitialResponse, saslResponse } from "../protocol/messages.ts";
import { md5Response } from "../protocol/md5.ts";
import {
  scramClientFinal,
  scramClientFinalWithKeys,
  scramClientFirst,
  verifyServerFinal,
  type ScramClientKeys,
} from "../protocol/scram.ts";

export interface ServerCredentials {
  user: string;
  database: string;
  /** null: no password known (trust, or passthrough before the client gave one). */
  password: string | null;
  /** SCRAM keys recovered from a client's login against the server's verifier (auth_query). */
  scramKeys?: ScramClientKeys;
}

/** Why a login failed: `code` is the server's SQLSTATE, or ours for transport and auth problems. */
export class LoginError extends Error {
  constructor(
    message: string,
    readonly code: string,
    /** The server asked for a password and we had none. */
    readonly needsPassword = false,
    /** Not worth another try even though the code is a connection error (connect timeout, certificate). */
    readonly final = false,
    /** The proxy closed the connection itself before the login finished (pool closing, KILL, shutdown): not the server's failure. */
    readonly byProxy = false,
  ) {
    super(message);
  }
}

const decoder = new TextDecoder();

/** Per-connection login progress; `handle` is fed each backend message until ReadyForQuery. */
export class LoginExchange {
  readonly params = new Map<string, string>();
  pid = 0;
  secret: Uint8Array = new Uint8Array(4);
  private scramNonce = "";
  private expectedServerSignature: Uint8Array = new Uint8Array(0);
  /** Method the server asked for (for passthrough bookkeeping). */
  method: "trust" | "cleartext" | "md5" | "scram" = "trust";

  constructor(
    private readonly creds: ServerCredentials,
    private readonly send: (b: Uint8Array) => void,
  ) {}

  /** Returns true when the login is complete (ReadyForQuery). Throws LoginError on failure. */
  async handle(type: number, b: Uint8Array, body: number, end: number): Promise<boolean> {
    switch (type) {
      case Be.Authentication:
        await this.auth(b, body, end);
        return false;
      case Be.ParameterStatus: {
        const z = b.indexOf(0, body);
        if (z < 0 || z >= end) throw new LoginError("malformed ParameterStatus from server", "08P01");
        const z2 = b.indexOf(0, z + 1);
        if (z2 < 0 || z2 >= end) throw new LoginError("malformed ParameterStatus from server", "08P01");
        this.params.set(decoder.decode(b.subarray(body, z)), decoder.decode(b.subarray(z + 1, z2)));
        return false;
      }
      case Be.BackendKeyData:
        if (end - body < 8 || end - body > 4 + 256) throw new LoginError("malformed BackendKeyData from server", "08P01");
        this.pid = readInt32(b, body);
        this.secret = b.slice(body + 4, end);
        return false;
      case Be.ErrorResponse: {
        const f = errorFields(b, body, end);
        // An ErrorResponse without a SQLSTATE is a protocol violation, not a reason to retry.
        throw new LoginError(f.message || "server refused the login", f.code || "08P01");
      }
      case Be.NoticeResponse:
      case Be.NegotiateProtocolVersion:
        return false;
      case Be.ReadyForQuery:
        return true;
      default:
        throw new LoginError(`unexpected message ${String.fromCharCode(type)} during server login`, "08P01");
    }
  }

  private async auth(b: Uint8Array, body: number, end: number): Promise<void> {
    if (end - body < 4) throw new LoginError("malformed authentication request from server", "08P01");
    const code = readInt32(b, body);
    const pw = this.creds.password;
    switch (code) {
      case AuthCode.Ok:
        return;
      case AuthCode.CleartextPassword:
        this.method = "cleartext";
        if (pw === null) throw new LoginError("server requested a password", "28P01", true);
        this.send(passwordMessage(pw));
        return;
      case AuthCode.MD5Password:
        this.method = "md5";
        if (pw === null) throw new LoginError("server requested a password", "28P01", true);
        if (end - body < 8) throw new LoginError("malformed MD5 request from server", "08P01");
        this.send(passwordMessage(md5Response(pw, this.creds.user, b.slice(body + 4, body + 8))));
        return;
      case AuthCode.SASL: {
        this.method = "scram";
        if (pw === null && !this.creds.scramKeys) throw new LoginError("server requested a password", "28P01", true);
        const mechs = decoder.decode(b.subarray(body + 4, end)).split("\0");
        if (!mechs.includes("SCRAM-SHA-256")) {
          throw new LoginError(`server offers no supported SASL mechanism (${mechs.filter(Boolean).join(", ")})`, "28000");
        }
        const first = scramClientFirst();
        this.scramNonce = first.nonce;
        this.send(saslInitialResponse("SCRAM-SHA-256", first.message));
        return;
      }
      case AuthCode.SASLContinue: {
        if (end - body > 2048 + 4) throw new LoginError("oversized SCRAM message from server", "08P01");
        const serverFirst = decoder.decode(b.subarray(body + 4, end));
        const keys = this.creds.scramKeys;
        const r = pw === null && keys
          ? await scramClientFinalWithKeys(keys, this.scramNonce, serverFirst)
          : await scramClientFinal(pw ?? "", this.scramNonce, serverFirst);
        if (!r.ok) throw new LoginError(`SCRAM exchange with server failed: ${r.error}`, "08P01");
        this.expectedServerSignature = r.expectedServerSignature;
        this.send(saslResponse(r.message));
        return;
      }
      case AuthCode.SASLFinal: {
        const serverFinal = decoder.decode(b.subarray(body + 4, end));
        if (!verifyServerFinal(serverFinal, this.expectedServerSignature)) {
          throw new LoginError("server's SCRAM signature did not verify", "08P01");
        }
        return;
      }
      default:
        throw new LoginError(`server requested an unsupported authentication method (${code})`, "28000");
    }
  }
}
