/**
 * Line formats of the activity log. Each builds exactly one line by appending to a string:
 * no intermediate record object, no generic serializer on the per-message path.
 *
 * - `text`:  `2026-01-02T03:04:05.678Z INFO  Message received: hi event=message.received client=c1 …`
 * - `json`:  NDJSON with pino's field names (`level`, `time`, `pid`, `hostname`, `msg`) plus
 *            `event` and one field per payload field; client content in its own field
 *            (`data`), escaped once, so the original can be recovered
 * - `plain`: the sentence alone (`Message received: hi`)
 *
 * Values handed to `str()` are client-controlled and escaped here; `msg` given to `begin()`
 * must already be escaped (see `escape.ts`), since `text` and `plain` write it as is.
 */
import { hostname } from 'node:os'
import type { ClientInfo } from '../connection.js'
import { escapeText, hexPreview, jsonInner, jsonString, textValue } from './escape.js'

export const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const
export type LevelName = keyof typeof LEVELS
const LABEL: Record<number, string> = { 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR' }

export type LogFormat = 'text' | 'json' | 'plain'

/** A message's content as the log shows it. */
export interface MessagePreview {
  /** Text messages: the preview, decoded (cut on a character boundary). */
  readonly text: string
  /** Binary messages: the preview bytes. */
  readonly bytesPreview: Buffer | undefined
  /** The whole message's size. */
  readonly bytes: number
  readonly truncated: boolean
  /** With `log.payloads: full`: what the json line records in `data` instead of the preview. */
  readonly full?: MessageContent
}

/**
 * A message's whole content (up to `log.payloadMax`), for `log.payloads: full`. Text is
 * written as a JSON string, binary as base64 with `"encoding":"base64"`; `truncated` when
 * the message was longer than the limit.
 */
export interface MessageContent {
  /** Text messages: the content, decoded (cut on a character boundary). */
  readonly text: string
  /** Binary messages: the bytes. */
  readonly binary: Buffer | undefined
  readonly truncated: boolean
}

export interface LineBuilder {
  begin(level: number, event: string, msg: string): void
  str(key: string, value: string | undefined): void
  num(key: string, value: number | undefined): void
  bool(key: string, value: boolean): void
  /** A value that is already valid JSON (json format) / shown as is, escaped (text). */
  json(key: string, jsonText: string): void
  /** The client's fields: `client`, `ip`, and `user` when authenticated. */
  client(c: ClientInfo): void
  /** A message's content in `data` (json only; the other formats have no content field). */
  content(m: MessageContent): void
  end(): string
  /**
   * The whole `message.received` line, the per-message hot path: one template, the
   * client's fields formatted once per connection, the timestamp once per millisecond, and
   * the client's text escaped only when a byte needs it.
   */
  message(c: ClientInfo, m: MessagePreview): string
}

let cachedMs = -1
let cachedIso = ''
/** The start of the second last formatted, and its `YYYY-MM-DDTHH:MM:SS.` */
let secondMs = Number.NaN
let secondPrefix = ''
const PAD = ['00', '0', '']
/**
 * ISO timestamp (UTC, `toISOString()`'s form), recomputed at most once per millisecond; at a
 * few thousand lines per second nearly every line is a new millisecond, so only the
 * milliseconds are appended to the second's cached prefix.
 */
export function isoNow(ms: number): string {
  if (ms !== cachedMs) {
    cachedMs = ms
    const within = ms - secondMs
    if (within >= 0 && within < 1000) {
      const d = String(within)
      cachedIso = `${secondPrefix}${PAD[d.length - 1]}${d}Z`
    } else {
      cachedIso = new Date(ms).toISOString()
      // Years 0–9999 only (a six-digit year has another shape): else no prefix is cached.
      if (ms >= 0 && cachedIso.length === 24) {
        secondMs = ms - (ms % 1000)
        secondPrefix = cachedIso.slice(0, 20)
      } else secondMs = Number.NaN
    }
  }
  return cachedIso
}

/** Per-connection fragments, computed at the first line of a client and reused. */
class FragmentCache {
  #map = new WeakMap<object, string>()
  readonly #make: (c: ClientInfo) => string
  constructor(make: (c: ClientInfo) => string) {
    this.#make = make
  }
  get(c: ClientInfo): string {
    let f = this.#map.get(c)
    if (f === undefined) {
      f = this.#make(c)
      this.#map.set(c, f)
    }
    return f
  }
}

/** The human sentence of a message (escaped). */
function messageSentence(m: MessagePreview): string {
  if (m.bytesPreview !== undefined) {
    const hex = hexPreview(m.bytesPreview, 32)
    return `[binary ${m.bytes} bytes] ${hex}${m.bytes > hex.length / 2 ? '…' : ''}`
  }
  const text = escapeText(m.text)
  return m.truncated ? `${text}… (${m.bytes} bytes)` : text
}

function flags(m: MessagePreview, sep: string, eq: string): string {
  const binary = m.bytesPreview !== undefined
  if (!binary && !m.truncated) return ''
  return (binary ? `${sep}binary${eq}true` : '') + (m.truncated ? `${sep}truncated${eq}true` : '')
}

/** The json fields of a whole message: flags, then `data`. */
function contentFields(m: MessageContent): string {
  const flagsText =
    (m.binary !== undefined ? ',"binary":true,"encoding":"base64"' : '') +
    (m.truncated ? ',"truncated":true' : '')
  const data = m.binary !== undefined ? m.binary.toString('base64') : jsonInner(m.text)
  return `${flagsText},"data":"${data}"`
}

class TextBuilder implements LineBuilder {
  #s = ''
  #clients = new FragmentCache(
    (c) =>
      ` client=${textValue(c.id)} ip=${textValue(c.ip)}${c.user ? ` user=${textValue(c.user.id)}` : ''}`,
  )
  #ms = -1
  #head = ''
  message(c: ClientInfo, m: MessagePreview): string {
    const ms = Date.now()
    if (ms !== this.#ms) {
      this.#ms = ms
      this.#head = `${isoNow(ms)} INFO  Message received: `
    }
    return `${this.#head}${messageSentence(m)} event=message.received${this.#clients.get(c)} bytes=${m.bytes}${flags(m, ' ', '=')}\n`
  }
  begin(level: number, event: string, msg: string): void {
    this.#s = `${isoNow(Date.now())} ${LABEL[level] ?? 'INFO '} ${msg} event=${event}`
  }
  str(key: string, value: string | undefined): void {
    if (value !== undefined) this.#s += ` ${key}=${textValue(value)}`
  }
  num(key: string, value: number | undefined): void {
    if (value !== undefined) this.#s += ` ${key}=${value}`
  }
  bool(key: string, value: boolean): void {
    this.#s += ` ${key}=${value}`
  }
  json(key: string, jsonText: string): void {
    this.#s += ` ${key}=${textValue(jsonText)}`
  }
  client(c: ClientInfo): void {
    this.#s += this.#clients.get(c)
  }
  content(): void {}
  end(): string {
    const s = `${this.#s}\n`
    this.#s = ''
    return s
  }
}

