/**
 * One client: identity, counters, liveness (heartbeat, idle), the inbound rate budget, close
 * bookkeeping and `send()` with a backpressure policy.
 *
 * The `ws` socket and the raw TCP socket stay private; behaviours and user code talk to a
 * client only through this class. Its state is private too: the server asks it to do things
 * (`heartbeat()`, `checkIdle()`, `close()`), it never writes the fields.
 */
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import { CloseCode } from './close-codes.js'
import type { ClientDisconnected } from './events.js'
import { closeCodeForWsError, failFastOnInvalidUtf8 } from './ws-adapter.js'

/** Who a client is, once admission (authentication) said so. */
export interface ClientUser {
  /** The user id (e.g. a JWT `sub`). */
  readonly id: string
  /** What was proven about the user (JWT claims, token entry), minus secrets. */
  readonly claims: Readonly<Record<string, unknown>>
  /** Epoch ms when the credential expires (the connection is closed with 4003 then, unless refreshed). */
  readonly expiresAt?: number
  /** Topic permissions the credential carries (patterns per operation). */
  readonly permissions?: Permissions
}

/** Topic patterns a user may use, per operation (see the topic grammar). */
export interface Permissions {
  readonly subscribe?: readonly string[]
  readonly publish?: readonly string[]
  readonly presence?: readonly string[]
  readonly history?: readonly string[]
  /** May send direct messages (to anyone when true). */
  readonly send?: boolean
}

/** What events say about a client. */
export interface ClientInfo {
  /** Unique within the process (and, with its prefix, across restarts). */
  readonly id: string
  /** Remote address, IPv4-mapped IPv6 shown as IPv4; behind a trusted proxy, the client's. */
  readonly ip: string
  readonly port: number
  /** The TCP peer's address when `ip` came from `X-Forwarded-For` (a trusted proxy). */
  readonly proxy: string | undefined
  readonly origin: string | undefined
  readonly userAgent: string | undefined
  /** Negotiated subprotocol ('' if none). */
  readonly protocol: string
  /** Request path of the upgrade, credential-like query parameters redacted. */
  readonly path: string
  /** The authenticated user, if any. */
  readonly user: ClientUser | undefined
  /** `Date.now()` at connect. */
  readonly connectedAt: number
  readonly messagesIn: number
  readonly messagesOut: number
  readonly bytesIn: number
  readonly bytesOut: number
}

/** `::ffff:127.0.0.1` → `127.0.0.1`; anything else unchanged. */
export function normalizeIp(ip: string | undefined): string {
  if (ip === undefined || ip === '') return 'unknown'
  if (
    ip.length > 7 &&
    ip.charCodeAt(0) === 58 /* : */ &&
    ip.startsWith('::ffff:') &&
    ip.includes('.')
  ) {
    return ip.slice(7)
  }
  return ip
}

/** A connected client as user code sees it: its facts plus what it may do with it. */
export interface Client extends ClientInfo {
  /** Per-connection data: what admission hooks returned, plus anything user code adds. */
  readonly context: Record<string, unknown>
  /** `ws` readyState: 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number
  /** Bytes queued for this client and not yet handed to the kernel. */
  readonly bufferedAmount: number
  /**
   * Send a message: a string as text, a Buffer as binary (or as text with `binary: false`).
   * Returns `'slow'` (and closes the client with 4000) when its queue passed
   * `limits.maxBufferedBytes`, `'closed'` when it is no longer open.
   */
  send(data: string | Buffer, binary?: boolean): SendResult
  /** Start the closing handshake with `code` (default 1000) and `reason`. */
  close(code?: number, reason?: string): void
}

export type SendResult = 'sent' | 'closed' | 'slow'

