import { InvalidInputError } from '@detour/router/errors';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };

/**
 * A Go-style duration (`30m`, `8h`, `1h30m`, `90s`) in whole seconds, within [min, max] seconds.
 * Throws naming `flag`, the value and the accepted forms.
 */
export function parseDuration(value: string, flag: string, bounds: { min: number; max: number }): number {
  const bad = (why: string) =>
    new InvalidInputError(
      'DETOUR_BAD_DURATION',
      `${flag} ${JSON.stringify(value)}: ${why}; give a duration like 30m, 8h or 1h30m (units h, m, s; ${bounds.min} s to ${bounds.max / 3600} h)`,
    );
  if (!/^(\d+(\.\d+)?[hms])+$/.test(value)) throw bad('not a duration');
  let seconds = 0;
  for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d+)?)([hms])/g)) {
    seconds += Number(amount) * (UNIT_SECONDS[unit as string] as number);
  }
  seconds = Math.round(seconds);
  if (seconds < bounds.min) throw bad(`shorter than ${bounds.min} s`);
  if (seconds > bounds.max) throw bad(`longer than ${bounds.max / 3600} h`);
  return seconds;
}
