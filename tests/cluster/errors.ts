import { DetourError } from '@detour/router/errors';

/**
 * Something about the local test cluster went wrong: binaries not built, a component that did not
 * become ready, a tool missing. Codes: CLUSTER_BINARIES_MISSING, CLUSTER_TOOL_MISSING,
 * CLUSTER_START_FAILED, CLUSTER_TIMEOUT, CLUSTER_NOT_RUNNING, CLUSTER_COMMAND_FAILED.
 */
export class ClusterError extends DetourError {}

/**
 * Runs a command-line entry point: its result is the exit code; a DetourError is printed as
 * `CODE: message` (no stack: the message says what to do), anything else in full.
 */
export function runCommand(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      if (error instanceof DetourError) console.error(`${error.code}: ${error.message}`);
      else console.error(error);
      process.exitCode = 1;
    },
  );
}
