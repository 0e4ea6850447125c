/**
 * One activity-log line → one record, for the `text` and `json` formats (and, as far as a
 * sentence allows, `plain`). The inverse of `src/log/format.ts`; see README "Fields".
 *
 * `text` lines are `<ISO time> <LEVEL> <sentence> event=<event> key=value …`. The sentence is
 * escaped (no CR/LF, no control characters, backslashes doubled) but may hold client content
 * such as `hi event=x client=y`, so ` event=` is not searched from the left: the real field
 * list is the right-most ` event=` whose tail parses as `key=value` pairs under the writer's
 * own rules (an unquoted value holds no space, `"` or `=`; a quoted one escapes `"` as `\"`).
 * Forged pairs in the sentence sit left of the real ones, and a ` event=` inside a quoted value
 * cannot parse (its closing quote has no opening one), so the right-most match is the writer's.
 */

import { escapeText, jsonValue, textValue } from '../log/escape.js'

export type Level = 'debug' | 'info' | 'warn' | 'error'
export type RecordFormat = 'text' | 'json' | 'plain'

const LEVEL_BY_NUMBER: Record<number, Level> = { 20: 'debug', 30: 'info', 40: 'warn', 50: 'error' }
const LEVEL_BY_LABEL: Record<string, Level> = {
  DEBUG: 'debug',
  'INFO ': 'info',
  'WARN ': 'warn',
  ERROR: 'error',
}
export const LEVEL_NUMBER: Record<Level, number> = { debug: 20, info: 30, warn: 40, error: 50 }

export type FieldValue = string | number | boolean | null | object

export interface LogRecord {
  /** Epoch milliseconds. */
  time: number
  level: Level
  /** `client.connected`, `message.received`, `app:order.created`, … */
  event: string
  /** The connection id (`client=`). */
  client: string | undefined
  /** The client's address (`ip=`). */
  address: string | undefined
  user: string | undefined
  bytes: number | undefined
  /** `code=`: a close code (number) on `client.disconnected`, a `WS_ERR_…` on `client.error`. */
  code: number | string | undefined
  reason: string | undefined
  /** The human sentence (`msg`), unescaped. */
  text: string
  /** The message content where the line carries it on its own (json `data`). */
  data: string | undefined
  /**
   * The line's other fields (text: values unescaped). A json record's object still holds
   * `time`, `level`, `event` and `msg`: use `otherFields()` to leave them out.
   */
  fields: Record<string, FieldValue>
  format: RecordFormat
}

/** Undo `escapeText` (`\n`, `\r`, `\t`, `\\`, `\xHH`, `\uHHHH`) and, in quoted values, `\"`. */
export function unescapeText(s: string): string {
  if (!s.includes('\\')) return s
  let out = ''
  let i = 0
  for (;;) {
    const j = s.indexOf('\\', i)
    if (j < 0 || j === s.length - 1) return out + s.slice(i)
    out += s.slice(i, j)
    const c = s[j + 1]
    i = j + 2
    switch (c) {
      case 'n':
        out += '\n'
        break
      case 'r':
        out += '\r'
        break
      case 't':
        out += '\t'
        break
      case '\\':
      case '"':
        out += c
        break
      case 'x':
      case 'u': {
        const n = c === 'x' ? 2 : 4
        const hex = s.slice(i, i + n)
        if (hex.length === n && /^[0-9a-fA-F]+$/.test(hex)) {
          out += String.fromCharCode(Number.parseInt(hex, 16))
          i += n
        } else out += `\\${c}`
        break
      }
      default:
        out += `\\${c}`
    }
  }
}

