/**
 * Results: the figures of every session, their medians and ranges across rounds, the ratios
 * to the baselines (raw ws corked as wirelog corks, then plain raw ws), the rate table, the
 * targets, the plot, the tables on stdout and the JSON file.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IdleResult, LoadResult } from './measure.js'
import type { Options, ServerSpec } from './options.js'
import type { ClientKind, LogReport } from './protocol.js'
import { type Summary, summarize } from './stats.js'
import { cpuPlot, type PlotSeries } from './svg.js'

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
  /** Worth a look, not a failure (what wirelog said on stderr). */
  notes: string[]
  /** Wall seconds of each part (start, idle, every load phase, close): where the time went. */
  seconds: Record<string, number>
  /** The machine's 1-minute load average when the session started (others' work shows here). */
  loadAverage: number
}

/** The first ratio column: a raw ws server that corks as wirelog does. */
export const BASELINE = 'raw-ws-cork'
/** The second: plain raw ws. */
export const RAW = 'raw-ws'

/** Load keys: closed loop per client and size, open loop per rate. */
export const closedKey = (client: ClientKind, size: number): string =>
  `${client === 'frames' ? 'sat' : 'ws'}-${size}`
export const rateKey = (rate: number): string => `rate-${rate}`

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

export function sizeLabel(size: number): string {
  return size >= 1024 && size % 1024 === 0 ? `${size / 1024} KB` : `${size} B`
}

function cpuNote(key: string) {
  return (sessions: Session[]): string => {
    const srv = summarize(sessions.map((s) => s.load[key]?.serverCpuPct ?? Number.NaN))
    const gen = summarize(sessions.map((s) => s.load[key]?.generatorCpuPct ?? Number.NaN))
    return srv && gen
      ? `server ${srv.median.toFixed(0)}% / generator ${gen.median.toFixed(0)}% CPU`
      : ''
  }
}

/** The main table's figures. */
export function mainMetrics(o: Options): Metric[] {
  const out: Metric[] = []
  for (const client of o.clients) {
    for (const size of o.sizes) {
      const key = closedKey(client, size)
      const what = client === 'frames' ? 'at saturation' : 'ws clients'
      out.push({
        key: `${key}-msgs`,
        label: `msg/s, ${sizeLabel(size)}, ${what}`,
        get: (s) => s.load[key]?.msgsPerSec,
        format: int,
        note: cpuNote(key),
      })
      out.push({
        key: `${key}-cpu`,
        label: `server CPU µs/msg, ${sizeLabel(size)}, ${what}`,
        get: (s) => s.load[key]?.cpuUsPerMsg,
        format: fixed(2),
      })
    }
  }
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
        label: 'connections accepted/s',
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

/** One step of the rate table: an open-loop rate, or the saturation point. */
export interface Step {
  id: string
  label: string
  /** Load key of its sessions' results. */
  load: string
  /** Open loop: the rate asked for. */
  target: number | undefined
}

export function steps(o: Options): Step[] {
  const out: Step[] = o.rates.map((r) => ({
    id: rateKey(r),
    label: `${int(r)}/s`,
    load: rateKey(r),
    target: r,
  }))
  if (o.clients.includes('frames') && o.sizes.includes(o.latencySize)) {
    const key = closedKey('frames', o.latencySize)
    out.push({ id: 'saturation', label: 'saturation', load: key, target: undefined })
  }
  return out
}

const STEP_FIGURES = ['msgs', 'pct', 'cpu', 'p50', 'p99', 'p999'] as const
type StepFigure = (typeof STEP_FIGURES)[number]

function stepValue(r: LoadResult | undefined, f: StepFigure): number | undefined {
  if (!r) return undefined
  switch (f) {
    case 'msgs':
      return r.msgsPerSec
    case 'pct':
      return r.serverCpuPct
    case 'cpu':
      return r.cpuUsPerMsg
    case 'p50':
      return r.latencyMs?.p50
    case 'p99':
      return r.latencyMs?.p99
    case 'p999':
      return r.latencyMs?.p999
  }
}

/** The rate table's figures, as metrics (`<step>-<figure>`), so they are summarised alike. */
export function stepMetrics(o: Options): Metric[] {
  return steps(o).flatMap((st) =>
    STEP_FIGURES.map((f) => ({
      key: `${st.id}-${f}`,
      label: `${st.label} ${f}`,
      get: (s: Session) => stepValue(s.load[st.load], f),
      format: fixed(3),
    })),
  )
}

export interface Figure extends Summary {
  /** Median over raw-ws-cork's median. */
  ratio: number | undefined
  /** Median over raw-ws's median. */
  ratioRaw: number | undefined
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
      if (s) out[spec.id]![m.key] = { ...s, ratio: undefined, ratioRaw: undefined }
    }
  }
  for (const spec of servers) {
    for (const m of list) {
      const f = out[spec.id]![m.key]
      const b = out[BASELINE]?.[m.key]
      const r = out[RAW]?.[m.key]
      if (f && b && b.median !== 0) f.ratio = f.median / b.median
      if (f && r && r.median !== 0) f.ratioRaw = f.median / r.median
    }
  }
  return out
}

