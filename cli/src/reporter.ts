/**
 * Everything the CLI tells its user goes through here, always on stderr: progress text for people,
 * or one JSON object per line with `--json` for scripts. stdout belongs to the command's data
 * (`detour env`, `detour schema`) and, under `detour exec`, to the wrapped process alone.
 */
export interface Reporter {
  step(event: string, text: string, fields?: Record<string, unknown>): void;
  warn(event: string, text: string, fields?: Record<string, unknown>): void;
  fail(error: Error & { code?: string }): void;
}

export function createReporter(json: boolean): Reporter {
  const started = Date.now();
  const emit = (level: string, event: string, text: string, fields?: Record<string, unknown>) => {
    const prefix = level === 'error' ? 'error: ' : level === 'warn' ? 'warning: ' : '';
    process.stderr.write(
      json
        ? `${JSON.stringify({ level, event, message: text, elapsedMs: Date.now() - started, ...fields })}\n`
        : `detour: ${prefix}${text}\n`,
    );
  };
  return {
    step: (event, text, fields) => emit('info', event, text, fields),
    warn: (event, text, fields) => emit('warn', event, text, fields),
    fail: (error) => emit('error', 'failed', error.message, { code: error.code ?? 'DETOUR_INTERNAL' }),
  };
}
