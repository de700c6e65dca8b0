// npm run cluster:up | cluster:down [--purge] | cluster:status | cluster:kubeconfig [--developer]

import { clusterDown, clusterStatus, clusterUp, kubeconfigPath } from './cluster.ts';
import { runCommand } from './errors.ts';

const [command, ...flags] = process.argv.slice(2);
// `npm run cluster:kubeconfig --developer` (without `--`) reaches us as npm_config_developer.
const flag = (name: string): boolean =>
  flags.includes(`--${name}`) || process.env[`npm_config_${name}`] === 'true';

async function main(): Promise<number> {
  switch (command) {
    case 'up':
      await clusterUp({
        build: !flag('no-build'),
        tier: flags.includes('--tier=2') || flag('node') ? 2 : undefined,
      });
      return 0;
    case 'down':
      await clusterDown({ purge: flag('purge') });
      return 0;
    case 'status': {
      let allUp = true;
      for (const c of await clusterStatus()) {
        if (c.pid === undefined) allUp = false;
        const memory = c.pid === undefined ? '' : `  rss ${c.rssMiB} MiB, peak ${c.peakMiB} MiB`;
        console.log(
          `${c.name.padEnd(24)} ${c.pid === undefined ? 'stopped' : `running pid ${c.pid}`}${memory}`,
        );
      }
      return allUp ? 0 : 3;
    }
    case 'kubeconfig':
      console.log(kubeconfigPath(flag('developer') ? 'developer' : 'admin'));
      return 0;
    default:
      console.error(
        'usage: node tests/cluster/cli.ts up [--no-build] [--tier=2] | down [--purge] | status | kubeconfig [--developer]',
      );
      return 2;
  }
}

runCommand(main);
