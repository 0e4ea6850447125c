/**
 * The pub/sub sections of `npm run bench` (`--fanout` runs only these; the default and quick
 * runs include them): fan-out (fanout.ts), the time to resume a session that missed 1,000
 * messages, and the memory one idle subscribed client costs wirelog.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import { WebSocket } from 'ws'
import { type FanoutResult, fanoutTable, runFanout } from './fanout.js'
import type { FanoutClientConfig } from './fanout-client.js'
import { rssBytes } from './proc.js'
import { type Summary, summarize } from './stats.js'

export interface PubsubOptions {
  dir: string
  cli: string
  rounds: number
  warmup: number
  duration: number
  fanoutSubscribers: number[]
  /** Messages a resuming session missed (0 skips the section). */
  resumeMissed: number
  /** Idle subscribed clients for the memory figure (0 skips it). */
  memoryClients: number
  uwsDir: string | undefined
  progress: (line: string) => void
}

export interface ResumeResult {
  missed: number
  /** ms from opening the new connection to `resumed` with every missed message before it. */
  ms: Summary | undefined
  runs: number[]
  errors: string[]
}

export interface MemoryResult {
  clients: number
  /** Deltas per 1,000 idle subscribed clients, after a full GC, bytes. */
  rssPer1000: Summary | undefined
  heapPer1000: Summary | undefined
  runs: Array<{ rss: number; heap: number }>
  errors: string[]
}

export interface PubsubResult {
  fanout: FanoutResult | undefined
  resume: ResumeResult | undefined
  memory: MemoryResult | undefined
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WIRELOG_')) env[k] = v
  return env
}

/** The wirelog CLI in pubsub mode, with the bench hook (SIGUSR2 → GC + memory on stdout). */
async function startWirelog(
  o: PubsubOptions,
  extra: string[],
): Promise<{
  child: ChildProcess
  port: number
  gc(): Promise<{ rss: number; heap: number }>
  stop(): Promise<void>
}> {
  const logDir = mkdtempSync(join(tmpdir(), 'wirelog-bench-pubsub-'))
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      '--import',
      pathToFileURL(join(o.dir, 'hook.js')).href,
      o.cli,
      ...['--host', '127.0.0.1', '--port', '0', '--behaviour', 'pubsub', '--log-dir', logDir],
      ...['--max-connections', '0', '--max-connections-per-ip', '0', ...extra],
    ],
    { stdio: ['pipe', 'pipe', 'pipe'], env: cleanEnv() },
  )
  const gcs: Array<(m: { rss: number; heapUsed: number }) => void> = []
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      const m = JSON.parse(l) as { type?: string; rss: number; heapUsed: number }
      if (m.type === 'gc') gcs.shift()?.(m)
    } catch {}
  })
  let stderr = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('wirelog did not listen')), 20_000)
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
    child,
    port,
    gc: () =>
      new Promise((resolve) => {
        gcs.push((m) => resolve({ rss: rssBytes(child.pid!), heap: m.heapUsed }))
        child.kill('SIGUSR2')
      }),
    stop: async () => {
      child.stdin!.end()
      child.kill('SIGTERM')
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r))
      rmSync(logDir, { recursive: true, force: true })
    },
  }
}

type Frame = Record<string, unknown> & { op: string }

/** A wirelog.v1 client over `ws`: every frame parsed, waiters by predicate. */
class V1 {
  readonly ws: WebSocket
  readonly frames: Frame[] = []
  #waiters: Array<{ test: (f: Frame) => boolean; resolve: (f: Frame) => void }> = []
  constructor(url: string) {
    this.ws = new WebSocket(url, 'wirelog.v1')
    this.ws.on('message', (d) => {
      const f = JSON.parse(String(d)) as Frame
      this.frames.push(f)
      for (const w of this.#waiters)
        if (w.test(f)) {
          this.#waiters = this.#waiters.filter((x) => x !== w)
          w.resolve(f)
          break
        }
    })
  }
  wait(test: (f: Frame) => boolean, what: string, ms = 20_000): Promise<Frame> {
    const seen = this.frames.find(test)
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)
      this.#waiters.push({
        test,
        resolve: (f) => {
          clearTimeout(t)
          resolve(f)
        },
      })
    })
  }
  send(f: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(f))
  }
  close(): Promise<void> {
    return new Promise((r) => {
      if (this.ws.readyState === WebSocket.CLOSED) return r()
      this.ws.once('close', () => r())
      this.ws.close()
    })
  }
}

