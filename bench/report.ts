/**
 * Results: the figures of every session, their medians and ranges across rounds, the
 * ratios to the raw `ws` baseline, the targets, the table on stdout and the JSON file.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IdleResult, LoadResult } from './measure.js'
import type { Options, ServerSpec } from './options.js'
import type { LogReport } from './protocol.js'
import { type Summary, summarize } from './stats.js'

/** Everything measured on one server process in one round. */
export interface Session {
  round: number
  server: string
  startedAt: string
  load: Record<string, LoadResult>
  idle: IdleResult | undefined
  log: LogReport | null | undefined
  /** Harness failures (mismatched echoes, crashes, lost log lines, …). */
  errors: string[]
}

export const BASELINE = 'raw-ws'

interface Metric {
  key: string
  label: string
  get(s: Session): number | undefined
  format(v: number): string
  /** Context shown next to the figure (e.g. CPU use of server and generator). */
  note?(sessions: Session[]): string
}

const int = (v: number): string => Math.round(v).toLocaleString('en-US')
const fixed = (d: number) => (v: number) => v.toFixed(d)

function cpuNote(key: string) {
  return (sessions: Session[]): string => {
    const srv = summarize(sessions.map((s) => s.load[key]?.serverCpuPct ?? Number.NaN))
    const gen = summarize(sessions.map((s) => s.load[key]?.generatorCpuPct ?? Number.NaN))
    return srv && gen
      ? `server ${srv.median.toFixed(0)}% / generator ${gen.median.toFixed(0)}% CPU`
      : ''
  }
}

export function metrics(o: Options): Metric[] {
  const out: Metric[] = []
  for (const size of o.sizes) {
    const key = `closed-${size}`
    out.push({
      key: `msgs-${size}`,
      label: `msg/s, ${sizeLabel(size)}`,
      get: (s) => s.load[key]?.msgsPerSec,
      format: int,
      note: cpuNote(key),
    })
    out.push({
      key: `cpu-${size}`,
      label: `server CPU µs/msg, ${sizeLabel(size)}`,
      get: (s) => s.load[key]?.cpuUsPerMsg,
      format: fixed(2),
    })
  }
  const rate = `@ ${int(o.rate)} msg/s`
  out.push(
    {
      key: 'p50',
      label: `p50 RTT ms ${rate}`,
      get: (s) => s.load.open?.latencyMs?.p50,
      format: fixed(3),
    },
    {
      key: 'p99',
      label: `p99 RTT ms ${rate}`,
      get: (s) => s.load.open?.latencyMs?.p99,
      format: fixed(3),
      note: (sessions) => {
        const lag = summarize(sessions.map((s) => s.load.open?.maxScheduleLagMs ?? Number.NaN))
        return lag ? `generator behind schedule ≤ ${lag.max.toFixed(1)} ms` : ''
      },
    },
    {
      key: 'cpu-open',
      label: `server CPU µs/msg ${rate}`,
      get: (s) => s.load.open?.cpuUsPerMsg,
      format: fixed(2),
    },
  )
  if (o.idleConnections > 0) {
    const n = int(o.idleConnections)
    out.push(
      {
        key: 'rss-conn',
        label: `RSS KB/idle conn (${n})`,
        get: (s) => (s.idle ? s.idle.rssPerConn / 1024 : undefined),
        format: fixed(2),
        note: (sessions) => {
          const heap = summarize(
            sessions.map((s) => (s.idle ? s.idle.heapPerConn / 1024 : Number.NaN)),
          )
          return heap ? `JS heap ${heap.median.toFixed(2)} KB/conn` : ''
        },
      },
      {
        key: 'accept',
        label: `connections accepted/s`,
        get: (s) => s.idle?.acceptPerSec,
        format: int,
      },
      {
        key: 'cpu-conn',
        label: 'server CPU µs/connection',
        get: (s) => s.idle?.cpuUsPerConn,
        format: fixed(1),
      },
    )
  }
  return out
}

function sizeLabel(size: number): string {
  return size >= 1024 && size % 1024 === 0 ? `${size / 1024} KB` : `${size} B`
}

export interface Figure extends Summary {
  /** Median over the baseline's median. */
  ratio: number | undefined
}

export type Summaries = Record<string, Record<string, Figure>>

export function summarise(sessions: Session[], servers: ServerSpec[], list: Metric[]): Summaries {
  const out: Summaries = {}
  for (const spec of servers) {
    out[spec.id] = {}
    for (const m of list) {
      const s = summarize(
        sessions.filter((x) => x.server === spec.id).map((x) => m.get(x) ?? Number.NaN),
      )
      if (s) out[spec.id]![m.key] = { ...s, ratio: undefined }
    }
  }
  const base = out[BASELINE]
  for (const spec of servers) {
    for (const m of list) {
      const f = out[spec.id]![m.key]
      const b = base?.[m.key]
      if (f && b && b.median !== 0) f.ratio = f.median / b.median
    }
  }
  return out
}

