/**
 * A throwaway TLS certificate for test servers that stand in for cluster services: self-signed
 * (so `cert.pem` is also the CA a client trusts), EC P-256, valid one day, made with openssl.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export interface TestCertificate {
  keyFile: string;
  /** The certificate, and the only CA that signs it. */
  certFile: string;
}

/** Writes key.pem and cert.pem into `dir`: CN the first of `dnsNames`, every one of them a SAN. */
export function makeTestCertificate(dir: string, dnsNames: readonly [string, ...string[]]): TestCertificate {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  try {
    execFileSync(
      'openssl',
      [
        ...[
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '1',
        ],
        ...['-keyout', keyFile, '-out', certFile, '-subj', `/CN=${dnsNames[0]}`],
        ...['-addext', `subjectAltName=${dnsNames.map((name) => `DNS:${name}`).join(',')}`],
      ],
      { stdio: 'ignore' },
    );
  } catch (err) {
    throw new Error('these tests need openssl on PATH to make a test certificate (apt-get install openssl)', {
      cause: err,
    });
  }
  return { keyFile, certFile };
}
