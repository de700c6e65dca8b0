import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  defaultNamespace,
  optionsHelp,
  parseSessionOptions,
  sessionOptionsJsonSchema,
} from '../src/options.ts';
import { parsePortMapping } from '../src/session/local-session.ts';
import { sessionModeFromOptions } from '../src/session/session-mode.ts';

const base = ['--agent', '127.0.0.1:7700', '--token', 't', '--port', '8080'];
/** A working directory without a config file. */
const empty = mkdtempSync(join(tmpdir(), 'detour-options-'));

function dirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'detour-config-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function mode(argv: string[], env: NodeJS.ProcessEnv = {}) {
  return sessionModeFromOptions(parseSessionOptions(argv, env, empty).options);
}

describe('session options', () => {
  it('parses repeatable flags and positionals after --', () => {
    const { options, rest } = parseSessionOptions(
      [...base, '--header', 'x-dev=dev-a', '--header', 'x-team', '--json', '--', 'npm', 'start'],
      {},
      empty,
    );
    assert.deepEqual(options.header, ['x-dev=dev-a', 'x-team']);
    assert.equal(options.json, true);
    assert.deepEqual(rest, ['npm', 'start']);
  });

  it('layers flags over DETOUR_* variables over the config file', () => {
    const dir = dirWith({ 'detour.yaml': 'port: 9090\nagent: file:1\ntoken: from-file\n' });
    const { options, configFile } = parseSessionOptions(
      ['--token', 'from-flag'],
      { DETOUR_AGENT: '10.1.1.1:1', DETOUR_TOKEN: 'from-env', DETOUR_EGRESS_EXCLUDE: 'db,cache' },
      dir,
    );
    assert.equal(options.token, 'from-flag');
    assert.equal(options.agent, '10.1.1.1:1');
    assert.equal(options.port, '9090', 'a YAML number for a string option is taken as written');
    assert.deepEqual(options.egressExclude, ['db', 'cache']);
    assert.equal(configFile, join(dir, 'detour.yaml'));
  });

  it('takes --agent ephemeral (a per-session agent pod) besides host:port', () => {
    const { options } = parseSessionOptions(
      [
        '--agent',
        'ephemeral',
        '--agent-image',
        'registry.example/agent:1',
        '--target',
        'deploy/orders',
        '--header',
        'x-dev=a',
      ],
      {},
      empty,
    );
    assert.equal(options.agent, 'ephemeral');
    assert.equal(options.agentImage, 'registry.example/agent:1');
    assert.throws(() => parseSessionOptions(['--agent', 'sometimes'], {}, empty), {
      message: '--agent "sometimes" is invalid: expected host:port or ephemeral',
    });
  });

  it('names the bad value, where it came from, and the expected form', () => {
    assert.throws(() => parseSessionOptions([...base, '--port', '80:x'], {}, empty), {
      code: 'DETOUR_BAD_OPTION',
      message: '--port "80:x" is invalid: expected PORT or TARGET_PORT:LOCAL_PORT',
    });
    assert.throws(() => parseSessionOptions(base, { DETOUR_LEASE_SECONDS: '2' }, empty), {
      code: 'DETOUR_BAD_OPTION',
      message: /^DETOUR_LEASE_SECONDS "2" is invalid/,
    });
    assert.throws(() => parseSessionOptions(['--nope'], {}, empty), {
      code: 'DETOUR_BAD_FLAG',
      message: /--nope.*detour help/,
    });
    assert.throws(() => parsePortMapping('70000'), { message: /70000 is not a port/ });
  });

  it('derives the JSON schema and the help from the same definition', () => {
    const schema = sessionOptionsJsonSchema() as {
      properties: Record<string, unknown>;
      additionalProperties: boolean;
    };
    const flags = Object.keys(schema.properties)
      .filter((key) => key !== '$schema')
      .map((key) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    for (const flag of flags) assert.ok(optionsHelp().includes(flag), `${flag} missing from help`);
    for (const flag of [
      '--without-header',
      '--egress-only',
      '--path',
      '--method',
      '--baggage',
      '--env-secrets',
    ])
      assert.ok(flags.includes(flag), flag);
    assert.match(optionsHelp(), /--config <file>/);
    assert.equal(schema.additionalProperties, false, 'editors flag unknown keys, as detour does');
  });
});

describe('config file', () => {
  it('reads detour.json too, and --config FILE (relative to the working directory)', () => {
    const json = dirWith({
      'detour.json': JSON.stringify({ $schema: './schema.json', header: ['x-dev=j'] }),
    });
    assert.deepEqual(parseSessionOptions(base, {}, json).options.header, ['x-dev=j']);
    const named = dirWith({ 'team.yaml': 'header: [x-dev=t]\negressInclude: ["*.corp"]\n' });
    const { options } = parseSessionOptions([...base, '--config', 'team.yaml'], {}, named);
    assert.deepEqual(options.header, ['x-dev=t']);
    assert.deepEqual(options.egressInclude, ['*.corp']);
    const viaEnv = parseSessionOptions(base, { DETOUR_CONFIG: join(named, 'team.yaml') }, empty);
    assert.deepEqual(viaEnv.options.header, ['x-dev=t']);
  });

  it('an unknown key names the file, the key and the likely one', () => {
    const dir = dirWith({ 'detour.yaml': 'without-header: [x-canary]\n' });
    assert.throws(() => parseSessionOptions(base, {}, dir), {
      code: 'DETOUR_BAD_CONFIG',
      message: new RegExp(
        `^${join(dir, 'detour.yaml')}: unknown key "without-header"; did you mean "withoutHeader"\\?`,
      ),
    });
    const other = dirWith({ 'detour.yaml': 'colour: blue\n' });
    assert.throws(() => parseSessionOptions(base, {}, other), {
      message: /unknown key "colour" \(the keys are/,
    });
  });

  it('a bad value names file, key, value and the fix', () => {
    const list = dirWith({ 'detour.yaml': 'header: x-dev=me\n' });
    assert.throws(() => parseSessionOptions(base, {}, list), {
      code: 'DETOUR_BAD_CONFIG',
      message:
        /detour\.yaml: header "x-dev=me" is invalid: .*; write a list of strings, e.g. header: \["…"\]/,
    });
    const flag = dirWith({ 'detour.yaml': 'egressOnly: "yes"\n' });
    assert.throws(() => parseSessionOptions(base, {}, flag), {
      message: /egressOnly "yes" is invalid.*true or false/,
    });
    const mesh = dirWith({ 'detour.yaml': 'mesh: linkerd\n' });
    assert.throws(() => parseSessionOptions(base, {}, mesh), { message: /mesh "linkerd".*one of istio, /s });
    // A flag that would have fixed the value does not hide the broken file: the file is checked as a whole.
    assert.throws(() => parseSessionOptions([...base, '--header', 'x-dev=a'], {}, list), {
      code: 'DETOUR_BAD_CONFIG',
    });
  });

  it('unreadable, unparsable, or not a mapping: an error that says what to do', () => {
    assert.throws(() => parseSessionOptions([...base, '--config', 'missing.yaml'], {}, empty), {
      code: 'DETOUR_BAD_CONFIG',
      message: /cannot read the config file .*missing\.yaml \(ENOENT\): give a readable file to --config/,
    });
    const broken = dirWith({ 'detour.yaml': 'header: [x-dev=me\n' });
    assert.throws(() => parseSessionOptions(base, {}, broken), {
      code: 'DETOUR_BAD_CONFIG',
      message: /detour\.yaml is not valid YAML: .*fix the syntax/,
    });
    const json = dirWith({ 'detour.json': '{"header": [}' });
    assert.throws(() => parseSessionOptions(base, {}, json), { message: /detour\.json is not valid JSON/ });
    const listed = dirWith({ 'detour.yaml': '- target\n' });
    assert.throws(() => parseSessionOptions(base, {}, listed), {
      message: /holds a list: it must be a mapping/,
    });
    const both = dirWith({ 'detour.yaml': '', 'detour.json': '{}' });
    assert.throws(() => parseSessionOptions(base, {}, both), { message: /keep one of them/ });
    if (process.getuid?.() !== 0) {
      const locked = dirWith({ 'detour.yaml': 'json: true\n' });
      chmodSync(join(locked, 'detour.yaml'), 0);
      assert.throws(() => parseSessionOptions(base, {}, locked), { message: /EACCES/ });
    }
    assert.deepEqual(parseSessionOptions(base, {}, dirWith({ 'detour.yaml': '' })).options.header, []);
  });
});

describe('the namespace without -n', () => {
  // client-node reads $KUBECONFIG as kubectl does: a kubeconfig whose current context names team-a.
  const kubeconfig = join(
    dirWith({
      config: [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: c, cluster: {server: "https://198.18.0.1:6443"}}]',
        'users: [{name: u, user: {token: t}}]',
        'contexts: [{name: u@c, context: {cluster: c, user: u, namespace: team-a}}]',
        'current-context: u@c',
      ].join('\n'),
    }),
    'config',
  );
  const saved = process.env.KUBECONFIG;
  before(() => {
    process.env.KUBECONFIG = kubeconfig;
  });
  after(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  });

  it("is the kubeconfig context's, as for kubectl, below -n, DETOUR_NAMESPACE and the config file", () => {
    assert.equal(parseSessionOptions(base, {}, empty).options.namespace, 'team-a');
    assert.equal(parseSessionOptions([...base, '-n', 'flag'], {}, empty).options.namespace, 'flag');
    assert.equal(parseSessionOptions(base, { DETOUR_NAMESPACE: 'env' }, empty).options.namespace, 'env');
    const file = dirWith({ 'detour.yaml': 'namespace: file\n' });
    assert.equal(parseSessionOptions(base, {}, file).options.namespace, 'file');
  });

  it('is layered the same way for the commands that take only -n (status, install, doctor, feature)', () => {
    assert.equal(defaultNamespace({}, empty), 'team-a');
    assert.equal(defaultNamespace({ DETOUR_NAMESPACE: 'env' }, empty), 'env');
    assert.equal(defaultNamespace({}, dirWith({ 'detour.yaml': 'namespace: file\n' })), 'file');
    const named = dirWith({ 'team.yaml': 'namespace: named\n' });
    assert.equal(defaultNamespace({ DETOUR_CONFIG: join(named, 'team.yaml') }, empty), 'named');
  });

  it('is default when the context names none', () => {
    process.env.KUBECONFIG = join(dirWith({ config: 'apiVersion: v1\nkind: Config\n' }), 'config');
    try {
      assert.equal(parseSessionOptions(base, {}, empty).options.namespace, 'default');
      assert.equal(defaultNamespace({}, empty), 'default');
    } finally {
      process.env.KUBECONFIG = kubeconfig;
    }
  });
});

