/** Removes namespaces left by a demo or test run that died before tearing down (the demo's trap). */
import { sweepStaleNamespaces } from '../support/netns.ts';

const removed = sweepStaleNamespaces();
if (removed.length > 0) process.stderr.write(`demo: removed stale namespaces ${removed.join(', ')}\n`);
