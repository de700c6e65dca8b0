// node tests/cluster/istio/cli.ts up | down | status
//
// istiod beside a running tier-1 cluster (start it first with `npm run cluster:up`). `up` builds
// nothing: run `bash tests/cluster/build/istio/build.sh` once before.
import { DetourError } from '@detour/router/errors';
import { istiodLog, istiodStatus, startIstiod, stopIstiod } from './istio.ts';

async function main(command: string | undefined): Promise<number> {
  switch (command) {
    case 'up': {
      const started = performance.now();
      const { pid, started: fresh } = await startIstiod({ log: console.log });
      console.log(
        `istiod ${fresh ? 'started' : 'already running'}, pid ${pid}, ready after ${((performance.now() - started) / 1000).toFixed(1)}s; log ${istiodLog}`,
      );
      return 0;
    }
    case 'down': {
      const pid = await stopIstiod();
      console.log(pid === undefined ? 'istiod was not running' : `stopped istiod (pid ${pid})`);
      return 0;
    }
    case 'status': {
      const s = istiodStatus();
      console.log(
        s.pid === undefined
          ? 'istiod stopped'
          : `istiod running pid ${s.pid}  rss ${s.rssMiB} MiB, peak ${s.peakMiB} MiB`,
      );
      return s.pid === undefined ? 3 : 0;
    }
    default:
      console.error('usage: node tests/cluster/istio/cli.ts up | down | status');
      return 2;
  }
}

main(process.argv[2]).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof DetourError ? `${error.code}: ${error.message}` : error);
    process.exitCode = 1;
  },
);
