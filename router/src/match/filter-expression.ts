import { BAGGAGE_HEADER, baggageMemberOf } from './baggage.ts';
import type { RouteFilter, StringMatch } from './filter.ts';
import {
  headerNameProblem,
  InvalidFilterError,
  regexProblem,
  stringMatchProblems,
} from './validate-filter.ts';

/** One `--header` / `--without-header` flag, parsed. */
export interface HeaderExpression {
  /** Lower-cased. */
  name: string;
  match: StringMatch;
  /** From `--without-header`: the request must not match (a bare name means "absent"). */
  negate: boolean;
}

const FORMS =
  'accepted forms: name=value (exact), name^=prefix, name~=regex (RE2, must match the whole value), ' +
  'name (header present; with --without-header: absent)';

/**
 * Parses the CLI shorthand. The operator is found at the first '='; a name cannot contain '=' (not an
 * RFC 9110 token char), so the value may. Header names ending in '^' or '~' are legal tokens but cannot
 * be written in shorthand; nobody names headers that way, and a config file can still express them.
 */
export function parseHeaderExpression(expr: string, options: { negate?: boolean } = {}): HeaderExpression {
  const eq = expr.indexOf('=');
  const operator = eq > 0 ? expr[eq - 1] : undefined;
  const nameEnd = operator === '^' || operator === '~' ? eq - 1 : eq;
  const name = eq < 0 ? expr : expr.slice(0, nameEnd);
  const value = expr.slice(eq + 1);
  const match: StringMatch =
    eq < 0
      ? {}
      : operator === '^'
        ? { prefix: value }
        : operator === '~'
          ? { regex: value }
          : { exact: value };
  const problem = expressionProblem(name, value, eq >= 0, 'regex' in match);
  if (problem !== undefined) {
    throw new InvalidFilterError(`Invalid header expression ${JSON.stringify(expr)}: ${problem}; ${FORMS}`);
  }
  return { name: name.toLowerCase(), match, negate: options.negate ?? false };
}

function expressionProblem(
  name: string,
  value: string,
  hasValue: boolean,
  isRegex: boolean,
): string | undefined {
  if (name === '') return 'the header name is missing';
  if (name.endsWith('!')) return `for "not equal" use --without-header ${name.slice(0, -1)}=${value}`;
  if (name.includes(':') && !name.startsWith(':')) return 'write name=value, not name: value';
  const nameProblem = headerNameProblem(name);
  if (nameProblem) return nameProblem;
  // An empty value is far more often an unset shell variable (`x-dev=$DEV`) than a wish to match "".
  if (hasValue && value === '') return 'the value is empty; for "header present" write the bare name';
  return isRegex ? regexProblem(value) : undefined;
}

/**
 * `--path`: `/orders` (exact), `^=/api/` (prefix), `~=/orders/[0-9]+` (RE2, the whole path). Envoy
 * matches the path without its query, so a value with `?` or `#` is refused (it would never match).
 */
export function parsePathExpression(expr: string): StringMatch {
  const match: StringMatch = expr.startsWith('^=')
    ? { prefix: expr.slice(2) }
    : expr.startsWith('~=')
      ? { regex: expr.slice(2) }
      : { exact: expr.startsWith('=') ? expr.slice(1) : expr };
  const [problem] = stringMatchProblems(match, 'path', 'uri');
  if (problem !== undefined) {
    throw new InvalidFilterError(
      `Invalid --path ${JSON.stringify(expr)}: ${problem}; accepted forms: /path (exact), ^=/prefix, ~=regex (RE2, must match the whole path)`,
    );
  }
  return match;
}

const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * `--method POST` (repeatable): one method is an exact match, several an alternation. Methods are
 * case-sensitive on the wire and every standard one is upper-case, so `post` means `POST`.
 */
export function methodMatch(methods: readonly string[]): StringMatch | undefined {
  const upper = [...new Set(methods.map((method) => method.trim().toUpperCase()))];
  const bad = upper.find((method) => !METHOD.test(method));
  if (bad !== undefined) {
    throw new InvalidFilterError(
      `Invalid --method ${JSON.stringify(bad)}: a method is a token such as GET or POST; repeat --method for several`,
    );
  }
  if (upper.length === 0) return undefined;
  return upper.length === 1 ? { exact: upper[0] as string } : { regex: upper.join('|') };
}

/** Combines parsed expressions into a filter; naming one header twice on the same side is an error. */
export function filterFromExpressions(expressions: readonly HeaderExpression[]): RouteFilter {
  const filter: RouteFilter = {};
  for (const { name, match, negate } of expressions) {
    const side = negate ? 'withoutHeaders' : 'headers';
    const map = filter[side] ?? {};
    filter[side] = map;
    if (Object.hasOwn(map, name)) {
      const flag = negate ? '--without-header' : '--header';
      throw new InvalidFilterError(
        `Invalid filter: ${flag} names "${name}" twice (${formatHeaderExpression(name, map[name] as StringMatch)} ` +
          `and ${formatHeaderExpression(name, match)}); combine them into one expression, e.g. a regex`,
      );
    }
    map[name] = match;
  }
  return filter;
}

/**
 * One line for status output, e.g. `x-dev=dev-a !x-debug :path^=/api`. Header terms are in the
 * shorthand (`!` marks withoutHeaders); uri and method use Envoy's pseudo-header names.
 */
export function formatFilter(filter: RouteFilter): string {
  const terms: string[] = [];
  for (const [name, match] of Object.entries(filter.headers ?? {})) {
    terms.push(formatHeaderExpression(name, match));
  }
  for (const [name, match] of Object.entries(filter.withoutHeaders ?? {})) {
    terms.push(`!${formatHeaderExpression(name, match)}`);
  }
  if (filter.uri) terms.push(formatHeaderExpression(':path', filter.uri));
  if (filter.method) terms.push(formatHeaderExpression(':method', filter.method));
  return terms.length > 0 ? terms.join(' ') : '(all requests)';
}

/**
 * The shorthand for one condition, the inverse of parseHeaderExpression for values made of printable
 * ASCII without spaces (others are JSON-quoted for display and do not parse back).
 */
export function formatHeaderExpression(name: string, match: StringMatch): string {
  const member = name === BAGGAGE_HEADER ? baggageMemberOf(match) : undefined;
  if (member) return `baggage[${member.key}=${member.value}]`;
  if ('exact' in match) return `${name}=${quoted(match.exact)}`;
  if ('prefix' in match) return `${name}^=${quoted(match.prefix)}`;
  if ('regex' in match) return `${name}~=${quoted(match.regex)}`;
  return name;
}

/** Values with spaces or control characters are JSON-quoted so the status line stays one readable line. */
function quoted(value: string): string {
  return /^[\x21-\x7e]+$/.test(value) ? value : JSON.stringify(value);
}
