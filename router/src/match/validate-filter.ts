import { RE2JS, RE2JSSyntaxException } from 're2js';
import { InvalidInputError } from '../errors.ts';
import * as z from '../zod.ts';
import type { RouteFilter, StringMatch } from './filter.ts';

/** A routing filter that is malformed, or that the mesh would evaluate differently from the agent. */
export class InvalidFilterError extends InvalidInputError {
  constructor(message: string, options?: ErrorOptions) {
    super('DETOUR_INVALID_FILTER', message, options);
  }
}

export interface ValidateFilterOptions {
  /** Accept a filter without conditions. Such a filter steals every request, so it must be asked for. */
  allowMatchAll?: boolean;
}

/** RFC 9110 §5.6.2 token. `:` is not a tchar, so pseudo-headers (`:path`) are rejected here. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Istio's webhook rejects longer regexes (Envoy's RE2 program-size limit, approximated by length). */
const MAX_REGEX_LENGTH = 1024;
const RE2_SYNTAX = 'https://github.com/google/re2/wiki/Syntax';

// Shape only; the rules that need context (which field, what fix) are checked below so that each
// message can name the field path, the bad value and the fix.
const stringMatchShape = z.partial(
  z.strictObject({ exact: z.string(), prefix: z.string(), regex: z.string() }),
);
const headerMapShape = z.record(z.string(), stringMatchShape);
const filterShape = z.strictObject({
  headers: z.optional(headerMapShape),
  withoutHeaders: z.optional(headerMapShape),
  uri: z.optional(stringMatchShape),
  method: z.optional(stringMatchShape),
});

/**
 * Checks an untrusted filter (config file, API request) and returns it normalised: header names
 * lower-cased, unknown keys rejected. Names are normalised rather than rejected because HTTP names
 * are case-insensitive and Envoy lower-cases matcher names itself, so `X-Dev` means `x-dev`.
 * `where` says where the filter came from (e.g. `session dev-a`) for the error message.
 */
export function validateFilter(
  filter: unknown,
  where?: string,
  options: ValidateFilterOptions = {},
): RouteFilter {
  const parsed = filterShape.safeParse(filter);
  if (!parsed.success) {
    fail(
      where,
      parsed.error.issues.map(
        (issue) => `${fieldPath(issue.path)}: ${issue.message}; ${shapeHint(issue.path)}`,
      ),
    );
  }
  const problems: string[] = [];
  const out: RouteFilter = {};
  for (const field of ['headers', 'withoutHeaders'] as const) {
    const map = parsed.data[field];
    if (map === undefined) continue;
    const normalised: Record<string, StringMatch> = {};
    for (const [name, match] of Object.entries(map)) {
      const path = fieldPath([field, name]);
      const nameProblem = headerNameProblem(name);
      if (nameProblem) problems.push(`${path}: ${nameProblem}`);
      const lower = name.toLowerCase();
      if (Object.hasOwn(normalised, lower)) {
        problems.push(`${path}: header names are case-insensitive and "${lower}" is listed twice; keep one`);
      }
      problems.push(...stringMatchProblems(match, path, 'header'));
      normalised[lower] = copyMatch(match);
    }
    if (Object.keys(normalised).length > 0) out[field] = normalised;
  }
  for (const field of ['uri', 'method'] as const) {
    const match = parsed.data[field];
    if (match === undefined) continue;
    problems.push(...stringMatchProblems(match, field, field));
    out[field] = copyMatch(match);
  }
  if (
    problems.length === 0 &&
    !options.allowMatchAll &&
    !out.headers &&
    !out.withoutHeaders &&
    !out.uri &&
    !out.method
  ) {
    problems.push(
      'the filter has no conditions, so it would route every request of the service to your machine; ' +
        'add one (e.g. headers: {"x-dev": {exact: "dev-a"}}, shorthand `x-dev=dev-a`) or allow match-all explicitly',
    );
  }
  if (problems.length > 0) fail(where, problems);
  return out;
}

type MatchRole = 'header' | 'uri' | 'method';

/** Why `name` cannot be a header matcher's name, or undefined when it can. */
export function headerNameProblem(name: string): string | undefined {
  if (name.startsWith(':')) {
    return `"${name}" is a pseudo-header; use the uri or method field instead of a header match`;
  }
  if (!TOKEN.test(name)) {
    return `"${name}" is not a valid header name (RFC 9110 token: letters, digits and !#$%&'*+-.^_\`|~)`;
  }
  // Envoy stores Host as :authority, so a matcher on "host" never matches in the mesh while it
  // would match on the agent (Node keeps `host`); refuse the disagreement.
  if (name.toLowerCase() === 'host') {
    return '"host" cannot be matched: Envoy represents it as :authority, which a detour filter does not cover; route by a header of your own';
  }
  return undefined;
}

