import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants } from 'node:os';
import { delimiter, join } from 'node:path';
import { InvalidInputError } from '@detour/router/errors';
import { parseSessionOptions } from '../options.ts';
import { createReporter, type Reporter } from '../reporter.ts';
import { LocalSession } from '../session/local-session.ts';
import { publishSession } from '../session/session-state.ts';

interface SessionContext {
  session: LocalSession;
  env: Record<string, string>;
  rest: string[];
  reporter: Reporter;
  /** What SIGINT / SIGTERM do from now on (forward to the command, end `detour up`, ...). */
  onSignal(handler: (signal: NodeJS.Signals) => void): void;
}

/**
 * Starts a session, runs `body`, and always ends the session, whatever way `body` ends. One signal
 * listener stays installed the whole time: removing the last one and adding another would reset
 * the signal to its default action in between, and a Ctrl-C landing there would kill the CLI
 * with its route still in the cluster.
 */
async function withSession(
  argv: readonly string[],
  body: (context: SessionContext) => Promise<number>,
  /** Checks the arguments after `--` before anything is created in the cluster. */
  checkRest: (rest: readonly string[]) => void = () => {},
): Promise<number> {
  const { options, rest } = parseSessionOptions(argv);
  checkRest(rest);
  const reporter = createReporter(options.json);
  const session = new LocalSession(options, reporter);
  let interrupted: NodeJS.Signals | undefined;
  let handler = (signal: NodeJS.Signals) => {
    // While starting: the start finishes, then the session is undone like at any other exit.
    interrupted = signal;
    reporter.warn(
      'session.interrupted',
      `${signal} while starting: undoing the session as soon as the start is done`,
    );
  };
  const listener = (signal: NodeJS.Signals) => handler(signal);
  process.on('SIGINT', listener).on('SIGTERM', listener);
  try {
    try {
      await session.start();
    } catch (error) {
      // Whatever part started (tunnel, lease, route) is undone before the error is reported.
      await session.stop().catch(() => {});
      throw error;
    }
    // A session lost for good while it runs ends the command like a signal would, then fails with why.
    let lost: Error | undefined;
    void session.failed.then((error) => {
      lost = error;
      handler('SIGTERM');
    });
    try {
      if (interrupted) return 130;
      const code = await body({
        session,
        env: session.processEnv(),
        rest,
        reporter,
        onSignal: (next) => {
          handler = next;
        },
      });
      if (lost) throw lost;
      return code;
    } finally {
      await session.stop();
    }
  } finally {
    process.off('SIGINT', listener).off('SIGTERM', listener);
  }
}

/** `detour exec [flags] -- cmd args...`: the session lives as long as the command. */
export function execCommand(argv: readonly string[]): Promise<number> {
  return withSession(
    argv,
    async ({ env, rest, reporter, onSignal }) => {
      const [command = '', ...args] = rest;
      reporter.step('process.start', `running ${[command, ...args].join(' ')}`);
      const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, ...env } });
      onSignal((signal) => child.kill(signal));
      const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
      reporter.step('process.exit', `${command} exited with ${signal ?? code}`, { exitCode: code, signal });
      // As a shell reports it: a command ended by a signal exits 128 + its number (Ctrl-C: 130).
      return code ?? 128 + (signal ? constants.signals[signal] : 0);
    },
    (rest) => {
      const [command] = rest;
      if (command === undefined)
        throw new InvalidInputError(
          'DETOUR_NO_COMMAND',
          'detour exec needs a command after --, e.g. `detour exec --header x-dev=me --port 8080 -- npm start`',
        );
      if (!isRunnable(command))
        throw new InvalidInputError(
          'DETOUR_COMMAND_NOT_FOUND',
          command.includes('/')
            ? `${command} is not an executable file: check the path (or run it through its interpreter, e.g. -- node ${command})`
            : `${command}: no such command on PATH (${process.env.PATH ?? ''}): check its name, or give its path`,
        );
    },
  );
}

/** A path to an executable file, or a name PATH finds one for (what spawn will run). */
function isRunnable(command: string): boolean {
  const candidates = command.includes('/')
    ? [command]
    : (process.env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((dir) => join(dir, command));
  return candidates.some((file) => {
    try {
      accessSync(file, fsConstants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

/** `detour up [flags]`: the session lives until Ctrl-C; `detour env` prints its environment. */
export function upCommand(argv: readonly string[]): Promise<number> {
  return withSession(
    argv,
    async ({ session, env, reporter, onSignal }) => {
      const unpublish = publishSession({
        id: session.id,
        pid: process.pid,
        startedAt: new Date().toISOString(),
        agent: session.agentAddress,
        filter: session.describe(),
        env,
      });
      try {
        reporter.step(
          'session.env',
          `session ${session.id} is up; launch your process with \`detour env --format dotenv|json|intellij|vscode|shell\` (Ctrl-C ends the session)`,
          // Values from Secrets stay out of the output (`detour env` gives them to the IDE).
          {
            env: Object.fromEntries(
              Object.entries(env).map(([name, value]) => [
                name,
                session.secretVariables.has(name) ? '(from a Secret; `detour env` prints it)' : value,
              ]),
            ),
          },
        );
        const ended = Promise.withResolvers<void>();
        onSignal(() => ended.resolve());
        await ended.promise;
        return 0;
      } finally {
        unpublish();
      }
    },
    (rest) => {
      if (rest.length > 0)
        throw new InvalidInputError(
          'DETOUR_BAD_OPTION',
          `detour up runs no command (it was given ${rest.join(' ')}): launch it with the session's env (\`detour env\`), or run it under \`detour exec -- ${rest.join(' ')}\``,
        );
    },
  );
}
