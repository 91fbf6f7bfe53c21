/**
 * Free loopback ports. A port found free can be taken by someone else (a
 * parallel test worker) before our server binds it, so servers are started
 * through {@link withFreePort}, which retries on another port when the start
 * failed because the port was in use.
 *
 * @module
 */
import { createServer } from 'node:net';
import { ServerStartError } from './proc.js';

/**
 * Asks the kernel for a free TCP port on 127.0.0.1: binds port 0, reads the
 * port, closes.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: no port assigned'));
        return;
      }
      srv.close((err) => (err ? reject(err) : resolve(addr.port)));
    });
  });
}

/** True for an error that says a port was already taken. */
export function isPortInUse(err: unknown): boolean {
  if (err instanceof ServerStartError) return err.portInUse;
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE';
}

/**
 * Calls `start(port)` with a fresh free port, retrying with another port
 * (up to `attempts` times in all) when it fails because the port was taken
 * meanwhile. Any other failure is thrown at once.
 *
 * @param start - starts a server on the given port; must clean up after itself on failure
 * @param attempts - total tries (default 5)
 */
export async function withFreePort<T>(start: (port: number) => Promise<T>, attempts = 5): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i += 1) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (err) {
      if (!isPortInUse(err)) throw err;
      last = err;
    }
  }
  throw new Error(`no free port after ${attempts} attempts`, { cause: last });
}

/**
 * Starts on `port` when given (no retry: a taken port is the caller's
 * problem and the error says so), else on a free port via {@link withFreePort}.
 *
 * @param port - a fixed port, or undefined for any free one
 * @param start - starts a server on the given port
 */
export function onPort<T>(port: number | undefined, start: (port: number) => Promise<T>): Promise<T> {
  if (port === undefined) return withFreePort(start);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) return Promise.reject(new Error(`bad port ${String(port)}`));
  return start(port);
}
