/**
 * TLS: `wss://` (and `https://` for the HTTP routes) served by Node's own `https.Server`,
 * from PEM files named in the `tls` options. Client-certificate mode asks for (or requires)
 * a certificate signed by `ca`.
 *
 * Reload (SIGHUP, `server.reloadTls()`): the files are read again and checked (key matches
 * certificate, parses) before `setSecureContext()` swaps them in; connections already open
 * keep the context they were made with, new ones get the new one. A file that cannot be
 * read or does not parse keeps the old context.
 */
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Server as HttpServer, RequestListener, ServerOptions } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import {
  createSecureContext,
  type SecureContextOptions,
  type TLSSocket,
  type Server as TlsServer,
} from 'node:tls'
import { type Config, ConfigError, systemMessage } from './config.js'
import { normalizeIp } from './connection.js'

export type TlsConfig = Config['tls']

/** Whether TLS is configured (both `cert` and `key`). */
export function tlsEnabled(tls: TlsConfig): boolean {
  return tls.cert !== undefined && tls.key !== undefined
}

/** What the log and `reloadTls()` say about the certificate in use. */
export interface CertificateInfo {
  /** SHA-256 fingerprint, `AB:CD:…` as OpenSSL prints it. */
  readonly fingerprint: string
  readonly subject: string
  /** Expiry (`notAfter`), ISO 8601. */
  readonly expires: string
}

const FLAG = { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' } as const

function read(what: keyof typeof FLAG, file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw new ConfigError(`${FLAG[what]}: cannot read ${file}: ${systemMessage(err)}`)
  }
}

/**
 * Read and check the files: the secure-context options, and the certificate's description.
 * Throws a `ConfigError` naming the flag and file.
 */
export function loadTls(tls: TlsConfig): {
  options: SecureContextOptions
  info: CertificateInfo
} {
  const cert = read('cert', tls.cert!)
  const key = read('key', tls.key!)
  const ca = tls.ca === undefined ? undefined : read('ca', tls.ca)
  const options: SecureContextOptions = { cert, key, ...(ca ? { ca } : {}) }
  let info: CertificateInfo
  try {
    const x = new X509Certificate(cert)
    info = {
      fingerprint: x.fingerprint256,
      subject: x.subject.replace(/\n/g, ', '),
      expires: new Date(x.validTo).toISOString(),
    }
  } catch (err) {
    throw new ConfigError(
      `${FLAG.cert}: ${tls.cert} is not a PEM certificate (${(err as Error).message})`,
    )
  }
  try {
    // Parses the key and checks that it belongs to the certificate.
    createSecureContext(options)
  } catch (err) {
    throw new ConfigError(
      `${FLAG.key}: ${tls.key} cannot be used with ${tls.cert} (${(err as Error).message})`,
    )
  }
  return { options, info }
}

/** Why a TLS handshake was refused, as a status in the log (nginx's 495/496 convention). */
export interface TlsRefusal {
  readonly ip: string
  readonly port: number
  readonly status: number
  readonly reason: string
}

/**
 * An `https.Server` with `http` options and the TLS files (read now; throws a ConfigError
 * naming a bad file). `onRefused` hears of clients refused for their certificate (missing,
 * or not signed by `ca`) in `require` mode.
 */
export function createTlsServer(
  tls: TlsConfig,
  http: ServerOptions,
  listener: RequestListener,
  onRefused: (r: TlsRefusal) => void,
): { server: HttpServer; info: CertificateInfo } {
  const { options, info } = loadTls(tls)
  const server = createHttpsServer(
    {
      ...http,
      ...options,
      requestCert: tls.clientCert !== 'none',
      // `require` is enforced below rather than by OpenSSL: Node's own refusal is a silent
      // reset that does not say why, and the log should.
      rejectUnauthorized: false,
    },
    listener,
  )
  if (tls.clientCert === 'require') {
    // Before the HTTP layer sees the socket: nothing is read from a refused client.
    server.prependListener('secureConnection', (socket: TLSSocket) => {
      if (socket.authorized) return
      const none = Object.keys(socket.getPeerCertificate()).length === 0
      onRefused({
        ip: normalizeIp(socket.remoteAddress),
        port: socket.remotePort ?? 0,
        status: none ? 496 : 495,
        reason: none
          ? 'client certificate required'
          : `client certificate not accepted (${String(socket.authorizationError)})`,
      })
      socket.destroy()
    })
  }
  // Node's https.Server is an http.Server in everything the server uses (routes, upgrade,
  // timeouts, closeIdleConnections); the type is http's so the rest of the code has one.
  return { server: server as unknown as HttpServer, info }
}

/**
 * Read the files again and swap them in for new connections. Resolves with the new
 * certificate's description; throws (a ConfigError naming the file) and changes nothing if
 * a file is bad.
 */
export function reloadTls(server: HttpServer, tls: TlsConfig): CertificateInfo {
  const { options, info } = loadTls(tls)
  ;(server as unknown as TlsServer).setSecureContext(options)
  return info
}
