/**
 * One client: identity, counters, liveness, and `send()` with a backpressure policy.
 *
 * The `ws` socket and the raw TCP socket stay private; behaviours and user code talk to a
 * client only through this class.
 */
import type { Socket } from 'node:net'
import { TextDecoder } from 'node:util'
import type { WebSocket } from 'ws'
import { CloseCode } from './close-codes.js'

/** What events say about a client. */
export interface ClientInfo {
  /** Unique within the process (and, with its prefix, across restarts). */
  readonly id: string
  /** Remote address, IPv4-mapped IPv6 shown as IPv4. */
  readonly ip: string
  readonly port: number
  readonly origin: string | undefined
  readonly userAgent: string | undefined
  /** Negotiated subprotocol ('' if none). */
  readonly protocol: string
  /** Request path of the upgrade. */
  readonly path: string
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
  /** Per-connection data for user code (auth results, session, …). */
  readonly context: Record<string, unknown>
  readonly readyState: number
  readonly bufferedAmount: number
  send(data: string | Buffer, binary?: boolean): SendResult
  close(code?: number, reason?: string): void
}

export interface ConnectionHooks {
  /** Called after every message handed to the socket. */
  sent(conn: Connection, bytes: number, binary: boolean): void
}

export interface ConnectionInit {
  id: string
  ip: string
  port: number
  origin: string | undefined
  userAgent: string | undefined
  path: string
  maxBufferedBytes: number
  hooks: ConnectionHooks
}

export type SendResult = 'sent' | 'closed' | 'slow'

export class Connection implements Client {
  readonly id: string
  readonly ip: string
  readonly port: number
  readonly origin: string | undefined
  readonly userAgent: string | undefined
  readonly path: string
  readonly connectedAt = Date.now()
  messagesIn = 0
  messagesOut = 0
  bytesIn = 0
  bytesOut = 0
  /** Arbitrary per-connection data for user code (auth results, session, …). */
  readonly context: Record<string, unknown> = {}

  /** Heartbeat: pings sent and not yet answered. */
  missedPongs = 0
  /** `Date.now()` of the last message received. */
  lastSeen = this.connectedAt
  /** Token bucket for the inbound rate limit. */
  tokens = 0
  tokensAt = 0
  droppedInWindow = 0

  #ws: WebSocket
  #socket: Socket
  #maxBuffered: number
  #corked = false
  #hooks: ConnectionHooks
  /** Set when the server starts the close: the code/reason to report on disconnect. */
  closeCode: number | undefined
  closeReason: string | undefined

  constructor(ws: WebSocket, socket: Socket, init: ConnectionInit) {
    this.#ws = ws
    this.#socket = socket
    this.id = init.id
    this.ip = init.ip
    this.port = init.port
    this.origin = init.origin
    this.userAgent = init.userAgent
    this.path = init.path
    this.#maxBuffered = init.maxBufferedBytes
    this.#hooks = init.hooks
    failFastOnInvalidUtf8(ws)
  }

  get protocol(): string {
    return this.#ws.protocol
  }

  /** `ws` readyState: 0 connecting, 1 open, 2 closing, 3 closed. */
  get readyState(): number {
    return this.#ws.readyState
  }

  /** Bytes queued for this client and not yet handed to the kernel. */
  get bufferedAmount(): number {
    // ws counts both its own queue and the socket's writable buffer.
    return this.#ws.bufferedAmount
  }

