/**
 * Everything the CLI tells its user goes through here: progress text on stderr for people, or one
 * JSON object per line on stdout with `--json` for scripts. Never both, never mixed into the app's
 * own output.
 */
export interface Reporter {
  step(event: string, text: string, fields?: Record<string, unknown>): void;
  warn(event: string, text: string, fields?: Record<string, unknown>): void;
  fail(error: Error & { code?: string }): void;
}

export function createReporter(json: boolean): Reporter {
  const started = Date.now();
  const emit = (level: string, event: string, text: string, fields?: Record<string, unknown>) => {
    if (json)
      process.stdout.write(
        `${JSON.stringify({ level, event, message: text, elapsedMs: Date.now() - started, ...fields })}\n`,
      );
    else
      process.stderr.write(
        `detour: ${level === 'error' ? 'error: ' : level === 'warn' ? 'warning: ' : ''}${text}\n`,
      );
  };
  return {
    step: (event, text, fields) => emit('info', event, text, fields),
    warn: (event, text, fields) => emit('warn', event, text, fields),
    fail: (error) => emit('error', 'failed', error.message, { code: error.code ?? 'DETOUR_INTERNAL' }),
  };
}
