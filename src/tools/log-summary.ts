/**
 * `wirelog logs summary`: totals of a log over a time range, built in one pass with memory
 * that grows with the number of distinct clients, close codes and reasons, never with the
 * number of lines.
 */
import { describeCloseCode } from '../close-codes.js'
import { escapeText } from '../log/escape.js'
import type { LogRecord } from './log-record.js'

export interface Talker {
  client: string
  address: string | undefined
  user: string | undefined
  /** Messages and bytes the client sent to the server. */
  messages: number
  bytes: number
}

export interface SummaryReport {
  files: string[]
  lines: number
  /** Lines in the time range / matching the filters. */
  matched: number
  /** Lines that are not activity-log lines (torn, foreign). */
  unparsed: number
  from: string | null
  to: string | null
  connections: number
  disconnects: number
  rejections: number
  messagesIn: number
  bytesIn: number
  /** From `message.sent` lines (debug level) when there are any, else from disconnect totals. */
  messagesOut: number
  bytesOut: number
  outSource: 'message.sent' | 'client.disconnected'
  warnings: number
  errors: number
  topTalkers: Talker[]
  /** Distinct clients seen. */
  clients: number
  closeCodes: Array<{ code: number | string; name: string; count: number }>
  rejectionReasons: Array<{ reason: string; status: number | undefined; count: number }>
  errorKinds: Array<{ event: string; detail: string; count: number }>
}

/**
 * A copy of `s` that holds on to nothing else. Strings cut from a line are views of the
 * 1 MiB chunk it was decoded from; keeping one in a map (a client id, a reason) would keep
 * the whole chunk alive, and a log with many clients would pin most of the file in memory.
 */
function own<T extends string | undefined>(s: T): T {
  return (s === undefined ? s : Buffer.from(s, 'utf8').toString('utf8')) as T
}

interface ClientStats {
  address: string | undefined
  user: string | undefined
  messages: number
  bytes: number
}

export class Summary {
  lines = 0
  matched = 0
  unparsed = 0
  #first = Number.POSITIVE_INFINITY
  #last = Number.NEGATIVE_INFINITY
  #connections = 0
  #disconnects = 0
  #rejections = 0
  #msgsIn = 0
  #bytesIn = 0
  #sentLines = 0
  #sentBytes = 0
  #discMsgsOut = 0
  #discBytesOut = 0
  #warnings = 0
  #errors = 0
  #clients = new Map<string, ClientStats>()
  #codes = new Map<number | string, number>()
  #reasons = new Map<string, { reason: string; status: number | undefined; count: number }>()
  #errorKinds = new Map<string, { event: string; detail: string; count: number }>()

