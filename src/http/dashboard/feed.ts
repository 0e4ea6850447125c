/**
 * The dashboard's admin feed: a recorder on the event bus (it sees every event, like the
 * activity log) that keeps a few counters and per-second samples at all times, and, only
 * while a dashboard page is watching, turns events into tail rows sent over WebSocket.
 *
 * Rates are bounded whatever the traffic: rows go out in batches, at most
 * `FEED_LIMITS.framesPerSecond` frames a second with at most `eventsPerFrame` rows each (the
 * rest are counted and reported as `dropped`); a stats snapshot goes out once a second. A
 * page that does not read (its socket's `bufferedAmount` above `maxBufferedBytes`) is
 * skipped, its missed rows counted as dropped too. With nobody watching, an event costs a
 * counter update and nothing else.
 *
 * Feed sockets belong to a `ws` server of their own (`noServer`): they are not clients, not
 * counted against the caps, not logged as client traffic, not in `server.clients`.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { describeCloseCode } from '../../close-codes.js'
import type { Client } from '../../connection.js'
import { addRecorder, type EventBus, type Recorder, type WsEvents } from '../../events.js'
import type { ActivityLogStats } from '../../log/activity-log.js'
import type { Redactor } from '../../redact.js'
import { type WebSocket, WebSocketServer } from '../../ws-module.js'
import { rejectUpgrade } from '../raw.js'
import { describe, type TailRow } from './describe.js'

export const FEED_LIMITS = Object.freeze({
  /** Most frames of tail rows per second, per page. */
  framesPerSecond: 10,
  /** Most rows per frame; beyond, rows are counted as dropped. */
  eventsPerFrame: 100,
  /** Rows of message events per frame: the rest of a frame is kept for connects, closes, errors. */
  messageEventsPerFrame: 80,
  /** Stats snapshots: one every this many ms. */
  statsIntervalMs: 1000,
  /** A page whose socket holds more than this many unsent bytes is skipped. */
  maxBufferedBytes: 256 * 1024,
  /** Per-second samples kept for the charts (10 minutes). */
  historySeconds: 600,
  /** Most clients listed in a snapshot (the newest; the total is always given). */
  maxClients: 100,
  /** Seconds between pings to a page; one unanswered ping and the feed socket is cut. */
  pingSeconds: 30,
})

/** Events that are client content (the bulk of a busy server's events). */
const MESSAGE_EVENTS = new Set(['message.received', 'message.sent', 'topic.published'])

/** What the feed reads from the server. */
export interface FeedSource {
  readonly events: EventBus
  readonly clients: ReadonlySet<Client>
  logStats(): ActivityLogStats | undefined
  /** Facts about the server shown in the page header. */
  info(): Record<string, unknown>
  readonly redact: Redactor
}

/** Traffic during one second. */
export interface Sample {
  /** Epoch ms at the end of the second. */
  readonly t: number
  readonly in: number
  readonly out: number
  readonly bytesIn: number
  readonly bytesOut: number
  /** Clients connected at `t`. */
  readonly clients: number
  readonly connects: number
  readonly disconnects: number
}

interface Totals {
  in: number
  out: number
  bytesIn: number
  bytesOut: number
}

interface Watcher {
  /** Rows not delivered to this page since its last batch. */
  dropped: number
  /** Rows not delivered to this page in all. */
  droppedTotal: number
  alive: boolean
}

export class DashboardFeed implements Recorder {
  #src: FeedSource
  #wss: WebSocketServer
  #watchers = new Map<WebSocket, Watcher>()
  #detach: () => void
  #batch: TailRow[] = []
  #overflow = 0
  #lastFlush = 0
  #flushTimer: NodeJS.Timeout | undefined
  #tick: NodeJS.Timeout
  #ticks = 0
  #samples: Sample[] = []
  /** Counters of clients already gone. */
  #gone: Totals = { in: 0, out: 0, bytesIn: 0, bytesOut: 0 }
  #last: Totals = { in: 0, out: 0, bytesIn: 0, bytesOut: 0 }
  #connects = 0
  #disconnects = 0
  #rejected = 0
  #lastConnects = 0
  #lastDisconnects = 0
  #closeCodes = new Map<number, number>()
  #closing = false
  /** Frames of rows sent, over the feed's life (all pages). */
  framesSent = 0
  /** Rows sent, over the feed's life (all pages). */
  rowsSent = 0

