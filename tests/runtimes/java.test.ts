/**
 * The JVM under `detour exec`, routed by the native layer alone: the session env has LD_PRELOAD and
 * no JAVA_TOOL_OPTIONS proxy properties. Real programs (programs/Probe.java for the JDK's clients,
 * programs/ClientsProbe.java for Reactor Netty, Apache HttpClient 5, OkHttp and the PostgreSQL
 * JDBC driver from Maven Central) call payments and a real PostgreSQL, which only the agent's pod
 * can resolve and reach.
 */
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { buildNativeLayer } from '../support/native-layer.ts';
import { addresses } from '../support/netns.ts';
import type { ManagedProcess } from '../support/processes.ts';
import {
  assertFailed,
  assertReachedPayments,
  paymentsName,
  paymentsTlsUrl,
  paymentsUrl,
  ports,
  type RuntimeRig,
  useRuntimeRig,
} from './runtime-rig.ts';
import { compileJava, compileJvmClients, type Java, requireTool, scratchDir } from './toolchains.ts';

const postgresName = 'postgres.staging.svc.cluster.local';
const postgresPort = 5432;

describe('java: real JVM programs reach payments through the agent (native layer)', {
  timeout: 400_000,
}, () => {
  const scratch = scratchDir('java');
  let java: Java;
  let clients: string;
  let rt: RuntimeRig;
  let trustFlags: string[];
  let postgres: ManagedProcess;

  const probe = (mode: string, url: string, jvm: string[] = []) => [
    java.java,
    ...jvm,
    '-cp',
    java.classes,
    'Probe',
    mode,
    url,
  ];
  const clientsProbe = (mode: string, ...args: string[]) => [
    java.java,
    '-cp',
    clients,
    'ClientsProbe',
    mode,
    ...args,
  ];

  /** PostgreSQL from Debian's package in the cluster namespace, as its own user (initdb refuses root). */
  const startPostgres = async () => {
    const bin = '/usr/lib/postgresql/15/bin';
    requireTool(`${bin}/postgres`, 'apt-get install postgresql (Debian 12: PostgreSQL 15)');
    const data = join(scratch.path, 'pgdata');
    mkdirSync(data);
    chmodSync(scratch.path, 0o755);
    await rt.rig.sh('cluster', `chown postgres ${data}`);
    const init = await rt.rig.sh(
      'cluster',
      `runuser -u postgres -- ${bin}/initdb -D ${data} -U detour --auth=trust --no-sync >/dev/null`,
    );
    assert.equal(init.code, 0, `initdb: ${init.stdout}${init.stderr}`);
    // Connections come from the agent's pod (198.18.3.1): the cluster's own network.
    appendFileSync(join(data, 'pg_hba.conf'), 'host all detour 198.18.0.0/15 trust\n');
    postgres = rt.rig.start('cluster', 'postgres', [
      'runuser',
      '-u',
      'postgres',
      '--',
      `${bin}/postgres`,
      '-D',
      data,
      '-h',
      addresses.cluster,
      '-p',
      String(postgresPort),
      '-k',
      data,
    ]);
    await postgres.waitForLine('stderr', /ready to accept connections/, 'postgres ready', 30_000);
  };

  useRuntimeRig('rtj', {
    prepare: async () => {
      await buildNativeLayer();
      java = await compileJava(scratch.path);
      clients = await compileJvmClients(scratch.path);
    },
    started: async (started) => {
      rt = started;
      trustFlags = await rt.jvmTrustFlags();
      rt.rig.topology.writeHosts('pod', { [addresses.cluster]: [paymentsName, 'payments', postgresName] });
      await startPostgres();
    },
    cleanup: () => scratch.remove(),
  });

  test('java: the session env preloads the native layer and sets no JAVA_TOOL_OPTIONS', async () => {
    const result = await rt.exec(['env']);
    assert.equal(result.code, 0, result.stderr);
    const env = Object.fromEntries(result.stdout.split('\n').map((line) => line.split(/=(.*)/s)));
    assert.match(env.LD_PRELOAD ?? '', /\/libdetour\.so$/);
    assert.equal(env.JAVA_TOOL_OPTIONS, undefined);
  });

  for (const mode of ['socket', 'nio', 'urlconnection', 'httpclient']) {
    test(`java: ${mode} reaches payments by its cluster name`, async () => {
      const result = await rt.exec(probe(mode, paymentsUrl(`/java/${mode}`)));
      assertReachedPayments(result, `/java/${mode}`);
      assert.doesNotMatch(result.stderr, /Picked up JAVA_TOOL_OPTIONS/);
    });
  }

  test('java: HttpURLConnection and HttpClient, https (certificate checked against the cluster name)', async () => {
    for (const mode of ['urlconnection', 'httpclient']) {
      const result = await rt.exec(probe(mode, paymentsTlsUrl(`/java/https-${mode}`), trustFlags));
      assertReachedPayments(result, `/java/https-${mode}`, { tls: true });
    }
  });

  test('java: short name "payments" resolved by the agent, not the laptop', async () => {
    const result = await rt.exec(probe('urlconnection', paymentsUrl('/java/short-name', 'payments')));
    assertReachedPayments(result, '/java/short-name');
  });

  test("java: InetAddress.getByName of a cluster name answers the cluster's address", async () => {
    const result = await rt.exec(probe('lookup', paymentsUrl('/java/lookup')));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), addresses.cluster);
  });

  test('java: Socket.connect(InetSocketAddress.createUnresolved(…)) fails: the JDK refuses an unresolved address without a SOCKS proxy', async () => {
    const result = await rt.exec(probe('socket-unresolved', paymentsUrl('/java/socket-unresolved')));
    assertFailed(result, /probe socket-unresolved failed: java\.net\.UnknownHostException/);
  });

  for (const mode of ['reactor-netty-nio', 'reactor-netty-epoll', 'httpclient5', 'okhttp']) {
    test(`java: ${mode} with its defaults reaches payments by its cluster name`, async () => {
      const result = await rt.exec(clientsProbe(mode, paymentsUrl(`/java/${mode}`)));
      assertReachedPayments(result, `/java/${mode}`);
      if (mode.startsWith('reactor-netty'))
        assert.match(result.stderr, mode.endsWith('epoll') ? /EpollSocketChannel/ : /NioSocketChannel/);
    });
  }

  test('java: the PostgreSQL JDBC driver reaches a real PostgreSQL by its cluster name', async () => {
    const result = await rt.exec(
      clientsProbe('jdbc', `jdbc:postgresql://${postgresName}:${postgresPort}/postgres`, 'detour', ''),
    );
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    // PostgreSQL saw the connection come from the agent's pod, not from the laptop.
    assert.deepEqual(JSON.parse(result.stdout), {
      app: 'postgres',
      database: 'postgres',
      server: addresses.cluster,
      client: addresses.podTowardCluster,
    });
  });

  test('java: a stale local answer for the name loses to the cluster (every client), and localhost stays local', async () => {
    const decoy = await rt.rig.startApp('laptop', 'decoy', { port: ports.payments, host: '127.0.0.1' });
    rt.rig.topology.writeHosts('laptop', { '127.0.0.1': [paymentsName] });
    try {
      for (const mode of ['socket', 'urlconnection', 'httpclient']) {
        const result = await rt.exec(probe(mode, paymentsUrl(`/java/${mode}-stale-hosts`)));
        assertReachedPayments(result, `/java/${mode}-stale-hosts`);
      }
      const local = await rt.exec(probe('httpclient', `http://localhost:${ports.payments}/java/local`));
      assert.equal(local.code, 0, local.stderr);
      assert.equal(JSON.parse(local.stdout).app, 'decoy', 'localhost left the laptop');
    } finally {
      rt.rig.topology.writeHosts('laptop', {});
      await decoy.stop();
    }
  });
});
