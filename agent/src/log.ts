/** JSON lines on stderr: one event per line, so `kubectl logs` output can be grepped and parsed. */
export interface Log {
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
}

export function jsonLog(stream: NodeJS.WritableStream = process.stderr): Log {
  const write = (level: string, event: string, fields?: Record<string, unknown>) =>
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...fields })}\n`);
  return {
    info: (event, fields) => write('info', event, fields),
    warn: (event, fields) => write('warn', event, fields),
  };
}
