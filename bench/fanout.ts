/**
 * Fan-out figures: one publisher, one topic, 1, 100 and 10,000 subscribers (plain-socket
 * clients in one generator process, fanout-client.ts). Each server runs in its own process:
 *
 * - wirelog: the CLI with `--behaviour pubsub` (wirelog.v1) and its activity log on (text, one
 *   line per publish and per connection), per-IP and total connection caps off;
 * - `ws-loop`, `ws-frame-cork`, `uws`: the reference servers of fanout-server.ts.
 *
 * Deliveries/s are the frames the subscribers received in the window; CPU per delivery is the
 * server process's CPU time (all its threads) in the window over those deliveries. The
 * publisher keeps a bounded window of messages in flight (see fanout-client.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { FanoutClientConfig } from './fanout-client.js'
import { cpuSeconds } from './proc.js'
import { type Summary, summarize } from './stats.js'

export type FanoutServer = 'wirelog' | 'ws-loop' | 'ws-frame-cork' | 'uws'
export const FANOUT_SERVERS: readonly FanoutServer[] = [
  'wirelog',
  'ws-frame-cork',
  'ws-loop',
  'uws',
]
export const FANOUT_LABELS: Record<FanoutServer, string> = {
  wirelog: 'wirelog pubsub, text log',
  'ws-frame-cork': 'ws, frame once + cork',
  'ws-loop': 'ws, send() loop',
  uws: 'uWebSockets.js publish',
}

export interface FanoutOptions {
  /** Repository's .build/bench directory (the scripts) and the CLI. */
  dir: string
  cli: string
  subscribers: number[]
  rounds: number
  warmup: number
  duration: number
  /** Payload bytes of each published message. */
  size: number
  uwsDir: string | undefined
  progress: (line: string) => void
}

export interface FanoutRun {
  server: FanoutServer
  subscribers: number
  round: number
  deliveriesPerSec: number
  publishesPerSec: number
  serverCpuPct: number
  cpuUsPerDelivery: number
  generatorCpuPct: number
}

export interface FanoutFigure {
  deliveriesPerSec: Summary | undefined
  cpuUsPerDelivery: Summary | undefined
  serverCpuPct: Summary | undefined
  generatorCpuPct: Summary | undefined
}

export interface FanoutResult {
  options: Omit<FanoutOptions, 'progress' | 'dir' | 'cli'>
  servers: FanoutServer[]
  skipped: string[]
  runs: FanoutRun[]
  /** server → subscribers → figure. */
  summary: Record<string, Record<string, FanoutFigure>>
  errors: string[]
}

const START_TIMEOUT_MS = 20_000

/** JSON lines of a child's stdout, one at a time. */
class Lines {
  readonly #queue: Record<string, unknown>[] = []
  readonly #waiters: Array<(m: Record<string, unknown>) => void> = []
  constructor(child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      let m: Record<string, unknown>
      try {
        m = JSON.parse(l) as Record<string, unknown>
      } catch {
        return
      }
      const w = this.#waiters.shift()
      if (w) w(m)
      else this.#queue.push(m)
    })
  }
  next(type: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${type} within ${timeoutMs} ms`)),
        timeoutMs,
      )
      const take = (m: Record<string, unknown>): void => {
        clearTimeout(timer)
        if (m.type === 'error') reject(new Error(String(m.message)))
        else if (m.type !== type) reject(new Error(`expected ${type}, got ${JSON.stringify(m)}`))
        else resolve(m)
      }
      const m = this.#queue.shift()
      if (m) take(m)
      else this.#waiters.push(take)
    })
  }
}

interface Started {
  pid: number
  url: string
  stop(): Promise<void>
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r()
    else child.once('exit', () => r())
  })
}

async function startServer(kind: FanoutServer, o: FanoutOptions): Promise<Started> {
  if (kind === 'wirelog') {
    const logDir = mkdtempSync(join(tmpdir(), 'wirelog-bench-fanout-'))
    const child = spawn(
      process.execPath,
      [
        o.cli,
        ...['--host', '127.0.0.1', '--port', '0', '--behaviour', 'pubsub', '--log-dir', logDir],
        ...['--max-connections', '0', '--max-connections-per-ip', '0'],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: cleanEnv() },
    )
    let stderr = ''
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('wirelog did not listen')), START_TIMEOUT_MS)
      child.stderr!.setEncoding('utf8')
      child.stderr!.on('data', (d: string) => {
        stderr += d
        const m = /listening on ws:\/\/\S+?:(\d+)/.exec(stderr)
        if (m) {
          clearTimeout(timer)
          resolve(Number(m[1]))
        }
      })
      child.on('exit', (c) => reject(new Error(`wirelog exited ${c}: ${stderr.slice(-300)}`)))
    })
    return {
      pid: child.pid!,
      url: `ws://127.0.0.1:${port}`,
      stop: async () => {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited(child)
        clearTimeout(t)
        rmSync(logDir, { recursive: true, force: true })
      },
    }
  }
  const child = spawn(
    process.execPath,
    [join(o.dir, 'fanout-server.js'), JSON.stringify({ kind, uwsDir: o.uwsDir })],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  )
  const ready = await new Lines(child).next('ready', START_TIMEOUT_MS)
  return {
    pid: child.pid!,
    url: `ws://127.0.0.1:${ready.port as number}`,
    stop: async () => {
      child.stdin!.end()
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited(child)
      clearTimeout(t)
    },
  }
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WIRELOG_')) env[k] = v
  return env
}

