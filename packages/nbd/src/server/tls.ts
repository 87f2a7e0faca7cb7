// NBD_OPT_STARTTLS: the server's TLS material, prepared once at start-up, and the in-place upgrade
// of an accepted socket once STARTTLS has been answered with ACK. Haggling then continues over
// the TLS socket and transmission uses it too. Key material never reaches a log line or an error.

import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket, createSecureContext } from 'node:tls';

export interface NbdServerTlsOptions {
  /** PEM certificate (chain) shown to clients. */
  readonly cert: string | Buffer;
  /** PEM private key of `cert`. */
  readonly key: string | Buffer;
  /** PEM CA certificate(s) that client certificates must chain to; needed for verifyClient. */
  readonly ca?: string | Buffer;
  /**
   * true: FORCEDTLS, every option but STARTTLS and ABORT is refused with NBD_REP_ERR_TLS_REQD
   * until the upgrade. false: SELECTIVETLS with no TLS-only export, the client decides.
   */
  readonly require: boolean;
  /** Clients must present a certificate signed by `ca`. Default false. */
  readonly verifyClient?: boolean;
}

/** What a connection needs to upgrade: built once per server, shared by every connection. */
export interface ServerTls {
  readonly mode: 'optional' | 'required';
  readonly secureContext: SecureContext;
  readonly verifyClient: boolean;
}

export function prepareServerTls(options: NbdServerTlsOptions): ServerTls {
  const verifyClient = options.verifyClient === true;
  if (verifyClient && options.ca === undefined) throw new RangeError('NbdServerOptions.tls: verifyClient needs ca');
  let secureContext: SecureContext;
  try {
    // TLS 1.2 at least, as proto.md asks; Node's default too, but stated so it cannot drift.
    secureContext = createSecureContext({
      cert: options.cert, key: options.key, minVersion: 'TLSv1.2', ...(options.ca !== undefined ? { ca: options.ca } : {}),
    });
  } catch (err) {
    // OpenSSL's message names the failure ("key values mismatch", "no start line"), never the PEM.
    throw new Error(`NBD TLS: cannot use the certificate, key or CA: ${(err as Error).message}`);
  }
  return { mode: options.require ? 'required' : 'optional', secureContext, verifyClient };
}

export interface TlsUpgradeEvents {
  /** The handshake (and the client certificate check) passed; `summary` is safe to log. */
  onSecure(summary: string): void;
  /** The client certificate was refused; the socket is being destroyed. At most once. */
  onRefused(reason: string): void;
}

/**
 * Wraps `raw` in a server-side TLSSocket. The caller has checked that no plaintext byte is
 * pending, taken its own listeners off `raw`, and puts them on the returned socket; handshake
 * errors arrive there as 'error' then 'close'.
 */
export function upgradeToTls(raw: Socket, tls: ServerTls, events: TlsUpgradeEvents): TLSSocket {
  raw.on('error', () => {}); // the TLS socket owns the handle now and reports its errors
  const socket = new TLSSocket(raw, {
    isServer: true, secureContext: tls.secureContext, requestCert: tls.verifyClient, rejectUnauthorized: tls.verifyClient,
  });
  socket.once('secure', () => {
    const problem = tls.verifyClient ? clientCertificateProblem(socket) : undefined;
    if (problem !== undefined) {
      events.onRefused(`client certificate refused: ${problem}`);
      socket.destroy();
      return;
    }
    const cipher = socket.getCipher();
    events.onSecure(`${socket.getProtocol() ?? 'TLS'} ${cipher.name}${tls.verifyClient ? ', client certificate verified' : ''}`);
  });
  return socket;
}

/** Node's internal handle; a tls.Server checks verifyError() on it the same way. */
interface TlsHandle {
  verifyError?(): Error | null;
}

/**
 * Why the client's certificate is not acceptable, or undefined when it is. A standalone server
 * TLSSocket enforces rejectUnauthorized only for a missing certificate: one signed by another CA
 * completes the handshake with `authorized` left false (tested on Node 20). So we ask OpenSSL's
 * verdict ourselves, as tls.Server does, and fail closed should that handle ever go away.
 */
function clientCertificateProblem(socket: TLSSocket): string | undefined {
  if (socket.getPeerX509Certificate() === undefined) return 'no certificate presented';
  const handle = (socket as unknown as { ssl?: TlsHandle | null }).ssl;
  if (typeof handle?.verifyError !== 'function') return 'cannot check it on this Node version';
  const error = handle.verifyError();
  return error === null ? undefined : (error as Error & { code?: string }).code ?? error.message;
}
