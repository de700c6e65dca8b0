import { existsSync, readFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { InvalidInputError } from '@detour/router/errors';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseFlags } from './command-flags.ts';
import { contextNamespace } from './kube/kubeconfig.ts';

/**
 * The one definition of detour's session options. Flags, `detour.yaml`, `DETOUR_*` environment
 * variables, the JSON schema (`detour schema`) and `detour help` are all derived from it.
 */
export const SessionOptions = z.object({
  agent: z
    .string()
    .regex(/^([^\s:]+:\d{1,5}|ephemeral)$/, 'expected host:port or ephemeral')
    .optional()
    .describe(
      'Address of the agent tunnel (host:port): a port-forward or an agent the machine reaches directly. With --target, `ephemeral` starts an agent pod for this session when the namespace has none installed.',
    ),
  agentImage: z
    .string()
    .min(1)
    .optional()
    .describe('Image of the agent pod that --agent ephemeral starts (default: the agent of this release).'),
  token: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Session token the agent accepts. With --target, a fresh one is made and the session Lease admits it.',
    ),
  header: z
    .array(z.string())
    .default([])
    .describe(
      'Route requests whose header matches: name=value, name^=prefix, name~=regex, or name (present). Repeatable.',
    ),
  withoutHeader: z
    .array(z.string())
    .default([])
    .describe('...and whose header does not match (same forms). Repeatable.'),
  stealAll: z
    .boolean()
    .default(false)
    .describe(
      'Route every request of the target to this machine (no filter). Use with care on a shared cluster.',
    ),
  mirror: z
    .boolean()
    .default(false)
    .describe('Receive a copy of matching requests; the real pods still answer.'),
  egressOnly: z
    .boolean()
    .default(false)
    .describe(
      "Take no requests: the local process gets the target's env and files, and its DNS and outbound calls leave from the agent. Without --target: the namespace's agent, no target env.",
    ),
  path: z
    .string()
    .optional()
    .describe(
      'Route only requests to this path: /exact, ^=/prefix or ~=regex (RE2, the whole path without the query).',
    ),
  method: z
    .array(z.string())
    .default([])
    .describe('Route only requests with this method (GET, POST, ...). Repeatable: any of them.'),
  baggage: z
    .string()
    .optional()
    .describe(
      'Route only requests whose W3C baggage header has this member: key=value (matched by an RE2 regex the mesh and the agent evaluate alike).',
    ),
  port: z
    .string()
    .regex(/^\d{1,5}(:\d{1,5})?$/, 'expected PORT or TARGET_PORT:LOCAL_PORT')
    .optional()
    .describe(
      'Target port (the Service port or container port), optionally mapped to another local port (8080 or 8080:3000). Required without --target.',
    ),
  target: z
    .string()
    .optional()
    .describe(
      'The workload to replace in the cluster: deploy/NAME, sts/NAME, ds/NAME or a Service name. Routes are written through the mesh.',
    ),
  namespace: z
    .string()
    .default('default')
    .describe(
      "Namespace of the target. Default: the kubeconfig context's namespace (as kubectl), else default.",
    ),
  mesh: z
    .enum(['istio', 'istio-envoyfilter', 'gateway-api', 'service'])
    .optional()
    .describe(
      'How to route, instead of detecting it: istio (VirtualService), istio-envoyfilter, gateway-api (HTTPRoute), service (no mesh).',
    ),
  agentService: z
    .string()
    .default('detour-agent')
    .describe('Service of the in-cluster agent, in the target namespace.'),
  tunnels: z
    .enum(['all', 'one'])
    .default('all')
    .describe(
      "Tunnels to the namespace's agent: all (one to every ready replica, so the requests the mesh balances over them need no hop between replicas) or one (a single port-forward; the other replicas forward this session's requests to its replica).",
    ),
  leaseSeconds: z.coerce
    .number()
    .int()
    .min(5)
    .max(3600)
    .default(30)
    .describe("How long the cluster keeps this session's routes after the CLI stops renewing them."),
  routeTimeout: z.coerce
    .number()
    .min(0)
    .max(600)
    .default(30)
    .describe(
      "Seconds to wait until the mesh routes the session's requests to the agent (checked from inside the mesh); 0: do not wait.",
    ),
  session: z
    .string()
    .regex(
      /^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$/,
      'lower-case letters, digits and dashes, at most 40, not starting or ending with a dash',
    )
    .optional()
    .describe('Session id (default: generated).'),
  egressInclude: z
    .array(z.string())
    .default([])
    .describe('Extra destinations that leave from the cluster (names, *.suffix, CIDRs). Repeatable.'),
  egressExclude: z
    .array(z.string())
    .default([])
    .describe('Destinations that stay on this machine (names, *.suffix, CIDRs). Repeatable.'),
  proxyPort: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(0)
    .describe(
      'Port of the loopback egress proxy (0: any free port). Fix it so IDE run configurations survive a restart.',
    ),
  carryHeader: z
    .array(z.string())
    .default([])
    .describe(
      'Add a header to outbound calls made outside any request, to reach a feature environment: name=value, or a bare name to send the value --header gives it. Repeatable.',
    ),
  envSecrets: z
    .boolean()
    .default(false)
    .describe(
      "Also copy the target's variables and files from Secrets (needs get on secrets in the namespace: the optional role manifests/rbac/detour-developer-secrets.yaml). Values never appear in logs or --json.",
    ),
  json: z
    .boolean()
    .default(false)
    .describe('Print progress as JSON lines (on stderr, like the text) for scripts.'),
});
export type SessionOptions = z.infer<typeof SessionOptions>;

