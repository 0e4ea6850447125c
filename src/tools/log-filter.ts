/**
 * Which records `wirelog logs` keeps: by event pattern, client, address, user, level, time
 * range and text. One predicate built once from the flags; each flag may be repeated (or hold
 * a comma-separated list), values of one flag are alternatives, different flags must all hold.
 */
import { LEVEL_NUMBER, type Level, type LogRecord } from './log-record.js'

/** A bad flag value: the message names the flag and what it accepts. */
export class UsageError extends Error {}

export interface FilterSpec {
  events: string[]
  clients: string[]
  addresses: string[]
  users: string[]
  texts: string[]
  since: number | undefined
  until: number | undefined
  level: Level | undefined
}

export function emptyFilter(): FilterSpec {
  return {
    events: [],
    clients: [],
    addresses: [],
    users: [],
    texts: [],
    since: undefined,
    until: undefined,
    level: undefined,
  }
}

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

export const TIME_ACCEPTS =
  'an ISO time (2026-12-03T14:00:00Z, 2026-12-03) or a duration ago (90s, 15m, 1h, 2d, 1h30m)'

/** `--since`/`--until`: an ISO time, or a duration before `now` (`15m`, `1h30m`). */
export function parseTime(flag: string, value: string, now = Date.now()): number {
  const v = value.trim()
  if (/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(v)) {
    let ms = 0
    for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g))
      ms += Number(m[1]) * UNIT_MS[m[2]!]!
    return now - ms
  }
  if (/^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?)?$/.test(v)) {
    // A time without a zone is UTC, like the log's own timestamps.
    const iso = /[T ]\d\d:\d\d/.test(v) && !/(Z|[+-]\d\d:?\d\d)$/.test(v) ? `${v}Z` : v
    const t = Date.parse(iso.replace(' ', 'T'))
    if (!Number.isNaN(t)) return t
  }
  throw new UsageError(`${flag}: expected ${TIME_ACCEPTS}, got ${JSON.stringify(value)}`)
}

/** `client.*`, `*.error`, `app:*`: `*` any run of characters, `?` one; else exact. */
export function patternTest(
  patterns: readonly string[],
): ((s: string | undefined) => boolean) | undefined {
  if (patterns.length === 0) return undefined
  const exact = new Set<string>()
  const res: RegExp[] = []
  for (const p of patterns) {
    if (!/[*?]/.test(p)) exact.add(p)
    else
      res.push(
        new RegExp(
          `^${p
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '.*')
            .replace(/\?/g, '.')}$`,
        ),
      )
  }
  return (s) => s !== undefined && (exact.has(s) || res.some((r) => r.test(s)))
}

/** The predicate of `spec`; undefined when it keeps everything. */
export function buildFilter(spec: FilterSpec): ((r: LogRecord) => boolean) | undefined {
  const tests: Array<(r: LogRecord) => boolean> = []
  const ev = patternTest(spec.events)
  if (ev) tests.push((r) => ev(r.event))
  const cl = patternTest(spec.clients)
  if (cl) tests.push((r) => cl(r.client))
  const ad = patternTest(spec.addresses)
  if (ad) tests.push((r) => ad(r.address))
  const us = patternTest(spec.users)
  if (us) tests.push((r) => us(r.user))
  if (spec.level !== undefined) {
    const min = LEVEL_NUMBER[spec.level]
    tests.push((r) => LEVEL_NUMBER[r.level] >= min)
  }
  const { since, until } = spec
  // A record without a time (plain format) is outside any time range.
  if (since !== undefined) tests.push((r) => r.time >= since)
  if (until !== undefined) tests.push((r) => r.time < until)
  if (spec.texts.length > 0) {
    const texts = spec.texts
    tests.push((r) => texts.some((t) => r.text.includes(t) || r.data?.includes(t) === true))
  }
  if (tests.length === 0) return undefined
  return (r) => {
    for (let i = 0; i < tests.length; i++) if (!tests[i]!(r)) return false
    return true
  }
}