/** What a connection tells the server. One object per server, shared by every connection. */
export interface ConnectionHooks {
  /** A whole message arrived and passed the rate limit. */
  message(conn: Connection, data: Buffer, binary: boolean): void
  /** A message was handed to the socket: its content, or the whole frame it is the end of. */
  sent(
    conn: Connection,
    bytes: number,
    binary: boolean,
    data: string | Buffer | undefined,
    frame?: Buffer,
  ): void
  /** Messages over the rate limit were dropped (reported at most once per second). */
  dropped(conn: Connection, dropped: number, reason: string): void
  /** ws reported a protocol or socket error. */
  error(conn: Connection, code: string, message: string, closeCode: number): void
  /** The socket closed: exactly once. */
  closed(conn: Connection, info: ClientDisconnected): void
}

/** Per-server policy every connection applies. */
export interface ConnectionPolicy {
  maxBufferedBytes: number
  /** Messages per second (0 = unlimited); bursts up to 2×. */
  rateLimit: number
  rateLimitAction: 'drop' | 'close'
}

export interface ConnectionInit {
  id: string
  ip: string
  port: number
  proxy: string | undefined
  origin: string | undefined
  userAgent: string | undefined
  path: string
  user: ClientUser | undefined
  context: Record<string, unknown>
}

/** How long a forced close waits for the peer's close frame before cutting TCP. */
const FORCE_CLOSE_MS = 1000

export class Connection implements Client {
  readonly id: string
  readonly ip: string
  readonly port: number
  readonly proxy: string | undefined
  readonly origin: string | undefined
  readonly userAgent: string | undefined
  readonly path: string
  readonly connectedAt = Date.now()
  readonly context: Record<string, unknown>
  #user: ClientUser | undefined

  #messagesIn = 0
  #messagesOut = 0
  #bytesIn = 0
  #bytesOut = 0

  /** Heartbeat: pings sent and not yet answered. */
  #missedPongs = 0
  /** `Date.now()` of the last message received. */
  #lastSeen = this.connectedAt
  /** Token bucket for the inbound rate limit. */
  #tokens = 0
  #tokensAt = 0
  #droppedInWindow = 0
  #dropTimer: NodeJS.Timeout | undefined

  /** Set when the server starts the close (or ws fails the connection): what to report. */
  #closeCode: number | undefined
  #closeReason = ''
  #closed = false

  #ws: WebSocket
  #socket: Socket
  #corked = false
  #rawFrames: boolean | undefined
  #hooks: ConnectionHooks
  #policy: ConnectionPolicy

