#!/usr/bin/env node
import { DetourError } from '@detour/router/errors';
import { execCommand, upCommand } from './commands/session-command.ts';
import { optionsHelp, sessionOptionsJsonSchema } from './options.ts';
import { createReporter } from './reporter.ts';

const usage = `detour — run one service of a Kubernetes + Istio system on this machine

Commands:
  detour exec [flags] -- <command...>   start a session, run the command in it, end the session with it
  detour up [flags]                     start a session for an IDE launch; Ctrl-C ends it
  detour schema                         print the JSON schema of detour.yaml
  detour help                           this text

Flags:
${optionsHelp()}
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'exec':
      return execCommand(rest);
    case 'up':
      return upCommand(rest);
    case 'schema':
      process.stdout.write(`${JSON.stringify(sessionOptionsJsonSchema(), null, 2)}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(usage);
      return 0;
    default:
      throw new DetourError(
        'DETOUR_UNKNOWN_COMMAND',
        `unknown command "${command}": run \`detour help\` for the commands`,
      );
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error & { code?: string }) => {
    createReporter(process.argv.includes('--json')).fail(
      error instanceof DetourError ? error : Object.assign(error, { code: error.code ?? 'DETOUR_INTERNAL' }),
    );
    process.exit(error instanceof DetourError ? 2 : 1);
  },
);
