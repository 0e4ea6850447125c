/**
 * Line formats of the activity log. Each builds exactly one line by appending to a string:
 * no intermediate record object, no generic serializer on the per-message path.
 *
 * - `text`:  `2026-01-02T03:04:05.678Z INFO  Message received: hi event=message.received client=c1 …`
 * - `json`:  NDJSON with pino's field names (`level`, `time`, `pid`, `hostname`, `msg`) plus `event`
 * - `plain`: the sentence alone (`Message received: hi`)
 *
 * Values handed to `str()` are client-controlled and escaped here; `msg` must already be
 * escaped (see `escape.ts`), since it is written as is by `text` and `plain`.
 */
import { hostname } from 'node:os'
import type { ClientInfo } from '../connection.js'
import { escapeText, jsonString, textValue } from './escape.js'

export const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const
const LABEL: Record<number, string> = { 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR' }

export type LogFormat = 'text' | 'json' | 'plain'

export interface LineBuilder {
  begin(level: number, event: string, msg: string): void
  str(key: string, value: string | undefined): void
  num(key: string, value: number): void
  bool(key: string, value: boolean): void
  /** A value that is already valid JSON (json format) / shown as is (text). */
  json(key: string, jsonText: string): void
  end(): string
  /**
   * The whole `message.received` line, the per-message hot path: one template, the client's
   * fields formatted once per connection, the timestamp once per millisecond, and the
   * client's text escaped only when a byte needs it. `content` is the raw (unescaped)
   * preview; `suffix` is trusted text after it (truncation note, binary hex).
   */
  message(
    c: ClientInfo,
    content: string,
    suffix: string,
    bytes: number,
    binary: boolean,
    truncated: boolean,
  ): string
}

/** Anything a text line or a JSON string would have to escape. */
const NEEDS_ESCAPE = /[\x00-\x1f\x7f-\x9f\\"\u2028\u2029]/

/** `escapeText(s)` when `s` needs it, `s` itself otherwise; one regex test on the clean path. */
function safeText(s: string): string {
  return NEEDS_ESCAPE.test(s) ? escapeText(s) : s
}

/** The inside of a JSON string (no quotes) holding `escapeText(s)`. */
function safeJsonInner(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s
  const j = jsonString(escapeText(s))
  return j.slice(1, -1)
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

function flags(binary: boolean, truncated: boolean, sep: string, eq: string): string {
  if (!binary && !truncated) return ''
  return (binary ? `${sep}binary${eq}true` : '') + (truncated ? `${sep}truncated${eq}true` : '')
}

let cachedMs = -1
let cachedIso = ''
/** ISO timestamp, recomputed at most once per millisecond. */
function isoNow(ms: number): string {
  if (ms !== cachedMs) {
    cachedMs = ms
    cachedIso = new Date(ms).toISOString()
  }
  return cachedIso
}

class TextBuilder implements LineBuilder {
  #s = ''
  #clients = new FragmentCache((c) => ` client=${textValue(c.id)} ip=${textValue(c.ip)}`)
  #ms = -1
  #head = ''
  message(
    c: ClientInfo,
    content: string,
    suffix: string,
    bytes: number,
    binary: boolean,
    truncated: boolean,
  ): string {
    const ms = Date.now()
    if (ms !== this.#ms) {
      this.#ms = ms
      this.#head = `${isoNow(ms)} INFO  Message received: `
    }
    return `${this.#head}${safeText(content)}${suffix} event=message.received${this.#clients.get(c)} bytes=${bytes}${flags(binary, truncated, ' ', '=')}\n`
  }
  begin(level: number, event: string, msg: string): void {
    this.#s = `${isoNow(Date.now())} ${LABEL[level] ?? 'INFO '} ${msg} event=${event}`
  }
  str(key: string, value: string | undefined): void {
    if (value !== undefined) this.#s += ` ${key}=${textValue(value)}`
  }
  num(key: string, value: number): void {
    this.#s += ` ${key}=${value}`
  }
  bool(key: string, value: boolean): void {
    this.#s += ` ${key}=${value}`
  }
  json(key: string, jsonText: string): void {
    this.#s += ` ${key}=${textValue(jsonText)}`
  }
  end(): string {
    const s = `${this.#s}\n`
    this.#s = ''
    return s
  }
}

class JsonBuilder implements LineBuilder {
  #s = ''
  #msg = ''
  #clients = new FragmentCache((c) => `,"client":${jsonString(c.id)},"ip":${jsonString(c.ip)}`)
  #ms = -1
  #msgHead = ''
  message(
    c: ClientInfo,
    content: string,
    suffix: string,
    bytes: number,
    binary: boolean,
    truncated: boolean,
  ): string {
    const ms = Date.now()
    if (ms !== this.#ms) {
      this.#ms = ms
      this.#msgHead = `{"level":30,"time":${ms}${this.#head}"message.received"`
    }
    return `${this.#msgHead}${this.#clients.get(c)},"bytes":${bytes}${flags(binary, truncated, ',"', '":')},"msg":"Message received: ${safeJsonInner(content)}${safeJsonInner(suffix)}"}\n`
  }
  readonly #head: string
  constructor() {
    this.#head = `,"pid":${process.pid},"hostname":${jsonString(hostname())},"event":`
  }
  begin(level: number, event: string, msg: string): void {
    this.#msg = msg
    this.#s = `{"level":${level},"time":${Date.now()}${this.#head}${jsonString(event)}`
  }
  str(key: string, value: string | undefined): void {
    if (value !== undefined) this.#s += `,"${key}":${jsonString(value)}`
  }
  num(key: string, value: number): void {
    this.#s += `,"${key}":${value}`
  }
  bool(key: string, value: boolean): void {
    this.#s += `,"${key}":${value}`
  }
  json(key: string, jsonText: string): void {
    this.#s += `,"${key}":${jsonText}`
  }
  end(): string {
    const s = `${this.#s},"msg":${jsonString(this.#msg)}}\n`
    this.#s = ''
    return s
  }
}

class PlainBuilder implements LineBuilder {
  #msg = ''
  message(_c: ClientInfo, content: string, suffix: string): string {
    return `Message received: ${safeText(content)}${suffix}\n`
  }
  begin(_level: number, _event: string, msg: string): void {
    this.#msg = msg
  }
  str(): void {}
  num(): void {}
  bool(): void {}
  json(): void {}
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
