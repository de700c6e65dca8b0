export {
  BAGGAGE_HEADER,
  type BaggageMember,
  baggageMatch,
  baggageMemberOf,
  parseBaggageMember,
} from './baggage.ts';
export {
  compileFilter,
  type MatchableRequest,
  type RequestMatcher,
  requestHeader,
} from './compile-filter.ts';
export { type ExampleRequest, exampleRequest } from './example-request.ts';
export type { RouteFilter, StringMatch } from './filter.ts';
export {
  filterFromExpressions,
  formatFilter,
  formatHeaderExpression,
  type HeaderExpression,
  methodMatch,
  parseHeaderExpression,
  parsePathExpression,
} from './filter-expression.ts';
export { filterKey, filtersOverlap } from './filter-key.ts';
export { InvalidFilterError, type ValidateFilterOptions, validateFilter } from './validate-filter.ts';
