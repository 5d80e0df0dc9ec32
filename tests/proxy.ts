/**
 * TCP proxies in front of the test servers: one that counts the HTTP requests going through to
 * radosgw (what a run really sent, by method, key and headers), and one that cuts every
 * connection once enough bytes went one way (a network that drops mid-upload or
 * mid-download, under S3's HTTP or SFTP's ssh alike).
 *
 * @module
 */

/** One request seen by {@linkcode countingProxy}. */
export interface SeenRequest {
  method: string;
  /** The request target, decoded: path and query. */
  target: string;
  /** A server-side copy (a PUT with `x-amz-copy-source`). */
  copy: boolean;
  /** A ranged read (a GET with `Range`). */
  range: boolean;
}

/** A proxy on 127.0.0.1 to `endpoint`: `endpoint` is its own URL (http://127.0.0.1:PORT). */
export interface Proxy extends AsyncDisposable {
  endpoint: string;
  port: number;
}

/**
 * A proxy that passes every byte through unchanged and reads the HTTP/1.1 requests going
 * upstream (head, then a `Content-Length` body).
 */
export function countingProxy(endpoint: string): Proxy & { requests: SeenRequest[] } {
  const requests: SeenRequest[] = [];
  const proxy = tcpProxy(endpoint, {
    upstream: () => {
      const latin1 = new TextDecoder("latin1");
      let head = "";
      let bodyLeft = 0;
      return (chunk: Uint8Array) => {
        let i = 0;
        while (i < chunk.length) {
          if (bodyLeft > 0) {
            const n = Math.min(bodyLeft, chunk.length - i);
            bodyLeft -= n;
            i += n;
            continue;
          }
          const before = head.length;
          head += latin1.decode(chunk.subarray(i));
          const end = head.indexOf("\r\n\r\n");
          if (end === -1) return true;
          i += end + 4 - before;
          const [first = "", ...lines] = head.slice(0, end).split("\r\n");
          head = "";
          const headers = new Map(
            lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1)]),
          );
          if (headers.get("transfer-encoding")?.includes("chunked")) throw new Error("chunked bodies not parsed");
          const [method = "", target = ""] = first.split(" ");
          requests.push({
            method,
            target: decodeURIComponent(target),
            copy: headers.has("x-amz-copy-source"),
            range: headers.has("range"),
          });
          bodyLeft = Number(headers.get("content-length") ?? 0);
        }
        return true;
      };
    },
  });
  return Object.assign(proxy, { requests });
}

/**
 * A proxy that cuts every connection, and refuses new ones, once `cutAfter` bytes in total
 * have come back from the server (`downstream`, the default) or gone to it (`upstream`).
 * `endpoint` may be any URL with a host and port (`tcp://127.0.0.1:2222` for an sshd). `cut`
 * resolves when it has cut.
 */
export function cuttingProxy(
  endpoint: string,
  cutAfter: number,
  direction: "upstream" | "downstream" = "downstream",
): Proxy & { cut: Promise<void> } {
  let passed = 0;
  let cut!: () => void;
  const done = new Promise<void>((resolve) => cut = resolve);
  const count = () => (chunk: Uint8Array) => {
    passed += chunk.length;
    if (passed <= cutAfter) return true;
    cut();
    return false;
  };
  const proxy = tcpProxy(endpoint, { [direction]: count });
  return Object.assign(proxy, { cut: done });
}

/**
 * A TCP proxy to `endpoint`'s host and port. A watcher sees each chunk of a connection's one
 * direction before it is passed on; when one says false, every connection is cut and new ones
 * are refused.
 */
function tcpProxy(
  endpoint: string,
  watch: {
    upstream?: () => (chunk: Uint8Array) => boolean;
    downstream?: () => (chunk: Uint8Array) => boolean;
  },
): Proxy {
  const target = new URL(endpoint);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pumps: Promise<void>[] = [];
  let dead = false;
  const cutAll = () => {
    dead = true;
    for (const conn of open) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    open.clear();
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn, see?: (chunk: Uint8Array) => boolean) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        if (see && !see(buffer.subarray(0, n))) return cutAll();
        let off = 0;
        while (off < n) off += await to.write(buffer.subarray(off, n));
      }
    } catch { /* cut or closed */ }
    await to.closeWrite().catch(() => {});
  };
  const accepting = (async () => {
    for await (const client of listener) {
      if (dead) {
        client.close();
        continue;
      }
      const server = await Deno.connect({ hostname: target.hostname, port: Number(target.port || 80) });
      open.add(client);
      open.add(server);
      pumps.push(pump(client, server, watch.upstream?.()), pump(server, client, watch.downstream?.()));
    }
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    [Symbol.asyncDispose]: async () => {
      listener.close();
      cutAll();
      await accepting;
      await Promise.all(pumps);
    },
  };
}