/** One resume: a session sees seq 1, leaves, `missed` are published, it resumes. */
async function resumeOnce(url: string, missed: number, round: number): Promise<number> {
  const topic = `resume.r${round}`
  const a = new V1(url)
  const welcome = await a.wait((f) => f.op === 'welcome', 'welcome')
  a.send({ op: 'subscribe', id: 's', topic })
  await a.wait((f) => f.op === 'ack' && f.id === 's', 'subscribe ack')
  const pub = new V1(url)
  await pub.wait((f) => f.op === 'welcome', 'welcome')
  pub.send({ op: 'publish', id: 'p0', topic, data: 0 })
  const first = await a.wait((f) => f.op === 'message', 'the first message')
  await a.close()
  // In chunks: the server refuses more than 256 ops in flight per client.
  for (let i = 1; i <= missed; i += 100) {
    const last = Math.min(missed, i + 99)
    for (let j = i; j <= last; j++)
      pub.send({
        op: 'publish',
        id: `p${j}`,
        topic,
        data: { j, text: 'a message missed while away' },
      })
    await pub.wait((f) => f.op === 'ack' && f.id === `p${last}`, 'a publish ack')
  }
  await pub.close()
  const t0 = performance.now()
  const b = new V1(url)
  await b.wait((f) => f.op === 'welcome', 'welcome')
  b.send({
    op: 'resume',
    id: 'r',
    token: welcome.resume,
    positions: { [topic]: { seq: first.seq, epoch: first.epoch } },
  })
  const resumed = await b.wait((f) => f.op === 'resumed' || f.op === 'error', 'resumed', 60_000)
  const ms = performance.now() - t0
  const got = b.frames.filter((f) => f.op === 'message').length
  await b.close()
  if (resumed.op !== 'resumed') throw new Error(`resume refused: ${JSON.stringify(resumed)}`)
  if (resumed.replayed !== missed || got !== missed)
    throw new Error(
      `resume replayed ${String(resumed.replayed)} (${got} messages), expected ${missed}`,
    )
  return ms
}

async function resumeFigure(o: PubsubOptions): Promise<ResumeResult> {
  const runs: number[] = []
  const errors: string[] = []
  const s = await startWirelog(o, ['--history-size', String(o.resumeMissed + 100)])
  try {
    // One warm-up resume, not counted (the first run compiles the paths).
    for (let round = 0; round <= Math.max(3, o.rounds * 2); round++) {
      try {
        const ms = await resumeOnce(`ws://127.0.0.1:${s.port}`, o.resumeMissed, round)
        if (round > 0) runs.push(ms)
      } catch (err) {
        errors.push(`resume: ${(err as Error).message}`)
      }
    }
  } finally {
    await s.stop()
  }
  o.progress(
    `resume after ${o.resumeMissed} missed: ${runs.map((x) => x.toFixed(1)).join(', ')} ms`,
  )
  return { missed: o.resumeMissed, ms: summarize(runs), runs, errors }
}

