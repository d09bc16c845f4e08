// The Bun floor: a minimal TCP forwarder (no parsing, one server connection per client) to compare a proxy against.

const [listenPort, targetPort] = [Number(process.argv[2] ?? 6440), Number(process.argv[3] ?? 5432)];

interface Pair {
  peer: import("bun").Socket<Pair> | null;
  pending: Uint8Array[];
}

Bun.listen<Pair>({
  hostname: "127.0.0.1",
  port: listenPort,
  socket: {
    open(client) {
      client.setNoDelay(true);
      const pair: Pair = { peer: null, pending: [] };
      client.data = pair;
      void Bun.connect<Pair>({
        hostname: "127.0.0.1",
        port: targetPort,
        data: { peer: client, pending: [] },
        socket: {
          open(server) {
            server.setNoDelay(true);
            pair.peer = server;
            for (const b of pair.pending) server.write(b);
            pair.pending = [];
          },
          data(server, chunk) {
            server.data.peer!.write(chunk);
          },
          close(server) {
            server.data.peer?.end();
          },
        },
      });
    },
    data(client, chunk) {
      if (client.data.peer) client.data.peer.write(chunk);
      else client.data.pending.push(chunk.slice());
    },
    close(client) {
      client.data.peer?.end();
    },
  },
});
console.log(`forwarding 127.0.0.1:${listenPort} -> 127.0.0.1:${targetPort}`);