/** Problems with one StringMatch, each prefixed with its field path. */
export function stringMatchProblems(
  match: { exact?: string | undefined; prefix?: string | undefined; regex?: string | undefined },
  path: string,
  role: MatchRole,
): string[] {
  const keys = (['exact', 'prefix', 'regex'] as const).filter((k) => match[k] !== undefined);
  if (keys.length > 1) {
    return [
      `${path}: has ${keys.join(' and ')}; a match takes exactly one of exact, prefix, regex (or {} for "present")`,
    ];
  }
  const key = keys[0];
  if (key === undefined) {
    // `{}` is Istio's "header present" (or "absent" under withoutHeaders); for uri and method it would
    // be a condition that always holds, which is a mistake rather than a request.
    return role === 'uri' || role === 'method'
      ? [`${path}: {} only means "present" for headers; give exact, prefix or regex, or drop ${path}`]
      : [];
  }
  const value = match[key] as string;
  if (key === 'regex') {
    const problem = regexProblem(value);
    return problem ? [`${path}.regex: ${problem}`] : [];
  }
  if (role === 'uri' && !value.startsWith('/')) {
    return [`${path}.${key}: ${JSON.stringify(value)} never matches a request path; paths start with "/"`];
  }
  if (role === 'uri' && /[?#]/.test(value)) {
    return [
      `${path}.${key}: ${JSON.stringify(value)} never matches: Envoy matches the path with the query and fragment removed`,
    ];
  }
  // Istio's webhook rejects an empty prefix on headers and method ("prefix string match should not be empty").
  if (key === 'prefix' && value === '' && role !== 'uri') {
    return [
      `${path}.prefix: "" is not allowed; for "header present" use {} (shorthand: the bare header name)`,
    ];
  }
  return [];
}

/** Why `pattern` is not a regex Envoy (RE2, via Istio) accepts, or undefined when it is. */
export function regexProblem(pattern: string): string | undefined {
  if (pattern === '') return 'an empty regex is not allowed; for "header present" use {}';
  if (pattern.length > MAX_REGEX_LENGTH) {
    return `regex is ${pattern.length} characters; Istio accepts at most ${MAX_REGEX_LENGTH}`;
  }
  try {
    compileRegex(pattern);
    return undefined;
  } catch (error) {
    const detail =
      error instanceof RE2JSSyntaxException ? `${error.error}: \`${error.input ?? pattern}\`` : String(error);
    return `${JSON.stringify(pattern)} is not valid RE2 (${detail}); ${re2Hint(pattern, error)}`;
  }
}

/**
 * Compiles with the options Envoy's safe_regex uses: plain RE2 (no re2js lookbehind extension, which
 * RE2 in Envoy would reject). Throws re2js's exception on bad syntax.
 */
export function compileRegex(pattern: string): RE2JS {
  return RE2JS.compile(pattern);
}

function re2Hint(pattern: string, error: unknown): string {
  const input = error instanceof RE2JSSyntaxException ? (error.input ?? '') : '';
  if (/^\\[1-9]/.test(input)) {
    return 'RE2 has no backreferences: spell out the repeated text, or use exact/prefix';
  }
  if (/^\(\?<?[=!]/.test(input)) {
    return 'RE2 has no lookahead or lookbehind: rewrite the pattern without it, or express "not" with withoutHeaders (--without-header)';
  }
  if (/^[*+?]/.test(pattern)) {
    return 'a regex is not a glob: use .* for "anything", or {} (shorthand: bare header name) for "present"';
  }
  return `see ${RE2_SYNTAX}`;
}

function shapeHint(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'a filter is an object with any of headers, withoutHeaders, uri, method';
  if (path.length === 1 && (path[0] === 'headers' || path[0] === 'withoutHeaders')) {
    return 'it maps header names to matches, e.g. {"x-dev": {"exact": "dev-a"}}';
  }
  return 'a match is {"exact": "…"}, {"prefix": "…"}, {"regex": "…"} or {} (header present)';
}

function copyMatch(match: { exact?: string; prefix?: string; regex?: string }): StringMatch {
  if (match.exact !== undefined) return { exact: match.exact };
  if (match.prefix !== undefined) return { prefix: match.prefix };
  if (match.regex !== undefined) return { regex: match.regex };
  return {};
}

/** `headers["x-dev"].regex`: the path a user would write to reach the field in their config. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  path.forEach((segment, i) => {
    const inHeaderMap = i === 1 && (path[0] === 'headers' || path[0] === 'withoutHeaders');
    out += inHeaderMap ? `[${JSON.stringify(String(segment))}]` : `${i === 0 ? '' : '.'}${String(segment)}`;
  });
  return out === '' ? '(filter)' : out;
}

function fail(where: string | undefined, problems: string[]): never {
  const head = where ? `Invalid filter in ${where}` : 'Invalid filter';
  const body = problems.length === 1 ? ` ${problems[0]}` : `\n  - ${problems.join('\n  - ')}`;
  throw new InvalidFilterError(`${head}:${body}`);
}
