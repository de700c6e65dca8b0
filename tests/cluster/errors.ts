import { DetourError } from '@detour/router/errors';

/**
 * Something about the local test cluster went wrong: binaries not built, a component that did not
 * become ready, a tool missing. Codes: CLUSTER_BINARIES_MISSING, CLUSTER_TOOL_MISSING,
 * CLUSTER_START_FAILED, CLUSTER_TIMEOUT, CLUSTER_NOT_RUNNING, CLUSTER_COMMAND_FAILED.
 */
export class ClusterError extends DetourError {}
