// The final stage of a Containerfile as the local cluster packs it without an image builder
// (build-images.sh): the image config its USER, WORKDIR, ENV, LABEL and ENTRYPOINT lines give, and
// the files its COPY lines take from the build context. COPY --from (the base's own files: the node
// binary) comes from the local base image instead; anything the packing cannot do (RUN, CMD, ADD,
// ...) is an error, so the local image never silently differs from the file.
//   node tests/cluster/sample/containerfile.ts <Containerfile> <context dir> <rootfs dir>
// copies the COPY sources into <rootfs dir> and prints the config as JSON.
import { cpSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ClusterError } from '../errors.ts';

export interface ImageConfig {
  Entrypoint: string[];
  User: string;
  WorkingDir: string;
  Env: string[];
  Labels: Record<string, string>;
}

export interface ContainerfileStage {
  /** The FROM image of the final stage. */
  base: string;
  config: ImageConfig;
  /** COPY <source> <destination> from the build context, in order. */
  copies: Array<{ source: string; destination: string }>;
  /** COPY --from=<stage> <path> <destination>: files of the base, in the local image too. */
  fromStages: Array<{ stage: string; source: string; destination: string }>;
}

function bad(line: string, why: string): never {
  throw new ClusterError('CLUSTER_CONTAINERFILE', `Containerfile line "${line}": ${why}`);
}

/** `k=v k2="v 2"` pairs of ENV and LABEL. */
function pairs(line: string, text: string): Array<[string, string]> {
  const found = [...text.matchAll(/([\w.-]+)=("(?:[^"\\]|\\.)*"|\S+)/g)].map(
    ([, key, value]) =>
      [key as string, value?.startsWith('"') ? (JSON.parse(value) as string) : (value as string)] as [
        string,
        string,
      ],
  );
  if (found.length === 0) bad(line, 'expected KEY=VALUE');
  return found;
}

export function parseContainerfile(text: string): ContainerfileStage {
  // Continuation lines joined, comments and blank lines dropped.
  const lines = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  let stage: ContainerfileStage | undefined;
  for (const line of lines) {
    const [, instruction = '', rest = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (instruction.toUpperCase() === 'FROM') {
      stage = {
        base: rest.split(/\s+/)[0] ?? '',
        config: { Entrypoint: [], User: '', WorkingDir: '', Env: [], Labels: {} },
        copies: [],
        fromStages: [],
      };
      continue;
    }
    if (!stage) bad(line, 'an instruction before FROM');
    switch (instruction.toUpperCase()) {
      case 'COPY': {
        const words = rest.split(/\s+/);
        const from = words[0]?.startsWith('--from=') ? words.shift()?.slice('--from='.length) : undefined;
        if (words.some((word) => word.startsWith('--')) || words.length !== 2)
          bad(line, 'the local packing takes COPY [--from=STAGE] SOURCE DESTINATION');
        const [source = '', destination = ''] = words;
        if (from) stage.fromStages.push({ stage: from, source, destination });
        else stage.copies.push({ source, destination });
        break;
      }
      case 'WORKDIR':
        stage.config.WorkingDir = rest;
        break;
      case 'USER':
        stage.config.User = rest;
        break;
      case 'ENV':
        for (const [key, value] of pairs(line, rest)) stage.config.Env.push(`${key}=${value}`);
        break;
      case 'LABEL':
        for (const [key, value] of pairs(line, rest)) stage.config.Labels[key] = value;
        break;
      case 'ENTRYPOINT': {
        const exec = JSON.parse(rest) as unknown;
        if (!Array.isArray(exec) || !exec.every((word) => typeof word === 'string'))
          bad(line, 'ENTRYPOINT in exec form (a JSON array of strings)');
        stage.config.Entrypoint = exec;
        break;
      }
      default:
        bad(
          line,
          `${instruction} cannot be packed without an image builder (tests/cluster/sample/build-images.sh)`,
        );
    }
  }
  if (!stage) throw new ClusterError('CLUSTER_CONTAINERFILE', 'the Containerfile has no FROM');
  return stage;
}

/** Copies the final stage's COPY sources from `context` into `rootfs`; returns the stage. */
export function stageFiles(containerfile: string, context: string, rootfs: string): ContainerfileStage {
  const stage = parseContainerfile(readFileSync(containerfile, 'utf8'));
  for (const { source, destination } of stage.copies) {
    const from = join(context, source);
    // A directory's contents go into the destination; a file into it when it ends with a slash.
    const to =
      !statSync(from).isDirectory() && destination.endsWith('/')
        ? join(rootfs, destination, basename(source))
        : join(rootfs, destination);
    mkdirSync(dirname(to), { recursive: true });
    cpSync(from, to, { recursive: true });
  }
  return stage;
}

if (import.meta.main) {
  const [containerfile, context, rootfs] = process.argv.slice(2);
  if (!containerfile || !context || !rootfs) {
    process.stderr.write(
      'usage: node tests/cluster/sample/containerfile.ts <Containerfile> <context> <rootfs>\n',
    );
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(stageFiles(containerfile, context, rootfs).config)}\n`);
}
