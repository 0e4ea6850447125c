/**
 * The client address behind reverse proxies. Only proxies you trust may say who the client
 * is: the address is the right-most `X-Forwarded-For` entry that is not a trusted proxy
 * (what Express does, through the same `proxy-addr` package). The left-most entry is
 * whatever the client wrote and is never trusted.
 */
import type { IncomingMessage } from 'node:http'
import { createRequire } from 'node:module'
import { isIP } from 'node:net'
import type ProxyAddr from 'proxy-addr'
import { normalizeIp } from './connection.js'

/**
 * `false`: no proxy, the TCP peer is the client. `true` or a number N: the nearest 1 (or N)
 * hops are trusted proxies. A list: addresses, CIDR ranges or the names `loopback`,
 * `linklocal`, `uniquelocal` of trusted proxies.
 */
export type TrustProxy = boolean | number | readonly string[]

export type TrustFn = (addr: string, hop: number) => boolean

let proxyAddrFn: typeof ProxyAddr | undefined

/** `proxy-addr` (CommonJS), required the first time a list of proxies is trusted, not at start-up. */
function proxyAddr(): typeof ProxyAddr {
  proxyAddrFn ??= createRequire(import.meta.url)('proxy-addr') as typeof ProxyAddr
  return proxyAddrFn
}

/** Compile a trust setting once; throws a TypeError naming a bad address. */
export function compileTrust(trust: TrustProxy): TrustFn | undefined {
  if (trust === false || trust === 0) return undefined
  if (trust === true) return (_a, hop) => hop < 1
  if (typeof trust === 'number') return (_a, hop) => hop < trust
  if (trust.length === 0) return undefined
  try {
    return proxyAddr().compile([...trust])
  } catch (err) {
    throw new TypeError((err as Error).message)
  }
}

export interface ClientAddress {
  ip: string
  /** The TCP peer, when the address came through it. */
  proxy: string | undefined
}

/** The client address of `req` under `trust`. */
export function clientAddress(req: IncomingMessage, trust: TrustFn | undefined): ClientAddress {
  const peer = normalizeIp(req.socket.remoteAddress)
  if (trust === undefined || req.headers['x-forwarded-for'] === undefined)
    return { ip: peer, proxy: undefined }
  const ip = normalizeIp(proxyAddr()(req, trust))
  // A proxy that forwarded something that is not an address told us nothing.
  if (isIP(ip) === 0) return { ip: peer, proxy: undefined }
  return { ip, proxy: ip === peer ? undefined : peer }
}
