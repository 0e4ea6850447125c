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
import { jsonString, textValue } from './escape.js'

export const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const
export type LevelName = keyof typeof LEVELS
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
