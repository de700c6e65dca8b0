import { parseArgs } from 'node:util';
import {
  allAdapters,
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
import { loadKubeConfig } from '../kube/kubeconfig.ts';
import { createReporter } from '../reporter.ts';

/**
 * `detour status [-n NS | --all-namespaces] [--json]`: who holds which route, since when, and
 * whether the session is alive (its Lease renewed) or waiting for a janitor.
 */
export async function statusCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      namespace: { type: 'string', short: 'n' },
      'all-namespaces': { type: 'boolean', short: 'A' },
      json: { type: 'boolean' },
    },
    strict: true,
  });
  const client = kubeClient(loadKubeConfig());
  const namespace = values['all-namespaces'] ? undefined : (values.namespace ?? 'default');
  const now = new Date();
  const sessions = leasesOf(await client.list({ ...QUERIES.leases, ...(namespace ? { namespace } : {}) }))
    .filter(isDetourLease)
    .flatMap((lease) => {
      const summary = summarizeLease(lease);
      return summary
        ? [{ ...summary, namespace: lease.metadata.namespace, alive: !isExpired(lease, now) }]
        : [];
    });
  if (values.json) process.stdout.write(`${JSON.stringify(sessions)}\n`);
  else if (sessions.length === 0)
    process.stdout.write(`no detour sessions${namespace ? ` in namespace ${namespace}` : ''}\n`);
  else
    for (const session of sessions) {
      const filter = session.filter ? formatFilter(session.filter) : 'all requests';
      process.stdout.write(
        `${session.sessionId}\t${session.mode} ${filter}\t${session.host}:${session.port}\t${session.holder}\tsince ${session.since}\t${session.alive ? 'alive' : 'EXPIRED (a janitor reverts it)'}\n`,
      );
    }
  return 0;
}

/**
 * `detour clean [-n NS] [--json]`: reverts every route and object of sessions whose Lease expired or
 * is gone, in every namespace this identity may list, or in one.
 */
export async function cleanCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { json: { type: 'boolean' }, namespace: { type: 'string', short: 'n' } },
    strict: true,
  });
  const reporter = createReporter(values.json ?? false);
  const client = kubeClient(loadKubeConfig());
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
