/**
 * W3C Baggage (https://www.w3.org/TR/baggage/) members as header matches. A request carries
 * `baggage: k1=v1;prop=x, k2=v2` (repeated headers join with ",", as Envoy joins them before
 * matching), and "the request has member env=dev-a" is a regex on the whole header value. The
 * regex is RE2, so it runs in time linear in the header's length both in Envoy (Istio copies it
 * into a `safe_regex` header matcher) and on the agent (re2js): the two ends agree on every value.
 */
import type { StringMatch } from './filter.ts';
import { InvalidFilterError } from './validate-filter.ts';

/** The header baggage travels in. */
export const BAGGAGE_HEADER = 'baggage';

export interface BaggageMember {
  key: string;
  value: string;
}

/** RFC 9110 token: a member's key. */
const KEY = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** baggage-octet: printable ASCII except space, `"`, `,`, `;` and `\` (others are percent-encoded). */
const VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/;
/** Optional whitespace (OWS: space or tab), written without a literal space so filters print on one word. */
const OWS = '[\\t\\x20]*';
const META = /[\\.+*?()|[\]{}^$]/g;

function quote(text: string): string {
  return text.replace(META, '\\$&');
}

function unquote(text: string): string {
  return text.replace(/\\(.)/g, '$1');
}

/** Parses `key=value` (the `--baggage` flag), naming what is wrong and how to write it instead. */
export function parseBaggageMember(expr: string): BaggageMember {
  const eq = expr.indexOf('=');
  const key = eq < 0 ? expr : expr.slice(0, eq).trim();
  const value = eq < 0 ? '' : expr.slice(eq + 1).trim();
  const problem =
    eq < 0
      ? 'expected key=value, e.g. --baggage env=dev-a'
      : !KEY.test(key)
        ? `the key ${JSON.stringify(key)} is not a token (letters, digits and !#$%&'*+-.^_\`|~)`
        : value === ''
          ? 'the value is empty (an unset shell variable?); give the member value, e.g. env=dev-a'
          : !VALUE.test(value)
            ? `the value ${JSON.stringify(value)} has characters baggage carries percent-encoded (space, ", comma, ;, \\ or non-ASCII); write them encoded, e.g. %20 for a space`
            : undefined;
  if (problem !== undefined) {
    throw new InvalidFilterError(`Invalid --baggage ${JSON.stringify(expr)}: ${problem}`);
  }
  return { key, value };
}

/**
 * The regex that matches a whole `baggage` value holding the list member `key=value`, with or
 * without properties, anywhere in the list, with optional whitespace where the spec allows it.
 * `env=dev-a` does not match `xenv=dev-a` or `env=dev-ab`.
 */
export function baggageMatch(member: BaggageMember): { regex: string } {
  return {
    regex: `(?:.*,)?${OWS}${quote(member.key)}${OWS}=${OWS}${quote(member.value)}${OWS}(?:;[^,]*)?(?:,.*)?`,
  };
}

const SHAPE = new RegExp(
  `^\\(\\?:\\.\\*,\\)\\?${quote(OWS)}((?:\\\\.|[^\\\\[])+)${quote(OWS)}=${quote(OWS)}((?:\\\\.|[^\\\\[])+)${quote(OWS)}${quote('(?:;[^,]*)?(?:,.*)?')}$`,
);

/** The member a regex made by `baggageMatch` stands for, or undefined for any other match. */
export function baggageMemberOf(match: StringMatch): BaggageMember | undefined {
  if (!('regex' in match)) return undefined;
  const found = SHAPE.exec(match.regex);
  if (!found) return undefined;
  const member = { key: unquote(found[1] as string), value: unquote(found[2] as string) };
  return baggageMatch(member).regex === match.regex ? member : undefined;
}
