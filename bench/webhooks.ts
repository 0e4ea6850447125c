/**
 * Webhooks never slow message handling nor grow memory without bound: one process, a
 * wirelog server on loopback with echo clients, and a receiver (in a child process) that
 * either never answers (`hang`) or answers 200 (`ok`); or no webhook at all (`none`).
 *
 * For each: 50,000 echoes pipelined (200 in flight) from one client while a second client
 * measures echo round trips one at a time; the heap after a full GC before and after; the
 * webhook counters. Run with `node --expose-gc .build/bench/webhooks.js` (after
 * `npm run pretest`); `--messages N` changes the count.
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createServer as createHttpServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { createServer } from '../src/index.js'

type Mode = 'none' | 'hang' | 'ok'

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const MESSAGES = arg('--messages', 50_000)
const IN_FLIGHT = 200

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc
  g?.()
  g?.()
}

const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MB`
const pct = (a: number[], p: number): number =>
  [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))]!

async function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url)
  await once(ws, 'open')
  return ws
}

/** The receiver, in a process of its own so that its work is not counted as the server's. */
function receiverMain(mode: Mode): void {
  const held: ServerResponse[] = []
  const rx = createHttpServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (mode === 'hang') held.push(res)
      else res.end()
    })
  })
  rx.listen(0, '127.0.0.1', () => process.send!((rx.address() as AddressInfo).port))
  process.on('disconnect', () => process.exit(0))
}

async function run(mode: Mode): Promise<void> {
  const child = fork(fileURLToPath(import.meta.url), ['--receiver', mode], { stdio: 'inherit' })
  const [rxPort] = (await once(child, 'message')) as [number]
  const hook = `http://127.0.0.1:${rxPort}/hook`
  const server = createServer({
    host: '127.0.0.1',
    port: 0,
    log: { enabled: false },
    shutdownTimeout: 200,
    webhooks: mode === 'none' ? [] : [{ events: ['message.received'], url: hook, timeout: 60_000 }],
  })
  const { port } = await server.listen()
  const url = `ws://127.0.0.1:${port}`
  const flood = await open(url)
  const probe = await open(url)

  const trip = async (): Promise<number> => {
    const t0 = performance.now()
    probe.send('ping')
    await once(probe, 'message')
    return performance.now() - t0
  }
  for (let i = 0; i < 200; i++) await trip() // warm-up
  const idle: number[] = []
  for (let i = 0; i < 500; i++) idle.push(await trip())

  gc()
  const heap0 = process.memoryUsage().heapUsed
  let peak = heap0
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().heapUsed)
  }, 20)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let sent = 0
  let echoed = 0
  const payload = 'x'.repeat(64)
  const done = new Promise<void>((resolve) => {
    flood.on('message', () => {
      echoed++
      if (sent < MESSAGES) {
        sent++
        flood.send(payload)
      }
      if (echoed === MESSAGES) resolve()
    })
  })
  for (; sent < IN_FLIGHT; sent++) flood.send(payload)
  const busy: number[] = []
  let flooding = true
  void done.then(() => {
    flooding = false
  })
  while (flooding) busy.push(await trip())
  await done
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  clearInterval(sampler)
  gc()
  const heap1 = process.memoryUsage().heapUsed
  const s = server.webhooks?.stats()[0]
  console.log(
    [
      `webhook ${mode.padEnd(4)}:`,
      `${MESSAGES} echoes in ${ms.toFixed(0)} ms (${Math.round(MESSAGES / (ms / 1000))} msg/s,`,
      `${((cpu.user + cpu.system) / MESSAGES).toFixed(1)} µs CPU/msg, server and clients);`,
      `probe RTT idle p50 ${pct(idle, 0.5).toFixed(3)} p99 ${pct(idle, 0.99).toFixed(3)} ms,`,
      `under load p50 ${pct(busy, 0.5).toFixed(3)} p99 ${pct(busy, 0.99).toFixed(3)} ms (${busy.length});`,
      `heap after GC ${mb(heap0)} → ${mb(heap1)} (peak sampled ${mb(peak)})`,
      s
        ? `; webhook delivered ${s.delivered} dropped ${s.dropped} queued ${s.queued} (${mb(s.queuedBytes)}) in flight ${s.inFlight}`
        : '',
    ].join(' '),
  )
  flood.close()
  probe.close()
  child.kill()
  await server.close()
}

const rxAt = process.argv.indexOf('--receiver')
if (rxAt > 0) receiverMain(process.argv[rxAt + 1] as Mode)
else {
  if (!(globalThis as { gc?: unknown }).gc)
    console.log('(run with node --expose-gc for heap figures after a full GC)')
  for (const mode of ['none', 'hang', 'ok', 'none', 'hang', 'ok'] as const) await run(mode)
}