async function memoryFigure(o: PubsubOptions): Promise<MemoryResult> {
  const runs: Array<{ rss: number; heap: number }> = []
  const errors: string[] = []
  for (let round = 1; round <= o.rounds; round++) {
    const s = await startWirelog(o, [])
    let gen: ChildProcess | undefined
    try {
      // A few clients first, so the base includes the paths every connection runs once.
      const base = await s.gc()
      const cfg: FanoutClientConfig = {
        url: `ws://127.0.0.1:${s.port}`,
        protocol: 'wirelog',
        subscribers: o.memoryClients,
        size: 0,
        warmup: 0,
        duration: 0,
        window: 1,
        localAddresses: [],
        idle: true,
      }
      gen = spawn(process.execPath, [join(o.dir, 'fanout-client.js'), JSON.stringify(cfg)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('clients did not subscribe')), 120_000)
        createInterface({ input: gen!.stdout! }).on('line', (l) => {
          if (l.includes('"subscribed"')) {
            clearTimeout(t)
            resolve()
          } else if (l.includes('"error"')) reject(new Error(l))
        })
      })
      const after = await s.gc()
      const k = 1000 / o.memoryClients
      runs.push({ rss: (after.rss - base.rss) * k, heap: (after.heap - base.heap) * k })
      o.progress(
        `memory round ${round}/${o.rounds}: ${o.memoryClients.toLocaleString('en-US')} idle subscribed clients: +${((after.rss - base.rss) / 2 ** 20).toFixed(1)} MiB RSS, +${((after.heap - base.heap) / 2 ** 20).toFixed(1)} MiB heap`,
      )
    } catch (err) {
      errors.push(`memory: ${(err as Error).message}`)
    } finally {
      gen?.kill('SIGKILL')
      await s.stop()
    }
  }
  return {
    clients: o.memoryClients,
    rssPer1000: summarize(runs.map((r) => r.rss)),
    heapPer1000: summarize(runs.map((r) => r.heap)),
    runs,
    errors,
  }
}

export async function runPubsub(o: PubsubOptions): Promise<PubsubResult> {
  const fanout =
    o.fanoutSubscribers.length > 0
      ? await runFanout({
          dir: o.dir,
          cli: o.cli,
          subscribers: o.fanoutSubscribers,
          rounds: o.rounds,
          warmup: o.warmup,
          duration: o.duration,
          size: 64,
          uwsDir: o.uwsDir,
          progress: o.progress,
        })
      : undefined
  const resume = o.resumeMissed > 0 ? await resumeFigure(o) : undefined
  const memory = o.memoryClients > 0 ? await memoryFigure(o) : undefined
  return { fanout, resume, memory }
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(2)} MiB`

/** The text the run prints. */
export function pubsubLines(r: PubsubResult): string {
  const out: string[] = []
  if (r.fanout) {
    const f = r.fanout
    out.push(
      `Fan-out (one publisher, one topic, ${f.options.size} B payload; a bounded window of messages in flight; ${f.options.warmup} s warm-up + ${f.options.duration} s window; medians of ${f.options.rounds} round(s); ratios to uWebSockets.js):`,
    )
    out.push('', fanoutTable(f), '')
    for (const s of f.skipped) out.push(`  skipped ${s}`)
    for (const e of f.errors) out.push(`  ! ${e}`)
  }
  if (r.resume) {
    const m = r.resume.ms
    out.push(
      `Resume: a session that missed ${r.resume.missed.toLocaleString('en-US')} messages, from opening the new connection to \`resumed\` (every missed message before it): ${m ? `${m.median.toFixed(1)} ms (${m.min.toFixed(1)} – ${m.max.toFixed(1)}, ${m.n} runs)` : 'n/a'}`,
    )
    for (const e of r.resume.errors) out.push(`  ! ${e}`)
    out.push('')
  }
  if (r.memory) {
    const { rssPer1000: rss, heapPer1000: heap } = r.memory
    out.push(
      `Memory: per 1,000 idle subscribed clients (${r.memory.clients.toLocaleString('en-US')} held, after a full GC): RSS +${rss ? mib(rss.median) : 'n/a'}, heap +${heap ? mib(heap.median) : 'n/a'}`,
    )
    for (const e of r.memory.errors) out.push(`  ! ${e}`)
  }
  return out.join('\n')
}

export function pubsubErrors(r: PubsubResult): string[] {
  return [...(r.fanout?.errors ?? []), ...(r.resume?.errors ?? []), ...(r.memory?.errors ?? [])]
}
