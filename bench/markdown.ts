/**
 * The README's result tables from a results file: `node .build/bench/markdown.js
 * [bench-results/latest.json]` prints them as Markdown (medians over rounds, ratios to raw ws
 * corked), so the figures in the README are the file's, not retyped.
 */
import { readFileSync } from 'node:fs'
import { KNOWN } from './options.js'
import { type PubsubResult, pubsubLines } from './pubsub-bench.js'
import type { Figure, Summaries } from './report.js'
import type { StartupFigure, StartupResult } from './startup.js'

interface Results {
  startedAt: string
  environment: { node: string; ws: string; cpu: string; pinning: string; bufferutil: boolean }
  options: {
    rounds: number
    servers: string[]
    sizes: number[]
    rates: number[]
    clients: string[]
    connections: number
    pipeline: number
    latencyConnections: number
    latencySize: number
    idleConnections: number
    duration: number
    warmup: number
  }
  startup: StartupResult | undefined
  /** The pub/sub sections (absent in runs made before they existed, and in --smoke). */
  pubsub?: PubsubResult | undefined
  summary: Summaries
  errors: string[]
}

const file = process.argv[2] ?? 'bench-results/latest.json'
const r = JSON.parse(readFileSync(file, 'utf8')) as Results
const BASE = 'raw-ws-cork'
// wirelog against raw ws corked first, then the rest.
const ORDER = ['raw-ws-cork', 'text', 'off', 'json', 'plain', 'sync', 'raw-ws', 'uws']
const servers = ORDER.filter((id) => r.options.servers.includes(id))
const label = (id: string): string => KNOWN.find((s) => s.id === id)?.label ?? id
const int = (v: number): string => Math.round(v).toLocaleString('en-US')
const size = (n: number): string => (n % 1024 === 0 ? `${n / 1024} KB` : `${n} B`)

function fig(id: string, key: string): Figure | undefined {
  return r.summary[id]?.[key]
}

function cell(id: string, key: string, fmt: (v: number) => string, ratio = true): string {
  const f = fig(id, key)
  if (!f) return 'n/a'
  const x = ratio && id !== BASE && f.ratio !== undefined ? ` (${f.ratio.toFixed(2)}×)` : ''
  return `${fmt(f.median)}${x}`
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`
}

const out: string[] = []
out.push(row(['figure', ...servers.map(label)]))
out.push(row(['---', ...servers.map(() => '---:')]))
for (const client of r.options.clients) {
  for (const s of r.options.sizes) {
    const key = `${client === 'frames' ? 'sat' : 'ws'}-${s}`
    const what = client === 'frames' ? 'at saturation' : 'ws clients'
    out.push(
      row([
        `msg/s, ${size(s)}, ${what}`,
        ...servers.map((id) => {
          const pct = fig(id, `saturation-pct`)
          const mine = client === 'frames' && s === r.options.latencySize && pct
          return `${cell(id, `${key}-msgs`, int)}${mine ? ` @ ${pct.median.toFixed(0)}% CPU` : ''}`
        }),
      ]),
    )
    out.push(
      row([
        `**server CPU µs/msg, ${size(s)}, ${what}**`,
        ...servers.map((id) => cell(id, `${key}-cpu`, (v) => v.toFixed(2))),
      ]),
    )
  }
}
if (r.options.idleConnections > 0) {
  out.push(
    row([
      `RSS KB per idle connection (${int(r.options.idleConnections)})`,
      ...servers.map((id) => cell(id, 'rss-conn', (v) => v.toFixed(2), false)),
    ]),
    row(['connections accepted/s', ...servers.map((id) => cell(id, 'accept', int, false))]),
  )
}
out.push('')

const steps = [
  ...r.options.rates.map((x) => ({ id: `rate-${x}`, label: `${int(x)} msg/s` })),
  ...(r.options.clients.includes('frames') ? [{ id: 'saturation', label: 'saturation' }] : []),
]
out.push(row(['server CPU µs/msg', ...steps.map((s) => s.label)]))
out.push(row(['---', ...steps.map(() => '---:')]))
for (const id of servers) {
  out.push(
    row([
      label(id),
      ...steps.map((s) => {
        const c = cell(id, `${s.id}-cpu`, (v) => v.toFixed(2), false)
        const m = fig(id, `${s.id}-msgs`)
        return s.id === 'saturation' && m ? `${c} (${int(m.median)}/s)` : c
      }),
    ]),
  )
}
out.push('')
out.push(row(['RTT ms p50 / p99 / p99.9', ...steps.map((s) => s.label)]))
out.push(row(['---', ...steps.map(() => '---:')]))
for (const id of servers) {
  out.push(
    row([
      label(id),
      ...steps.map((s) => {
        const p = ['p50', 'p99', 'p999'].map((q) => fig(id, `${s.id}-${q}`)?.median)
        return p.some((v) => v === undefined)
          ? 'n/a'
          : p.map((v) => (v! < 10 ? v!.toFixed(2) : v!.toFixed(0))).join(' / ')
      }),
    ]),
  )
}
out.push('')
if (r.startup) {
  const s = r.startup
  const line = (what: string, f: StartupFigure | undefined): string =>
    row([
      what,
      f ? `${f.median.toFixed(0)} ms` : 'n/a',
      f ? `${f.min.toFixed(0)} – ${f.max.toFixed(0)} ms` : '',
    ])
  out.push(row(['start-up (median of runs)', 'median', 'min – max']))
  out.push(row(['---', '---:', '---:']))
  out.push(line('`node -e 0` (reference)', s.nodeE0))
  out.push(line('`wirelog --version`', s.version))
  out.push(line('exec → listening banner', s.listening))
  out.push(line('exec → first echo', s.firstEcho))
  out.push('')
}
if (r.pubsub) {
  out.push(pubsubLines(r.pubsub))
  out.push('')
}
if (r.errors.length > 0) out.push(`Harness errors in this run: ${r.errors.length}`)
process.stdout.write(`${out.join('\n')}\n`)