  #client(r: LogRecord): ClientStats | undefined {
    if (r.client === undefined || r.client === 'server') return undefined
    let c = this.#clients.get(r.client)
    if (c === undefined) {
      c = { address: own(r.address), user: own(r.user), messages: 0, bytes: 0 }
      this.#clients.set(own(r.client), c)
    } else {
      if (r.user !== undefined && r.user !== c.user) c.user = own(r.user)
      if (c.address === undefined) c.address = own(r.address)
    }
    return c
  }

  #error(event: string, detail: string): void {
    const key = `${event}\0${detail}`
    const e = this.#errorKinds.get(key)
    if (e) e.count++
    else this.#errorKinds.set(own(key), { event: own(event), detail: own(detail), count: 1 })
  }

  add(r: LogRecord): void {
    this.matched++
    if (r.time < this.#first) this.#first = r.time
    if (r.time > this.#last) this.#last = r.time
    if (r.level === 'warn') this.#warnings++
    else if (r.level === 'error') this.#errors++
    switch (r.event) {
      case 'message.received': {
        this.#msgsIn++
        const b = r.bytes ?? 0
        this.#bytesIn += b
        const c = this.#client(r)
        if (c) {
          c.messages++
          c.bytes += b
        }
        return
      }
      case 'message.sent':
        this.#sentLines++
        this.#sentBytes += r.bytes ?? 0
        return
      case 'client.connected':
        this.#connections++
        this.#client(r)
        return
      case 'client.disconnected': {
        this.#disconnects++
        this.#client(r)
        const f = r.fields
        if (typeof f.msgs_out === 'number') this.#discMsgsOut += f.msgs_out
        if (typeof f.bytes_out === 'number') this.#discBytesOut += f.bytes_out
        const code = r.code ?? 'none'
        const n = this.#codes.get(code)
        if (n !== undefined) this.#codes.set(code, n + 1)
        else this.#codes.set(typeof code === 'string' ? own(code) : code, 1)
        return
      }
      case 'client.rejected': {
        this.#rejections++
        const reason = r.reason ?? 'unknown'
        const status = typeof r.fields.status === 'number' ? r.fields.status : undefined
        const key = `${reason}\0${status}`
        const e = this.#reasons.get(key)
        if (e) e.count++
        else this.#reasons.set(own(key), { reason: own(reason), status, count: 1 })
        return
      }
      case 'client.error':
        this.#error(r.event, String(r.code ?? ''))
        return
      case 'handler.failed':
        this.#error(r.event, String(r.fields.handler_event ?? ''))
        return
      default:
        if (r.level === 'error') this.#error(r.event, '')
    }
  }

  report(files: string[], top: number): SummaryReport {
    const sent = this.#sentLines > 0
    const talkers: Talker[] = []
    for (const [client, c] of this.#clients) if (c.messages > 0) talkers.push({ client, ...c })
    talkers.sort((a, b) => b.bytes - a.bytes || b.messages - a.messages)
    const iso = (t: number): string | null =>
      Number.isFinite(t) ? new Date(t).toISOString() : null
    return {
      files,
      lines: this.lines,
      matched: this.matched,
      unparsed: this.unparsed,
      from: iso(this.#first),
      to: iso(this.#last),
      connections: this.#connections,
      disconnects: this.#disconnects,
      rejections: this.#rejections,
      messagesIn: this.#msgsIn,
      bytesIn: this.#bytesIn,
      messagesOut: sent ? this.#sentLines : this.#discMsgsOut,
      bytesOut: sent ? this.#sentBytes : this.#discBytesOut,
      outSource: sent ? 'message.sent' : 'client.disconnected',
      warnings: this.#warnings,
      errors: this.#errors,
      topTalkers: talkers.slice(0, top),
      clients: this.#clients.size,
      closeCodes: [...this.#codes]
        .map(([code, count]) => ({
          code,
          name: typeof code === 'number' ? (describeCloseCode(code)?.description ?? '') : '',
          count,
        }))
        .sort((a, b) => b.count - a.count),
      rejectionReasons: [...this.#reasons.values()].sort((a, b) => b.count - a.count),
      errorKinds: [...this.#errorKinds.values()].sort((a, b) => b.count - a.count),
    }
  }
}

const int = (n: number): string => n.toLocaleString('en-US')

/** 1234567 → `1.2 MB` (decimal units, like the README's figures). */
export function bytesText(n: number): string {
  if (n < 1000) return `${n} B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let v = n
  let u = -1
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000
    u++
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`
}

/** Rows as aligned columns; columns named in `right` are right-aligned. */
export function table(head: string[], rows: string[][], right: ReadonlySet<number>): string[] {
  // Client ids, users and reasons come from clients: no control character reaches the terminal.
  rows = rows.map((r) => r.map(escapeText))
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(w[i]!) : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd()
  return [line(head), ...rows.map(line)].map((l) => `  ${l}`)
}

function span(from: string | null, to: string | null): string {
  if (from === null || to === null) return 'no timed lines'
  const s = Math.round((Date.parse(to) - Date.parse(from)) / 1000)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const d = h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s % 60} s` : `${s} s`
  return `${from} … ${to} (${d})`
}

/** The report as aligned tables for a terminal. */
export function summaryText(r: SummaryReport): string {
  const out: string[] = []
  out.push(`Activity log: ${r.files.join(', ')}`)
  out.push(`Time range:   ${span(r.from, r.to)}`)
  out.push(
    `Lines:        ${int(r.lines)} read, ${int(r.matched)} in range${r.unparsed > 0 ? `, ${int(r.unparsed)} not log lines` : ''}`,
  )
  out.push('')
  out.push(
    ...table(
      ['', 'count', 'bytes'],
      [
        ['connections', int(r.connections), ''],
        ['disconnects', int(r.disconnects), ''],
        ['rejected', int(r.rejections), ''],
        ['messages in', int(r.messagesIn), bytesText(r.bytesIn)],
        [
          `messages out${r.outSource === 'client.disconnected' ? ' *' : ''}`,
          int(r.messagesOut),
          bytesText(r.bytesOut),
        ],
        ['warn lines', int(r.warnings), ''],
        ['error lines', int(r.errors), ''],
      ],
      new Set([1, 2]),
    ),
  )
  if (r.outSource === 'client.disconnected')
    out.push('  * from the totals of disconnect lines (message.sent lines need --log-level debug)')
  out.push('')
  out.push(
    `Top talkers (bytes sent to the server; ${int(r.clients)} client${r.clients === 1 ? '' : 's'} in all)`,
  )
  if (r.topTalkers.length === 0) out.push('  none')
  else
    out.push(
      ...table(
        ['#', 'client', 'address', 'user', 'messages', 'bytes'],
        r.topTalkers.map((t, i) => [
          String(i + 1),
          t.client,
          t.address ?? '-',
          t.user ?? '-',
          int(t.messages),
          bytesText(t.bytes),
        ]),
        new Set([0, 4, 5]),
      ),
    )
  out.push('')
  out.push('Close codes')
  if (r.closeCodes.length === 0) out.push('  none')
  else
    out.push(
      ...table(
        ['code', 'meaning', 'count'],
        r.closeCodes.map((c) => [String(c.code), c.name, int(c.count)]),
        new Set([0, 2]),
      ),
    )
  out.push('')
  out.push('Rejections')
  if (r.rejectionReasons.length === 0) out.push('  none')
  else
    out.push(
      ...table(
        ['status', 'reason', 'count'],
        r.rejectionReasons.map((c) => [String(c.status ?? '-'), c.reason, int(c.count)]),
        new Set([0, 2]),
      ),
    )
  out.push('')
  out.push('Errors')
  if (r.errorKinds.length === 0) out.push('  none')
  else
    out.push(
      ...table(
        ['event', 'detail', 'count'],
        r.errorKinds.map((c) => [c.event, c.detail || '-', int(c.count)]),
        new Set([2]),
      ),
    )
  return `${out.join('\n')}\n`
}