type OptionKey = keyof SessionOptions;
const keys = Object.keys(SessionOptions.shape) as OptionKey[];

function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function envName(key: string): string {
  return `DETOUR_${flagName(key).replaceAll('-', '_').toUpperCase()}`;
}

/** kubectl's short forms, where detour's flags mean the same. */
const shortFlags: Partial<Record<OptionKey, string>> = { namespace: 'n' };

/** Each option's JSON type, read from the schema itself so flags cannot drift from it. */
const jsonTypes = (
  z.toJSONSchema(SessionOptions, { io: 'input' }) as { properties: Record<string, { type?: string }> }
).properties;

function isList(key: OptionKey): boolean {
  return jsonTypes[key]?.type === 'array';
}

function isFlag(key: OptionKey): boolean {
  return jsonTypes[key]?.type === 'boolean';
}

/** Where a value came from, for the error that names it. */
type Source = { kind: 'flag' } | { kind: 'env' } | { kind: 'file'; path: string };

/** What to write instead of a bad value, from the option's type in the schema. */
function fixFor(key: OptionKey): string {
  const type = jsonTypes[key] as { type?: string; enum?: string[] };
  const what = SessionOptions.shape[key].description ?? '';
  if (type.enum) return `use one of ${type.enum.join(', ')} (${what})`;
  switch (type.type) {
    case 'array':
      return `write a list of strings, e.g. ${key}: ["…"] (${what})`;
    case 'boolean':
      return `write true or false (${what})`;
    case 'integer':
    case 'number':
      return `write a number (${what})`;
    default:
      return what;
  }
}

function badValue(
  key: OptionKey,
  value: unknown,
  message: string | undefined,
  source: Source,
): InvalidInputError {
  const where =
    source.kind === 'file'
      ? `${source.path}: ${key}`
      : source.kind === 'env'
        ? envName(key)
        : `--${flagName(key)}`;
  return new InvalidInputError(
    source.kind === 'file' ? 'DETOUR_BAD_CONFIG' : 'DETOUR_BAD_OPTION',
    `${where} ${JSON.stringify(value)} is invalid: ${message}${source.kind === 'file' ? `; ${fixFor(key)}` : ''}`,
  );
}

/** The config files looked for in the working directory, in this order (one of them at most). */
export const CONFIG_FILES = ['detour.yaml', 'detour.json'] as const;

/** The key a mistyped one most likely meant: kebab-case, other case, or one or two letters off. */
function closestKey(given: string): OptionKey | undefined {
  const camel = given.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
  const exact = keys.find((key) => key.toLowerCase() === camel.toLowerCase());
  if (exact) return exact;
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let previous = row[0] as number;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const current = row[j] as number;
        row[j] = Math.min(
          current + 1,
          (row[j - 1] as number) + 1,
          previous + (a[i - 1] === b[j - 1] ? 0 : 1),
        );
        previous = current;
      }
    }
    return row[b.length] as number;
  };
  return keys.find((key) => distance(key.toLowerCase(), camel.toLowerCase()) <= 2);
}

/**
 * Reads `detour.yaml` / `detour.json` (or the `--config` file): a mapping of option keys (as in
 * `detour schema`) to values, each checked against its option so an error names file, key, value
 * and fix. No file is no config; a named file that cannot be read is an error.
 */
export function readConfigFile(
  explicit: string | undefined,
  cwd: string,
): { path: string; values: Partial<Record<OptionKey, unknown>> } | undefined {
  let path: string;
  if (explicit !== undefined) path = resolve(cwd, explicit);
  else {
    const found = CONFIG_FILES.map((name) => join(cwd, name)).filter((file) => existsSync(file));
    if (found.length > 1)
      throw new InvalidInputError(
        'DETOUR_BAD_CONFIG',
        `both ${found.join(' and ')} exist: keep one of them, or name the one to use with --config FILE`,
      );
    if (found.length === 0) return undefined;
    path = found[0] as string;
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new InvalidInputError(
      'DETOUR_BAD_CONFIG',
      `cannot read the config file ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): ${explicit !== undefined ? 'give a readable file to --config, or drop --config to use detour.yaml in the working directory' : 'make it readable, or remove it'}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text, { prettyErrors: true });
  } catch (error) {
    throw new InvalidInputError(
      'DETOUR_BAD_CONFIG',
      `${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(error as Error).message.split('\n')[0]}; fix the syntax (\`detour schema\` prints what the file may hold)`,
    );
  }
  if (parsed === null || parsed === undefined) return { path, values: {} };
  if (typeof parsed !== 'object' || Array.isArray(parsed))
    throw new InvalidInputError(
      'DETOUR_BAD_CONFIG',
      `${path} holds ${Array.isArray(parsed) ? 'a list' : JSON.stringify(parsed)}: it must be a mapping of options, e.g. target: deploy/orders`,
    );
  const values: Partial<Record<OptionKey, unknown>> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (key === '$schema') continue;
    if (!(keys as string[]).includes(key)) {
      const closest = closestKey(key);
      throw new InvalidInputError(
        'DETOUR_BAD_CONFIG',
        `${path}: unknown key "${key}"${closest ? `; did you mean "${closest}"?` : ''} (the keys are those of \`detour schema\`: ${keys.join(', ')})`,
      );
    }
    // `port: 8080` is what anyone writes in YAML for the string option "8080".
    const given = typeof value === 'number' && jsonTypes[key]?.type === 'string' ? String(value) : value;
    const checked = SessionOptions.shape[key as OptionKey].safeParse(given);
    if (!checked.success)
      throw badValue(key as OptionKey, value, checked.error.issues[0]?.message, { kind: 'file', path });
    values[key as OptionKey] = given;
  }
  return { path, values };
}

