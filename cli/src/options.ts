import { parseArgs } from 'node:util';
import { InvalidInputError } from '@detour/router/errors';
import { z } from 'zod';

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
  namespace: z.string().default('default').describe('Namespace of the target.'),
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
    .boolean()
    .default(false)
    .describe(
      'Add the session header (exact values) to outbound calls made outside any request: egress-only debugging in a feature environment.',
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

/** Parses argv (flags before `--`), layered over `DETOUR_*` env vars and a config object. */
export function parseSessionOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  fileConfig: Record<string, unknown> = {},
): { options: SessionOptions; rest: string[] } {
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
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options: parseOptions, allowPositionals: true, strict: true });
  } catch (error) {
    throw new InvalidInputError(
      'DETOUR_BAD_FLAG',
      `${(error as Error).message}; run \`detour help\` for the flags`,
    );
  }
  const merged: Record<string, unknown> = { ...fileConfig };
  for (const key of keys) {
    const fromEnv = env[envName(key)];
    if (fromEnv !== undefined)
      merged[key] = isList(key)
        ? fromEnv.split(',').filter(Boolean)
        : isFlag(key)
          ? fromEnv === 'true' || fromEnv === '1'
          : fromEnv;
    const fromFlag = parsed.values[flagName(key)];
    if (fromFlag !== undefined) merged[key] = fromFlag;
  }
  const result = SessionOptions.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? '');
    const given = merged[key];
    throw new InvalidInputError(
      'DETOUR_BAD_OPTION',
      given === undefined
        ? `--${flagName(key)} is required (or ${envName(key)}): ${SessionOptions.shape[key as OptionKey]?.description ?? ''}`
        : `--${flagName(key)} ${JSON.stringify(given)} is invalid: ${issue?.message}`,
    );
  }
  return { options: result.data, rest: parsed.positionals };
}

/** The JSON schema of a `detour.yaml` / `detour.json` file, for editor completion. */
export function sessionOptionsJsonSchema(): unknown {
  return z.toJSONSchema(SessionOptions, { io: 'input' });
}

/** `detour help`, generated from the same definition. */
export function optionsHelp(): string {
  return keys
    .map((key) => {
      const value = isFlag(key) ? '' : isList(key) ? ' <value>...' : ' <value>';
      const short = shortFlags[key] ? `-${shortFlags[key]}, ` : '';
      return `  ${short}--${flagName(key)}${value}\n      ${SessionOptions.shape[key].description} [env ${envName(key)}]`;
    })
    .join('\n');
}