  constructor(
    ws: WebSocket,
    socket: Socket,
    init: ConnectionInit,
    hooks: ConnectionHooks,
    policy: ConnectionPolicy,
  ) {
    this.#ws = ws
    this.#socket = socket
    this.id = init.id
    this.ip = init.ip
    this.port = init.port
    this.proxy = init.proxy
    this.origin = init.origin
    this.userAgent = init.userAgent
    this.path = init.path
    this.#user = init.user
    this.context = init.context
    this.#hooks = hooks
    this.#policy = policy
    failFastOnInvalidUtf8(ws)
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(data, isBinary))
    ws.on('pong', () => {
      this.#missedPongs = 0
    })
    ws.on('error', (err: Error & { code?: string }) => this.#onError(err))
    ws.once('close', (code: number, reason: Buffer) => this.#onClose(code, reason))
  }

  get protocol(): string {
    return this.#ws.protocol
  }
  get user(): ClientUser | undefined {
    return this.#user
  }
  get messagesIn(): number {
    return this.#messagesIn
  }
  get messagesOut(): number {
    return this.#messagesOut
  }
  get bytesIn(): number {
    return this.#bytesIn
  }
  get bytesOut(): number {
    return this.#bytesOut
  }
  get readyState(): number {
    return this.#ws.readyState
  }
  get bufferedAmount(): number {
    // ws counts both its own queue and the socket's writable buffer.
    return this.#ws.bufferedAmount
  }
  /** Whether the close has started (by either side) or finished. */
  get closing(): boolean {
    return this.#closeCode !== undefined || this.#ws.readyState > 1
  }

  /**
   * Replace the authenticated identity (a token refresh). The user id may not change: a
   * connection is one user for its whole life.
   */
  setUser(user: ClientUser): void {
    if (this.#user !== undefined && this.#user.id !== user.id)
      throw new TypeError(`a connection's user cannot change (${this.#user.id} → ${user.id})`)
    this.#user = user
  }

  send(data: string | Buffer, binary = typeof data !== 'string'): SendResult {
    if (this.#ws.readyState !== 1) return 'closed'
    if (this.bufferedAmount > this.#policy.maxBufferedBytes) {
      this.close(CloseCode.SLOW_CONSUMER, 'slow consumer: outbound buffer cap reached', true)
      return 'slow'
    }
    this.#cork()
    this.#ws.send(data, { binary })
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length
    this.#messagesOut++
    this.#bytesOut += bytes
    this.#hooks.sent(this, bytes, binary, data)
    return 'sent'
  }

  /**
   * Hand a complete, pre-built server frame to the socket (fan-out: one frame built once for
   * every recipient). `payloadBytes` is what counts as sent. Same backpressure policy as
   * `send()`. Only valid without permessage-deflate on this connection.
   */
  sendFrame(frame: Buffer, payloadBytes: number, binary: boolean): SendResult {
    if (this.#ws.readyState !== 1) return 'closed'
    if (this.bufferedAmount > this.#policy.maxBufferedBytes) {
      this.close(CloseCode.SLOW_CONSUMER, 'slow consumer: outbound buffer cap reached', true)
      return 'slow'
    }
    this.#cork()
    this.#socket.write(frame)
    this.#messagesOut++
    this.#bytesOut += payloadBytes
    // The payload is the frame's tail; the hook cuts it out only if someone wants it.
    this.#hooks.sent(this, payloadBytes, binary, undefined, frame)
    return 'sent'
  }

  /** Whether frames may be written directly (no extension transforms the payload). */
  get rawFramesOk(): boolean {
    // Negotiated before the connection opened and fixed after; ws builds the string anew on
    // each read, and a fan-out asks once per recipient.
    this.#rawFrames ??= this.#ws.extensions === ''
    return this.#rawFrames
  }

  /** Each ws.send() is its own write; corking until the end of the tick makes one writev. */
  #cork(): void {
    if (this.#corked) return
    this.#corked = true
    this.#socket.cork()
    // One tick callback for every connection corked in this tick (a fan-out corks thousands).
    if (corkedThisTick.push(this) === 1) process.nextTick(uncorkAll)
  }

  /** @internal */
  uncork(): void {
    this.#corked = false
    this.#socket.uncork()
  }

  /**
   * Start the closing handshake. `force` also cuts TCP if the peer has not answered within
   * a second (a slow or dead peer would not read our close frame either). The first reason
   * given is the one reported.
   */
  close(code: number = CloseCode.NORMAL, reason = '', force = false): void {
    this.#markClosing(code, reason)
    const state = this.#ws.readyState
    if (state === 0 || state === 1) this.#ws.close(code, truncateReason(reason))
    if (force) {
      // A peer closed for misbehaving (flooding, not reading) may keep sending until TCP is
      // cut: stop reading it now, so that it cannot fill the log and memory meanwhile.
      this.#ws.pause()
      setTimeout(terminate, FORCE_CLOSE_MS, this.#ws).unref()
    }
  }

  /** Drop the TCP connection now, recording why. */
  terminate(code: number, reason: string): void {
    this.#markClosing(code, reason)
    this.#ws.terminate()
  }

  /**
   * One heartbeat period: a peer that left `maxMissed` pings in a row unanswered is closed
   * with 4002; otherwise it is pinged again.
   */
  heartbeat(maxMissed: number): void {
    if (this.closing) return
    if (this.#missedPongs >= maxMissed) {
      this.close(
        CloseCode.HEARTBEAT_TIMEOUT,
        `heartbeat timeout: ${this.#missedPongs} pings unanswered`,
        true,
      )
      return
    }
    this.#missedPongs++
    this.#ws.ping()
  }

  /** Close with 4001 if nothing was received for `seconds`. */
  checkIdle(now: number, seconds: number): void {
    if (!this.closing && now - this.#lastSeen > seconds * 1000)
      this.close(CloseCode.IDLE_TIMEOUT, `idle timeout: nothing received for ${seconds}s`, true)
  }

  #markClosing(code: number, reason: string): void {
    if (this.#closeCode !== undefined) return
    this.#closeCode = code
    this.#closeReason = reason
  }

  #onMessage(data: Buffer, binary: boolean): void {
    this.#messagesIn++
    this.#bytesIn += data.length
    this.#missedPongs = 0
    const now = Date.now()
    this.#lastSeen = now
    if (this.#policy.rateLimit > 0 && !this.#admitRate(now)) return
    this.#hooks.message(this, data, binary)
  }

  /** Token bucket: `rateLimit` per second, bursts up to 2×. False when the message is refused. */
  #admitRate(now: number): boolean {
    const rate = this.#policy.rateLimit
    const burst = rate * 2
    this.#tokens =
      this.#tokensAt === 0
        ? burst
        : Math.min(burst, this.#tokens + ((now - this.#tokensAt) * rate) / 1000)
    this.#tokensAt = now
    if (this.#tokens >= 1) {
      this.#tokens -= 1
      return true
    }
    if (this.#policy.rateLimitAction === 'close') {
      if (!this.closing)
        this.close(CloseCode.POLICY_VIOLATION, `rate limit exceeded (${rate} messages/s)`, true)
      return false
    }
    // Drop, and report once per second per client rather than once per message.
    if (this.#droppedInWindow++ === 0) {
      this.#dropTimer = setTimeout(() => this.#reportDropped(), 1000)
      this.#dropTimer.unref()
    }
    return false
  }

  #reportDropped(): void {
    if (this.#dropTimer) clearTimeout(this.#dropTimer)
    this.#dropTimer = undefined
    const n = this.#droppedInWindow
    this.#droppedInWindow = 0
    if (n > 0) this.#hooks.dropped(this, n, `rate limit (${this.#policy.rateLimit} messages/s)`)
  }

  #onError(err: Error & { code?: string }): void {
    const closeCode = closeCodeForWsError(err)
    this.#markClosing(closeCode, err.message)
    this.#hooks.error(this, err.code ?? 'ERR', err.message, closeCode)
  }

  #onClose(code: number, reason: Buffer): void {
    if (this.#closed) return
    this.#closed = true
    // Drops not yet reported belong before the disconnect line.
    if (this.#droppedInWindow > 0) this.#reportDropped()
    const serverFirst = this.#closeCode !== undefined
    this.#hooks.closed(this, {
      client: this,
      code: serverFirst ? this.#closeCode! : code,
      reason: serverFirst ? this.#closeReason : reason.toString('utf8'),
      initiator: serverFirst ? 'server' : 'client',
      durationMs: Date.now() - this.connectedAt,
      messagesIn: this.#messagesIn,
      messagesOut: this.#messagesOut,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
    })
  }

  /** A plain snapshot (for JSON and logs). */
  toJSON(): ClientInfo {
    return {
      id: this.id,
      ip: this.ip,
      port: this.port,
      proxy: this.proxy,
      origin: this.origin,
      userAgent: this.userAgent,
      protocol: this.protocol,
      path: this.path,
      user: this.#user,
      connectedAt: this.connectedAt,
      messagesIn: this.#messagesIn,
      messagesOut: this.#messagesOut,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
    }
  }
}

let corkedThisTick: Connection[] = []

function uncorkAll(): void {
  const list = corkedThisTick
  corkedThisTick = []
  for (const conn of list) conn.uncork()
}

function terminate(ws: WebSocket): void {
  ws.terminate()
}

/** Close reasons are limited to 123 bytes of UTF-8 (RFC 6455 §5.5). */
function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason
  let out = reason.slice(0, 123)
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1)
  return out
}