function render(rows: string[][], right: Set<number>): string {
  const widths = rows[0]!.map((_c, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
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

/** The main table: one block per figure, one row per server. */
export function table(
  sessions: Session[],
  servers: ServerSpec[],
  list: Metric[],
  sum: Summaries,
): string {
  const rows: string[][] = [
    ['figure', 'server', 'median', 'min – max', '× raw ws corked', '× raw ws', 'notes'],
  ]
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
        f?.ratioRaw !== undefined ? f.ratioRaw.toFixed(2) : '',
        m.note ? m.note(mine) : '',
      ])
      first = false
    }
    rows.push([])
  }
  return render(rows, new Set([2, 3, 4, 5]))
}

/** The rate table: one block per step, one row per server, medians over rounds. */
export function rateTable(o: Options, servers: ServerSpec[], sum: Summaries): string {
  const rows: string[][] = [
    ['rate', 'server', 'msg/s', 'server CPU', 'µs/msg', 'p50 ms', 'p99 ms', 'p99.9 ms', ''],
  ]
  for (const st of steps(o)) {
    let first = true
    for (const spec of servers) {
      const g = (f: StepFigure): number | undefined => sum[spec.id]?.[`${st.id}-${f}`]?.median
      const v = (f: StepFigure, d: number): string => {
        const x = g(f)
        return x === undefined ? 'n/a' : x.toFixed(d)
      }
      const msgs = g('msgs')
      const behind =
        st.target !== undefined && msgs !== undefined && msgs < st.target * 0.97
          ? `below the rate asked for (${Math.round((msgs / st.target) * 100)}%)`
          : ''
      rows.push([
        first ? st.label : '',
        spec.label,
        msgs === undefined ? 'n/a' : int(msgs),
        g('pct') === undefined ? 'n/a' : `${g('pct')!.toFixed(0)}%`,
        v('cpu', 2),
        v('p50', 3),
        v('p99', 3),
        v('p999', 3),
        behind,
      ])
      first = false
    }
    rows.push([])
  }
  return render(rows, new Set([2, 3, 4, 5, 6, 7]))
}

/** CPU per message against rate, one series per server (medians). */
export function plotSeries(o: Options, servers: ServerSpec[], sum: Summaries): PlotSeries[] {
  return servers.map((spec) => ({
    label: spec.label,
    points: steps(o).flatMap((st) => {
      const x = sum[spec.id]?.[`${st.id}-msgs`]?.median
      const y = sum[spec.id]?.[`${st.id}-cpu`]?.median
      return x !== undefined && y !== undefined
        ? [{ x, y, saturation: st.id === 'saturation' }]
        : []
    }),
  }))
}

export function plot(o: Options, servers: ServerSpec[], sum: Summaries, subtitle: string): string {
  return cpuPlot(plotSeries(o, servers, sum), 'Server CPU per message against load', subtitle)
}

export interface Target {
  name: string
  /** undefined: not measured in this run; 'info': shown, not judged. */
  pass: boolean | undefined | 'info'
  detail: string
}

/**
 * The targets (wirelog text log vs raw ws, judged on medians: capacity figures from
 * the frames client, latency from the open-loop step at 5,000 msg/s), plus what the log costs
 * against raw ws corked, shown but not judged. Informational: they never change the exit code.
 */
