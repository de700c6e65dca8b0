/**
 * Every error detour raises on purpose carries a stable `code` (for scripts and `--json` output)
 * and a message that says what went wrong and what to do about it.
 */
export class DetourError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Bad input from the user: a flag, a config value, a filter. Names the value and the fix. */
export class InvalidInputError extends DetourError {}
