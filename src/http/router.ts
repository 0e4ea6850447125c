/**
 * The one answer to every plain HTTP request: built-in routes (health; metrics and the
 * dashboard when enabled) and user routes (`server.route()`), each answered exactly once.
 *
 * Admin routes are open only to an admin: anyone when the server is bound to loopback and
 * no admin token is set; otherwise only a request carrying the admin token (compared in
 * constant time) as `Authorization: Bearer <token>`, a `token` query parameter or a
 * `wirelog_admin` cookie.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

export type RouteAccess = 'public' | 'admin'

export interface RouteContext {
  /** The request URL, parsed. */
  readonly url: URL
  /** Whether the request passed the admin check. */
  readonly admin: boolean
}

export type RouteHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RouteContext,
) => void | Promise<void>

/** Takes over an upgrade request's socket (an admin feed, a tunnel): not a client. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void

export interface RouteOptions {
  /** Methods answered (default GET and HEAD; HEAD gets GET's headers without the body). */
  readonly methods?: readonly string[]
  /** `public` (default) or `admin` (see the module comment). */
  readonly access?: RouteAccess
  /** Also match every path below this one (`/dashboard/app.js` for `/dashboard`). */
  readonly prefix?: boolean
}

interface Route {
  path: string
  handler: RouteHandler
  methods: readonly string[]
  access: RouteAccess
  prefix: boolean
}

export interface RouterOptions {
  /** The admin token, if one is set. */
  adminToken: string | undefined
  /** Whether the server is bound to a loopback address only. */
  loopbackOnly: () => boolean
  /** A route handler threw or rejected. */
  onError: (path: string, err: unknown) => void
}

/** `/a/b/` → `/a/b`; `//x` → `/x`; `''` → `/`. */
export function normalizePath(p: string): string {
  let s = p.replace(/\/{2,}/g, '/')
  while (s.length > 1 && s.endsWith('/')) s = s.slice(0, -1)
  return s === '' ? '/' : s
}

interface UpgradeRoute {
  path: string
  handler: UpgradeHandler
  access: RouteAccess
}

export class Router {
  #routes: Route[] = []
  #upgrades: UpgradeRoute[] = []
  #opts: RouterOptions
  #tokenDigest: Buffer | undefined

  constructor(opts: RouterOptions) {
    this.#opts = opts
    this.#tokenDigest =
      opts.adminToken !== undefined
        ? createHash('sha256').update(opts.adminToken).digest()
        : undefined
  }

  /** Add a route; returns a function that removes it. A path may be routed once. */
  add(path: string, handler: RouteHandler, options: RouteOptions = {}): () => void {
    if (typeof path !== 'string' || !path.startsWith('/'))
      throw new TypeError(`route(): the path must start with "/", got ${JSON.stringify(path)}`)
    if (typeof handler !== 'function')
      throw new TypeError('route(): the handler must be a function')
    const p = normalizePath(path)
    if (this.#routes.some((r) => r.path === p))
      throw new TypeError(`route(): ${p} is already routed`)
    const methods = (options.methods ?? ['GET', 'HEAD']).map((m) => m.toUpperCase())
    const route: Route = {
      path: p,
      handler,
      methods:
        methods.includes('GET') && !methods.includes('HEAD') ? [...methods, 'HEAD'] : methods,
      access: options.access ?? 'public',
      prefix: options.prefix ?? false,
    }
    this.#routes.push(route)
    // Longest path first, so `/dashboard/feed` beats a `/dashboard` prefix route.
    this.#routes.sort((a, b) => b.path.length - a.path.length)
    return () => {
      this.#routes = this.#routes.filter((r) => r !== route)
    }
  }

  /** Take WebSocket upgrades for exactly `path` away from the client pipeline. */
  addUpgrade(
    path: string,
    handler: UpgradeHandler,
    options: { access?: RouteAccess } = {},
  ): () => void {
    if (typeof path !== 'string' || !path.startsWith('/'))
      throw new TypeError(
        `upgradeRoute(): the path must start with "/", got ${JSON.stringify(path)}`,
      )
    const p = normalizePath(path)
    if (this.#upgrades.some((r) => r.path === p))
      throw new TypeError(`upgradeRoute(): ${p} is already routed`)
    const route: UpgradeRoute = { path: p, handler, access: options.access ?? 'public' }
    this.#upgrades.push(route)
    return () => {
      this.#upgrades = this.#upgrades.filter((r) => r !== route)
    }
  }

  /**
   * The upgrade route for `req`: its handler, or the refusal an unauthorised caller gets;
   * undefined when the request is for the client pipeline.
   */
  upgradeFor(
    req: IncomingMessage,
  ): { handler: UpgradeHandler } | { status: number; reason: string } | undefined {
    if (this.#upgrades.length === 0) return undefined
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      return undefined
    }
    const p = normalizePath(url.pathname)
    const route = this.#upgrades.find((r) => r.path === p)
    if (route === undefined) return undefined
    if (route.access === 'admin' && !this.isAdmin(req, url))
      return this.#tokenDigest !== undefined
        ? { status: 401, reason: 'admin token required' }
        : { status: 403, reason: 'admin endpoints are off on a non-loopback bind' }
    return { handler: route.handler }
  }

  /** The route for `pathname`, if any. */
  match(pathname: string): Route | undefined {
    const p = normalizePath(pathname)
    for (const r of this.#routes) {
      if (r.path === p) return r
      if (r.prefix && (r.path === '/' || p.startsWith(`${r.path}/`))) return r
    }
    return undefined
  }

  /** Whether `req` carries admin rights. */
  isAdmin(req: IncomingMessage, url: URL): boolean {
    const want = this.#tokenDigest
    if (want === undefined) return this.#opts.loopbackOnly()
    const given = presentedToken(req, url)
    if (given === undefined) return false
    return timingSafeEqual(createHash('sha256').update(given).digest(), want)
  }

  /** Answer `req` if a route matches; false when none does. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      return false
    }
    const route = this.match(url.pathname)
    if (route === undefined) return false
    const method = req.method ?? 'GET'
    if (!route.methods.includes(method)) {
      send(res, 405, { error: 'method not allowed' }, { allow: route.methods.join(', ') })
      return true
    }
    const admin = this.isAdmin(req, url)
    if (route.access === 'admin' && !admin) {
      if (this.#tokenDigest !== undefined)
        send(
          res,
          401,
          { error: 'admin token required' },
          { 'www-authenticate': 'Bearer realm="wirelog"' },
        )
      else
        send(res, 403, {
          error: 'admin endpoints are off on a non-loopback bind unless an admin token is set',
        })
      return true
    }
    const fail = (err: unknown): void => {
      this.#opts.onError(route.path, err)
      if (!res.headersSent) send(res, 500, { error: 'internal error' })
      else res.destroy()
    }
    try {
      const r = route.handler(req, res, { url, admin })
      if (r !== undefined && typeof (r as Promise<void>).then === 'function')
        (r as Promise<void>).then(undefined, fail)
    } catch (err) {
      fail(err)
    }
    return true
  }
}

/** The admin token a request presents, if any. */
function presentedToken(req: IncomingMessage, url: URL): string | undefined {
  const auth = req.headers.authorization
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim()
  const q = url.searchParams.get('token')
  if (q) return q
  const cookie = req.headers.cookie
  if (cookie) {
    for (const part of cookie.split(';')) {
      const [k, ...v] = part.trim().split('=')
      if (k === 'wirelog_admin') return decodeURIComponent(v.join('='))
    }
  }
  return undefined
}

/** Answer with a small JSON body. */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(text)
}