/** A key's characters: `[A-Za-z0-9_]`, not starting with a digit. */
function isKey(line: string, from: number, to: number): boolean {
  if (to <= from) return false
  for (let k = from; k < to; k++) {
    const c = line.charCodeAt(k)
    const alpha = (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95
    if (!alpha && (k === from || c < 48 || c > 57)) return false
  }
  return true
}

const NUMBER = /^-?\d+(\.\d+)?$/

/** The `event=` value of the last `parsePairs` that found one (kept out of its fields). */
let pairsEvent: string | undefined

/**
 * Parse ` key=value …` from `start` to the end of `line` (which starts with a space) under the
 * writer's rules; undefined when the tail is not such a list. `event` goes to `pairsEvent`,
 * not into the fields (deleting it afterwards would slow every later access to the object).
 */
function parsePairs(line: string, start: number): Record<string, FieldValue> | undefined {
  const out: Record<string, FieldValue> = {}
  pairsEvent = undefined
  let i = start
  const n = line.length
  while (i < n) {
    if (line.charCodeAt(i) !== 32) return undefined
    i++
    const eq = line.indexOf('=', i)
    if (eq < 0 || !isKey(line, i, eq)) return undefined
    const key = line.slice(i, eq)
    i = eq + 1
    let value: FieldValue
    if (line.charCodeAt(i) === 34) {
      // Quoted: up to the first `"` not escaped by a backslash.
      let j = i + 1
      for (;;) {
        if (j >= n) return undefined
        const c = line.charCodeAt(j)
        if (c === 92) j += 2
        else if (c === 34) break
        else j++
      }
      value = unescapeText(line.slice(i + 1, j))
      i = j + 1
      if (i < n && line.charCodeAt(i) !== 32) return undefined
    } else {
      // Unquoted: no space, `"` or `=` (the writer quotes those).
      let j = i
      let escaped = false
      for (; j < n; j++) {
        const c = line.charCodeAt(j)
        if (c === 32) break
        if (c === 34 || c === 61) return undefined
        if (c === 92) escaped = true
      }
      if (j === i) return undefined
      const raw = line.slice(i, j)
      i = j
      const c0 = raw.charCodeAt(0)
      value =
        raw === 'true'
          ? true
          : raw === 'false'
            ? false
            : ((c0 >= 48 && c0 <= 57) || c0 === 45) && NUMBER.test(raw)
              ? Number(raw)
              : escaped
                ? unescapeText(raw)
                : raw
    }
    if (key === 'event' && pairsEvent === undefined && typeof value === 'string') pairsEvent = value
    else out[key] = value
  }
  return out
}

let cachedSecond = ''
let cachedSecondMs = 0
/** `2026-01-02T03:04:05.678Z` → epoch ms, parsing the date part once per second. */
function isoTime(s: string): number {
  const second = s.slice(0, 19)
  if (second !== cachedSecond) {
    const ms = Date.parse(`${second}Z`)
    if (Number.isNaN(ms)) return Number.NaN
    cachedSecond = second
    cachedSecondMs = ms
  }
  const frac = s.charCodeAt(19) === 46 ? Number(s.slice(20, 23)) : 0
  return cachedSecondMs + frac
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /

function str(v: FieldValue | undefined): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined
}
function num(v: FieldValue | undefined): number | undefined {
  return typeof v === 'number' ? v : undefined
}

function record(
  time: number,
  level: Level,
  event: string,
  text: string,
  fields: Record<string, FieldValue>,
  format: RecordFormat,
): LogRecord {
  const code = fields.code
  return {
    time,
    level,
    event,
    client: str(fields.client),
    address: str(fields.ip),
    user: str(fields.user),
    bytes: num(fields.bytes),
    code: typeof code === 'number' || typeof code === 'string' ? code : undefined,
    reason: str(fields.reason),
    text,
    data: typeof fields.data === 'string' ? fields.data : undefined,
    fields,
    format,
  }
}

/** A `text` line; undefined if it is not one. */
export function parseTextLine(line: string): LogRecord | undefined {
  if (line.length < 31 || !ISO.test(line)) return undefined
  const level = LEVEL_BY_LABEL[line.slice(25, 30)]
  if (level === undefined || line.charCodeAt(30) !== 32) return undefined
  const time = isoTime(line)
  if (Number.isNaN(time)) return undefined
  let at = line.length
  for (;;) {
    at = line.lastIndexOf(' event=', at - 1)
    if (at < 30) return undefined
    const fields = parsePairs(line, at)
    const event = pairsEvent
    if (fields === undefined || event === undefined) continue
    return record(time, level, event, unescapeText(line.slice(31, at)), fields, 'text')
  }
}

/** A `json` line; undefined if it is not one. */
export function parseJsonLine(line: string): LogRecord | undefined {
  let o: unknown
  try {
    o = JSON.parse(line)
  } catch {
    return undefined
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return undefined
  const f = o as Record<string, FieldValue>
  const { time, level, event, msg } = f
  if (typeof time !== 'number' || typeof event !== 'string') return undefined
  // `time`, `level`, `event` and `msg` stay in the object (deleting them would put it in
  // V8's slow dictionary mode); the output functions leave them out of `fields`.
  return record(
    time,
    LEVEL_BY_NUMBER[typeof level === 'number' ? level : 30] ?? 'info',
    event,
    // `msg` holds the sentence as `text` writes it (escaped), then JSON-escaped.
    typeof msg === 'string' ? unescapeText(msg) : '',
    f,
    'json',
  )
}

/** The `plain` sentences that name their event and address. */
const PLAIN: ReadonlyArray<[string, string, Level]> = [
  ['Client connected: ', 'client.connected', 'info'],
  ['Client disconnected: ', 'client.disconnected', 'info'],
  ['Message received: ', 'message.received', 'info'],
  ['Message sent: ', 'message.sent', 'debug'],
  ['Client rejected: ', 'client.rejected', 'warn'],
  ['Client error: ', 'client.error', 'warn'],
]

/**
 * A `plain` line: only the sentence, so no time (NaN) and, but for the sentences above, no
 * event (`unknown`).
 */
export function parsePlainLine(line: string): LogRecord {
  const text = unescapeText(line)
  for (const [prefix, event, level] of PLAIN) {
    if (line.startsWith(prefix)) {
      const rest = line.slice(prefix.length)
      const fields: Record<string, FieldValue> = event === 'message.received' ? {} : { ip: rest }
      return record(Number.NaN, level, event, text, fields, 'plain')
    }
  }
  return record(Number.NaN, 'info', 'unknown', text, {}, 'plain')
}

/**
 * Any line wirelog writes, in whichever format; undefined for an empty or foreign line (a
 * `plain` line only when its sentence names its event).
 */
export function parseLine(line: string): LogRecord | undefined {
  if (line.length === 0) return undefined
  if (line.charCodeAt(0) === 123) return parseJsonLine(line)
  const r = parseTextLine(line)
  if (r !== undefined || !PLAIN.some(([prefix]) => line.startsWith(prefix))) return r
  return parsePlainLine(line)
}

const OWN = new Set(['time', 'level', 'event', 'msg'])

/** The fields of `r` but the ones every line has (time, level, event, msg). */
export function otherFields(r: LogRecord): Record<string, FieldValue> {
  if (r.format !== 'json') return r.fields
  const out: Record<string, FieldValue> = {}
  for (const [k, v] of Object.entries(r.fields)) if (!OWN.has(k)) out[k] = v
  return out
}

const LABEL: Record<Level, string> = {
  debug: 'DEBUG',
  info: 'INFO ',
  warn: 'WARN ',
  error: 'ERROR',
}

/** A record as one `text` line (no newline), the way the server writes it. */
export function toTextLine(r: LogRecord): string {
  const time = Number.isNaN(r.time) ? '-' : new Date(r.time).toISOString()
  let s = `${time} ${LABEL[r.level]} ${escapeText(r.text)} event=${textValue(r.event)}`
  for (const [k, v] of Object.entries(otherFields(r))) {
    // The writer's process and host are json-only fields: not in a text line.
    if (v === null || v === undefined || k === 'pid' || k === 'hostname') continue
    // A text line carries a message's content in its sentence only.
    if (k === 'data' && r.event === 'message.received') continue
    s += ` ${k}=${typeof v === 'string' ? textValue(v) : typeof v === 'object' ? textValue(JSON.stringify(v)) : v}`
  }
  return s
}

/** A record as one JSON object (no newline): time as ISO, the common fields, then the rest. */
export function toJsonLine(r: LogRecord): string {
  return jsonValue({
    time: Number.isNaN(r.time) ? null : new Date(r.time).toISOString(),
    level: r.level,
    event: r.event,
    client: r.client,
    address: r.address,
    user: r.user,
    bytes: r.bytes,
    code: r.code,
    reason: r.reason,
    text: r.text,
    data: r.data,
    fields: otherFields(r),
  })
}
