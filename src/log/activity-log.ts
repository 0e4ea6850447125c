/**
 * The activity log: the bus's recorder, turning every event into one line.
 *
 * It sees each event before any user handler does (see `events.ts`), so lines are in
 * causal order: a line caused by a handler always follows the line of its cause. It is
 * attached when the server is created; lines of events triggered before `listen()` wait
 * in memory until the file is open. It owns the sentence of each event, the level, the
 * preview/escaping of client content and the sinks (file, stdout). The server never formats
 * a line itself.
 */
import { join, resolve } from 'node:path'
import type { Config } from '../config.js'
import type { ClientInfo } from '../connection.js'
import type { EventBus, Recorder, WsEventName, WsEvents } from '../events.js'
import { addRecorder, emit } from '../events.js'
import { PROTOCOL } from '../pubsub/protocol.js'
import { createRedactor, REDACTED, type Redactor, redactJsonSecrets } from '../redact.js'
import { Chain } from './chain.js'
import { cutText, escapeText, jsonValue, utf8Boundary } from './escape.js'
import {
  createBuilder,
  LEVELS,
  type LevelName,
  type LineBuilder,
  type MessageContent,
} from './format.js'
import { loadSealKey, type SealKey } from './seal-key.js'
import { Sink, type SinkOptions } from './sink.js'

/** Most `handler.failed` lines per event name per second; the rest become one summary line. */
const FAILURE_LINES_PER_SECOND = 5
/** Largest user-event payload (JSON characters) written as JSON; longer ones are cut. */
const MAX_USER_DATA = 4096

/** The level of each built-in event; `undefined` = never written to the file. */
const EVENT_LEVEL: Record<WsEventName, number | undefined> = {
  'server.listening': LEVELS.info,
  'server.closing': LEVELS.info,
  'server.closed': LEVELS.info,
  'client.connected': LEVELS.info,
  'client.rejected': LEVELS.warn,
  'message.received': LEVELS.info,
  'message.sent': LEVELS.debug,
  'message.dropped': LEVELS.warn,
  'client.disconnected': LEVELS.info,
  'client.error': LEVELS.warn,
  'handler.failed': LEVELS.error,
  // Reported on stderr; writing it into the failing file would only queue behind the failure.
  'log.error': undefined,
  'log.dropped': LEVELS.error,
  'log.rotated': LEVELS.info,
  'topic.subscribed': LEVELS.info,
  'topic.unsubscribed': LEVELS.info,
  'topic.published': LEVELS.info,
  'message.direct': LEVELS.info,
  'session.resumed': LEVELS.info,
  'session.expired': LEVELS.info,
  'auth.refreshed': LEVELS.info,
  'auth.expired': LEVELS.warn,
  'access.denied': LEVELS.warn,
  'pubsub.error': LEVELS.warn,
  'broker.down': LEVELS.error,
  'broker.up': LEVELS.info,
  'worker.started': LEVELS.info,
  // Crashes are errors, asked-for exits info (see the line below).
  'worker.exited': LEVELS.info,
  'webhook.failed': LEVELS.error,
  'webhook.dropped': LEVELS.warn,
}

export interface ActivityLogStats {
  /** Lines formatted and handed to the sinks. */
  lines: number
  /** Lines lost because the file was unwritable and `maxBuffer` was full. */
  dropped: number
  /** Failed write attempts (a failing disk is retried every second). */
  writeErrors: number
  /** Bytes of lines held in memory, not yet written (at most about `maxBuffer`). */
  buffered: number
  /** False from a write error until the backlog has been written again (readiness). */
  writable: boolean
  /** Size- and time-based rotations done. */
  rotations: number
}

/**
 * Hands every line of a log to someone else (the event forwarders run a json log with no
 * file whose lines go to them). `filter` (namespace, name) skips events before any line is
 * built.
 */
export interface ActivityLogTap {
  line(line: string): void
  filter?(ns: string, name: string): boolean
}

/** Fields of a line written by user code. */
export type LogFields = Readonly<Record<string, unknown>>

