import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from './processes.ts';

const script = fileURLToPath(new URL('./tcp-nodelay.py', import.meta.url));

export interface TcpSocketState {
  pid: number;
  fd: number;
  local: string | null;
  /** null for a listener. */
  peer: string | null;
  listening: boolean;
  /** TCP_NODELAY as the kernel has it for this socket (getsockopt on a pidfd_getfd duplicate). */
  noDelay: boolean;
}

/**
 * The TCP sockets the processes hold, each with its TCP_NODELAY read from the socket itself by
 * tests/support/tcp-nodelay.py (Node has no getsockopt; `ss -i` does not show the option).
 * Needs python3 (scripts/setup.sh installs it) and ptrace rights over the processes (root).
 */
export async function tcpSockets(pids: readonly number[]): Promise<TcpSocketState[]> {
  if (!existsSync('/usr/bin/python3'))
    throw new Error('reading TCP_NODELAY needs python3: apt-get install -y python3 (scripts/setup.sh does)');
  const result = await run(['/usr/bin/python3', script, ...pids.map(String)], {
    timeoutMs: 20_000,
    what: `tcp-nodelay.py ${pids.join(' ')}`,
  });
  if (result.code !== 0)
    throw new Error(`tcp-nodelay.py ${pids.join(' ')} failed (exit ${result.code}): ${result.stderr}`);
  return result.stdout
    .trim()
    .split('\n')
    .flatMap((line) => {
      const { pid, sockets } = JSON.parse(line) as { pid: number; sockets: Omit<TcpSocketState, 'pid'>[] };
      return sockets.map((socket) => ({ pid, ...socket }));
    });
}

/** The pids of a process's children (e.g. the command `detour exec` runs, socat's forked relays). */
export function childPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

/** The connected sockets among them that still have Nagle's algorithm on, as readable lines. */
export function withNagle(sockets: readonly TcpSocketState[]): string[] {
  return sockets
    .filter((socket) => !socket.listening && socket.peer !== null && !socket.noDelay)
    .map((socket) => `pid ${socket.pid} fd ${socket.fd} ${socket.local} -> ${socket.peer}`);
}