/**
 * Parses argv (flags before `--`), layered over `DETOUR_*` env vars, over the config file
 * (`--config FILE`, `DETOUR_CONFIG`, or `detour.yaml` / `detour.json` in `cwd`).
 */
export function parseSessionOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): { options: SessionOptions; rest: string[]; configFile?: string } {
  const parseOptions = Object.fromEntries(
    keys.map((key) => [
      flagName(key),
      {
        type: isFlag(key) ? ('boolean' as const) : ('string' as const),
        multiple: isList(key),
        ...(shortFlags[key] ? { short: shortFlags[key] } : {}),
      },
    ]),
  );
  const parsed = parseFlags(argv, { ...parseOptions, config: { type: 'string' } }, { positionals: true });
  const config = readConfigFile((parsed.values.config as string | undefined) ?? env.DETOUR_CONFIG, cwd);
  const merged: Record<string, unknown> = { ...config?.values };
  const sources: Partial<Record<OptionKey, Source>> = {};
  for (const key of Object.keys(merged) as OptionKey[])
    sources[key] = { kind: 'file', path: config?.path ?? '' };
  for (const key of keys) {
    const fromEnv = env[envName(key)];
    if (fromEnv !== undefined) {
      merged[key] = isList(key)
        ? fromEnv.split(',').filter(Boolean)
        : isFlag(key)
          ? fromEnv === 'true' || fromEnv === '1'
          : fromEnv;
      sources[key] = { kind: 'env' };
    }
    const fromFlag = (parsed.values as Record<string, unknown>)[flagName(key)];
    if (fromFlag !== undefined) {
      merged[key] = fromFlag;
      sources[key] = { kind: 'flag' };
    }
  }
  merged.namespace ??= contextNamespace();
  const result = SessionOptions.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? '') as OptionKey;
    const given = merged[key];
    throw given === undefined
      ? new InvalidInputError(
          'DETOUR_BAD_OPTION',
          `--${flagName(key)} is required (or ${envName(key)}): ${SessionOptions.shape[key]?.description ?? ''}`,
        )
      : badValue(key, given, issue?.message, sources[key] ?? { kind: 'flag' });
  }
  return { options: result.data, rest: parsed.positionals, ...(config ? { configFile: config.path } : {}) };
}

/**
 * The namespace of a command without `-n` (status, install, doctor, feature, ...), layered as for a
 * session: `DETOUR_NAMESPACE`, the config file's `namespace`, the kubeconfig context's, `default`.
 */
export function defaultNamespace(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  const fromFile = readConfigFile(env.DETOUR_CONFIG, cwd)?.values.namespace as string | undefined;
  return env[envName('namespace')] ?? fromFile ?? contextNamespace() ?? 'default';
}

/** The JSON schema of a `detour.yaml` / `detour.json` file, for editor completion. */
export function sessionOptionsJsonSchema(): unknown {
  const schema = z.toJSONSchema(SessionOptions, { io: 'input' }) as { properties: Record<string, unknown> };
  return {
    ...schema,
    properties: {
      $schema: {
        type: 'string',
        description: 'The JSON schema this file follows (`detour schema`), for editors.',
      },
      ...schema.properties,
    },
    // readConfigFile refuses unknown keys: the schema says so too, so editors flag typos.
    additionalProperties: false,
  };
}

/** `detour help`, generated from the same definition. */
export function optionsHelp(): string {
  return [
    ...keys.map((key) => {
      const value = isFlag(key) ? '' : isList(key) ? ' <value>...' : ' <value>';
      const short = shortFlags[key] ? `-${shortFlags[key]}, ` : '';
      return `  ${short}--${flagName(key)}${value}\n      ${SessionOptions.shape[key].description} [env ${envName(key)}; file: ${key}]`;
    }),
    `  --config <file>\n      Read options from this file instead of ${CONFIG_FILES.join(' or ')} in the working directory. Flags win over DETOUR_* variables, which win over the file. [env DETOUR_CONFIG]`,
  ].join('\n');
}
