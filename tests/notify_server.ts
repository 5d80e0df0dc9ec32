/**
 * A real HTTP server on 127.0.0.1 for the `--notify` tests: it records every request and
 * answers as told.
 *
 * @module
 */

/** One request the server received. */
export interface Received {
  method: string;
  /** Path and query. */
  path: string;
  contentType: string | null;
  userAgent: string | null;
  /** The body, parsed as JSON. */
  body: Record<string, unknown>;
}

/** A running test server; `await using` stops it. */
export interface NotifyServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`. */
  origin: string;
  port: number;
  /** Every request so far, in order. */
  received: Received[];
  /** Resolves once `count` requests arrived; throws after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<Received[]>;
}

/**
 * Starts a server that answers `status` (default 200) to every request, or never answers
 * (`hang`), and records each request.
 */
export function notifyServer(options: { status?: number; headers?: Record<string, string>; hang?: boolean } = {}) {
  const received: Received[] = [];
  const hung: (() => void)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const text = await request.text();
    const url = new URL(request.url);
    received.push({
      method: request.method,
      path: url.pathname + url.search,
      contentType: request.headers.get("content-type"),
      userAgent: request.headers.get("user-agent"),
      body: text === "" ? {} : JSON.parse(text),
    });
    if (options.hang) await new Promise<void>((resolve) => hung.push(resolve));
    const status = options.status ?? 200;
    // A 204 has no body, as healthchecks.io-style servers answer 200 "OK".
    return new Response(status === 204 ? null : "OK", { status, headers: options.headers ?? {} });
  });
  const port = server.addr.port;
  const result: NotifyServer = {
    origin: `http://127.0.0.1:${port}`,
    port,
    received,
    async waitFor(count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        if (Date.now() > deadline) {
          throw new Error(`Timed out waiting for ${count} requests; got ${received.length}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      return received;
    },
    async [Symbol.asyncDispose]() {
      for (const release of hung) release();
      await server.shutdown();
    },
  };
  return result;
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