  constructor(src: FeedSource) {
    this.#src = src
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      // A page sends nothing the server needs; anything big is a mistake or an attack.
      maxPayload: 4096,
      perMessageDeflate: false,
    })
    this.#detach = addRecorder(src.events, this)
    this.#tick = setInterval(() => this.#second(), FEED_LIMITS.statsIntervalMs)
    this.#tick.unref()
  }

  /** Pages watching now. */
  get watchers(): number {
    return this.#watchers.size
  }

  /** Take over an upgrade on the feed path (the router has checked admin access). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', noop)
    if (this.#closing) {
      rejectUpgrade(socket, 503, 'server shutting down')
      return
    }
    // A browser sends Origin: only the dashboard's own page may read the feed, or any site
    // the admin visits could open it from their browser (cross-site WebSocket hijacking).
    if (!sameOrigin(req)) {
      rejectUpgrade(socket, 403, 'cross-origin dashboard feed refused')
      return
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      socket.off('error', noop)
      this.#watch(ws)
    })
  }

  /** Recorder: the feed wants every event but `message.sent` (counters cover it). */
  wants(ns: string, name: string): boolean {
    return !(ns === 'ws' && name === 'message.sent')
  }

  /** Recorder: count, and queue a row while a page is watching. */
  record(ns: string, name: string, payload: unknown): void {
    if (ns === 'ws') {
      switch (name) {
        case 'client.connected':
          this.#connects++
          break
        case 'client.disconnected': {
          const d = payload as WsEvents['client.disconnected']
          this.#disconnects++
          this.#gone.in += d.messagesIn
          this.#gone.out += d.messagesOut
          this.#gone.bytesIn += d.bytesIn
          this.#gone.bytesOut += d.bytesOut
          this.#closeCodes.set(d.code, (this.#closeCodes.get(d.code) ?? 0) + 1)
          break
        }
        case 'client.rejected':
          this.#rejected++
          break
        case 'server.closing':
          this.#closing = true
          break
      }
    }
    if (this.#watchers.size > 0) {
      const n = this.#batch.length
      if (
        n >= FEED_LIMITS.eventsPerFrame ||
        (n >= FEED_LIMITS.messageEventsPerFrame && ns === 'ws' && MESSAGE_EVENTS.has(name))
      )
        this.#overflow++
      else {
        this.#batch.push(describe(ns, name, payload, this.#src.redact))
        this.#schedule()
      }
    }
    // After the closing line is queued: pages see it, then their feed ends.
    if (ns === 'ws' && name === 'server.closing') this.#endWatchers()
    // The feed's timers end with the server.
    if (ns === 'ws' && name === 'server.closed') this.close()
  }

  /** Stop: close every page's feed, stop the timers, leave the bus. */
  close(): void {
    this.#closing = true
    this.#endWatchers()
    clearInterval(this.#tick)
    this.#detach()
  }

  #watch(ws: WebSocket): void {
    const w: Watcher = { dropped: 0, droppedTotal: 0, alive: true }
    this.#watchers.set(ws, w)
    ws.on('error', noop)
    ws.on('pong', () => {
      w.alive = true
    })
    ws.on('close', () => this.#watchers.delete(ws))
    ws.send(
      JSON.stringify({
        t: 'hello',
        server: this.#src.info(),
        limits: FEED_LIMITS,
        samples: this.#samples,
        ...this.#snapshot(),
        feed: this.#feedStats(w),
      }),
    )
  }

  #endWatchers(): void {
    if (this.#flushTimer !== undefined) {
      clearTimeout(this.#flushTimer)
      this.#flushTimer = undefined
    }
    this.#flush()
    for (const ws of this.#watchers.keys()) {
      ws.close(1001, 'server shutting down')
      // The server's close waits for every socket: a page that never answers is cut.
      setTimeout(() => ws.terminate(), 1000).unref()
    }
  }

  #schedule(): void {
    if (this.#flushTimer !== undefined) return
    const wait = Math.max(0, this.#lastFlush + 1000 / FEED_LIMITS.framesPerSecond - Date.now())
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined
      this.#flush()
    }, wait)
  }

  #flush(): void {
    const rows = this.#batch
    const overflow = this.#overflow
    if (rows.length === 0 && overflow === 0) return
    this.#batch = []
    this.#overflow = 0
    this.#lastFlush = Date.now()
    let frame: string | undefined
    for (const [ws, w] of this.#watchers) {
      if (ws.readyState !== 1 || ws.bufferedAmount > FEED_LIMITS.maxBufferedBytes) {
        w.dropped += rows.length + overflow
        w.droppedTotal += rows.length + overflow
        continue
      }
      w.droppedTotal += overflow
      frame ??= JSON.stringify({ t: 'events', events: rows, dropped: 0 })
      // The frame is shared; only a page that missed rows gets its own.
      const own =
        w.dropped + overflow === 0
          ? frame
          : JSON.stringify({ t: 'events', events: rows, dropped: w.dropped + overflow })
      w.dropped = 0
      ws.send(own)
      this.framesSent++
      this.rowsSent += rows.length
    }
  }

  /** Once a second: a sample for the charts, a snapshot for every page, pings now and then. */
  #second(): void {
    const totals = this.#totals()
    const sample: Sample = {
      t: Date.now(),
      in: totals.in - this.#last.in,
      out: totals.out - this.#last.out,
      bytesIn: totals.bytesIn - this.#last.bytesIn,
      bytesOut: totals.bytesOut - this.#last.bytesOut,
      clients: this.#src.clients.size,
      connects: this.#connects - this.#lastConnects,
      disconnects: this.#disconnects - this.#lastDisconnects,
    }
    this.#last = totals
    this.#lastConnects = this.#connects
    this.#lastDisconnects = this.#disconnects
    this.#samples.push(sample)
    if (this.#samples.length > FEED_LIMITS.historySeconds) this.#samples.shift()
    if (this.#watchers.size === 0) return
    const ping = ++this.#ticks % FEED_LIMITS.pingSeconds === 0
    let shared: string | undefined
    for (const [ws, w] of this.#watchers) {
      if (ping) {
        if (!w.alive) {
          ws.terminate()
          continue
        }
        w.alive = false
        ws.ping()
      }
      if (ws.readyState !== 1 || ws.bufferedAmount > FEED_LIMITS.maxBufferedBytes) continue
      // Built once a second for every page; only the page's own counters differ.
      shared ??= JSON.stringify({ t: 'stats', sample, ...this.#snapshot() }).slice(0, -1)
      ws.send(`${shared},"feed":${JSON.stringify(this.#feedStats(w))}}`)
    }
  }

  /** Messages and bytes in and out since start: clients gone plus clients here. */
  #totals(): Totals {
    const t = { ...this.#gone }
    for (const c of this.#src.clients) {
      t.in += c.messagesIn
      t.out += c.messagesOut
      t.bytesIn += c.bytesIn
      t.bytesOut += c.bytesOut
    }
    return t
  }

  #feedStats(w: Watcher): { watchers: number; dropped: number } {
    return { watchers: this.#watchers.size, dropped: w.droppedTotal }
  }

  #snapshot(): Record<string, unknown> {
    const all = this.#src.clients
    const clients: unknown[] = []
    // The registry is in connection order: the newest are last.
    let skip = all.size - FEED_LIMITS.maxClients
    for (const c of all) {
      if (skip-- > 0) continue
      clients.push({
        id: c.id,
        ip: c.ip,
        port: c.port,
        user: c.user?.id,
        protocol: c.protocol,
        path: c.path,
        since: c.connectedAt,
        in: c.messagesIn,
        out: c.messagesOut,
        bytesIn: c.bytesIn,
        bytesOut: c.bytesOut,
      })
    }
    clients.reverse()
    const log = this.#src.logStats()
    return {
      time: Date.now(),
      clientsTotal: all.size,
      clients,
      totals: {
        connects: this.#connects,
        disconnects: this.#disconnects,
        rejected: this.#rejected,
        ...this.#totals(),
      },
      closeCodes: [...this.#closeCodes]
        .sort((a, b) => a[0] - b[0])
        .map(([code, count]) => ({ code, count, name: describeCloseCode(code)?.name })),
      log: log ?? null,
    }
  }
}

/** No Origin (not a browser), or one naming the host the request was sent to. */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin
  if (origin === undefined) return true
  try {
    return new URL(origin).host === req.headers.host
  } catch {
    return false
  }
}

function noop(): void {}
