import { InvalidInputError } from '@detour/router/errors';

export const envFormats = ['dotenv', 'json', 'intellij', 'vscode', 'shell'] as const;
export type EnvFormat = (typeof envFormats)[number];

function dotenvValue(value: string): string {
  return /^[\w@%+=:,./-]*$/.test(value) ? value : JSON.stringify(value);
}

function shellValue(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function xmlAttribute(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('"', '&quot;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;');
}

/**
 * The session's environment in the shapes debuggers take: a `.env` file (VS Code `envFile`,
 * IntelliJ's EnvFile plugin), JSON, an IntelliJ run-configuration `<envs>` block, the `env`
 * object of a VS Code `launch.json` configuration, or `export` lines for a shell.
 */
export function formatEnv(env: Record<string, string>, format: string): string {
  const entries = Object.entries(env).sort(([a], [b]) => a.localeCompare(b));
  switch (format as EnvFormat) {
    case 'dotenv':
      return `${entries.map(([key, value]) => `${key}=${dotenvValue(value)}`).join('\n')}\n`;
    case 'json':
      return `${JSON.stringify(Object.fromEntries(entries), null, 2)}\n`;
    case 'vscode':
      return `${JSON.stringify({ env: Object.fromEntries(entries) }, null, 2)}\n`;
    case 'intellij':
      return `<envs>\n${entries.map(([key, value]) => `  <env name="${xmlAttribute(key)}" value="${xmlAttribute(value)}" />`).join('\n')}\n</envs>\n`;
    case 'shell':
      return `${entries.map(([key, value]) => `export ${key}=${shellValue(value)}`).join('\n')}\n`;
    default:
      throw new InvalidInputError(
        'DETOUR_BAD_OPTION',
        `--format ${JSON.stringify(format)} is not one of ${envFormats.join(', ')}`,
      );
  }
}
