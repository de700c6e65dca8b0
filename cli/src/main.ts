#!/usr/bin/env node
import { DetourError } from '@detour/router/errors';
import { wantsJson } from './command-flags.ts';
import { featureUsage } from './feature/feature-usage.ts';
import { optionsHelp, sessionOptionsJsonSchema } from './options.ts';
import { createReporter } from './reporter.ts';
import { versionInfo, versionText } from './version.ts';

const usage = `detour — run one service of a Kubernetes + Istio system on this machine

Commands:
  detour exec [flags] -- <command...>   start a session, run the command in it, end the session with it
  detour up [flags]                     start a session for an IDE launch; Ctrl-C ends it
  detour env [--session ID] [--format dotenv|json|intellij|vscode|shell]
                                        print the environment of a running \`detour up\` for an IDE launch
  detour status [-n NS | -A] [--json]    list sessions in the cluster: who routes what, since when, alive or expired
  detour clean [-n NS] [--json]         revert the routes of every session whose lease expired (any detour can)
  detour install [-n NS] [--image REF] [--replicas N] [--timeout S] [--json]
                                        install the agent in a namespace (manifests/agent), wait until it is ready
  detour uninstall [-n NS] [--force] [--json]
                                        remove what install created; refuses while sessions are live (--force ends them)
  detour doctor [-n NS] [--json]        check context, RBAC, mesh, agent, port-forward, tunnel and a route probe
${featureUsage}
  detour schema                         print the JSON schema of detour.yaml / detour.json
  detour version [--json]               the CLI's version, its tunnel protocol and the agent image it expects
                                        (also: detour --version)
  detour help                           this text

Every command with --json also takes kubectl's -o json (--output json).

Flags of exec and up (also DETOUR_* variables, and keys of detour.yaml / detour.json in the working
directory or --config FILE; flags win over variables, variables over the file). A session takes
requests by --header/--path/--method/--baggage, all with --steal-all, or none with --egress-only:
${optionsHelp()}
`;

/** `--help` or `-h` among a command's own flags (not the wrapped command's, after `--`). */
function asksForHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (asksForHelp(rest)) {
    process.stdout.write(usage);
    return 0;
  }
  switch (command) {
    // Commands load their modules on demand: `detour env` runs in an IDE's launch path.
    case 'exec':
      return (await import('./commands/session-command.ts')).execCommand(rest);
    case 'up':
      return (await import('./commands/session-command.ts')).upCommand(rest);
    case 'status':
      return (await import('./commands/cluster-commands.ts')).statusCommand(rest);
    case 'clean':
      return (await import('./commands/cluster-commands.ts')).cleanCommand(rest);
    case 'install':
      return (await import('./commands/install-commands.ts')).installCommand(rest);
    case 'uninstall':
      return (await import('./commands/install-commands.ts')).uninstallCommand(rest);
    case 'doctor':
      return (await import('./commands/install-commands.ts')).doctorCommand(rest);
    case 'env':
      return (await import('./commands/env-command.ts')).envCommand(rest);
    case 'version':
    case '--version':
    case '-V':
      process.stdout.write(wantsJson(rest) ? `${JSON.stringify(versionInfo())}\n` : `${versionText()}\n`);
      return 0;
    case 'feature':
      return (await import('./commands/feature-command.ts')).featureCommand(rest);
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
    createReporter(wantsJson(process.argv.slice(2))).fail(
      error instanceof DetourError ? error : Object.assign(error, { code: error.code ?? 'DETOUR_INTERNAL' }),
    );
    process.exit(error instanceof DetourError ? 2 : 1);
  },
);