class JsonBuilder implements LineBuilder {
  #s = ''
  #msg = ''
  #clients = new FragmentCache(
    (c) =>
      `,"client":${jsonString(c.id)},"ip":${jsonString(c.ip)}${c.user ? `,"user":${jsonString(c.user.id)}` : ''}`,
  )
  #ms = -1
  #msgHead = ''
  readonly #head: string
  constructor() {
    this.#head = `,"pid":${process.pid},"hostname":${jsonString(hostname())},"event":`
  }
  message(c: ClientInfo, m: MessagePreview): string {
    const ms = Date.now()
    if (ms !== this.#ms) {
      this.#ms = ms
      this.#msgHead = `{"level":30,"time":${ms}${this.#head}"message.received"`
    }
    if (m.full !== undefined)
      return `${this.#msgHead}${this.#clients.get(c)},"bytes":${m.bytes}${contentFields(m.full)},"msg":"Message received: ${jsonInner(messageSentence(m))}"}\n`
    const data =
      m.bytesPreview !== undefined ? m.bytesPreview.toString('base64') : jsonInner(m.text)
    return `${this.#msgHead}${this.#clients.get(c)},"bytes":${m.bytes}${flags(m, ',"', '":')},"data":"${data}","msg":"Message received: ${jsonInner(messageSentence(m))}"}\n`
  }
  begin(level: number, event: string, msg: string): void {
    this.#msg = msg
    this.#s = `{"level":${level},"time":${Date.now()}${this.#head}${jsonString(event)}`
  }
  str(key: string, value: string | undefined): void {
    if (value !== undefined) this.#s += `,"${key}":${jsonString(value)}`
  }
  num(key: string, value: number | undefined): void {
    if (value !== undefined) this.#s += `,"${key}":${value}`
  }
  bool(key: string, value: boolean): void {
    this.#s += `,"${key}":${value}`
  }
  json(key: string, jsonText: string): void {
    this.#s += `,"${key}":${jsonText}`
  }
  client(c: ClientInfo): void {
    this.#s += this.#clients.get(c)
  }
  content(m: MessageContent): void {
    this.#s += contentFields(m)
  }
  end(): string {
    const s = `${this.#s},"msg":${jsonString(this.#msg)}}\n`
    this.#s = ''
    return s
  }
}

class PlainBuilder implements LineBuilder {
  #msg = ''
  message(_c: ClientInfo, m: MessagePreview): string {
    return `Message received: ${messageSentence(m)}\n`
  }
  begin(_level: number, _event: string, msg: string): void {
    this.#msg = msg
  }
  str(): void {}
  num(): void {}
  bool(): void {}
  json(): void {}
  client(): void {}
  content(): void {}
  end(): string {
    return `${this.#msg}\n`
  }
}

export function createBuilder(format: LogFormat): LineBuilder {
  switch (format) {
    case 'json':
      return new JsonBuilder()
    case 'plain':
      return new PlainBuilder()
    default:
      return new TextBuilder()
  }
}