/** The table: one block per figure, one row per server. */
export function table(
  sessions: Session[],
  servers: ServerSpec[],
  list: Metric[],
  sum: Summaries,
): string {
  const rows: string[][] = [['figure', 'server', 'median', 'min – max', '× raw ws', 'notes']]
  for (const m of list) {
    let first = true
    for (const spec of servers) {
      const f = sum[spec.id]?.[m.key]
      const mine = sessions.filter((s) => s.server === spec.id)
      rows.push([
        first ? m.label : '',
        spec.label,
        f ? m.format(f.median) : 'n/a',
        f ? `${m.format(f.min)} – ${m.format(f.max)}` : '',
        f?.ratio !== undefined ? f.ratio.toFixed(2) : '',
        m.note ? m.note(mine) : '',
      ])
      first = false
    }
    rows.push([])
  }
  const widths = rows[0]!.map((_c, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  const right = new Set([2, 3, 4])
  return rows
    .map((r) =>
      r.length === 0
        ? ''
        : r
            .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
            .join('  ')
            .trimEnd(),
    )
    .join('\n')
}

export interface Target {
  name: string
  /** undefined: not measured in this run. */
  pass: boolean | undefined
  detail: string
}

/** The targets, judged on medians (informational: they never change the exit code). */
export function targets(sum: Summaries, o: Options): Target[] {
  const raw = sum[BASELINE]
  const text = sum.text
  const json = sum.json
  const off = sum.off
  const med = (s: Record<string, Figure> | undefined, key: string): number | undefined =>
    s?.[key]?.median
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || b === 0 ? undefined : a / b
  const out: Target[] = []
  const judge = (
    name: string,
    values: Array<number | undefined>,
    ok: (...v: number[]) => boolean,
    detail: (...v: number[]) => string,
  ): void => {
    if (values.some((v) => v === undefined || !Number.isFinite(v)))
      out.push({ name, pass: undefined, detail: 'not measured' })
    else
      out.push({ name, pass: ok(...(values as number[])), detail: detail(...(values as number[])) })
  }
  const x = (r: number): string => `${r.toFixed(3)}×`

  judge(
    'text: msg/s at 64 B ≥ 0.85× raw ws',
    [ratio(med(text, 'msgs-64'), med(raw, 'msgs-64'))],
    (r) => r >= 0.85,
    x,
  )
  judge(
    'text: server CPU/msg at 64 B ≤ 1.25× raw ws',
    [ratio(med(text, 'cpu-64'), med(raw, 'cpu-64'))],
    (r) => r <= 1.25,
    x,
  )
  judge(
    'text: msg/s at 4 KB ≥ 0.90× raw ws',
    [ratio(med(text, 'msgs-4096'), med(raw, 'msgs-4096'))],
    (r) => r >= 0.9,
    x,
  )
  judge(
    `text: p99 at ${o.rate.toLocaleString('en-US')} msg/s ≤ raw ws + 0.3 ms`,
    [med(text, 'p99'), med(raw, 'p99')],
    (t, r) => t - r <= 0.3,
    (t, r) =>
      `${t.toFixed(3)} ms vs ${r.toFixed(3)} ms (${t - r >= 0 ? '+' : ''}${(t - r).toFixed(3)} ms)`,
  )
  const rss = med(text, 'rss-conn')
  if (o.idleConnections < 10_000 && rss !== undefined) {
    // At a few hundred or thousand connections, one-off costs (heap growth, reuse of freed
    // memory) swamp the per-connection figure either way: shown, not judged.
    out.push({
      name: 'text: idle RSS/conn ≤ 9 KB at 10,000 connections',
      pass: undefined,
      detail: `${rss.toFixed(2)} KB at ${o.idleConnections.toLocaleString('en-US')} connections (judged only at ≥ 10,000)`,
    })
  } else {
    judge(
      `text: idle RSS/conn ≤ 9 KB at ${o.idleConnections.toLocaleString('en-US')} connections`,
      [rss],
      (kb) => kb <= 9,
      (kb) => `${kb.toFixed(2)} KB`,
    )
  }
  judge(
    'json within 10% of text (msg/s and CPU/msg, 64 B)',
    [
      ratio(med(json, 'msgs-64'), med(text, 'msgs-64')),
      ratio(med(json, 'cpu-64'), med(text, 'cpu-64')),
    ],
    (t, c) => t >= 0.9 && c <= 1.1,
    (t, c) => `msg/s ${x(t)}, CPU/msg ${x(c)} of text`,
  )
  judge(
    'log off within 5% of raw ws (msg/s and CPU/msg, 64 B)',
    [
      ratio(med(off, 'msgs-64'), med(raw, 'msgs-64')),
      ratio(med(off, 'cpu-64'), med(raw, 'cpu-64')),
    ],
    (t, c) => t >= 0.95 && c <= 1.05,
    (t, c) => `msg/s ${x(t)}, CPU/msg ${x(c)} of raw ws`,
  )
  return out
}

export function targetLines(list: Target[]): string {
  const w = Math.max(...list.map((t) => t.name.length))
  return list
    .map(
      (t) =>
        `${t.pass === undefined ? 'n/a ' : t.pass ? 'PASS' : 'FAIL'}  ${t.name.padEnd(w)}  ${t.detail}`,
    )
    .join('\n')
}

/** Write `<dir>/<timestamp>.json` and `<dir>/latest.json`; returns the first path. */
export function writeJson(dir: string, startedAt: Date, data: unknown): string {
  mkdirSync(dir, { recursive: true })
  const name = `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`
  const text = `${JSON.stringify(data, null, 2)}\n`
  const path = join(dir, name)
  writeFileSync(path, text)
  writeFileSync(join(dir, 'latest.json'), text)
  return path
}
