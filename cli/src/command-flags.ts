/**
 * How every command reads its flags: node:util's parseArgs, strict, a bad flag reported as
 * DETOUR_BAD_FLAG with the help to read, and — in every command that has `--json` — kubectl's
 * `-o json` / `--output json` as its other spelling, since that is what kubectl users type.
 */
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { InvalidInputError } from '@detour/router/errors';

const outputFlag = { output: { type: 'string', short: 'o' } } as const;

/** The flags of a command, before a `--` (what follows it is the wrapped command's). */
function ownArgs(argv: readonly string[]): readonly string[] {
  const end = argv.indexOf('--');
  return end === -1 ? argv : argv.slice(0, end);
}

/** Whether argv asks for JSON: `--json`, `-o json`, `-ojson`, `--output json` or `--output=json`. */
export function wantsJson(argv: readonly string[]): boolean {
  const own = ownArgs(argv);
  return own.some(
    (arg, i) =>
      arg === '--json' ||
      arg === '-ojson' ||
      arg === '--output=json' ||
      ((arg === '-o' || arg === '--output') && own[i + 1] === 'json'),
  );
}

export interface ParseFlagsOptions {
  /** Arguments that are not flags are allowed (and returned as `positionals`). Default false. */
  positionals?: boolean;
  /** Where the error sends the user. Default: `detour help` for the flags. */
  help?: string;
}

/** Parses `argv` against `options` (see the module comment); `-o json` comes back as `json: true`. */
export function parseFlags<O extends ParseArgsOptionsConfig>(
  argv: readonly string[],
  options: O,
  { positionals = false, help = '`detour help` for the flags' }: ParseFlagsOptions = {},
) {
  const hasJson = 'json' in options;
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: hasJson ? { ...options, ...outputFlag } : options,
      allowPositionals: positionals,
      strict: true,
    });
  } catch (error) {
    throw new InvalidInputError('DETOUR_BAD_FLAG', `${(error as Error).message}; run ${help}`);
  }
  const values = parsed.values as Record<string, unknown>;
  if (hasJson && values.output !== undefined) {
    if (values.output !== 'json')
      throw new InvalidInputError(
        'DETOUR_BAD_FLAG',
        `-o ${String(values.output)} is not an output detour has: it prints text, or JSON with -o json (or --json)`,
      );
    values.json = true;
    delete values.output;
  }
  return parsed as unknown as ReturnType<
    typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true }>
  >;
}
