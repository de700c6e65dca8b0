/**
 * Starts a server listening and settles when it does: resolves once bound, rejects with the bind
 * error (EADDRINUSE, EACCES, ...) instead of leaving it to an 'error' event nobody handles.
 */
import type { Server } from 'node:net';

export function listenOn(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
