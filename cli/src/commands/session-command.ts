import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { InvalidInputError } from '@detour/router/errors';
import { formatFilter } from '@detour/router/match/index';
import { parseSessionOptions } from '../options.ts';
import { createReporter, type Reporter } from '../reporter.ts';
import { LocalSession } from '../session/local-session.ts';
import { publishSession } from '../session/session-state.ts';

/** Starts a session, runs `body`, and always ends the session, whatever way `body` ends. */
async function withSession(
  argv: readonly string[],
  body: (
    session: LocalSession,
    env: Record<string, string>,
    rest: string[],
    reporter: Reporter,
  ) => Promise<number>,
): Promise<number> {
  const { options, rest } = parseSessionOptions(argv);
  const reporter = createReporter(options.json);
  const session = new LocalSession(options, reporter);
  // Ctrl-C while the session starts must not leave a route behind: the start finishes, then the
  // session is undone like at any other exit.
  let interrupted: NodeJS.Signals | undefined;
  const remember = (signal: NodeJS.Signals) => {
    interrupted = signal;
    reporter.warn(
      'session.interrupted',
      `${signal} while starting: undoing the session as soon as the start is done`,
    );
  };
  process.on('SIGINT', remember).on('SIGTERM', remember);
  try {
    await session.start();
  } catch (error) {
    // Whatever part started (tunnel, lease, route) is undone before the error is reported.
    await session.stop().catch(() => {});
    throw error;
  } finally {
    process.off('SIGINT', remember).off('SIGTERM', remember);
  }
  if (interrupted) {
    await session.stop();
    return 130;
  }
  const env = session.processEnv();
  try {
    return await body(session, env, rest, reporter);
  } finally {
    await session.stop();
  }
}

/** `detour exec [flags] -- cmd args...`: the session lives as long as the command. */
export function execCommand(argv: readonly string[]): Promise<number> {
  return withSession(argv, async (_session, env, rest, reporter) => {
    const [command, ...args] = rest;
    if (!command)
      throw new InvalidInputError(
        'DETOUR_NO_COMMAND',
        'detour exec needs a command after --, e.g. `detour exec --header x-dev=me --port 8080 -- npm start`',
      );
    reporter.step('process.start', `running ${[command, ...args].join(' ')}`);
    const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, ...env } });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on('SIGINT', forward).on('SIGTERM', forward);
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    process.off('SIGINT', forward).off('SIGTERM', forward);
    reporter.step('process.exit', `${command} exited with ${signal ?? code}`, { exitCode: code, signal });
    return code ?? 1;
  });
}

/** `detour up [flags]`: the session lives until Ctrl-C; the env for an IDE launch is printed. */
export function upCommand(argv: readonly string[]): Promise<number> {
  return withSession(argv, async (session, env, _rest, reporter) => {
    const unpublish = publishSession({
      id: session.id,
      pid: process.pid,
      startedAt: new Date().toISOString(),
      agent: session.agentAddress,
      filter: formatFilter(session.filter),
      env,
    });
    try {
      reporter.step(
        'session.env',
        `session ${session.id} is up; launch your process with \`detour env --format dotenv|json|intellij|vscode|shell\` (Ctrl-C ends the session)`,
        { env },
      );
      const ended = Promise.withResolvers<void>();
      process.once('SIGINT', ended.resolve).once('SIGTERM', ended.resolve);
      await ended.promise;
      return 0;
    } finally {
      unpublish();
    }
  });
}
