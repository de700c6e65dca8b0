import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DetourError } from '@detour/router/errors';

/** What a running `detour up` publishes so `detour env` (and IDE launchers) can join its session. */
export interface SessionState {
  id: string;
  pid: number;
  startedAt: string;
  agent: string;
  filter: string;
  env: Record<string, string>;
}

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env.DETOUR_STATE_DIR ??
    join(env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'detour', 'sessions')
  );
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function publishSession(state: SessionState): () => void {
  const dir = stateDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${state.id}.json`);
  writeFileSync(file, JSON.stringify(state, null, 2), { mode: 0o600 });
  return () => rmSync(file, { force: true });
}

/** The live sessions; files left by sessions whose process is gone are removed on the way. */
export function liveSessions(): SessionState[] {
  const dir = stateDir();
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.json'));
  } catch {
    return [];
  }
  const live: SessionState[] = [];
  for (const name of names) {
    const state = JSON.parse(readFileSync(join(dir, name), 'utf8')) as SessionState;
    if (alive(state.pid)) live.push(state);
    else rmSync(join(dir, name), { force: true });
  }
  return live;
}

export function findSession(id: string | undefined): SessionState {
  const live = liveSessions();
  if (id) {
    const found = live.find((state) => state.id === id);
    if (found) return found;
    throw new DetourError(
      'DETOUR_NO_SESSION',
      `no running session ${id}; running: ${live.map((state) => state.id).join(', ') || 'none'} — start one with \`detour up\``,
    );
  }
  if (live.length === 1) return live[0] as SessionState;
  if (live.length === 0)
    throw new DetourError(
      'DETOUR_NO_SESSION',
      'no detour session is running: start one with `detour up ...` in another terminal',
    );
  throw new DetourError(
    'DETOUR_AMBIGUOUS_SESSION',
    `${live.length} sessions are running (${live.map((state) => state.id).join(', ')}): pick one with --session`,
  );
}
