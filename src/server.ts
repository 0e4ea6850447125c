/**
 * The server: HTTP listener, upgrade admission, connection registry, heartbeat, lifecycle
 * (`NEW → RUNNING → CLOSING → CLOSED`) and graceful shutdown. It triggers events; it never
 * formats a log line (the activity log is a subscriber like any other).
 */
import { randomBytes } from 'node:crypto'
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
} from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { type WebSocket, WebSocketServer } from 'ws'
import { clientAddress, originAllowed } from './admission.js'
import { type Behaviour, echo, silent } from './behaviours/echo.js'
import { CloseCode, closeCodeForWsError } from './close-codes.js'
import { type Config, resolveConfig, type WirelogOptions } from './config.js'
import { type Client, Connection, normalizeIp } from './connection.js'
import { EventBus, type MessageReceived } from './events.js'
import { handleHttpRequest, rejectUpgrade } from './http.js'
import { ActivityLog } from './log/activity-log.js'

export type ServerState = 'NEW' | 'RUNNING' | 'CLOSING' | 'CLOSED'

/** The payload of `message.received`; `data` decodes text lazily, once. */
class MessageEvent implements MessageReceived {
  readonly client: Connection
  readonly raw: Buffer
  readonly binary: boolean
  readonly bytes: number
  #text: string | undefined
  constructor(client: Connection, raw: Buffer, binary: boolean) {
    this.client = client
    this.raw = raw
    this.binary = binary
    this.bytes = raw.length
  }
  get data(): string | Buffer {
    if (this.binary) return this.raw
    if (this.#text === undefined) this.#text = this.raw.toString('utf8')
    return this.#text
  }
  toJSON(): object {
    return {
      client: this.client.id,
      data: this.binary ? `<${this.bytes} bytes>` : this.data,
      binary: this.binary,
      bytes: this.bytes,
    }
  }
}

export interface ServerDeps {
  /** Replaces the activity log (tests, embedding); `null` turns it off. */
  activityLog?: ActivityLog | null
}

export class WirelogServer {
  readonly config: Config
  /** The event bus: register handlers here. */
  readonly events: EventBus
  /** The activity log subscriber (undefined when logging is off). */
  readonly activityLog: ActivityLog | undefined

  #state: ServerState = 'NEW'
  #http: HttpServer
  #wss: WebSocketServer
  #clients = new Set<Connection>()
  #perIp = new Map<string, number>()
  #idPrefix = randomBytes(3).toString('hex')
  #nextId = 0
  #behaviour: Behaviour
  #heartbeat: NodeJS.Timeout | undefined
  #idleSweep: NodeJS.Timeout | undefined
  #listening: Promise<AddressInfo> | undefined
  #closing: Promise<void> | undefined
  #allGone: (() => void) | undefined
  #hooks = {
    sent: (conn: Connection, bytes: number, binary: boolean) => this.#onSent(conn, bytes, binary),
  }