/**
 * Write your own lines into the activity log, ordered, escaped, truncated and redacted like
 * the built-in ones. A user line always names its source (`[app] …`, `event=app:log`), so it
 * can never pass for a line the server wrote.
 */
export interface Logger {
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
  /** A logger whose lines name another source (`server.log.child('billing')`). */
  child(source: string): Logger
}

const SOURCE = /^[a-z][a-z0-9_.-]{0,31}$/i

export class ActivityLog implements Recorder {
  readonly path: string | undefined
  #cfg: Config['log']
  #b: LineBuilder
  #redact: Redactor
  #sinks: Sink[] = []
  /** Sinks closed by `close()`: their counters still count in `stats`. */
  #closedSinks: Sink[] = []
  #minLevel: number
  /** Lines end with the chain's fields (`--log-chain`, `--log-sign-key`). */
  readonly #chained: boolean
  #detach: (() => void) | undefined
  /** Lines of events recorded before `open()`; undefined once open. */
  #early: string[] | undefined = []
  #earlyBytes = 0
  #earlyDropped = 0
  #closed = false
  #lines = 0
  #failures = new Map<string, { windowStart: number; count: number; suppressed: number }>()
  #failureTimer: NodeJS.Timeout | undefined
  #rotateTimer: NodeJS.Timeout | undefined
  #sealTimer: NodeJS.Timeout | undefined
  /** `#lines` right after the last timed rotation: an idle log is not rotated again. */
  #linesAtRotate = -1
  #bus: EventBus | undefined
  #failing = false
  #rotations = 0
  #report: (msg: string) => void

  /** Gets every line (after the sinks); see `ActivityLogTap`. */
  #tap: ActivityLogTap | undefined

  constructor(
    cfg: Config['log'],
    report: (msg: string) => void = defaultReport,
    tap?: ActivityLogTap,
  ) {
    this.#tap = tap
    this.#cfg = cfg
    this.#b = createBuilder(cfg.format)
    this.#minLevel = LEVELS[cfg.level]
    this.#chained = cfg.chain || cfg.sign.key !== undefined
    this.#redact = createRedactor(cfg.redact)
    this.path = cfg.enabled ? resolve(join(cfg.dir, cfg.file)) : undefined
    this.#report = report
  }

