import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAge } from '../src/commands/cluster-commands.ts';

describe('detour status: session age', () => {
  it('seconds, minutes, hours and days, the largest two units', () => {
    assert.equal(formatAge(42), '42s');
    assert.equal(formatAge(5 * 60 + 3), '5m');
    assert.equal(formatAge(3 * 3600), '3h');
    assert.equal(formatAge(3 * 3600 + 12 * 60), '3h12m');
    assert.equal(formatAge(2 * 86400 + 4 * 3600 + 59), '2d4h');
    assert.equal(formatAge(null), 'age unknown');
  });
});