/** Messages in flight: enough to keep the server busy, bounded in bytes queued per subscriber. */
function windowFor(subscribers: number): number {
  return Math.max(4, Math.min(1024, Math.ceil(100_000 / subscribers)))
}

async function one(
  server: FanoutServer,
  subscribers: number,
  round: number,
  o: FanoutOptions,
): Promise<FanoutRun> {
  const s = await startServer(server, o)
  let gen: ChildProcess | undefined
  try {
    const cfg: FanoutClientConfig = {
      url: s.url,
      protocol: server === 'wirelog' ? 'wirelog' : 'plain',
      subscribers,
      size: o.size,
      warmup: o.warmup,
      duration: o.duration,
      window: windowFor(subscribers),
      localAddresses: [],
    }
    gen = spawn(process.execPath, [join(o.dir, 'fanout-client.js'), JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const lines = new Lines(gen)
    await lines.next('subscribed', 120_000)
    await lines.next('mark', START_TIMEOUT_MS + o.warmup * 1000)
    const c0 = cpuSeconds(s.pid)
    const done = await lines.next('done', START_TIMEOUT_MS + o.duration * 1000)
    const cpu = cpuSeconds(s.pid) - c0
    const seconds = done.seconds as number
    const deliveries = done.deliveries as number
    if (deliveries === 0) throw new Error('no deliveries in the window')
    return {
      server,
      subscribers,
      round,
      deliveriesPerSec: deliveries / seconds,
      publishesPerSec: (done.publishes as number) / seconds,
      serverCpuPct: (100 * cpu) / seconds,
      cpuUsPerDelivery: (cpu * 1e6) / deliveries,
      generatorCpuPct: (100 * (done.generatorCpuSeconds as number)) / seconds,
    }
  } finally {
    if (gen && gen.exitCode === null) gen.kill('SIGKILL')
    await s.stop()
  }
}

export async function runFanout(o: FanoutOptions): Promise<FanoutResult> {
  const skipped: string[] = []
  const servers = FANOUT_SERVERS.filter((s) => {
    if (s === 'uws' && o.uwsDir === undefined) {
      skipped.push('uws: uWebSockets.js is not available (see the uWebSockets.js line above)')
      return false
    }
    return true
  })
  const runs: FanoutRun[] = []
  const errors: string[] = []
  for (let round = 1; round <= o.rounds; round++) {
    for (const n of o.subscribers) {
      for (const server of servers) {
        try {
          const r = await one(server, n, round, o)
          runs.push(r)
          o.progress(
            `fan-out round ${round}/${o.rounds}  ${n.toLocaleString('en-US').padStart(6)} subs  ${FANOUT_LABELS[server].padEnd(26)} ${Math.round(r.deliveriesPerSec).toLocaleString('en-US').padStart(10)} deliveries/s  ${r.cpuUsPerDelivery.toFixed(2)} µs/delivery  server ${r.serverCpuPct.toFixed(0)}%  generator ${r.generatorCpuPct.toFixed(0)}%`,
          )
        } catch (err) {
          errors.push(`fan-out ${server} × ${n} (round ${round}): ${(err as Error).message}`)
          o.progress(`  ! ${errors[errors.length - 1]}`)
        }
      }
    }
  }
  const summary: FanoutResult['summary'] = {}
  for (const server of servers) {
    summary[server] = {}
    for (const n of o.subscribers) {
      const rs = runs.filter((r) => r.server === server && r.subscribers === n)
      summary[server][n] = {
        deliveriesPerSec: summarize(rs.map((r) => r.deliveriesPerSec)),
        cpuUsPerDelivery: summarize(rs.map((r) => r.cpuUsPerDelivery)),
        serverCpuPct: summarize(rs.map((r) => r.serverCpuPct)),
        generatorCpuPct: summarize(rs.map((r) => r.generatorCpuPct)),
      }
    }
  }
  const { progress: _p, dir: _d, cli: _c, ...options } = o
  return { options, servers, skipped, runs, summary, errors }
}

/** The table: deliveries/s and µs per delivery, with ratios to uWebSockets.js where it ran. */
export function fanoutTable(r: FanoutResult): string {
  const base: FanoutServer | undefined = r.servers.includes('uws') ? 'uws' : undefined
  const lines: string[] = []
  const head = ['subscribers', ...r.servers.map((s) => FANOUT_LABELS[s])]
  lines.push(`| ${head.join(' | ')} |`)
  lines.push(`| ${head.map((_h, i) => (i === 0 ? '---:' : '---:')).join(' | ')} |`)
  for (const n of r.options.subscribers) {
    const cells = (key: 'deliveriesPerSec' | 'cpuUsPerDelivery', fmt: (v: number) => string) =>
      r.servers.map((s) => {
        const f = r.summary[s]?.[n]?.[key]
        if (!f) return 'n/a'
        const b = base && s !== base ? r.summary[base]?.[n]?.[key]?.median : undefined
        return `${fmt(f.median)}${b ? ` (${(f.median / b).toFixed(2)}×)` : ''}`
      })
    lines.push(
      `| ${n.toLocaleString('en-US')}: deliveries/s | ${cells('deliveriesPerSec', (v) => Math.round(v).toLocaleString('en-US')).join(' | ')} |`,
    )
    lines.push(
      `| ${n.toLocaleString('en-US')}: server µs/delivery | ${cells('cpuUsPerDelivery', (v) => v.toFixed(2)).join(' | ')} |`,
    )
  }
  return lines.join('\n')
}
