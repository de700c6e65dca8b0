// A session process for the SIGKILL test: creates its Lease, routes with the istio adapter, prints
// "ready", then renews the Lease every 500 ms until it is killed.
//   node session-child.ts <namespace> <session-id>
import { kubeConfig } from '../../../tests/cluster/cluster.ts';
import { applySession } from '../../src/applier.ts';
import { adapterFor } from '../../src/index.ts';
import { kubeClient } from '../../src/kube-client.ts';
import { buildLease, type Lease, renewLease } from '../../src/lease.ts';
import type { SessionIntent } from '../../src/session-intent.ts';

const [ns = '', id = ''] = process.argv.slice(2);
const client = kubeClient(kubeConfig('developer'));
const intent: SessionIntent = {
  sessionId: id,
  target: { namespace: ns, host: `orders.${ns}.svc.cluster.local`, port: 8080 },
  mode: { kind: 'steal', filter: { headers: { 'x-dev': { exact: id } } } },
  agent: { name: 'detour-agent', namespace: ns, port: 15080 },
  holder: `${id}@child`,
  lease: { name: `detour-${id}`, namespace: ns },
};
let lease = (await client.create(buildLease(intent, new Date(), { durationSeconds: 2 }))) as Lease;
intent.lease.uid = lease.metadata.uid as string;
await applySession(client, adapterFor('istio'), intent);
console.log('ready');
setInterval(async () => {
  lease = (await client.replace(renewLease(lease, new Date()))) as Lease;
}, 500);
