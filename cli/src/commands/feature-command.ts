import type { ParseArgsOptionsConfig } from 'node:util';
import {
  type FeatureSummary,
  featureSessionId,
  isFeatureLease,
  kubeClient,
  leasesOf,
  type MeshKind,
  summarizeFeature,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';
import { InvalidInputError } from '@detour/router/errors';
import {
  filterFromExpressions,
  formatFilter,
  parseHeaderExpression,
  validateFilter,
} from '@detour/router/match/index';
import type { KubeConfig } from '@kubernetes/client-node';
import { parseFlags } from '../command-flags.ts';
import { parseDuration } from '../feature/duration.ts';
import {
  FeatureNotFoundError,
  type FeatureUpOptions,
  featureDown,
  featureUp,
  type WorkloadSpec,
} from '../feature/feature-environment.ts';
import { featureUsage } from '../feature/feature-usage.ts';
import { loadKubeConfig } from '../kube/kubeconfig.ts';
import { requireNamespace } from '../kube/namespace.ts';
import { defaultNamespace } from '../options.ts';
import { createReporter } from '../reporter.ts';

/** A feature environment's name: a DNS label short enough for `feature-<name>` to be a session id. */
const FEATURE_NAME = /^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$/;
const WORKLOAD = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)(?::(\d{1,5}))?=(.+)$/;
const TTL_BOUNDS = { min: 10, max: 7 * 24 * 3600 };

function badOption(message: string): InvalidInputError {
  return new InvalidInputError('DETOUR_BAD_OPTION', message);
}

function parse<O extends ParseArgsOptionsConfig>(argv: readonly string[], options: O) {
  return parseFlags(argv, options, {
    positionals: true,
    help: '`detour help` for the flags of detour feature',
  });
}

function featureName(positionals: readonly string[], command: string): string {
  const [name, ...extra] = positionals;
  if (name === undefined)
    throw badOption(
      `detour feature ${command} needs the environment's name, e.g. detour feature ${command} pay -n staging`,
    );
  if (extra.length > 0)
    throw badOption(`detour feature ${command} takes one name, got ${positionals.join(' ')}`);
  if (!FEATURE_NAME.test(name)) {
    throw badOption(
      `feature environment name ${JSON.stringify(name)}: use at most 32 lower-case letters, digits and "-", starting and ending with a letter or digit`,
    );
  }
  return name;
}

/** `detour feature up` flags → what featureUp needs; every check before the cluster is touched. */
export function parseFeatureUp(argv: readonly string[]): FeatureUpOptions & { json: boolean } {
  const { values, positionals } = parse(argv, {
    namespace: { type: 'string', short: 'n' },
    header: { type: 'string', multiple: true },
    workload: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    mesh: { type: 'string' },
    'agent-service': { type: 'string' },
    'route-timeout': { type: 'string' },
    json: { type: 'boolean' },
  });
  const name = featureName(positionals, 'up');
  const headers = (values.header as string[] | undefined) ?? [];
  if (headers.length === 0) {
    throw badOption(
      `detour feature up ${name} needs the header that selects the environment's requests, e.g. --header x-dev=${name}`,
    );
  }
  const filter = validateFilter(
    filterFromExpressions(headers.map((h) => parseHeaderExpression(h))),
    '--header',
  );
  const workloads: WorkloadSpec[] = [];
  for (const value of (values.workload as string[] | undefined) ?? []) {
    const match = WORKLOAD.exec(value);
    if (!match) {
      throw badOption(
        `--workload ${JSON.stringify(value)}: expected SERVICE=deploy/WORKLOAD or SERVICE:PORT=deploy/WORKLOAD, e.g. --workload payments=deploy/payments-v2`,
      );
    }
    const [, service, , port, workload] = match as unknown as [
      string,
      string,
      string,
      string | undefined,
      string,
    ];
    if (workloads.some((w) => w.service === service)) {
      throw badOption(
        `--workload ${value}: Service ${service} is named twice; an environment routes each Service to one workload`,
      );
    }
    workloads.push({ service, workload, ...(port ? { port: Number(port) } : {}) });
  }
  if (workloads.length === 0) {
    throw badOption(
      `detour feature up ${name} needs at least one --workload SERVICE=deploy/WORKLOAD, e.g. --workload payments=deploy/payments-v2`,
    );
  }
  const mesh = values.mesh as string | undefined;
  if (mesh !== undefined && mesh !== 'istio' && mesh !== 'istio-envoyfilter') {
    throw badOption(
      `--mesh ${mesh}: a feature environment routes through Istio DestinationRule subsets, so it supports --mesh istio or --mesh istio-envoyfilter (without Istio, give the feature its own namespace and use detour exec --steal-all there)`,
    );
  }
  const routeTimeout = Number(values['route-timeout'] ?? 30);
  if (!(routeTimeout >= 0 && routeTimeout <= 600)) {
    throw badOption(`--route-timeout ${values['route-timeout']}: give seconds from 0 (do not probe) to 600`);
  }
  return {
    name,
    namespace: (values.namespace as string | undefined) ?? defaultNamespace(),
    filter,
    workloads,
    ttlSeconds: parseDuration((values.ttl as string | undefined) ?? '8h', '--ttl', TTL_BOUNDS),
    ...(mesh ? { mesh: mesh as MeshKind } : {}),
    agentService: (values['agent-service'] as string | undefined) ?? 'detour-agent',
    routeTimeout,
    json: Boolean(values.json),
  };
}

