/**
 * The server: wires the HTTP listener, the request router, the admission pipeline, the
 * connection registry and the behaviours together, and owns the lifecycle
 * (`NEW → RUNNING → CLOSING → CLOSED`) and graceful shutdown. It triggers events; it never
 * formats a log line (the activity log is the bus's recorder).
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import {
  type AdmissionDecision,
  type AdmissionHook,
  type AdmissionRequest,
  Capacity,
  checkCapacity,
  checkHandshake,
  offeredProtocols,
  originAllowed,
  type Reject,
  reject,
  runHooks,
} from './admission.js'
import { type Authenticator, createAuthenticator } from './auth/index.js'
import { createAuthorizer, loadRules } from './auth/permissions.js'
import type { Behaviour } from './behaviour.js'
import { echo, silent } from './behaviours/echo.js'
import { createBroker } from './broker/index.js'
import type { Broker, HistoryResult, PresenceEntry } from './broker/types.js'
import { CloseCode } from './close-codes.js'
import { type Config, ConfigError, resolveConfig, type WirelogOptions } from './config.js'
import {
  type Client,
  type ClientUser,
  Connection,
  type ConnectionHooks,
  type ConnectionPolicy,
  normalizeIp,
} from './connection.js'
import { EventBus, emit, type MessageReceived, subscriptionVersion } from './events.js'
import { Forwarder, type ForwardStats } from './forward.js'
import { cleanupHandlers, type LoadedHandler, loadHandlers } from './handlers/index.js'
import { addHealthRoutes } from './http/health.js'
import { ServerMetrics } from './http/metrics.js'
import { rejectUpgrade } from './http/raw.js'
import {
  type RouteAccess,
  type RouteHandler,
  type RouteOptions,
  Router,
  send,
  type UpgradeHandler,
} from './http/router.js'
import { ActivityLog, type Logger } from './log/activity-log.js'
import { type ClientAddress, clientAddress, compileTrust, type TrustFn } from './proxy.js'
import { loadSchema, PROTOCOL } from './pubsub/protocol.js'
import { PubSub } from './pubsub/router.js'
import { createRedactor, type Redactor } from './redact.js'
import { type CertificateInfo, createTlsServer, reloadTls, tlsEnabled } from './tls.js'
import type { Webhooks } from './webhooks/delivery.js'
import { type WebSocket, WebSocketServer } from './ws-module.js'

export type ServerState = 'NEW' | 'RUNNING' | 'CLOSING' | 'CLOSED'

/** Longest an async admission hook may take before the upgrade is refused with 503. */
const ADMISSION_TIMEOUT_MS = 10_000

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
      data: this.binary ? this.raw.toString('base64') : this.data,
      binary: this.binary,
      bytes: this.bytes,
    }
  }
}

export interface ServerDeps {
  /** Replaces the activity log (tests, embedding); `null` turns it off. */
  activityLog?: ActivityLog | null
  /** The broker for topics, sessions and presence (default: one from `broker` options). */
  broker?: Broker
  /** Where the `/metrics` text comes from (default: this server's registry; `--workers`: the primary's sum). */
  metricsText?: () => Promise<string>
}

/** Whom `send()` addresses: a client (or its id), or every connection of a user. */
export type SendTarget = Client | string | { readonly client: string } | { readonly user: string }

const NO_LOG: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => NO_LOG,
}

export class WirelogServer {
  readonly config: Config
  /** The event bus: register handlers here. */
  readonly events: EventBus
  /** The activity log (undefined when logging is off). */
  readonly activityLog: ActivityLog | undefined
  /** Write your own lines into the activity log (`server.log.info('…', { k: v })`). */
  readonly log: Logger