describe('session mode from the options', () => {
  it('builds the filter from header expressions, and refuses none naming the three choices', () => {
    assert.deepEqual(mode([...base, '--header', 'x-dev=dev-a', '--without-header', 'x-canary']).filter, {
      headers: { 'x-dev': { exact: 'dev-a' } },
      withoutHeaders: { 'x-canary': {} },
    });
    assert.throws(() => mode(base), {
      code: 'DETOUR_NO_FILTER',
      message: /--header x-dev=.*--steal-all.*--egress-only/,
    });
    assert.deepEqual(mode([...base, '--steal-all']), {
      kind: 'steal-all',
      filter: {},
      carried: {},
      probeExamples: {},
    });
  });

  it('path, method and baggage are filters of their own, and the probe knows how to satisfy them', () => {
    const m = mode([
      ...base,
      '--path',
      '^=/api/',
      '--method',
      'post',
      '--method',
      'GET',
      '--baggage',
      'env=dev-a',
    ]);
    assert.equal(m.kind, 'steal');
    assert.deepEqual(m.filter?.uri, { prefix: '/api/' });
    assert.deepEqual(m.filter?.method, { regex: 'POST|GET' });
    assert.match(JSON.stringify(m.filter?.headers?.baggage), /"regex":".*env/);
    assert.deepEqual(m.kind === 'steal' && m.probeExamples, { baggage: 'env=dev-a', ':method': 'GET' });
    assert.throws(() => mode([...base, '--baggage', 'env=a', '--header', 'baggage~=.*']), {
      code: 'DETOUR_CONFLICTING_FLAGS',
    });
    assert.throws(() => mode([...base, '--path', 'api']), {
      code: 'DETOUR_INVALID_FILTER',
      message: /--path "api"/,
    });
  });

  it('--egress-only: no filter, and a clear conflict with anything that routes requests', () => {
    assert.deepEqual(mode(['--egress-only']), { kind: 'egress-only', carried: {} });
    for (const [flags, named] of [
      [['--header', 'x-dev=me'], /with --header \(it routes requests/],
      [['--steal-all'], /with --steal-all/],
      [['--mirror', '--header', 'x-dev=me'], /with --header, --mirror \(they route/],
      [['--path', '/x'], /with --path/],
      [['--port', '8080'], /with --port/],
    ] as const) {
      assert.throws(() => mode(['--egress-only', ...flags]), {
        code: 'DETOUR_CONFLICTING_FLAGS',
        message: named,
      });
    }
    assert.throws(() => mode(['--egress-only', '--header', 'x-dev=me']), {
      message: /drop --header to only send your calls out through the cluster, or drop --egress-only/,
    });
  });

  it('--carry-header: name=value, or a bare name taking --header’s exact value', () => {
    assert.deepEqual(mode(['--egress-only', '--carry-header', 'x-dev=feature-x']).carried, {
      'x-dev': 'feature-x',
    });
    assert.deepEqual(mode([...base, '--header', 'x-dev=me', '--carry-header', 'x-dev']).carried, {
      'x-dev': 'me',
    });
    assert.deepEqual(mode(['--egress-only'], { DETOUR_CARRY_HEADER: 'x-dev=a,x-team=b' }).carried, {
      'x-dev': 'a',
      'x-team': 'b',
    });
    assert.throws(() => mode(['--egress-only', '--carry-header', 'x-dev']), {
      code: 'DETOUR_BAD_OPTION',
      message:
        /with --egress-only there is no --header to take the value from; give it: --carry-header x-dev=VALUE/,
    });
    assert.throws(() => mode([...base, '--header', 'x-dev^=me', '--carry-header', 'x-dev']), {
      message: /no exact value to carry; write --carry-header x-dev=VALUE/,
    });
    assert.throws(() => mode(['--egress-only', '--carry-header', 'x-dev^=me']), {
      message: /needs a value: write name=value/,
    });
  });
});