async function listFeatures(kc: KubeConfig, namespace: string | undefined): Promise<FeatureSummary[]> {
  const leases = leasesOf(
    await kubeClient(kc).list({ ...QUERIES.leases, ...(namespace ? { namespace } : {}) }),
  );
  const now = new Date();
  return leases.filter(isFeatureLease).flatMap((lease) => summarizeFeature(lease, now) ?? []);
}

function describeFeature(f: FeatureSummary): string {
  const services = f.services.map((s) => `${s.service}=${s.workload}`).join(' ');
  const state = f.alive ? `until ${f.expiresAt}` : 'EXPIRED (detour clean reverts it)';
  return `${f.namespace}/${f.name}\t${f.filter ? formatFilter(f.filter) : ''}\t${services}\t${f.holder}\tsince ${f.since}\t${state}`;
}

async function up(argv: readonly string[]): Promise<number> {
  const options = parseFeatureUp(argv);
  const reporter = createReporter(options.json);
  const kc = loadKubeConfig();
  await requireNamespace(kc, options.namespace);
  const statuses = await featureUp(kc, options, reporter);
  const [summary] = (await listFeatures(kc, options.namespace)).filter((f) => f.name === options.name);
  const live = statuses.filter((s) => s.status === 'live').length;
  reporter.step(
    'feature.ready',
    `feature environment ${options.name} in ${options.namespace}: ${live} of ${statuses.length} route(s) verified live, held until ${summary?.expiresAt} (\`detour feature up\` again renews it, \`detour feature down ${options.name} -n ${options.namespace}\` removes it)`,
    { name: options.name, namespace: options.namespace, services: statuses, expiresAt: summary?.expiresAt },
  );
  if (options.json) process.stdout.write(`${JSON.stringify({ ...summary, services: statuses })}\n`);
  return 0;
}

async function list(argv: readonly string[]): Promise<number> {
  const { values } = parse(argv, {
    namespace: { type: 'string', short: 'n' },
    'all-namespaces': { type: 'boolean', short: 'A' },
    json: { type: 'boolean' },
  });
  const namespace = values['all-namespaces']
    ? undefined
    : ((values.namespace as string | undefined) ?? defaultNamespace());
  const features = await listFeatures(loadKubeConfig(), namespace);
  if (values.json) process.stdout.write(`${JSON.stringify(features)}\n`);
  else if (features.length === 0)
    process.stdout.write(`no feature environments${namespace ? ` in namespace ${namespace}` : ''}\n`);
  else for (const f of features) process.stdout.write(`${describeFeature(f)}\n`);
  return 0;
}

async function down(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    namespace: { type: 'string', short: 'n' },
    json: { type: 'boolean' },
  });
  const name = featureName(positionals, 'down');
  const namespace = (values.namespace as string | undefined) ?? defaultNamespace();
  const reporter = createReporter(Boolean(values.json));
  const kc = loadKubeConfig();
  const result = await featureDown(kc, namespace, name);
  if (!result.found) {
    throw new FeatureNotFoundError(
      name,
      namespace,
      (await listFeatures(kc, namespace)).map((f) => f.name),
    );
  }
  reporter.step(
    'feature.removed',
    `feature environment ${name} (session ${featureSessionId(name)}) removed from ${namespace} with ${result.applied.length} write(s)`,
    { name, namespace, writes: result.applied.length },
  );
  return 0;
}

/** `detour feature up|list|down`. */
export function featureCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'up':
      return up(rest);
    case 'list':
      return list(rest);
    case 'down':
      return down(rest);
    default:
      throw new InvalidInputError(
        'DETOUR_UNKNOWN_COMMAND',
        `detour feature ${sub ?? ''}: expected up, list or down:\n${featureUsage}`,
      );
  }
}
