/**
 * The one place that relies on `ws` beyond its documented API. Two guarantees need it:
 *
 * 1. Fail fast on invalid UTF-8 in a fragmented text message. `ws` checks the UTF-8 of a
 *    text message only once it is complete, so a client could stream up to `maxPayload`
 *    bytes after an invalid first fragment. We wrap the receiver's `dataMessage` step to
 *    check every non-final fragment as it arrives.
 * 2. The close code a protocol error implies. `ws` closes the socket with that code itself
 *    and records it on the error under the `status-code` symbol; reading it back lets the
 *    disconnect event report the code that was actually sent.
 *
 * Both degrade safely (the UTF-8 check falls back to `ws`'s end-of-message check, the close
 * code to a mapping of `ws`'s documented error codes), but never silently: a receiver that
 * no longer looks as expected raises one process warning, and `wsAdapterStatus()` (asserted
 * by the test suite against the pinned `ws`) says which guarantee is in force.
 */
import { createRequire } from 'node:module'
import { TextDecoder } from 'node:util'
import type { WebSocket } from 'ws'
import { CloseCode } from './close-codes.js'

/** The parts of ws's (private) Receiver that the UTF-8 check relies on. */
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

let utf8Patched = 0
let utf8Unsupported = 0
let warned = false

function receiverOf(ws: WebSocket): ReceiverInternals | undefined {
  const r = (ws as unknown as { _receiver?: ReceiverInternals })._receiver
  if (
    r === undefined ||
    r === null ||
    typeof r.dataMessage !== 'function' ||
    typeof r.createError !== 'function' ||
    !Array.isArray(r._fragments) ||
    typeof r._fin !== 'boolean' ||
    typeof r._opcode !== 'number'
  ) {
    return undefined
  }
  return r
}

/**
 * Check every non-final fragment of a text message as it arrives (a streaming decoder keeps
 * a code point split across fragments pending) and fail the message through ws's own error
 * path: close 1007, `'error'` with `WS_ERR_INVALID_UTF8`. The final fragment is left to
 * ws's own check.
 */
export function failFastOnInvalidUtf8(ws: WebSocket): void {
  const r = receiverOf(ws)
  if (r === undefined) {
    utf8Unsupported++
    if (!warned) {
      warned = true
      process.emitWarning(
        `wirelog: ws ${wsVersion()} no longer has the receiver shape wirelog checks fragments with; invalid UTF-8 in a fragmented message is now detected only when the message is complete`,
        'WirelogWarning',
      )
    }
    return
  }
  utf8Patched++
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

/** The close code ws recorded on a protocol error, or undefined if it recorded none. */
export function recordedStatusCode(err: object): number | undefined {
  for (const sym of Object.getOwnPropertySymbols(err)) {
    if (sym.description === 'status-code') {
      const v = (err as Record<symbol, unknown>)[sym]
      if (typeof v === 'number') return v
    }
  }
  return undefined
}

/**
 * The close code a `ws` protocol error implies: the one ws sent, else a mapping of its
 * documented `WS_ERR_…` codes.
 */
export function closeCodeForWsError(err: unknown): number {
  if (err === null || typeof err !== 'object') return CloseCode.ABNORMAL
  const recorded = recordedStatusCode(err)
  if (recorded !== undefined) return recorded
  const code = (err as { code?: unknown }).code
  switch (code) {
    case 'WS_ERR_INVALID_UTF8':
      return CloseCode.INVALID_PAYLOAD
    case 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH':
    case 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH':
      return CloseCode.MESSAGE_TOO_BIG
    case 'WS_ERR_TOO_MANY_BUFFERED_PARTS':
      return CloseCode.POLICY_VIOLATION
    default:
      return typeof code === 'string' && code.startsWith('WS_ERR_')
        ? CloseCode.PROTOCOL_ERROR
        : CloseCode.ABNORMAL
  }
}

let cachedVersion: string | undefined
/** The installed ws version (for messages). */
export function wsVersion(): string {
  if (cachedVersion === undefined) {
    try {
      const req = createRequire(import.meta.url)
      cachedVersion = (req('ws/package.json') as { version: string }).version
    } catch {
      cachedVersion = 'unknown'
    }
  }
  return cachedVersion
}

/** Which adapter guarantees are in force: how many sockets got the UTF-8 check, how many could not. */
export function wsAdapterStatus(): { utf8Patched: number; utf8Unsupported: number } {
  return { utf8Patched, utf8Unsupported }
}
