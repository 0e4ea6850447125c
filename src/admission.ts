/**
 * Admission: everything decided about an upgrade request before the 101.
 *
 * A pipeline of rules runs in order; the first refusal wins and is answered with a real
 * HTTP response (status, reason, headers) and one `client.rejected` event. The built-in
 * rules are the handshake check, the server state, the origin allow-list and the connection
 * caps; user hooks (`admit` option, `server.admit()`) and authentication come after them, may
 * be async, and may accept with a context object (and a user) that lands on the client.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { ClientUser } from './connection.js'

/** What admission knows about an upgrade request. */
export interface AdmissionRequest {
  /** Client address (from `X-Forwarded-For` behind a trusted proxy). */
  readonly ip: string
  readonly port: number
  /** The TCP peer when `ip` came through a trusted proxy. */
  readonly proxy: string | undefined
  readonly method: string
  /** Path without the query string. */
  readonly path: string
  /** The query string, parsed (credentials included: never log it as is). */
  readonly query: URLSearchParams
  readonly headers: IncomingHttpHeaders
  readonly origin: string | undefined
  readonly userAgent: string | undefined
  /** Subprotocols the client offered, in its order. */
  readonly protocols: readonly string[]
  /** The raw request. */
  readonly request: IncomingMessage
}

export interface Accept {
  readonly accept: true
  /** Merged into `client.context`. */
  readonly context?: Record<string, unknown>
  /** The authenticated user (`client.user`). */
  readonly user?: ClientUser
}

export interface Reject {
  readonly accept: false
  /** HTTP status (4xx/5xx). */
  readonly status: number
  /** Logged and sent as the response body; never put secrets in it. */
  readonly reason: string
  readonly headers?: Readonly<Record<string, string>>
}

export type AdmissionDecision = Accept | Reject

/**
 * A rule: return `accept(...)` / `reject(...)`, or nothing to have no opinion (the request
 * goes on to the next rule, and is accepted if none refuses). May be async.
 */
export type AdmissionHook = (
  req: AdmissionRequest,
) => AdmissionDecision | undefined | Promise<AdmissionDecision | undefined>

/** Accept, optionally attaching context and a user to the client. */
export function accept(context?: Record<string, unknown>, user?: ClientUser): Accept {
  return { accept: true, ...(context ? { context } : {}), ...(user ? { user } : {}) }
}

/** Refuse with an HTTP status before any 101. */
export function reject(
  status: number,
  reason: string,
  headers?: Readonly<Record<string, string>>,
): Reject {
  if (!Number.isInteger(status) || status < 400 || status > 599)
    throw new RangeError(`reject(): status must be 400–599, got ${status}`)
  return { accept: false, status, reason, ...(headers ? { headers } : {}) }
}

const KEY = /^[+/0-9A-Za-z]{22}==$/
/** RFC 7230 token characters, for subprotocol names. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * RFC 6455 §4.2.1 checks, where the right status is known: 405 for a method other than GET,
 * 426 (with the versions we speak) for an unsupported version, 400 for anything else
 * malformed. `ws` checks the same things again, but reports every failure alike.
 */
export function checkHandshake(req: IncomingMessage): Reject | undefined {
  if (req.method !== 'GET') return reject(405, 'Invalid HTTP method', { Allow: 'GET' })
  const upgrade = req.headers.upgrade
  if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket')
    return reject(400, 'Invalid Upgrade header')
  const key = req.headers['sec-websocket-key']
  if (key === undefined || !KEY.test(key))
    return reject(400, 'Missing or invalid Sec-WebSocket-Key header')
  const version = req.headers['sec-websocket-version']
  if (version === undefined)
    return reject(400, 'Missing Sec-WebSocket-Version header', { 'Sec-WebSocket-Version': '13, 8' })
  if (version !== '13' && version !== '8')
    return reject(426, 'Unsupported Sec-WebSocket-Version', {
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13, 8',
    })
  if (offeredProtocols(req) === undefined)
    return reject(400, 'Invalid Sec-WebSocket-Protocol header')
  return undefined
}

/** The subprotocols offered, in order; undefined when the header is malformed. */
export function offeredProtocols(req: IncomingMessage): string[] | undefined {
  const raw = req.headers['sec-websocket-protocol']
  if (raw === undefined) return []
  const out: string[] = []
  for (const part of raw.split(',')) {
    const p = part.trim()
    if (!TOKEN.test(p) || out.includes(p)) return undefined
    out.push(p)
  }
  return out
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

/**
 * Connection counts for the caps, including upgrades still in admission (so a burst of
 * slow async admissions cannot overshoot a cap).
 */
export class Capacity {
  #total = 0
  #perIp = new Map<string, number>()

  get total(): number {
    return this.#total
  }

  count(ip: string): number {
    return this.#perIp.get(ip) ?? 0
  }

  /** Take a slot for `ip`; the caller must `release()` it exactly once. */
  take(ip: string): void {
    this.#total++
    this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1)
  }

  release(ip: string): void {
    this.#total--
    const n = (this.#perIp.get(ip) ?? 1) - 1
    if (n <= 0) this.#perIp.delete(ip)
    else this.#perIp.set(ip, n)
  }
}

export interface CapLimits {
  maxConnections: number
  maxConnectionsPerIp: number
}

/** The cap rule: 503 with Retry-After when the server or this address is full. */
export function checkCapacity(cap: Capacity, ip: string, limits: CapLimits): Reject | undefined {
  const retry = { 'Retry-After': '5' }
  if (limits.maxConnections > 0 && cap.total >= limits.maxConnections)
    return reject(503, 'server at capacity', retry)
  if (limits.maxConnectionsPerIp > 0 && cap.count(ip) >= limits.maxConnectionsPerIp)
    return reject(503, 'too many connections from this address', retry)
  return undefined
}

/**
 * Run user hooks in order: the first refusal wins; accepted contexts are merged; the last
 * user given wins. Resolves to the merged acceptance or the refusal.
 */
export async function runHooks(
  hooks: readonly AdmissionHook[],
  req: AdmissionRequest,
): Promise<AdmissionDecision> {
  let context: Record<string, unknown> | undefined
  let user: ClientUser | undefined
  for (const hook of hooks) {
    const d = await hook(req)
    if (d === undefined || d === null) continue
    if (typeof d !== 'object' || typeof d.accept !== 'boolean')
      throw new TypeError('an admission hook must return accept(…), reject(…) or nothing')
    if (!d.accept) return d
    if (d.context) context = { ...context, ...d.context }
    if (d.user) user = d.user
  }
  return accept(context, user)
}
