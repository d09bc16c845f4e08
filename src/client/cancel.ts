// Forwarding a client's CancelRequest to the backend running its query, on a fresh connection.

import type { ServerConnection } from "../server/connection.ts";
import { cancelRequestPacket } from "../protocol/messages.ts";

/** How long a forwarded cancel may take before it is taken as done (the server closes the connection once it has signalled the backend). */
const CANCEL_SETTLE_MS = 5000;

/**
 * Send a CancelRequest for `server`'s backend. Until PostgreSQL has closed the cancel connection
 * (it closes it after signalling the backend) or CANCEL_SETTLE_MS passed, the server counts a
 * cancel in flight and the pool keeps it from the next client: a late signal could otherwise
 * cancel that client's statement.
 */
export function cancelServer(server: ServerConnection): void {
  const { endpoint, pid, secret } = server;
  const packet = cancelRequestPacket(pid, secret);
  const settled = server.cancelStarted();
  let timer: ReturnType<typeof setTimeout> | undefined;
  Bun.connect<undefined>({
    data: undefined,
    hostname: endpoint.host,
    port: endpoint.port,
    socket: {
      open(sock) {
        sock.write(packet);
        sock.flush();
        timer = setTimeout(() => sock.terminate(), CANCEL_SETTLE_MS);
      },
      data() {},
      close() {
        if (timer) clearTimeout(timer);
        settled();
      },
      error() {},
    },
  }).catch(() => settled());
}
