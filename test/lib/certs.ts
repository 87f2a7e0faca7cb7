// A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1/localhost and a client
// certificate, all signed by the CA, made with openssl into one directory (keys mode 0600).
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runOk } from './proc.js';

export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A second CA that signed nothing here: verifying against it must fail. */
  readonly otherCaCert: string;
}

const DAYS = '2';

async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, `${name}-key.pem`);
  const cert = path.join(dir, `${name}-cert.pem`);
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', DAYS, '-subj', `/CN=onestack test ${name}`]);
  chmodSync(key, 0o600);
  return { cert, key };
}

async function makeLeaf(dir: string, name: string, ca: { cert: string; key: string }, ext: string): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, `${name}-key.pem`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}-cert.pem`);
  const extFile = path.join(dir, `${name}.ext`);
  writeFileSync(extFile, ext);
  await runOk('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  chmodSync(key, 0o600);
  await runOk('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', DAYS, '-extfile', extFile]);
  return { cert, key };
}

/** Creates (once per directory) the CA and leaf certificates. */
export async function makeTestPki(dir: string): Promise<TestPki> {
  mkdirSync(dir, { recursive: true });
  const pki: TestPki = {
    dir,
    caCert: path.join(dir, 'ca-cert.pem'),
    caKey: path.join(dir, 'ca-key.pem'),
    serverCert: path.join(dir, 'server-cert.pem'),
    serverKey: path.join(dir, 'server-key.pem'),
    clientCert: path.join(dir, 'client-cert.pem'),
    clientKey: path.join(dir, 'client-key.pem'),
    otherCaCert: path.join(dir, 'other-cert.pem'),
  };
  if (existsSync(pki.clientCert) && existsSync(pki.otherCaCert)) return pki;
  const ca = await makeCa(dir, 'ca');
  await makeCa(dir, 'other');
  await makeLeaf(dir, 'server', ca, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await makeLeaf(dir, 'client', ca, 'extendedKeyUsage=clientAuth\n');
  return pki;
}
