import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readPem } from './pki.ts';

const b64 = (pem: string): string => Buffer.from(pem).toString('base64');

/**
 * Writes a kubeconfig with the CA and the client certificate embedded, so the file works from any
 * directory and can be handed to detour, kubectl or @kubernetes/client-node as it is.
 */
export function writeKubeconfig(
  path: string,
  server: string,
  pkiDir: string,
  user: string,
  certName: string,
): void {
  const yaml = `apiVersion: v1
kind: Config
clusters:
  - name: detour-local
    cluster:
      server: ${server}
      certificate-authority-data: ${b64(readPem(pkiDir, 'ca.crt'))}
users:
  - name: ${user}
    user:
      client-certificate-data: ${b64(readPem(pkiDir, `${certName}.crt`))}
      client-key-data: ${b64(readPem(pkiDir, `${certName}.key`))}
contexts:
  - name: ${user}@detour-local
    context:
      cluster: detour-local
      user: ${user}
      namespace: default
current-context: ${user}@detour-local
`;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, yaml, { mode: 0o600 });
}
