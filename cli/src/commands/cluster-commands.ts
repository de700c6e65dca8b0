import {
  allAdapters,
  EGRESS_ONLY,
  isDetourLease,
  isExpired,
  kubeClient,
  leasesOf,
  namespacedClient,
  runJanitor,
  summarizeLease,
} from '@detour/mesh-adapters';
import { QUERIES } from '@detour/mesh-adapters/adapter';
import { formatFilter } from '@detour/router/match/index';
import { parseFlags } from '../command-flags.ts';
import { loadKubeConfig } from '../kube/kubeconfig.ts';
import { requireNamespace } from '../kube/namespace.ts';
import { defaultNamespace } from '../options.ts';
import { createReporter } from '../reporter.ts';

/**
 * `detour status [-n NS | --all-namespaces] [--json]`: who holds which route, since when, and
 * whether the session is alive (its Lease renewed) or waiting for a janitor.
 */
export async function statusCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    namespace: { type: 'string', short: 'n' },
    'all-namespaces': { type: 'boolean', short: 'A' },
    json: { type: 'boolean' },
  });
  const kc = loadKubeConfig();
  const client = kubeClient(kc);
  const namespace = values['all-namespaces'] ? undefined : (values.namespace ?? defaultNamespace());
  if (namespace) await requireNamespace(kc, namespace);
  const now = new Date();
  const sessions = leasesOf(await client.list({ ...QUERIES.leases, ...(namespace ? { namespace } : {}) }))
    .filter(isDetourLease)
    .flatMap((lease) => {
      const summary = summarizeLease(lease);
      const since = Date.parse(summary?.since ?? '');
      return summary
        ? [
            {
              ...summary,
              namespace: lease.metadata.namespace,
              ageSeconds: Number.isNaN(since)
                ? null
                : Math.max(0, Math.round((now.getTime() - since) / 1000)),
              alive: !isExpired(lease, now),
            },
          ]
        : [];
    });
  if (values.json) process.stdout.write(`${JSON.stringify(sessions)}\n`);
  else if (sessions.length === 0)
    process.stdout.write(`no detour sessions${namespace ? ` in namespace ${namespace}` : ''}\n`);
  else
    for (const session of sessions) {
      const what =
        session.mode === EGRESS_ONLY
          ? `${EGRESS_ONLY} (takes no requests)\t${session.workload ?? `the agent of ${session.namespace}`}`
          : `${session.mode} ${session.filter ? formatFilter(session.filter) : 'all requests'}\t${session.host}:${session.port}`;
      process.stdout.write(
        `${session.sessionId}\t${what}\t${session.holder}\tsince ${session.since} (${formatAge(session.ageSeconds)})\t${session.alive ? 'alive' : 'EXPIRED (a janitor reverts it)'}\n`,
      );
    }
  return 0;
}

/** `42s`, `5m`, `3h12m`, `2d4h`: how long a session has been held. */
export function formatAge(seconds: number | null): string {
  if (seconds === null) return 'age unknown';
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${minutes % 60 ? `${minutes % 60}m` : ''}`;
  return `${Math.floor(hours / 24)}d${hours % 24 ? `${hours % 24}h` : ''}`;
}

/**
 * `detour clean [-n NS] [--json]`: reverts every route and object of sessions whose Lease expired or
 * is gone, in every namespace this identity may list, or in one.
 */
export async function cleanCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    json: { type: 'boolean' },
    namespace: { type: 'string', short: 'n' },
  });
  const reporter = createReporter(values.json ?? false);
  const kc = loadKubeConfig();
  const client = kubeClient(kc);
  if (values.namespace) await requireNamespace(kc, values.namespace);
  const scoped = values.namespace ? namespacedClient(client, values.namespace) : client;
  const result = await runJanitor(scoped, allAdapters(), () => new Date());
  for (const warning of result.warnings) reporter.warn('clean.warning', warning);
  for (const dead of result.dead) {
    reporter.step(
      'clean.reverted',
      `reverted session ${dead.sessionId} of ${dead.holder ?? 'unknown'} (${dead.why === 'lease-gone' ? 'its lease is gone' : 'its lease expired'})`,
      { ...dead },
    );
  }
  reporter.step(
    'clean.done',
    `${result.dead.length} dead session(s) reverted with ${result.applied.length} write(s)`,
    {
      sessions: result.dead.length,
      writes: result.applied.length,
    },
  );
  return 0;
}