  /** Open the sinks. Rejects with an error naming the path if the file cannot be opened. */
  async open(): Promise<void> {
    if (this.#closed || this.#early === undefined) return
    const base: SinkOptions = {
      sync: this.#cfg.sync,
      flushInterval: this.#cfg.flushInterval,
      maxBuffer: this.#cfg.maxBuffer,
    }
    const sign = this.#cfg.sign
    const chained = this.#chained
    // The tap (forwarders) gets lines unchained: the chain belongs to a file (or stdout).
    const key: SealKey | undefined =
      sign.key !== undefined ? loadSealKey(sign.key, '--log-sign-key', true) : undefined
    const chain = (): Chain | undefined =>
      chained ? new Chain({ key, every: sign.every }) : undefined
    if (this.path !== undefined) {
      const path = this.path
      const sink = await Sink.openFile(path, {
        ...base,
        chain: chain(),
        rotateSize: this.#cfg.rotate.size,
        rotateKeep: this.#cfg.rotate.keep,
        onError: (err) => {
          this.#failing = true
          this.#report(
            `wirelog: activity log write failed (${path}): ${err.code ?? err.message}; retrying, lines kept in memory up to ${this.#cfg.maxBuffer} bytes`,
          )
          this.#emit('log.error', { path, code: err.code ?? 'EIO', message: err.message })
        },
        onRecover: (dropped, failed) => {
          if (failed) this.#failing = false
          this.#report(
            failed
              ? `wirelog: activity log writable again (${path}); ${dropped} lines dropped meanwhile`
              : `wirelog: activity log could not keep up (${path}); ${dropped} lines dropped (log.maxBuffer ${this.#cfg.maxBuffer} bytes)`,
          )
          if (dropped > 0) this.#emit('log.dropped', { path, dropped })
        },
        onRotate: (rotatedTo) => {
          this.#rotations++
          this.#emit('log.rotated', { path, rotatedTo })
        },
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
    if (this.#cfg.stdout)
      this.#sinks.push(
        Sink.fd(1, {
          ...base,
          chain: chain(),
          // Final for stdout: the reader is gone (EPIPE), the sink stops, the server goes on.
          onError: (err) => {
            this.#report(
              `wirelog: activity log on stdout failed (${err.code ?? err.message}); no more lines go to stdout`,
            )
            this.#emit('log.error', {
              path: 'stdout',
              code: err.code ?? 'EIO',
              message: err.message,
            })
          },
        }),
      )
    if (key !== undefined && sign.interval > 0) {
      this.#sealTimer = setInterval(() => {
        for (const s of this.#sinks) s.seal()
      }, sign.interval * 1000)
      this.#sealTimer.unref()
    }
    const early = this.#early
    this.#early = undefined
    for (const line of early) this.#out(line)
    if (this.#earlyDropped > 0)
      this.#report(
        `wirelog: ${this.#earlyDropped} activity lines recorded before the log opened were dropped (log.maxBuffer)`,
      )
  }

  /** Record every event of `bus`, before its handlers see it. */
  attach(bus: EventBus): void {
    this.#detach?.()
    this.#bus = bus
    this.#detach = addRecorder(bus, this)
  }

  get stats(): ActivityLogStats {
    let dropped = this.#earlyDropped
    let writeErrors = 0
    let buffered = this.#earlyBytes
    for (const s of [...this.#sinks, ...this.#closedSinks]) {
      dropped += s.dropped
      writeErrors += s.errors
      buffered += s.buffered
    }
    return {
      lines: this.#lines,
      dropped,
      writeErrors,
      buffered,
      writable: !this.#failing,
      rotations: this.#rotations,
    }
  }

  /** A logger for user lines from `source` (default `app`). */
  logger(source = 'app'): Logger {
    if (!SOURCE.test(source) || source.toLowerCase() === 'ws')
      throw new TypeError(
        `log source must be a short name (letters, digits, . _ -) other than "ws", got ${JSON.stringify(source)}`,
      )
    const line = (level: LevelName) => (msg: string, fields?: LogFields) =>
      this.#userLine(LEVELS[level], source, msg, fields)
    return {
      debug: line('debug'),
      info: line('info'),
      warn: line('warn'),
      error: line('error'),
      child: (s: string) => this.logger(s),
    }
  }

  /** Recorder: whether `ns:name` would be written. */
  wants(ns: string, name: string): boolean {
    if (this.#closed) return false
    if (this.#tap?.filter && !this.#tap.filter(ns, name)) return false
    const level = ns === 'ws' ? EVENT_LEVEL[name as WsEventName] : LEVELS.info
    return level !== undefined && level >= this.#minLevel
  }

  /** Recorder: format and write one event. */
  record(ns: string, name: string, payload: unknown): void {
    if (this.#closed) return
    if (this.#tap?.filter && !this.#tap.filter(ns, name)) return
    const b = this.#b
    let line: string
    if (ns === 'ws') {
      if (name === 'message.received') {
        if (LEVELS.info < this.#minLevel) return
        line = this.#message(payload as WsEvents['message.received'], b)
      } else {
        if (!this.#describe(name as WsEventName, payload as never, b)) return
        line = b.end()
      }
    } else {
      if (LEVELS.info < this.#minLevel) return
      this.#userEvent(b, `${ns}:${name}`, payload)
      line = b.end()
    }
    this.#out(line)
  }

  #out(line: string): void {
    if (this.#early !== undefined) {
      // Not open yet: keep it for open(), within the same memory bound as a failing disk.
      if (this.#earlyBytes + line.length > this.#cfg.maxBuffer) {
        this.#earlyDropped++
        return
      }
      this.#early.push(line)
      this.#earlyBytes += line.length
      return
    }
    this.#lines++
    for (let i = 0; i < this.#sinks.length; i++) this.#sinks[i]!.write(line)
    if (this.#tap !== undefined) this.#tap.line(line)
  }

  #emit<K extends 'log.error' | 'log.dropped' | 'log.rotated'>(
    name: K,
    payload: WsEvents[K],
  ): void {
    if (this.#bus) emit(this.#bus, name, payload)
  }

  /** The per-message line (the hot path: see `LineBuilder.message`). */
  #message(m: WsEvents['message.received'], b: LineBuilder): string {
    const max = this.#cfg.preview
    const raw = m.raw
    const truncated = raw.length > max
    const full =
      this.#cfg.payloads === 'full' ? this.#content(m.client, m.data, m.binary) : undefined
    if (m.binary)
      return b.message(m.client, {
        text: '',
        bytesPreview: truncated ? raw.subarray(0, max) : raw,
        bytes: m.bytes,
        truncated,
        full,
      })
    let text = truncated
      ? raw.toString('utf8', 0, utf8Boundary(raw, max))
      : typeof m.data === 'string'
        ? m.data
        : raw.toString('utf8')
    // The protocol's own credential fields (resume, refresh) never reach the log.
    if (m.client.protocol === PROTOCOL && text.includes('"token"')) text = redactJsonSecrets(text)
    return b.message(m.client, { text, bytesPreview: undefined, bytes: m.bytes, truncated, full })
  }

  /**
   * A message's whole content for `log.payloads: full`: at most `log.payloadMax` bytes (text
   * cut on a character boundary), with the same credential redaction as the preview.
   */
  #content(client: ClientInfo, data: string | Buffer, binary: boolean): MessageContent {
    const max = this.#cfg.payloadMax
    if (binary) {
      const buf = typeof data === 'string' ? Buffer.from(data) : data
      const truncated = buf.length > max
      return { text: '', binary: truncated ? buf.subarray(0, max) : buf, truncated }
    }
    let text: string
    let truncated = false
    if (typeof data === 'string' && data.length * 3 <= max) text = data
    else {
      const buf = typeof data === 'string' ? Buffer.from(data) : data
      truncated = buf.length > max
      text = truncated ? buf.toString('utf8', 0, utf8Boundary(buf, max)) : buf.toString('utf8')
    }
    // As in the preview, plus the resume token the server hands out (welcome, resumed).
    if (client.protocol === PROTOCOL && (text.includes('"token"') || text.includes('"resume"')))
      text = redactJsonSecrets(text)
    return { text, binary: undefined, truncated }
  }

  /** Build the line of a built-in event; false when the level filter drops it. */
  #describe<K extends WsEventName>(name: K, e: WsEvents[K], b: LineBuilder): boolean {
    const level = EVENT_LEVEL[name]
    if (level === undefined || level < this.#minLevel) return false
    switch (name) {
      case 'message.sent': {
        const m = e as WsEvents['message.sent']
        b.begin(level, name, `Message sent: ${m.client.ip}`)
        b.client(m.client)
        b.num('bytes', m.bytes)
        if (this.#cfg.payloads === 'full' && m.data !== undefined)
          b.content(this.#content(m.client, m.data, m.binary))
        else if (m.binary) b.bool('binary', true)
        return true
      }
      case 'client.connected': {
        const c = (e as WsEvents['client.connected']).client
        b.begin(level, name, `Client connected: ${c.ip}`)
        b.client(c)
        b.num('port', c.port)
        b.str('proxy', c.proxy)
        b.str('path', c.path)
        b.str('origin', c.origin)
        b.str('ua', c.userAgent)
        if (c.protocol) b.str('protocol', c.protocol)
        return true
      }
      case 'client.disconnected': {
        const d = e as WsEvents['client.disconnected']
        b.begin(level, name, `Client disconnected: ${d.client.ip}`)
        b.client(d.client)
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
        const r = e as WsEvents['client.rejected']
        b.begin(level, name, `Client rejected: ${r.ip}`)
        b.str('ip', r.ip)
        b.num('port', r.port)
        b.str('proxy', r.proxy)
        b.num('status', r.status)
        b.str('reason', r.reason)
        b.str('path', r.path)
        b.str('origin', r.origin)
        b.str('ua', r.userAgent)
        return true
      }
      case 'client.error': {
        const r = e as WsEvents['client.error']
        b.begin(level, name, `Client error: ${r.client.ip}`)
        b.client(r.client)
        b.str('code', r.code)
        b.num('close_code', r.closeCode)
        b.str('error', r.message)
        return true
      }
      case 'message.dropped': {
        const r = e as WsEvents['message.dropped']
        b.begin(level, name, `Messages dropped: ${r.client.ip}`)
        b.client(r.client)
        b.num('count', r.dropped)
        b.str('reason', r.reason)
        return true
      }
      case 'handler.failed':
        return this.#handlerFailed(e as WsEvents['handler.failed'], b)
      case 'server.listening': {
        const r = e as WsEvents['server.listening']
        b.begin(level, name, `Server listening: ${r.url}`)
        b.str('address', r.address)
        b.num('port', r.port)
        b.str('url', r.url)
        return true
      }
      case 'server.closing': {
        const r = e as WsEvents['server.closing']
        b.begin(level, name, `Server closing: ${escapeText(r.reason)}`)
        b.str('reason', r.reason)
        b.num('clients', r.clients)
        return true
      }
      case 'server.closed': {
        b.begin(level, name, 'Server closed')
        b.str('reason', (e as WsEvents['server.closed']).reason)
        return true
      }
      case 'log.dropped': {
        const r = e as WsEvents['log.dropped']
        b.begin(level, name, `Log lines dropped: ${r.dropped}`)
        b.num('dropped', r.dropped)
        b.str('path', r.path)
        return true
      }
      case 'log.rotated': {
        const r = e as WsEvents['log.rotated']
        b.begin(level, name, 'Log rotated')
        b.str('path', r.path)
        b.str('previous', r.rotatedTo)
        return true
      }
      case 'topic.subscribed': {
        const r = e as WsEvents['topic.subscribed']
        b.begin(level, name, `Topic subscribed: ${escapeText(r.topic)}`)
        b.client(r.client)
        b.str('topic', r.topic)
        if (r.pattern) b.bool('pattern', true)
        if (r.replayed > 0) b.num('replayed', r.replayed)
        return true
      }
      case 'topic.unsubscribed': {
        const r = e as WsEvents['topic.unsubscribed']
        b.begin(level, name, `Topic unsubscribed: ${escapeText(r.topic)}`)
        b.client(r.client)
        b.str('topic', r.topic)
        return true
      }
      case 'topic.published': {
        const r = e as WsEvents['topic.published']
        b.begin(level, name, `Topic published: ${escapeText(r.topic)} #${r.seq} to ${r.recipients}`)
        if (r.client) b.client(r.client)
        else b.str('client', 'server')
        b.str('topic', r.topic)
        b.num('seq', r.seq)
        b.num('recipients', r.recipients)
        b.num('bytes', r.bytes)
        b.json(
          'data',
          r.bytes <= this.#cfg.preview
            ? r.data
            : jsonValue(`${r.data.slice(0, this.#cfg.preview)}…`),
        )
        return true
      }
      case 'message.direct': {
        const r = e as WsEvents['message.direct']
        b.begin(level, name, `Direct message: ${escapeText(r.to)} (${r.recipients})`)
        if (r.client) b.client(r.client)
        else b.str('client', 'server')
        b.str('to', r.to)
        b.num('recipients', r.recipients)
        b.num('bytes', r.bytes)
        return true
      }
      case 'session.resumed': {
        const r = e as WsEvents['session.resumed']
        b.begin(level, name, `Session resumed: ${r.client.ip}`)
        b.client(r.client)
        b.str('session', r.session)
        b.num('replayed', r.replayed)
        b.num('gaps', r.gaps)
        return true
      }
      case 'session.expired': {
        const r = e as WsEvents['session.expired']
        b.begin(level, name, `Session expired: ${r.client.ip}`)
        b.client(r.client)
        b.str('session', r.session)
        return true
      }
      case 'auth.refreshed': {
        const r = e as WsEvents['auth.refreshed']
        b.begin(level, name, `Credential refreshed: ${r.client.ip}`)
        b.client(r.client)
        if (r.expiresAt !== undefined) b.str('expires', new Date(r.expiresAt).toISOString())
        return true
      }
      case 'auth.expired': {
        const r = e as WsEvents['auth.expired']
        b.begin(level, name, `Credential expired: ${r.client.ip}`)
        b.client(r.client)
        return true
      }
      case 'access.denied': {
        const r = e as WsEvents['access.denied']
        b.begin(level, name, `Access denied: ${escapeText(r.op)} ${escapeText(r.topic)}`)
        b.client(r.client)
        b.str('op', r.op)
        b.str('topic', r.topic)
        return true
      }
      case 'pubsub.error': {
        const r = e as WsEvents['pubsub.error']
        b.begin(level, name, `Request refused: ${escapeText(r.code)}`)
        b.client(r.client)
        if (r.op) b.str('op', r.op)
        b.str('code', r.code)
        b.str('error', r.message)
        return true
      }
      case 'broker.down': {
        const r = e as WsEvents['broker.down']
        b.begin(level, name, `Broker down: ${escapeText(r.broker)} (${escapeText(r.reason)})`)
        b.str('broker', r.broker)
        b.str('reason', r.reason)
        return true
      }
      case 'broker.up': {
        const r = e as WsEvents['broker.up']
        b.begin(
          level,
          name,
          `Broker up: ${escapeText(r.broker)} after ${r.downMs} ms (${r.dropped} commands refused meanwhile)`,
        )
        b.str('broker', r.broker)
        b.num('down_ms', r.downMs)
        b.num('dropped', r.dropped)
        b.num('reconnects', r.reconnects)
        return true
      }
      case 'worker.started': {
        const r = e as WsEvents['worker.started']
        b.begin(level, name, `Worker started: ${r.worker} (pid ${r.pid})`)
        b.num('worker', r.worker)
        b.num('worker_pid', r.pid)
        b.num('restarts', r.restarts)
        return true
      }
      case 'worker.exited': {
        const r = e as WsEvents['worker.exited']
        const how = r.signal !== undefined ? `signal ${r.signal}` : `code ${r.code}`
        const actual = r.crashed ? LEVELS.error : LEVELS.info
        if (actual < this.#minLevel) return false
        b.begin(
          actual,
          name,
          `Worker ${r.crashed ? 'crashed' : 'exited'}: ${r.worker} (pid ${r.pid}, ${how})`,
        )
        b.num('worker', r.worker)
        b.num('worker_pid', r.pid)
        b.num('code', r.code)
        b.str('signal', r.signal)
        b.bool('crashed', r.crashed)
        return true
      }
      case 'webhook.failed': {
        const r = e as WsEvents['webhook.failed']
        b.begin(
          level,
          name,
          `Webhook failed: ${escapeText(r.endpoint)} ${escapeText(r.event)} (${escapeText(r.reason)})`,
        )
        b.str('endpoint', r.endpoint)
        b.str('webhook_event', r.event)
        b.str('delivery', r.delivery)
        b.num('attempts', r.attempts)
        b.num('status', r.status)
        b.str('error', r.error)
        b.str('reason', r.reason)
        return true
      }
      case 'webhook.dropped': {
        const r = e as WsEvents['webhook.dropped']
        b.begin(
          level,
          name,
          `Webhook deliveries dropped: ${escapeText(r.endpoint)} ${r.dropped} (${escapeText(r.reason)})`,
        )
        b.str('endpoint', r.endpoint)
        b.num('count', r.dropped)
        b.str('reason', r.reason)
        b.str('webhook_event', r.event)
        return true
      }
      default:
        // A built-in event without a sentence of its own: its payload as data.
        this.#userEvent(b, `ws:${name}`, e, level)
        return true
    }
  }

  #userEvent(b: LineBuilder, event: string, payload: unknown, level: number = LEVELS.info): void {
    const data = jsonValue(this.#redactFields(payload))
    const max = Math.max(this.#cfg.preview, 16)
    b.begin(level, event, `Event ${escapeText(event)}: ${escapeText(cutText(data, max))}`)
    b.json(
      'data',
      data.length <= MAX_USER_DATA ? data : jsonValue(`${data.slice(0, MAX_USER_DATA)}…`),
    )
  }

  #userLine(level: number, source: string, msg: string, fields: LogFields | undefined): void {
    if (this.#closed || level < this.#minLevel) return
    if (this.#tap?.filter && !this.#tap.filter(source, 'log')) return
    const b = this.#b
    const max = Math.max(this.#cfg.preview, 16)
    const text = typeof msg === 'string' ? msg : String(msg)
    b.begin(level, `${source}:log`, `[${source}] ${escapeText(cutText(text, max))}`)
    b.str('source', source)
    if (fields !== undefined && fields !== null) {
      for (const [k, v] of Object.entries(fields)) {
        const key = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k) ? k : 'field'
        if (RESERVED_FIELDS.has(key) || (this.#chained && CHAIN_FIELDS.has(key))) continue
        if (this.#redact.isSecret(k)) b.str(key, REDACTED)
        else if (typeof v === 'number' && Number.isFinite(v)) b.num(key, v)
        else if (typeof v === 'boolean') b.bool(key, v)
        else if (typeof v === 'string') b.str(key, cutText(this.#redactString(v), max))
        else {
          const j = jsonValue(this.#redactFields(v))
          b.json(key, j.length <= MAX_USER_DATA ? j : jsonValue(`${j.slice(0, MAX_USER_DATA)}…`))
        }
      }
    }
    this.#out(b.end())
  }

  /** A string that is a URL or a request target gets its query credentials redacted. */
  #redactString(s: string): string {
    return s.includes('?') && (s.startsWith('/') || /^[a-z][a-z0-9+.-]*:\/\//i.test(s))
      ? this.#redact.path(s)
      : s
  }

  /** A copy of a user payload with credential-like keys redacted (two levels deep). */
  #redactFields(v: unknown, depth = 0): unknown {
    if (v === null || typeof v !== 'object' || depth > 2 || Buffer.isBuffer(v)) {
      return typeof v === 'string' ? this.#redactString(v) : v
    }
    if (Array.isArray(v)) return v.map((x) => this.#redactFields(x, depth + 1))
    if (v instanceof Error || typeof (v as { toJSON?: unknown }).toJSON === 'function') return v
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) {
      out[k] = this.#redact.isSecret(k) ? REDACTED : this.#redactFields(x, depth + 1)
    }
    return out
  }

  /** At most FAILURE_LINES_PER_SECOND lines per event per second; then one summary. */
  #handlerFailed(f: WsEvents['handler.failed'], b: LineBuilder): boolean {
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
    this.#out(b.end())
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

  /** Flush, close the sinks and stop recording. Idempotent. */
  async close(): Promise<void> {
    if (this.#failureTimer) clearTimeout(this.#failureTimer)
    this.#flushFailureSummaries()
    if (this.#rotateTimer) clearInterval(this.#rotateTimer)
    if (this.#sealTimer) clearInterval(this.#sealTimer)
    this.#closed = true
    this.#detach?.()
    this.#detach = undefined
    this.#early = undefined
    const sinks = this.#sinks
    this.#sinks = []
    this.#closedSinks.push(...sinks)
    await Promise.all(sinks.map((s) => s.close()))
  }
}

/** Field names of every line: a user field may not shadow them. */
const RESERVED_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'event', 'msg', 'source'])
/** …and in a chained log, the fields the chain ends each line with. */
const CHAIN_FIELDS = new Set(['n', 'chain'])

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}

function defaultReport(msg: string): void {
  process.stderr.write(`${msg}\n`)
}