  constructor(options: WirelogOptions = {}, deps: ServerDeps = {}) {
    this.config = resolveConfig(options)
    const cfg = this.config
    this.events = new EventBus()
    this.activityLog =
      deps.activityLog === null
        ? undefined
        : (deps.activityLog ??
          (cfg.log.enabled || cfg.log.stdout ? new ActivityLog(cfg.log) : undefined))
    this.#behaviour = cfg.behaviour === 'echo' ? echo(cfg.echoPrefix) : silent()

    const limits = cfg.limits
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: limits.maxPayload,
      // 64-byte fragments of a maximum-size message must still pass.
      maxFragments:
        limits.maxFragments > 0 ? limits.maxFragments : Math.ceil(limits.maxPayload / 64) + 1,
      // Socket reads held while a frame is incomplete. ws's default (262,144) lets a client
      // trickling one byte per TCP segment pin ~50 MB (≈200 B per 1-byte read) on one
      // connection; a legitimate maximum-size frame arrives in far fewer, far larger reads.
      maxBufferedChunks: Math.max(1024, Math.ceil(limits.maxPayload / 256)),
      perMessageDeflate:
        cfg.perMessageDeflate === false
          ? false
          : {
              threshold: cfg.perMessageDeflate.threshold,
              zlibDeflateOptions: { level: cfg.perMessageDeflate.level },
              serverNoContextTakeover: true,
              clientNoContextTakeover: true,
              concurrencyLimit: 10,
            },
      closeTimeout: Math.max(1000, Math.min(cfg.shutdownTimeout, 30_000)),
    } as ConstructorParameters<typeof WebSocketServer>[0])
    this.#wss.on(
      'wsClientError',
      (err: Error & { code?: string }, socket: Duplex, req: IncomingMessage) =>
        this.#onHandshakeError(err, socket, req),
    )

    this.#http = createHttpServer(
      {
        headersTimeout: limits.headersTimeout,
        requestTimeout: Math.max(limits.headersTimeout, 10_000),
        // Node checks the two timeouts above only this often (default 30 s).
        connectionsCheckingInterval: Math.min(1000, limits.headersTimeout),
        keepAliveTimeout: 5000,
      },
      (req, res) =>
        handleHttpRequest(req, res, () => ({ state: this.#state, clients: this.#clients.size })),
    )
    this.#http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.#onUpgrade(req, socket, head),
    )
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) =>
      this.#onClientError(err, socket),
    )
  }

  /** Lifecycle state. */
  get state(): ServerState {
    return this.#state
  }

  /** Connected clients. */
  get clients(): ReadonlySet<Client> {
    return this.#clients
  }

  /** The bound address, once listening. */
  address(): AddressInfo | null {
    const a = this.#http.address()
    return a !== null && typeof a === 'object' ? a : null
  }

  /** The underlying HTTP server (to add routes before `listen()`). */
  get httpServer(): HttpServer {
    return this.#http
  }

  /**
   * Open the activity log, then bind. Rejects (and leaves nothing open) if the log file
   * cannot be opened or the port cannot be bound.
   */
  listen(): Promise<AddressInfo> {
    if (this.#listening) return this.#listening
    if (this.#state !== 'NEW')
      return Promise.reject(new Error(`cannot listen(): server is ${this.#state}`))
    this.#listening = this.#doListen()
    return this.#listening
  }

  async #doListen(): Promise<AddressInfo> {
    const cfg = this.config
    if (this.activityLog) {
      await this.activityLog.open()
      this.activityLog.attach(this.events)
    }
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => reject(err)
        this.#http.once('error', onError)
        this.#http.listen(cfg.port, cfg.host, () => {
          this.#http.off('error', onError)
          resolve()
        })
      })
    } catch (err) {
      this.#state = 'CLOSED'
      await this.activityLog?.close()
      throw err
    }
    this.#http.on('error', (err) =>
      process.emitWarning(`wirelog: HTTP server error: ${err.message}`, 'WirelogWarning'),
    )
    this.#state = 'RUNNING'
    this.#startTimers()
    const addr = this.address()!
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
    this.events.trigger('ws', 'server.listening', {
      address: addr.address,
      port: addr.port,
      url: `ws://${host}:${addr.port}`,
    })
    return addr
  }

  /**
   * Stop accepting, close every client with 1001, wait up to `shutdownTimeout` for them to
   * go, terminate the rest, flush and close the log. Idempotent: every call gets the same
   * promise.
   */
  close(reason = 'close() called'): Promise<void> {
    if (this.#closing === undefined) this.#closing = this.#doClose(reason)
    return this.#closing
  }

  async #doClose(reason: string): Promise<void> {
    if (this.#listening) {
      try {
        await this.#listening
      } catch {}
    }
    if (this.#state === 'NEW' || this.#state === 'CLOSED') {
      this.#state = 'CLOSED'
      await this.activityLog?.close()
      return
    }
    this.#state = 'CLOSING'
    this.events.trigger('ws', 'server.closing', { reason, clients: this.#clients.size })
    this.#stopTimers()
    const httpClosed = new Promise<void>((resolve) => this.#http.close(() => resolve()))
    this.#http.closeIdleConnections()

    if (this.#clients.size > 0) {
      const gone = new Promise<void>((resolve) => {
        this.#allGone = resolve
      })
      for (const c of this.#clients) c.close(CloseCode.GOING_AWAY, 'server shutting down')
      let timer: NodeJS.Timeout | undefined
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(resolve, this.config.shutdownTimeout, true)
      })
      if (await Promise.race([gone.then(() => false), timedOut])) {
        for (const c of this.#clients)
          c.terminate(CloseCode.GOING_AWAY, 'server shutting down (timed out)')
        await gone
      }
      clearTimeout(timer)
    }
    this.#http.closeAllConnections()
    await httpClosed
    this.#state = 'CLOSED'
    this.events.trigger('ws', 'server.closed', { reason })
    await this.activityLog?.close()
  }

  #startTimers(): void {
    const cfg = this.config
    if (cfg.timeout > 0) {
      this.#heartbeat = setInterval(() => this.#sweepHeartbeat(), cfg.timeout * 1000)
      this.#heartbeat.unref()
    }
    if (cfg.idleTimeout > 0) {
      const every = Math.max(100, Math.min(5000, (cfg.idleTimeout * 1000) / 4))
      this.#idleSweep = setInterval(() => this.#sweepIdle(), every)
      this.#idleSweep.unref()
    }
  }

  #stopTimers(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat)
    if (this.#idleSweep) clearInterval(this.#idleSweep)
  }

  #sweepHeartbeat(): void {
    const max = this.config.heartbeatMissed
    for (const c of this.#clients) {
      if (c.missedPongs >= max) {
        c.close(
          CloseCode.HEARTBEAT_TIMEOUT,
          `heartbeat timeout: ${c.missedPongs} pings unanswered`,
          true,
        )
      } else {
        c.missedPongs++
        c.ping()
      }
    }
  }

  #sweepIdle(): void {
    const limit = this.config.idleTimeout * 1000
    const now = Date.now()
    for (const c of this.#clients) {
      if (c.closeCode === undefined && now - c.lastSeen > limit) {
        c.close(
          CloseCode.IDLE_TIMEOUT,
          `idle timeout: nothing received for ${this.config.idleTimeout}s`,
          true,
        )
      }
    }
  }

  #reject(
    socket: Duplex,
    req: IncomingMessage,
    ip: string,
    status: number,
    reason: string,
    headers?: Record<string, string>,
  ): void {
    rejectUpgrade(socket, status, reason, headers)
    const s = req.socket
    this.events.trigger('ws', 'client.rejected', {
      ip,
      port: s.remotePort ?? 0,
      status,
      reason,
      origin: header(req, 'origin'),
      userAgent: header(req, 'user-agent'),
    })
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    // Until ws takes the socket over, a reset must not become an uncaught 'error'.
    socket.on('error', noop)
    const cfg = this.config
    const ip = clientAddress(req, cfg.trustProxy)
    const refusal = this.#admission(req, ip)
    if (refusal !== undefined) {
      this.#reject(socket, req, ip, refusal.status, refusal.reason, refusal.headers)
      return
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onConnection(ws, req, socket, ip))
  }

  /** Why an upgrade from `ip` must be refused before the 101, or undefined to accept it. */
  #admission(
    req: IncomingMessage,
    ip: string,
  ): { status: number; reason: string; headers?: Record<string, string> } | undefined {
    const cfg = this.config
    if (this.#state !== 'RUNNING') return { status: 503, reason: 'server shutting down' }
    if (!originAllowed(header(req, 'origin'), cfg.allowedOrigins))
      return { status: 403, reason: 'origin not allowed' }
    const limits = cfg.limits
    const retry = { 'Retry-After': '5' }
    if (limits.maxConnections > 0 && this.#clients.size >= limits.maxConnections) {
      return { status: 503, reason: 'server at capacity', headers: retry }
    }
    if (
      limits.maxConnectionsPerIp > 0 &&
      (this.#perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp
    ) {
      return { status: 503, reason: 'too many connections from this address', headers: retry }
    }
    return undefined
  }

  /** ws found the handshake invalid (bad method, key, version, …): answer and log it. */
  #onHandshakeError(err: Error & { code?: string }, socket: Duplex, req: IncomingMessage): void {
    // ws hands over only the message: 405 for a bad method; a version we do not speak is
    // 426 with the versions we do (RFC 6455 §4.4); anything else malformed is 400.
    const badVersion =
      /version/i.test(err.message) && req.headers['sec-websocket-version'] !== undefined
    const status = /method/i.test(err.message) ? 405 : badVersion ? 426 : 400
    const headers: Record<string, string> =
      status === 405
        ? { Allow: 'GET' }
        : /version/i.test(err.message)
          ? { ...(badVersion ? { Upgrade: 'websocket' } : {}), 'Sec-WebSocket-Version': '13, 8' }
          : {}
    this.#reject(
      socket,
      req,
      clientAddress(req, this.config.trustProxy),
      status,
      err.message,
      headers,
    )
  }

  /** A malformed HTTP request or a header timeout, before any upgrade. */
  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const s = socket as Socket
    const ip = normalizeIp(s.remoteAddress)
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy()
      return
    }
    const status =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'ERR_HTTP_HEADERS_TIMEOUT'
        ? 408
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? 431
          : 400
    const reason =
      status === 408
        ? 'request headers timed out'
        : `bad HTTP request (${err.code ?? 'parse error'})`
    rejectUpgrade(socket, status, reason)
    this.events.trigger('ws', 'client.rejected', {
      ip,
      port: s.remotePort ?? 0,
      status,
      reason,
      origin: undefined,
      userAgent: undefined,
    })
  }

  #onConnection(ws: WebSocket, req: IncomingMessage, socket: Socket, ip: string): void {
    socket.off('error', noop)
    const conn = new Connection(ws, socket, {
      id: `${this.#idPrefix}-${(++this.#nextId).toString(36)}`,
      ip,
      port: req.socket.remotePort ?? 0,
      origin: header(req, 'origin'),
      userAgent: header(req, 'user-agent'),
      path: req.url ?? '/',
      maxBufferedBytes: this.config.limits.maxBufferedBytes,
      hooks: this.#hooks,
    })
    this.#clients.add(conn)
    this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1)

    ws.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(conn, data, isBinary))
    ws.on('pong', () => {
      conn.missedPongs = 0
    })
    ws.on('error', (err: Error & { code?: string }) => {
      const closeCode = closeCodeForWsError(err)
      if (conn.closeCode === undefined) {
        conn.closeCode = closeCode
        conn.closeReason = err.message
      }
      this.events.trigger('ws', 'client.error', {
        client: conn,
        code: err.code ?? 'ERR',
        message: err.message,
        closeCode,
      })
    })
    ws.once('close', (code: number, reason: Buffer) => this.#onClose(conn, code, reason))

    this.events.trigger('ws', 'client.connected', { client: conn })
    if (this.#state !== 'RUNNING') conn.close(CloseCode.GOING_AWAY, 'server shutting down')
  }

  #onMessage(conn: Connection, data: Buffer, binary: boolean): void {
    conn.messagesIn++
    conn.bytesIn += data.length
    const now = Date.now()
    conn.lastSeen = now
    conn.missedPongs = 0
    const rate = this.config.limits.rateLimit
    if (rate > 0 && !this.#admitRate(conn, now, rate)) return
    this.events.trigger('ws', 'message.received', new MessageEvent(conn, data, binary))
    this.#behaviour(conn, data, binary)
  }

  /** Token bucket: `rate` per second, bursts up to 2×. False when the message is refused. */
  #admitRate(conn: Connection, now: number, rate: number): boolean {
    const burst = rate * 2
    if (conn.tokensAt === 0) {
      conn.tokens = burst
    } else {
      conn.tokens = Math.min(burst, conn.tokens + ((now - conn.tokensAt) * rate) / 1000)
    }
    conn.tokensAt = now
    if (conn.tokens >= 1) {
      conn.tokens -= 1
      return true
    }
    if (this.config.limits.rateLimitAction === 'close') {
      if (conn.closeCode === undefined)
        conn.close(CloseCode.POLICY_VIOLATION, `rate limit exceeded (${rate} messages/s)`, true)
      return false
    }
    // Drop, and report once per second per client rather than once per message.
    if (conn.droppedInWindow++ === 0) {
      setTimeout(() => {
        const n = conn.droppedInWindow
        conn.droppedInWindow = 0
        this.events.trigger('ws', 'message.dropped', {
          client: conn,
          reason: `rate limit (${rate} messages/s)`,
          dropped: n,
        })
      }, 1000).unref()
    }
    return false
  }

  #onSent(conn: Connection, bytes: number, binary: boolean): void {
    this.events.trigger('ws', 'message.sent', { client: conn, bytes, binary })
  }

  #onClose(conn: Connection, code: number, reason: Buffer): void {
    if (!this.#clients.delete(conn)) return
    const n = (this.#perIp.get(conn.ip) ?? 1) - 1
    if (n <= 0) this.#perIp.delete(conn.ip)
    else this.#perIp.set(conn.ip, n)
    const serverFirst = conn.closeCode !== undefined
    this.events.trigger('ws', 'client.disconnected', {
      client: conn,
      code: serverFirst ? conn.closeCode! : code,
      reason: serverFirst ? (conn.closeReason ?? '') : reason.toString('utf8'),
      initiator: serverFirst ? 'server' : 'client',
      durationMs: Date.now() - conn.connectedAt,
      messagesIn: conn.messagesIn,
      messagesOut: conn.messagesOut,
      bytesIn: conn.bytesIn,
      bytesOut: conn.bytesOut,
    })
    if (this.#clients.size === 0 && this.#allGone) {
      const done = this.#allGone
      this.#allGone = undefined
      done()
    }
  }
}

type Duplex = import('node:stream').Duplex

function noop(): void {}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Create a server (not yet listening). */
export function createServer(options: WirelogOptions = {}, deps: ServerDeps = {}): WirelogServer {
  return new WirelogServer(options, deps)
}
