/**
 * Pure admission rules applied before the 101: client address, origin allow-list.
 */
import type { IncomingMessage } from 'node:http'
import { normalizeIp } from './connection.js'

/**
 * The client's address. With `trustProxy`, the left-most `X-Forwarded-For` entry (the
 * original client as the first proxy saw it); otherwise the TCP peer.
 */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = req.headers['x-forwarded-for']
    const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim()
    if (first) return normalizeIp(first)
  }
  return normalizeIp(req.socket.remoteAddress)
}

/**
 * Whether `origin` passes `allowed`. An empty list allows everything; `*` allows
 * everything; an entry `https://*.example.com` allows any subdomain of example.com over
 * https (not example.com itself); every other entry must match exactly (scheme, host and
 * port, case-insensitively). A request without an Origin header (a non-browser client) is
 * allowed: the check protects browsers from cross-site use, which always send one.
 */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (allowed.length === 0 || origin === undefined) return true
  const o = origin.toLowerCase()
  for (const raw of allowed) {
    const a = raw.toLowerCase()
    if (a === '*' || a === o) return true
    const star = a.indexOf('://*.')
    if (star > 0) {
      const scheme = a.slice(0, star + 3)
      const suffix = a.slice(star + 4) // ".example.com[:port]"
      if (o.startsWith(scheme) && o.endsWith(suffix)) {
        const sub = o.slice(scheme.length, o.length - suffix.length)
        // The wildcard covers whole labels only: no '/', ':' or '@' smuggled into it.
        if (sub.length > 0 && /^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(sub)) return true
      }
    }
  }
  return false
}