  /**
   * Send a message. Text goes as a string (or a Buffer with `binary: false`), binary as a
   * Buffer. Sends within one tick are coalesced into one write. A client whose queued
   * output passes `maxBufferedBytes` is closed with 4000 (slow consumer) and `'slow'` is
   * returned; nothing is queued for a closing client.
   */
  send(data: string | Buffer, binary = typeof data !== 'string'): SendResult {
    if (this.#ws.readyState !== 1) return 'closed'
    if (this.bufferedAmount > this.#maxBuffered) {
      this.close(CloseCode.SLOW_CONSUMER, 'slow consumer: outbound buffer cap reached', true)
      return 'slow'
    }
    if (!this.#corked) {
      // Each ws.send() is its own write; corking until the end of the tick turns the echoes
      // of one socket read into one writev.
      this.#corked = true
      this.#socket.cork()
      process.nextTick(uncork, this)
    }
    this.#ws.send(data, { binary })
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length
    this.messagesOut++
    this.bytesOut += bytes
    this.#hooks.sent(this, bytes, binary)
    return 'sent'
  }

  /** @internal */
  uncork(): void {
    this.#corked = false
    this.#socket.uncork()
  }

  /** Start the closing handshake; `force` also destroys the socket if the peer does not answer soon. */
  close(code: number = CloseCode.NORMAL, reason = '', force = false): void {
    if (this.closeCode === undefined) {
      this.closeCode = code
      this.closeReason = reason
    }
    const state = this.#ws.readyState
    if (state === 0 || state === 1) this.#ws.close(code, truncateReason(reason))
    if (force) {
      // A slow consumer will not read our close frame either; do not wait ws's 30 s for it.
      const t = setTimeout(() => this.#ws.terminate(), 1000)
      t.unref()
    }
  }

  /** Drop the TCP connection now, recording why. */
  terminate(code: number, reason: string): void {
    if (this.closeCode === undefined) {
      this.closeCode = code
      this.closeReason = reason
    }
    this.#ws.terminate()
  }

  /** @internal */
  ping(): void {
    if (this.#ws.readyState === 1) this.#ws.ping()
  }

  /** A plain snapshot (for JSON and logs). */
  toJSON(): ClientInfo {
    return {
      id: this.id,
      ip: this.ip,
      port: this.port,
      origin: this.origin,
      userAgent: this.userAgent,
      protocol: this.protocol,
      path: this.path,
      connectedAt: this.connectedAt,
      messagesIn: this.messagesIn,
      messagesOut: this.messagesOut,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
    }
  }
}

/** The parts of ws's (private) Receiver that `failFastOnInvalidUtf8` relies on. */
interface ReceiverInternals {
  _fin: boolean
  _opcode: number
  _fragments: Buffer[]
  dataMessage(cb: (err?: Error) => void): void
  createError(
    ctor: ErrorConstructor,
    msg: string,
    prefix: boolean,
    status: number,
    code: string,
  ): Error
}

/**
 * ws checks the UTF-8 of a text message only once the message is complete, so a client can
 * stream up to `maxPayload` bytes after an invalid first fragment. This checks every non-final
 * fragment of a text message as it arrives (a streaming decoder keeps a code point split
 * across fragments pending) and fails the message through ws's own error path: close 1007,
 * `'error'` with `WS_ERR_INVALID_UTF8`. The final fragment is left to ws's own check. A no-op
 * should ws's receiver ever stop looking like this.
 */
function failFastOnInvalidUtf8(ws: WebSocket): void {
  const r = (ws as unknown as { _receiver?: ReceiverInternals })._receiver
  if (
    r === undefined ||
    typeof r.dataMessage !== 'function' ||
    typeof r.createError !== 'function' ||
    !Array.isArray(r._fragments)
  ) {
    return
  }
  const dataMessage = r.dataMessage
  let decoder: TextDecoder | undefined
  let checked = 0
  r.dataMessage = function (this: ReceiverInternals, cb: (err?: Error) => void): void {
    if (this._fin) {
      decoder = undefined
      checked = 0
    } else if (this._opcode === 1) {
      decoder ??= new TextDecoder('utf-8', { fatal: true })
      try {
        for (; checked < this._fragments.length; checked++) {
          decoder.decode(this._fragments[checked], { stream: true })
        }
      } catch {
        decoder = undefined
        checked = 0
        const code = 'WS_ERR_INVALID_UTF8'
        cb(this.createError(Error, 'invalid UTF-8 sequence', true, CloseCode.INVALID_PAYLOAD, code))
        return
      }
    }
    dataMessage.call(this, cb)
  }
}

function uncork(conn: Connection): void {
  conn.uncork()
}

/** Close reasons are limited to 123 bytes of UTF-8 (RFC 6455 §5.5). */
function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason
  let out = reason.slice(0, 123)
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1)
  return out
}
