import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { optionsHelp, parseSessionOptions, sessionOptionsJsonSchema } from '../src/options.ts';
import { filterFromOptions, parsePortMapping } from '../src/session/local-session.ts';

const base = ['--agent', '127.0.0.1:7700', '--token', 't', '--port', '8080'];

describe('session options', () => {
  it('parses repeatable flags and positionals after --', () => {
    const { options, rest } = parseSessionOptions(
      [...base, '--header', 'x-dev=dev-a', '--header', 'x-team', '--json', '--', 'npm', 'start'],
      {},
    );
    assert.deepEqual(options.header, ['x-dev=dev-a', 'x-team']);
    assert.equal(options.json, true);
    assert.deepEqual(rest, ['npm', 'start']);
  });

  it('layers flags over DETOUR_* variables over the config file', () => {
    const { options } = parseSessionOptions(
      ['--token', 'from-flag'],
      { DETOUR_AGENT: '10.1.1.1:1', DETOUR_TOKEN: 'from-env', DETOUR_EGRESS_EXCLUDE: 'db,cache' },
      { port: '9090', agent: 'file:1' },
    );
    assert.equal(options.token, 'from-flag');
    assert.equal(options.agent, '10.1.1.1:1');
    assert.equal(options.port, '9090');
    assert.deepEqual(options.egressExclude, ['db', 'cache']);
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
    );
    assert.equal(options.agent, 'ephemeral');
    assert.equal(options.agentImage, 'registry.example/agent:1');
    assert.throws(() => parseSessionOptions(['--agent', 'sometimes'], {}), {
      message: '--agent "sometimes" is invalid: expected host:port or ephemeral',
    });
  });

  it('names the bad value and the expected form', () => {
    assert.throws(() => parseSessionOptions([...base, '--port', '80:x'], {}), {
      code: 'DETOUR_BAD_OPTION',
      message: '--port "80:x" is invalid: expected PORT or TARGET_PORT:LOCAL_PORT',
    });
    assert.throws(() => parseSessionOptions(['--nope'], {}), {
      code: 'DETOUR_BAD_FLAG',
      message: /--nope.*detour help/,
    });
    assert.throws(() => parsePortMapping('70000'), { message: /70000 is not a port/ });
  });

  it('builds the filter from header expressions, and refuses none without --steal-all', () => {
    const { options } = parseSessionOptions(
      [...base, '--header', 'x-dev=dev-a', '--without-header', 'x-canary'],
      {},
    );
    assert.deepEqual(filterFromOptions(options), {
      headers: { 'x-dev': { exact: 'dev-a' } },
      withoutHeaders: { 'x-canary': {} },
    });
    assert.throws(() => filterFromOptions(parseSessionOptions(base, {}).options), {
      code: 'DETOUR_NO_FILTER',
      message: /--header x-dev=/,
    });
    assert.deepEqual(filterFromOptions(parseSessionOptions([...base, '--steal-all'], {}).options), {});
  });

  it('derives the JSON schema and the help from the same definition', () => {
    const schema = sessionOptionsJsonSchema() as { properties: Record<string, unknown> };
    const flags = Object.keys(schema.properties).map(
      (key) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
    );
    for (const flag of flags) assert.ok(optionsHelp().includes(flag), `${flag} missing from help`);
    assert.ok(flags.includes('--without-header'));
  });
});