  #state: ServerState = 'NEW'
  #http: HttpServer
  #wss: WebSocketServer
  #router: Router
  #capacity = new Capacity()
  #clients = new Set<Connection>()
  #behaviours = new Map<Connection, Behaviour>()
  #idPrefix = randomBytes(4).toString('hex')
  #nextId = 0
  #default: Behaviour
  #protocols: ReadonlyMap<string, Behaviour>
  #admit: AdmissionHook[]
  #trust: TrustFn | undefined
  #redact: Redactor
  #policy: ConnectionPolicy
  #auth: Authenticator | undefined
  #pubsub!: PubSub
  #forward: Forwarder | undefined
  #dashboard: { close(): void } | undefined
  #webhooks: Webhooks | undefined
  #metrics: ServerMetrics | undefined
  #handlers: LoadedHandler[] = []
  #certificate: CertificateInfo | undefined
  #expiry = new Map<Connection, NodeJS.Timeout>()
  #heartbeat: NodeJS.Timeout | undefined
  #idleSweep: NodeJS.Timeout | undefined
  #listening: Promise<AddressInfo> | undefined
  #closing: Promise<void> | undefined
  #allGone: (() => void) | undefined
  #sentVersion = -1
  #sentWanted = false
  #hooks: ConnectionHooks = {
    message: (conn, data, binary) => this.#onMessage(conn, data, binary),
    sent: (conn, bytes, binary, data, frame) => {
      // Per sent message (every fan-out recipient): ask the bus only when it changed.
      const v = subscriptionVersion(this.events)
      if (v !== this.#sentVersion) {
        this.#sentVersion = v
        this.#sentWanted = this.events.has('ws', 'message.sent')
      }
      if (this.#sentWanted)
        emit(this.events, 'message.sent', {
          client: conn,
          bytes,
          binary,
          data: data ?? frame?.subarray(frame.length - bytes),
        })
    },
    dropped: (conn, dropped, reason) =>
      emit(this.events, 'message.dropped', { client: conn, reason, dropped }),
    error: (conn, code, message, closeCode) =>
      emit(this.events, 'client.error', { client: conn, code, message, closeCode }),
    closed: (conn, info) => this.#onClose(conn, info),
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
    // Recording starts now: events triggered before listen() are logged once the file opens.
    this.activityLog?.attach(this.events)
    if (Forwarder.wanted(cfg)) {
      this.#forward = new Forwarder(cfg)
      this.#forward.attach(this.events)
    }
    this.log = this.activityLog?.logger('app') ?? NO_LOG
    this.#default =
      typeof cfg.behaviour === 'object'
        ? cfg.behaviour
        : cfg.behaviour === 'silent'
          ? silent()
          : echo(cfg.echoPrefix)
    this.#trust = compileTrust(cfg.trustProxy)
    try {
      this.#auth = cfg.auth.mode === 'none' ? undefined : createAuthenticator(cfg.auth)
      const rules = cfg.pubsub.rules ? loadRules(cfg.pubsub.rules) : undefined
      const ps = cfg.pubsub
      this.#pubsub = new PubSub(
        {
          maxSubscriptions: ps.maxSubscriptions,
          maxDataBytes: ps.maxDataBytes,
          sessionTtl: ps.sessionTtl * 1000,
          replayLimit: Math.max(1, ps.historySize),
          dedupeTtl: ps.dedupeTtl * 1000,
          reorderWait: 200,
        },
        {
          broker: deps.broker ?? createBroker(cfg),
          authorizer: createAuthorizer({
            authRequired: this.#auth !== undefined,
            rules,
            hook: ps.authorize,
          }),
          verify: this.#auth?.verify,
          refreshed: (client, user) => this.#refreshed(client as Connection, user),
          node: this.#idPrefix,
        },
      )
    } catch (err) {
      throw err instanceof TypeError ? new ConfigError(err.message) : err
    }
    if (cfg.behaviour === 'pubsub') this.#default = this.#pubsub
    this.#protocols = new Map([
      [PROTOCOL, this.#pubsub as Behaviour],
      ...Object.entries(cfg.protocols),
    ])
    this.#admit =
      cfg.admit === undefined ? [] : Array.isArray(cfg.admit) ? [...cfg.admit] : [cfg.admit]
    if (this.#auth) {
      const auth = this.#auth
      this.#admit.unshift((req) => auth.admit(req))
    }
    this.#redact = createRedactor(cfg.log.redact)
    const limits = cfg.limits
    this.#policy = {
      maxBufferedBytes: limits.maxBufferedBytes,
      rateLimit: limits.rateLimit,
      rateLimitAction: limits.rateLimitAction,
    }

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
      handleProtocols: (offered: Set<string>) => {
        for (const p of offered) if (this.#protocols.has(p)) return p
        return false
      },
      closeTimeout: Math.max(1000, Math.min(cfg.shutdownTimeout, 30_000)),
    } as ConstructorParameters<typeof WebSocketServer>[0])
    // Every handshake problem whose status we know is refused before ws sees the request
    // (admission's checkHandshake); what ws still finds (a bad extensions header) is a 400.
    this.#wss.on('wsClientError', (err: Error, socket: Duplex, req: IncomingMessage) =>
      this.#refuse(socket, req, clientAddress(req, this.#trust), reject(400, err.message)),
    )

    this.#router = new Router({
      adminToken: cfg.adminToken,
      loopbackOnly: () => isLoopback(this.address()?.address ?? cfg.host),
      onError: (path, error) =>
        emit(this.events, 'handler.failed', { event: `http:${path}`, error }),
    })
    // The browser build of `wirelog/client`, so a page can `import … from '/wirelog-client.js'`.
    this.#router.add('/wirelog-client.js', (_req, res) => serveClientLibrary(res))
    if (cfg.health !== 'off') {
      this.#router.add('/health', (req, res, ctx) => this.#health(req, res, ctx.admin), {
        access: cfg.health === 'admin' ? 'admin' : 'public',
      })
    }
    addHealthRoutes((p, h, o) => this.#router.add(p, h, o), this, cfg.health)
    if (cfg.metrics) {
      const metrics = new ServerMetrics(this.events, this, deps.metricsText)
      this.#metrics = metrics
      this.#router.add('/metrics', (req, res) => metrics.serve(req, res), { access: 'admin' })
    }

    const httpOptions = {
      headersTimeout: limits.headersTimeout,
      requestTimeout: Math.max(limits.headersTimeout, 10_000),
      // Node checks the two timeouts above only this often (default 30 s).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeout),
      keepAliveTimeout: 5000,
    }
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => this.#onRequest(req, res)
    if (tlsEnabled(cfg.tls)) {
      const tls = createTlsServer(cfg.tls, httpOptions, onRequest, (r) =>
        emit(this.events, 'client.rejected', {
          ...r,
          proxy: undefined,
          path: undefined,
          origin: undefined,
          userAgent: undefined,
        }),
      )
      this.#http = tls.server
      this.#certificate = tls.info
    } else this.#http = createHttpServer(httpOptions, onRequest)
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

  /** The broker of topics, sessions and presence (`connected`, `stats()` for readiness and metrics). */
  get broker(): Broker {
    return this.#pubsub.broker
  }

  /**
   * Prometheus metrics (undefined with `metrics: false`): `registry` (after `listen()`) and
   * `use()` to add metrics of your own. See docs/observability.md.
   */
  get metrics(): ServerMetrics | undefined {
    return this.#metrics
  }

  /** Event forwarding per destination (empty when none is configured). */
  get forwarding(): ForwardStats[] {
    return this.#forward?.stats() ?? []
  }

  /**
   * Outgoing webhooks (`stats()` per endpoint); undefined when none is configured, and
   * until `listen()` has loaded them.
   */
  get webhooks(): Pick<Webhooks, 'stats'> | undefined {
    return this.#webhooks
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

  /**
   * The underlying HTTP server (for its settings and events). Add HTTP routes with
   * `route()`: a `'request'` listener of your own answers only requests no route matched.
   */
  get httpServer(): HttpServer {
    return this.#http
  }

  /**
   * Answer plain HTTP requests for `path` (GET and HEAD unless `options.methods` says
   * otherwise). `access: 'admin'` protects it like the built-in admin endpoints. Returns a
   * function that removes the route.
   */
  route(path: string, handler: RouteHandler, options?: RouteOptions): () => void {
    return this.#router.add(path, handler, options)
  }

  /**
   * Take WebSocket upgrades on `path` away from the client pipeline: `handler` gets the
   * request and socket (e.g. for a `WebSocketServer({ noServer: true })` of its own). Such
   * connections are not clients: not counted against the caps, not logged as client
   * traffic. `access: 'admin'` refuses non-admins with 401/403 (logged as a rejection).
   */
  upgradeRoute(
    path: string,
    handler: UpgradeHandler,
    options?: { access?: RouteAccess },
  ): () => void {
    return this.#router.addUpgrade(path, handler, options)
  }

  /**
   * Publish `data` (any JSON value) on `topic` to every subscriber, on every node. Resolves
   * with the message's sequence number and how many subscribers on this node got it.
   */
  publish(
    topic: string,
    data: unknown,
  ): Promise<{ seq: number; epoch: string; recipients: number }> {
    return this.#pubsub.publish(topic, data)
  }

  /**
   * Send a direct message (`{"op":"direct",…}`) to a `wirelog.v1` client (the client, or its
   * id) or to every connection of a user, on any node. Resolves with the number of
   * connections it went to.
   */
  send(to: SendTarget, data: unknown): Promise<number> {
    const target =
      typeof to === 'string'
        ? { client: to }
        : 'id' in to && typeof to.id === 'string'
          ? { client: to.id }
          : to
    return this.#pubsub.send(target as { client: string } | { user: string }, data)
  }

  /** Who is subscribed to `topic`, on every node. */
  presence(topic: string): Promise<PresenceEntry[]> {
    return this.#pubsub.presence(topic)
  }

  /** A topic's retained history after `since` (default: all). */
  history(topic: string, options: { since?: number; limit?: number } = {}): Promise<HistoryResult> {
    return this.#pubsub.history(topic, options.since, options.limit)
  }

  /** The topics and patterns a `wirelog.v1` client is subscribed to. */
  subscriptions(client: Client): string[] {
    return this.#pubsub.subscriptions(client)
  }

  /** The TLS certificate in use (fingerprint, subject, expiry), or undefined without TLS. */
  get certificate(): CertificateInfo | undefined {
    return this.#certificate
  }

  /**
   * Read the TLS certificate, key and CA files again and use them for new connections
   * (open ones keep theirs); logged. A bad file keeps the previous certificate: logged as
   * an error, and the promise rejects. Without TLS, resolves with undefined.
   */
  async reloadTls(): Promise<CertificateInfo | undefined> {
    if (this.#certificate === undefined) return undefined
    const log = this.activityLog?.logger('tls')
    try {
      this.#certificate = reloadTls(this.#http, this.config.tls)
    } catch (err) {
      const error = (err as Error).message
      log?.error('certificate reload failed, keeping the previous one', {
        error,
        fingerprint: this.#certificate.fingerprint,
      })
      throw err
    }
    log?.info('certificate reloaded', { ...this.#certificate })
    return this.#certificate
  }

  /** Add an admission hook, run before the 101 after the built-in rules (see `AdmissionHook`). */
  admit(hook: AdmissionHook): () => void {
    if (typeof hook !== 'function') throw new TypeError('admit(): the hook must be a function')
    this.#admit.push(hook)
    return () => {
      this.#admit = this.#admit.filter((h) => h !== hook)
    }
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
    try {
      await this.activityLog?.open()
      await this.#forward?.start()
      // Loaded only when configured; recording starts before server.listening.
      if (cfg.webhooks.length > 0) {
        const { Webhooks } = await import('./webhooks/delivery.js')
        this.#webhooks = new Webhooks(cfg, this.events)
      }
      // Behaviours (the pubsub router's broker) are ready before the first client can arrive.
      for (const b of this.#allBehaviours()) await b.attach?.(this)
      // Loaded only when on: a server without it never reads the page's code.
      if (cfg.dashboard)
        this.#dashboard = (await import('./http/dashboard/index.js')).attachDashboard(this)
      // Handler modules see a server whose broker is ready and which is not yet bound.
      this.#handlers = await loadHandlers(cfg.handlers, this)
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => reject(err)
        this.#http.once('error', onError)
        this.#http.listen({ port: cfg.port, host: cfg.host, backlog: cfg.backlog }, () => {
          this.#http.off('error', onError)
          resolve()
        })
      })
    } catch (err) {
      this.#state = 'CLOSED'
      this.#dashboard?.close()
      if (this.#http.listening) await new Promise((r) => this.#http.close(r))
      await this.#cleanupHandlers()
      for (const b of this.#allBehaviours()) await b.detach?.()?.catch?.(() => {})
      await this.#webhooks?.close(0)
      await this.activityLog?.close()
      await this.#forward?.close()
      throw err
    }
    this.#http.on('error', (err) =>
      process.emitWarning(`wirelog: HTTP server error: ${err.message}`, 'WirelogWarning'),
    )
    this.#state = 'RUNNING'
    this.#startTimers()
    // prom-client (~70 ms to load) comes in once the port is bound, not before it: the
    // counts are plain numbers from the start, and a scrape waits for the load.
    const metrics = this.#metrics
    if (metrics)
      setImmediate(() =>
        metrics
          .load()
          .catch((err: Error) =>
            process.emitWarning(`wirelog: metrics: ${err.message}`, 'WirelogWarning'),
          ),
      )
    // The wirelog.v1 frame schema (zod's v4 API, ~45 ms and ~14 MiB to load) the same way when
    // every client speaks it; otherwise the first wirelog.v1 frame loads it.
    if (cfg.behaviour === 'pubsub')
      setImmediate(() =>
        loadSchema().catch((err: Error) =>
          process.emitWarning(`wirelog: pubsub: ${err.message}`, 'WirelogWarning'),
        ),
      )
    const addr = this.address()!
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
    emit(this.events, 'server.listening', {
      address: addr.address,
      port: addr.port,
      url: `${this.#certificate ? 'wss' : 'ws'}://${host}:${addr.port}`,
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
      // Never listened: lines recorded so far still reach the file.
      if (this.activityLog && this.activityLog.stats.buffered > 0) {
        try {
          await this.activityLog.open()
        } catch {}
      }
      await this.activityLog?.close()
      await this.#forward?.close()
      return
    }
    this.#state = 'CLOSING'
    emit(this.events, 'server.closing', { reason, clients: this.#clients.size })
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
    for (const b of this.#allBehaviours()) {
      try {
        await b.detach?.()
      } catch (error) {
        emit(this.events, 'handler.failed', { event: `behaviour:${b.name}.detach`, error })
      }
    }
    await this.#cleanupHandlers()
    this.#state = 'CLOSED'
    emit(this.events, 'server.closed', { reason })
    // Deliveries get the shutdown grace; what they record (dead letters) reaches the log.
    await this.#webhooks?.close(this.config.shutdownTimeout)
    await this.activityLog?.close()
    await this.#forward?.close()
  }

  /** Handler modules' cleanups, once: after the last client, before the log closes. */
  async #cleanupHandlers(): Promise<void> {
    const loaded = this.#handlers
    this.#handlers = []
    await cleanupHandlers(loaded, (file, error) =>
      emit(this.events, 'handler.failed', { event: `handler:${file}.cleanup`, error }),
    )
  }

  #allBehaviours(): Behaviour[] {
    return [...new Set([this.#default, ...this.#protocols.values()])]
  }

  #startTimers(): void {
    const cfg = this.config
    if (cfg.timeout > 0) {
      this.#heartbeat = setInterval(() => {
        for (const c of this.#clients) c.heartbeat(cfg.heartbeatMissed)
      }, cfg.timeout * 1000)
      this.#heartbeat.unref()
    }
    if (cfg.idleTimeout > 0) {
      const every = Math.max(100, Math.min(5000, (cfg.idleTimeout * 1000) / 4))
      this.#idleSweep = setInterval(() => {
        const now = Date.now()
        for (const c of this.#clients) c.checkIdle(now, cfg.idleTimeout)
      }, every)
      this.#idleSweep.unref()
    }
  }

  #stopTimers(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat)
    if (this.#idleSweep) clearInterval(this.#idleSweep)
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.#router.handle(req, res)) return
    // Another 'request' listener (added on httpServer) answers what no route matched.
    if (this.#http.listenerCount('request') > 1) return
    const body = 'wirelog: this is a WebSocket endpoint; connect with a WebSocket client.\n'
    res.writeHead(426, {
      upgrade: 'websocket',
      connection: 'Upgrade',
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    })
    res.end(body)
  }

  #health(_req: IncomingMessage, res: ServerResponse, admin: boolean): void {
    const ok = this.#state === 'RUNNING'
    send(res, ok ? 200 : 503, {
      status: ok ? 'ok' : 'unavailable',
      state: this.#state,
      ...(admin ? { clients: this.#clients.size } : {}),
    })
  }

  /** Answer a refused upgrade and record it. */
  #refuse(socket: Duplex, req: IncomingMessage, addr: ClientAddress, r: Reject): void {
    rejectUpgrade(socket, r.status, r.reason, r.headers)
    emit(this.events, 'client.rejected', {
      ip: addr.ip,
      port: req.socket.remotePort ?? 0,
      proxy: addr.proxy,
      status: r.status,
      reason: r.reason,
      path: req.url === undefined ? undefined : this.#redact.path(req.url),
      origin: header(req, 'origin'),
      userAgent: header(req, 'user-agent'),
    })
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    // Until ws takes the socket over, a reset must not become an uncaught 'error'.
    socket.on('error', noop)
    const addr = clientAddress(req, this.#trust)
    const special = this.#router.upgradeFor(req)
    if (special !== undefined) {
      if ('handler' in special) {
        socket.off('error', noop)
        special.handler(req, socket, head)
      } else this.#refuse(socket, req, addr, reject(special.status, special.reason))
      return
    }
    const refusal =
      checkHandshake(req) ??
      (this.#state !== 'RUNNING' ? reject(503, 'server shutting down') : undefined) ??
      (originAllowed(header(req, 'origin'), this.config.allowedOrigins)
        ? undefined
        : reject(403, 'origin not allowed')) ??
      checkCapacity(this.#capacity, addr.ip, this.config.limits)
    if (refusal !== undefined) {
      this.#refuse(socket, req, addr, refusal)
      return
    }
    // The slot is held from here until the TCP connection is gone, whatever happens.
    this.#capacity.take(addr.ip)
    socket.once('close', () => this.#capacity.release(addr.ip))
    if (this.#admit.length === 0) this.#upgrade(req, socket, head, addr, undefined)
    else this.#admitAsync(req, socket, head, addr)
  }

  async #admitAsync(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    addr: ClientAddress,
  ): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const request: AdmissionRequest = {
      ip: addr.ip,
      port: req.socket.remotePort ?? 0,
      proxy: addr.proxy,
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      origin: header(req, 'origin'),
      userAgent: header(req, 'user-agent'),
      protocols: offeredProtocols(req) ?? [],
      request: req,
    }
    let timer: NodeJS.Timeout | undefined
    let decision: AdmissionDecision
    try {
      decision = await Promise.race([
        runHooks(this.#admit, request),
        new Promise<AdmissionDecision>((resolve) => {
          timer = setTimeout(resolve, ADMISSION_TIMEOUT_MS, reject(503, 'admission timed out'))
        }),
      ])
    } catch (error) {
      emit(this.events, 'handler.failed', { event: 'ws:client.rejected', error })
      decision = reject(500, 'admission hook failed')
    } finally {
      clearTimeout(timer)
    }
    if (socket.destroyed || !socket.writable) {
      // The client left while we were deciding: record it, there is no one to answer.
      return this.#refuse(socket, req, addr, {
        accept: false,
        status: 499,
        reason: 'client closed the connection during admission',
      })
    }
    if (!decision.accept) return this.#refuse(socket, req, addr, decision)
    if (this.#state !== 'RUNNING')
      return this.#refuse(socket, req, addr, reject(503, 'server shutting down'))
    this.#upgrade(req, socket, head, addr, decision)
  }

  #upgrade(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    addr: ClientAddress,
    decision: AdmissionDecision | undefined,
  ): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) =>
      this.#onConnection(ws, req, socket, addr, decision),
    )
  }

  /** A malformed HTTP request or a header timeout, before any upgrade. */
  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const s = socket as Socket
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
    emit(this.events, 'client.rejected', {
      ip: normalizeIp(s.remoteAddress),
      port: s.remotePort ?? 0,
      proxy: undefined,
      status,
      reason,
      path: undefined,
      origin: undefined,
      userAgent: undefined,
    })
  }

  #onConnection(
    ws: WebSocket,
    req: IncomingMessage,
    socket: Socket,
    addr: ClientAddress,
    decision: AdmissionDecision | undefined,
  ): void {
    socket.off('error', noop)
    const accepted = decision?.accept ? decision : undefined
    const conn = new Connection(
      ws,
      socket,
      {
        id: `${this.#idPrefix}-${(++this.#nextId).toString(36)}`,
        ip: addr.ip,
        port: req.socket.remotePort ?? 0,
        proxy: addr.proxy,
        origin: header(req, 'origin'),
        userAgent: header(req, 'user-agent'),
        path: this.#redact.path(req.url ?? '/'),
        user: accepted?.user,
        context: { ...accepted?.context },
      },
      this.#hooks,
      this.#policy,
    )
    const behaviour = this.#protocols.get(ws.protocol) ?? this.#default
    this.#clients.add(conn)
    this.#armExpiry(conn)
    this.#behaviours.set(conn, behaviour)
    emit(this.events, 'client.connected', { client: conn })
    if (this.#state !== 'RUNNING') {
      conn.close(CloseCode.GOING_AWAY, 'server shutting down')
      return
    }
    if (behaviour.open) this.#callBehaviour(behaviour, 'open', () => behaviour.open!(conn))
  }

  /** Close a client with 4003 when its credential expires (unless refreshed first). */
  #armExpiry(conn: Connection): void {
    const old = this.#expiry.get(conn)
    if (old) clearTimeout(old)
    this.#expiry.delete(conn)
    const at = conn.user?.expiresAt
    if (at === undefined) return
    // setTimeout holds at most 2^31-1 ms; a later expiry re-arms when that fires.
    const ms = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1)
    const t = setTimeout(() => {
      if ((conn.user?.expiresAt ?? 0) > Date.now()) return this.#armExpiry(conn)
      this.#expiry.delete(conn)
      emit(this.events, 'auth.expired', { client: conn })
      conn.close(CloseCode.AUTH_EXPIRED, 'credential expired', true)
    }, ms)
    t.unref()
    this.#expiry.set(conn, t)
  }

  #refreshed(conn: Connection, user: ClientUser): void {
    conn.setUser(user)
    this.#armExpiry(conn)
    emit(this.events, 'auth.refreshed', { client: conn, expiresAt: user.expiresAt })
  }

  #onMessage(conn: Connection, data: Buffer, binary: boolean): void {
    emit(this.events, 'message.received', new MessageEvent(conn, data, binary))
    const behaviour = this.#behaviours.get(conn)
    if (behaviour === undefined) return
    try {
      behaviour.message(conn, data, binary)
    } catch (error) {
      emit(this.events, 'handler.failed', { event: `behaviour:${behaviour.name}.message`, error })
    }
  }

  #callBehaviour(b: Behaviour, what: string, fn: () => void): void {
    try {
      fn()
    } catch (error) {
      emit(this.events, 'handler.failed', { event: `behaviour:${b.name}.${what}`, error })
    }
  }

  #onClose(conn: Connection, info: Parameters<ConnectionHooks['closed']>[1]): void {
    if (!this.#clients.delete(conn)) return
    const timer = this.#expiry.get(conn)
    if (timer) {
      clearTimeout(timer)
      this.#expiry.delete(conn)
    }
    const behaviour = this.#behaviours.get(conn)
    this.#behaviours.delete(conn)
    emit(this.events, 'client.disconnected', info)
    if (behaviour?.close)
      this.#callBehaviour(behaviour, 'close', () => behaviour.close!(conn, info))
    if (this.#clients.size === 0 && this.#allGone) {
      const done = this.#allGone
      this.#allGone = undefined
      done()
    }
  }
}

let clientLibrary: Buffer | undefined

function serveClientLibrary(res: ServerResponse): void {
  clientLibrary ??= readFileSync(new URL('./client/index.js', import.meta.url))
  res.writeHead(200, {
    'content-type': 'text/javascript; charset=utf-8',
    'content-length': clientLibrary.length,
    'cache-control': 'public, max-age=300',
    // A module script from another origin (a page of yours, a file:// page) needs CORS.
    'access-control-allow-origin': '*',
  })
  res.end(clientLibrary)
}

function noop(): void {}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Whether `host` names only loopback (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || h.startsWith('127.') || h.startsWith('::ffff:127.')
}

/** Create a server (not yet listening). */
export function createServer(options: WirelogOptions = {}, deps: ServerDeps = {}): WirelogServer {
  return new WirelogServer(options, deps)
}