export function targets(sum: Summaries, o: Options): Target[] {
  const raw = sum[RAW]
  const cork = sum[BASELINE]
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
    ok: ((...v: number[]) => boolean) | 'info',
    detail: (...v: number[]) => string,
  ): void => {
    if (values.some((v) => v === undefined || !Number.isFinite(v)))
      out.push({ name, pass: undefined, detail: 'not measured' })
    else
      out.push({
        name,
        pass: ok === 'info' ? 'info' : ok(...(values as number[])),
        detail: detail(...(values as number[])),
      })
  }
  const x = (r: number): string => `${r.toFixed(3)}×`
  const s64 = closedKey('frames', 64)
  const s4k = closedKey('frames', 4096)

  judge(
    'text: msg/s at 64 B ≥ 0.85× raw ws (saturation)',
    [ratio(med(text, `${s64}-msgs`), med(raw, `${s64}-msgs`))],
    (r) => r >= 0.85,
    x,
  )
  judge(
    'text: server CPU/msg at 64 B ≤ 1.25× raw ws (saturation)',
    [ratio(med(text, `${s64}-cpu`), med(raw, `${s64}-cpu`))],
    (r) => r <= 1.25,
    x,
  )
  judge(
    'text: msg/s at 4 KB ≥ 0.90× raw ws (saturation)',
    [ratio(med(text, `${s4k}-msgs`), med(raw, `${s4k}-msgs`))],
    (r) => r >= 0.9,
    x,
  )
  judge(
    'text: p99 at 5,000 msg/s ≤ raw ws + 0.3 ms',
    [med(text, 'rate-5000-p99'), med(raw, 'rate-5000-p99')],
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
    'json within 10% of text (msg/s and CPU/msg, 64 B, saturation)',
    [
      ratio(med(json, `${s64}-msgs`), med(text, `${s64}-msgs`)),
      ratio(med(json, `${s64}-cpu`), med(text, `${s64}-cpu`)),
    ],
    (t, c) => t >= 0.9 && c <= 1.1,
    (t, c) => `msg/s ${x(t)}, CPU/msg ${x(c)} of text`,
  )
  judge(
    'log off within 5% of raw ws (msg/s and CPU/msg, 64 B, saturation)',
    [
      ratio(med(off, `${s64}-msgs`), med(raw, `${s64}-msgs`)),
      ratio(med(off, `${s64}-cpu`), med(raw, `${s64}-cpu`)),
    ],
    (t, c) => t >= 0.95 && c <= 1.05,
    (t, c) => `msg/s ${x(t)}, CPU/msg ${x(c)} of raw ws`,
  )
  for (const [id, label] of [
    ['off', 'log off'],
    ['text', 'text log'],
  ] as const) {
    judge(
      `wirelog, ${label}: CPU/msg vs raw ws corked (64 B, saturation)`,
      [med(sum[id], `${s64}-cpu`), med(cork, `${s64}-cpu`)],
      'info',
      (w, c) =>
        `${w.toFixed(2)} vs ${c.toFixed(2)} µs (${w - c >= 0 ? '+' : ''}${(w - c).toFixed(2)} µs, ${x(w / c)})`,
    )
  }
  judge(
    'wirelog, text log: CPU/msg vs raw ws corked at 5,000 msg/s',
    [med(text, 'rate-5000-cpu'), med(cork, 'rate-5000-cpu')],
    'info',
    (w, c) =>
      `${w.toFixed(2)} vs ${c.toFixed(2)} µs (${w - c >= 0 ? '+' : ''}${(w - c).toFixed(2)} µs, ${x(w / c)})`,
  )
  return out
}

export function targetLines(list: Target[]): string {
  const w = Math.max(...list.map((t) => t.name.length))
  const mark = (t: Target): string =>
    t.pass === 'info' ? 'info' : t.pass === undefined ? 'n/a ' : t.pass ? 'PASS' : 'FAIL'
  return list.map((t) => `${mark(t)}  ${t.name.padEnd(w)}  ${t.detail}`).join('\n')
}

function stamp(startedAt: Date): string {
  return startedAt.toISOString().replace(/[:.]/g, '-')
}

/** Write `<dir>/<timestamp>.json` and `<dir>/latest.json`; returns the first path. */
export function writeJson(dir: string, startedAt: Date, data: unknown): string {
  mkdirSync(dir, { recursive: true })
  const text = `${JSON.stringify(data, null, 2)}\n`
  const path = join(dir, `${stamp(startedAt)}.json`)
  writeFileSync(path, text)
  writeFileSync(join(dir, 'latest.json'), text)
  return path
}

/** Write `<dir>/<timestamp>-cpu-per-msg.svg` and `<dir>/latest-cpu-per-msg.svg`; returns the first path. */
export function writeSvg(dir: string, startedAt: Date, svg: string): string {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, `${stamp(startedAt)}-cpu-per-msg.svg`)
  writeFileSync(path, svg)
  writeFileSync(join(dir, 'latest-cpu-per-msg.svg'), svg)
  return path
}
