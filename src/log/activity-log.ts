/**
 * The activity log: one subscriber of the event bus that turns every event into one line.
 *
 * It owns the sentence of each event, the level, the preview/escaping of client content and
 * the sinks (file, stdout). The server never formats a line itself.
 */
import { join, resolve } from 'node:path'
import type { Config } from '../config.js'
import type { ClientInfo } from '../connection.js'
import type { ClientDisconnected, EventBus, MessageReceived, WsEvents } from '../events.js'
import { escapeText, hexPreview, jsonString, utf8Boundary } from './escape.js'
import { createBuilder, LEVELS, type LineBuilder } from './format.js'
import { Sink, type SinkOptions } from './sink.js'

/** Most `handler.failed` lines per event name per second; the rest become one summary line. */
const FAILURE_LINES_PER_SECOND = 5
const MAX_USER_DATA = 4096

export interface ActivityLogStats {
  /** Lines formatted and handed to the sinks. */
  lines: number
  /** Lines lost because the file was unwritable and `maxBuffer` was full. */
  dropped: number
  /** Failed write attempts (a failing disk is retried every second). */
  writeErrors: number
  /** Bytes of lines held in memory, not yet written (at most about `maxBuffer`). */
  buffered: number
}

export class ActivityLog {
  readonly path: string | undefined
  #cfg: Config['log']
  #b: LineBuilder
  #sinks: Sink[] = []
  /** Sinks closed by `close()`: their counters still count in `stats`. */
  #closedSinks: Sink[] = []
  #minLevel: number
  #unsubscribe: (() => void) | undefined
  #lines = 0
  #failures = new Map<string, { windowStart: number; count: number; suppressed: number }>()
  #failureTimer: NodeJS.Timeout | undefined
  #rotateTimer: NodeJS.Timeout | undefined
  /** `#lines` right after the last timed rotation: an idle log is not rotated again. */
  #linesAtRotate = -1
  #bus: EventBus | undefined
  #report: (msg: string) => void

  constructor(cfg: Config['log'], report: (msg: string) => void = defaultReport) {
    this.#cfg = cfg
    this.#b = createBuilder(cfg.format)
    this.#minLevel = LEVELS[cfg.level]
    this.path = cfg.enabled ? resolve(join(cfg.dir, cfg.file)) : undefined
    this.#report = report
  }

