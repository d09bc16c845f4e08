// Forwarding a client's CancelRequest to the backend running its query, on a fresh connection.

import type { ServerEndpoint } from "../server/connection.ts";
import { cancelRequestPacket } from "../protocol/messages.ts";

/** Fire and forget; the socket is closed after the write or after 5 s whatever the server does. */
export function cancelServer(endpoint: ServerEndpoint, pid: number, secret: Uint8Array): void {
  const packet = cancelRequestPacket(pid, secret);
  Bun.connect<ReturnType<typeof setTimeout> | undefined>({
    data: undefined,
    hostname: endpoint.host,
    port: endpoint.port,
    socket: {
      open(sock) {
        sock.write(packet);
        sock.flush();
        const t = setTimeout(() => sock.terminate(), 5000);
        sock.data = t;
      },
      data() {},
      close(sock) {
        if (sock.data) clearTimeout(sock.data);
      },
      error() {},
    },
  }).catch(() => {});
}
