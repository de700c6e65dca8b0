export { compileFilter, type MatchableRequest, type RequestMatcher } from './compile-filter.ts';
export type { RouteFilter, StringMatch } from './filter.ts';
export {
  filterFromExpressions,
  formatFilter,
  formatHeaderExpression,
  type HeaderExpression,
  parseHeaderExpression,
} from './filter-expression.ts';
export { filterKey, filtersOverlap } from './filter-key.ts';
export { InvalidFilterError, type ValidateFilterOptions, validateFilter } from './validate-filter.ts';
