import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterError } from './errors.ts';

/** A certificate signed by the cluster CA: what it is for, who it names, where it may be used. */
export interface CertRequest {
  /** file stem: <name>.crt / <name>.key */
  name: string;
  commonName: string;
  organization?: string;
  usage: 'client' | 'server' | 'both';
  /** subjectAltName entries, e.g. 'IP:127.0.0.1', 'DNS:kubernetes' */
  altNames?: string[];
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ClusterError('CLUSTER_TOOL_MISSING', 'openssl is not installed: apt-get install -y openssl');
    }
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new ClusterError('CLUSTER_START_FAILED', `openssl ${args[0]} failed: ${stderr.trim()}`);
  }
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const tenYears = '3650';

function ensureCa(dir: string): void {
  if (existsSync(join(dir, 'ca.crt')) && existsSync(join(dir, 'ca.key'))) return;
  openssl(
    [
      'req',
      '-x509',
      ...ecKey,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      tenYears,
      '-subj',
      '/CN=detour-local-cluster-ca',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

function ensureCert(dir: string, request: CertRequest): void {
  const crt = `${request.name}.crt`;
  const subject = `${request.organization ? `/O=${request.organization}` : ''}/CN=${request.commonName}`;
  // What the certificate says, kept beside it: a changed name or address list re-issues it.
  const identity = `${subject} ${request.usage} ${(request.altNames ?? []).join(',')}\n`;
  const identityFile = join(dir, `${request.name}.identity`);
  const current = existsSync(identityFile) ? readFileSync(identityFile, 'utf8') : undefined;
  if (existsSync(join(dir, crt)) && existsSync(join(dir, `${request.name}.key`)) && current === identity)
    return;
  const eku = { client: 'clientAuth', server: 'serverAuth', both: 'serverAuth,clientAuth' }[request.usage];
  const extensions = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${eku}`,
  ];
  if (request.altNames?.length) extensions.push(`subjectAltName=${request.altNames.join(',')}`);
  const extFile = `${request.name}.ext`;
  const csr = `${request.name}.csr`;
  writeFileSync(join(dir, extFile), `${extensions.join('\n')}\n`);
  openssl(['req', '-new', ...ecKey, '-keyout', `${request.name}.key`, '-out', csr, '-subj', subject], dir);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      crt,
      '-days',
      tenYears,
      '-extfile',
      extFile,
    ],
    dir,
  );
  rmSync(join(dir, extFile));
  rmSync(join(dir, csr));
  writeFileSync(identityFile, identity);
}

/** The key pair that signs and verifies service-account tokens. */
function ensureServiceAccountKey(dir: string): void {
  if (existsSync(join(dir, 'sa.key')) && existsSync(join(dir, 'sa.pub'))) return;
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'sa.key'], dir);
  openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
}

/** Creates (once) the CA, every certificate in `requests` and the service-account key pair. */
export function ensurePki(dir: string, requests: CertRequest[]): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  ensureCa(dir);
  for (const request of requests) ensureCert(dir, request);
  ensureServiceAccountKey(dir);
}

export function readPem(dir: string, file: string): string {
  return readFileSync(join(dir, file), 'utf8');
}