  /** Open the sinks. Rejects with an error naming the path if the file cannot be opened. */
  async open(): Promise<void> {
    const base: SinkOptions = {
      sync: this.#cfg.sync,
      flushInterval: this.#cfg.flushInterval,
      maxBuffer: this.#cfg.maxBuffer,
    }
    if (this.path !== undefined) {
      const path = this.path
      const sink = await Sink.openFile(path, {
        ...base,
        rotateSize: this.#cfg.rotate.size,
        rotateKeep: this.#cfg.rotate.keep,
        onError: (err) => {
          this.#report(
            `wirelog: activity log write failed (${path}): ${err.code ?? err.message}; retrying, lines kept in memory up to ${this.#cfg.maxBuffer} bytes`,
          )
          this.#bus?.trigger('ws', 'log.error', {
            path,
            code: err.code ?? 'EIO',
            message: err.message,
          })
        },
        onRecover: (dropped, failed) => {
          this.#report(
            failed
              ? `wirelog: activity log writable again (${path}); ${dropped} lines dropped meanwhile`
              : `wirelog: activity log could not keep up (${path}); ${dropped} lines dropped (log.maxBuffer ${this.#cfg.maxBuffer} bytes)`,
          )
          if (dropped > 0) this.#bus?.trigger('ws', 'log.dropped', { path, dropped })
        },
        onRotate: (rotatedTo) => this.#bus?.trigger('ws', 'log.rotated', { path, rotatedTo }),
        onReopen: (reason) =>
          this.#report(`wirelog: activity log file was ${reason} (${path}); reopened at its path`),
      })
      this.#sinks.push(sink)
      if (this.#cfg.rotate.interval > 0) {
        this.#rotateTimer = setInterval(() => {
          // Nothing but the previous "Log rotated" line since then: keep the file.
          if (this.#lines === this.#linesAtRotate) return
          if (sink.rotate()) this.#linesAtRotate = this.#lines
        }, this.#cfg.rotate.interval * 1000)
        this.#rotateTimer.unref()
      }
    }
    if (this.#cfg.stdout) {
      this.#sinks.push(
        Sink.fd(1, {
          ...base,
          // Final for stdout: the reader is gone (EPIPE), the sink stops, the server goes on.
          onError: (err) => {
            this.#report(
              `wirelog: activity log on stdout failed: ${err.code ?? err.message}; stdout logging stopped`,
            )
            this.#bus?.trigger('ws', 'log.error', {
              path: 'stdout',
              code: err.code ?? 'EIO',
              message: err.message,
            })
          },
        }),
      )
    }
  }

  /** Subscribe to every event of every namespace on `bus`. */
  attach(bus: EventBus): void {
    this.#bus = bus
    this.#unsubscribe = bus.on('*', '*', (payload, name, ns) => this.write(ns, name, payload))
  }

  get stats(): ActivityLogStats {
    let dropped = 0
    let writeErrors = 0
    let buffered = 0
    for (const s of [...this.#sinks, ...this.#closedSinks]) {
      dropped += s.dropped
      writeErrors += s.errors
      buffered += s.buffered
    }
    return { lines: this.#lines, dropped, writeErrors, buffered }
  }

  /** Format and write one event. */
  write(ns: string, name: string, payload: unknown): void {
    if (this.#sinks.length === 0) return
    const b = this.#b
    let line: string
    if (ns === 'ws') {
      if (name === 'message.received') {
        if (LEVELS.info < this.#minLevel) return
        line = this.#message(payload as MessageReceived, b)
      } else {
        if (!this.#describe(name as keyof WsEvents, payload as never, b)) return
        line = b.end()
      }
    } else {
      if (LEVELS.info < this.#minLevel) return
      const event = `${ns}:${name}`
      this.#userEvent(b, event, payload)
      line = b.end()
    }
    this.#lines++
    for (let i = 0; i < this.#sinks.length; i++) this.#sinks[i]!.write(line)
  }

  /** The per-message line (the hot path: see `LineBuilder.message`). */
  #message(m: MessageReceived, b: LineBuilder): string {
    const max = this.#cfg.preview
    if (m.binary) {
      const truncated = m.bytes > Math.min(max, 32)
      return b.message(
        m.client,
        '',
        `[binary ${m.bytes} bytes] ${hexPreview(m.raw, max)}${truncated ? '…' : ''}`,
        m.bytes,
        true,
        truncated,
      )
    }
    const raw = m.raw
    if (raw.length <= max)
      return b.message(m.client, raw.toString('utf8'), '', m.bytes, false, false)
    const text = raw.toString('utf8', 0, utf8Boundary(raw, max))
    return b.message(m.client, text, `… (${m.bytes} bytes)`, m.bytes, false, true)
  }

  /** Build the line of a built-in event; false when the level filter drops it. */
  #describe<K extends keyof WsEvents>(name: K, e: WsEvents[K], b: LineBuilder): boolean {
    const min = this.#minLevel
    switch (name) {
      case 'message.sent': {
        if (LEVELS.debug < min) return false
        const m = e as WsEvents['message.sent']
        b.begin(LEVELS.debug, name, `Message sent: ${m.client.ip}`)
        b.str('client', m.client.id)
        b.num('bytes', m.bytes)
        if (m.binary) b.bool('binary', true)
        return true
      }
      case 'client.connected': {
        if (LEVELS.info < min) return false
        const c = (e as WsEvents['client.connected']).client
        b.begin(LEVELS.info, name, `Client connected: ${c.ip}`)
        clientFields(b, c)
        b.num('port', c.port)
        b.str('path', c.path)
        b.str('origin', c.origin)
        b.str('ua', c.userAgent)
        if (c.protocol) b.str('protocol', c.protocol)
        return true
      }
      case 'client.disconnected': {
        if (LEVELS.info < min) return false
        const d = e as ClientDisconnected
        b.begin(LEVELS.info, name, `Client disconnected: ${d.client.ip}`)
        clientFields(b, d.client)
        b.num('code', d.code)
        b.str('reason', d.reason)
        b.str('initiator', d.initiator)
        b.num('duration_ms', d.durationMs)
        b.num('msgs_in', d.messagesIn)
        b.num('msgs_out', d.messagesOut)
        b.num('bytes_in', d.bytesIn)
        b.num('bytes_out', d.bytesOut)
        return true
      }
      case 'client.rejected': {
        if (LEVELS.warn < min) return false
        const r = e as WsEvents['client.rejected']
        b.begin(LEVELS.warn, name, `Client rejected: ${r.ip}`)
        b.str('ip', r.ip)
        b.num('status', r.status)
        b.str('reason', r.reason)
        b.str('origin', r.origin)
        b.str('ua', r.userAgent)
        return true
      }
      case 'client.error': {
        if (LEVELS.warn < min) return false
        const r = e as WsEvents['client.error']
        b.begin(LEVELS.warn, name, `Client error: ${r.client.ip}`)
        clientFields(b, r.client)
        b.str('code', r.code)
        b.num('close_code', r.closeCode)
        b.str('error', r.message)
        return true
      }
      case 'message.dropped': {
        if (LEVELS.warn < min) return false
        const r = e as WsEvents['message.dropped']
        b.begin(LEVELS.warn, name, `Messages dropped: ${r.client.ip}`)
        clientFields(b, r.client)
        b.num('count', r.dropped)
        b.str('reason', r.reason)
        return true
      }
      case 'handler.failed':
        return this.#handlerFailed(e as WsEvents['handler.failed'], b)
      case 'server.listening': {
        if (LEVELS.info < min) return false
        const r = e as WsEvents['server.listening']
        b.begin(LEVELS.info, name, `Server listening: ${r.url}`)
        b.str('address', r.address)
        b.num('port', r.port)
        return true
      }
      case 'server.closing': {
        if (LEVELS.info < min) return false
        const r = e as WsEvents['server.closing']
        b.begin(LEVELS.info, name, `Server closing: ${escapeText(r.reason)}`)
        b.num('clients', r.clients)
        return true
      }
      case 'server.closed': {
        if (LEVELS.info < min) return false
        b.begin(LEVELS.info, name, 'Server closed')
        b.str('reason', (e as WsEvents['server.closed']).reason)
        return true
      }
      case 'log.dropped': {
        const r = e as WsEvents['log.dropped']
        b.begin(LEVELS.error, name, `Log lines dropped: ${r.dropped}`)
        b.num('dropped', r.dropped)
        b.str('path', r.path)
        return true
      }
      case 'log.rotated': {
        if (LEVELS.info < min) return false
        const r = e as WsEvents['log.rotated']
        b.begin(LEVELS.info, name, 'Log rotated')
        b.str('previous', r.rotatedTo)
        return true
      }
      case 'log.error':
        // Reported on stderr; writing it into the failing file would only queue behind the failure.
        return false
      default: {
        if (LEVELS.info < min) return false
        this.#userEvent(b, `ws:${name}`, e)
        return true
      }
    }
  }

  #userEvent(b: LineBuilder, event: string, payload: unknown): void {
    const data = userData(payload)
    const max = Math.max(this.#cfg.preview, 16)
    const preview = data.length > max ? `${data.slice(0, max)}… (${data.length} chars)` : data
    b.begin(LEVELS.info, event, `Event ${escapeText(event)}: ${escapeText(preview)}`)
    b.json(
      'data',
      data.length <= MAX_USER_DATA ? data : jsonString(`${data.slice(0, MAX_USER_DATA)}…`),
    )
  }

  /** At most FAILURE_LINES_PER_SECOND lines per event per second; then one summary. */
  #handlerFailed(f: WsEvents['handler.failed'], b: LineBuilder): boolean {
    if (LEVELS.error < this.#minLevel) return false
    const now = Date.now()
    let w = this.#failures.get(f.event)
    if (w === undefined) {
      if (this.#failures.size > 1000) this.#failures.clear()
      w = { windowStart: now, count: 0, suppressed: 0 }
      this.#failures.set(f.event, w)
    }
    if (now - w.windowStart >= 1000) {
      this.#summarise(f.event, w)
      w.windowStart = now
      w.count = 0
    }
    if (++w.count > FAILURE_LINES_PER_SECOND) {
      w.suppressed++
      if (this.#failureTimer === undefined) {
        this.#failureTimer = setTimeout(() => this.#flushFailureSummaries(), 1000)
        this.#failureTimer.unref()
      }
      return false
    }
    b.begin(LEVELS.error, 'handler.failed', `Handler failed: ${escapeText(f.event)}`)
    b.str('handler_event', f.event)
    b.str('error', errorText(f.error))
    return true
  }

  #summarise(event: string, w: { suppressed: number }): void {
    if (w.suppressed === 0) return
    const b = this.#b
    b.begin(
      LEVELS.error,
      'handler.failed',
      `Handler failed: ${escapeText(event)} (${w.suppressed} more failures suppressed)`,
    )
    b.str('handler_event', event)
    b.num('suppressed', w.suppressed)
    w.suppressed = 0
    const line = b.end()
    this.#lines++
    for (const s of this.#sinks) s.write(line)
  }

  #flushFailureSummaries(): void {
    this.#failureTimer = undefined
    for (const [event, w] of this.#failures) this.#summarise(event, w)
  }

  /** Rotate now (files only). */
  rotate(): void {
    for (const s of this.#sinks) s.rotate()
  }

  /** Reopen the file at its path (after external rotation; SIGHUP). */
  reopen(): void {
    for (const s of this.#sinks) s.reopen()
  }

  /** Synchronously write everything pending (fatal error path). */
  flushSync(): void {
    this.#flushFailureSummaries()
    for (const s of this.#sinks) s.flushSync()
  }

  /** Flush, close the sinks and stop listening. Idempotent. */
  async close(): Promise<void> {
    if (this.#failureTimer) clearTimeout(this.#failureTimer)
    this.#flushFailureSummaries()
    if (this.#rotateTimer) clearInterval(this.#rotateTimer)
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    const sinks = this.#sinks
    this.#sinks = []
    this.#closedSinks.push(...sinks)
    await Promise.all(sinks.map((s) => s.close()))
  }
}

function clientFields(b: LineBuilder, c: ClientInfo): void {
  b.str('client', c.id)
  b.str('ip', c.ip)
}

function userData(payload: unknown): string {
  if (payload === undefined) return 'null'
  try {
    const json = JSON.stringify(payload, replacer) ?? 'null'
    // Valid JSON may still hold raw U+2028/2029 and C1 controls inside strings.
    return JSON_UNSAFE.test(json) ? json.replace(JSON_UNSAFE_G, unicodeEscape) : json
  } catch {
    return '"[unserializable]"'
  }
}

const JSON_UNSAFE = /[\u007f-\u009f\u2028\u2029]/
const JSON_UNSAFE_G = /[\u007f-\u009f\u2028\u2029]/g
function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Error) return { name: value.name, message: value.message }
  return value
}

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}

function defaultReport(msg: string): void {
  process.stderr.write(`${msg}\n`)
}
