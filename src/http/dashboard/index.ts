/**
 * The live dashboard: `GET /dashboard` (one self-contained page: no CDN, nothing fetched
 * from the internet) and its admin feed, a WebSocket on `/dashboard/feed`. Both are admin
 * routes: open to anyone only when the server is bound to loopback and has no admin token;
 * otherwise only with the token (`?token=` or `Authorization: Bearer`).
 *
 * Loaded by the server only when the `dashboard` option is on (the default).
 */
import type { ServerResponse } from 'node:http'
import { createRedactor } from '../../redact.js'
import type { WirelogServer } from '../../server.js'
import { DashboardFeed } from './feed.js'
import { PAGE, PAGE_CSP } from './page.js'

export const DASHBOARD_PATH = '/dashboard'
export const FEED_PATH = '/dashboard/feed'

export interface Dashboard {
  readonly feed: DashboardFeed
  /** Remove the routes and stop the feed. */
  close(): void
}

/** Route the page and the feed on `server`; the feed starts recording now. */
export function attachDashboard(server: WirelogServer): Dashboard {
  const startedAt = Date.now()
  const feed = new DashboardFeed({
    events: server.events,
    clients: server.clients,
    logStats: () => server.activityLog?.stats,
    redact: createRedactor(server.config.log.redact),
    info: () => {
      const a = server.address()
      return {
        address: a?.address,
        port: a?.port,
        pid: process.pid,
        node: process.version,
        startedAt,
        logPath: server.activityLog?.path,
        logFormat: server.config.log.format,
      }
    },
  })
  const unroutePage = server.route(DASHBOARD_PATH, (_req, res) => servePage(res), {
    access: 'admin',
  })
  const unrouteFeed = server.upgradeRoute(
    FEED_PATH,
    (req, socket, head) => feed.upgrade(req, socket, head),
    { access: 'admin' },
  )
  return {
    feed,
    close: () => {
      unroutePage()
      unrouteFeed()
      feed.close()
    },
  }
}

let page: Buffer | undefined

function servePage(res: ServerResponse): void {
  page ??= Buffer.from(PAGE)
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': page.length,
    'cache-control': 'no-store',
    'content-security-policy': PAGE_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
  })
  res.end(page)
}
