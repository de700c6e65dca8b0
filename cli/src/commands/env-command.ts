import { parseFlags } from '../command-flags.ts';
import { formatEnv } from '../session/env-formats.ts';
import { findSession } from '../session/session-state.ts';

/** `detour env [--session ID] [--format F]`: the environment of a running `detour up`. */
export function envCommand(argv: readonly string[]): number {
  const { values } = parseFlags(argv, {
    session: { type: 'string' },
    format: { type: 'string', default: 'dotenv' },
  });
  process.stdout.write(formatEnv(findSession(values.session).env, values.format ?? 'dotenv'));
  return 0;
}
