// The client-facing TCP listener: one ClientSession per accepted socket.

import type { Socket, TCPSocketListener } from "bun";
import type { ProxyContext } from "../core/context.ts";
import { ClientSession, clientHandlers } from "./session.ts";
import { clientsOf } from "./registry.ts";

export function splitAddress(addr: string): { host: string; port: number } {
  const m = /^\[(.*)\]:(\d+)$/.exec(addr) ?? /^(.*):(\d+)$/.exec(addr);
  if (!m) throw new Error(`bad address ${addr}`);
  return { host: m[1]!, port: Number(m[2]) };
}

export function listenClients(ctx: ProxyContext, address: string): TCPSocketListener<ClientSession> {
  const { host, port } = splitAddress(address);
  return Bun.listen<ClientSession>({
    hostname: host,
    port,
    socket: {
      ...clientHandlers,
      open(sock: Socket<ClientSession>) {
        sock.setNoDelay(true);
        const s = new ClientSession(ctx, sock);
        sock.data = s;
        clientsOf(ctx).add(s);
      },
    },
  });
}
