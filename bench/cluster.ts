/**
 * Scale-out benchmark: what the Redis hop costs, and what `--workers 2` buys.
 *
 *   node .build/bench/cluster.js [--quick] [--redis redis://127.0.0.1:6379]
 *
 * 1. Topic messages, publisher and subscriber in this process over real sockets:
 *    - one node, memory broker (the baseline),
 *    - one node, Redis broker (local delivery, the seq comes from Redis),
 *    - node A → node B through Redis.
 *    Throughput (pipelined publishes, messages/s until the last one arrives), latency at a
 *    fixed rate (p50/p99, open loop) and the CPU each server process and Redis spent per
 *    message (from /proc).
 * 2. `--workers 1` against `--workers 2`: echo (many connections, pipelined) and fan-out
 *    (one publisher, many subscribers), messages/s and server CPU per message.
 *
 * Prints a table and writes bench-results/cluster-latest.json. The load generator runs in
 * this process, so on a 2-core machine it competes with the servers: compare the rows of
 * one run, not absolute figures across machines.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')
const args = process.argv.slice(2)
const QUICK = args.includes('--quick')
const redisArg = args[args.indexOf('--redis') + 1]
const TICKS = 100 // USER_HZ
/** Publishing connections in the throughput phases. */
const PUBLISHERS = 10

interface Proc {
  proc: ChildProcess
  port: number
  pids(): number[]
}

function cpuTicks(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
    return Number(rest[11]) + Number(rest[12]) // utime + stime
  } catch {
    return 0
  }
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
  } catch {
    return []
  }
}

function cpuOf(pids: number[]): number {
  return pids.reduce((s, p) => s + cpuTicks(p), 0)
}

async function freePort(): Promise<number> {
  const s = createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port })
    const done = (v: boolean): void => {
      s.destroy()
      resolve(v)
    }
    s.setTimeout(500, () => done(false))
    s.on('error', () => done(false))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', (d) => done(d.toString().startsWith('+PONG')))
  })
}

async function redis(): Promise<{ url: string; pid: number; stop(): void }> {
  if (redisArg && !redisArg.startsWith('--')) return { url: redisArg, pid: 0, stop() {} }
  if (await ping(6379)) {
    const info = execFileSync('redis-cli', ['-p', '6379', 'info', 'server'], { encoding: 'utf8' })
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0)
    return { url: 'redis://127.0.0.1:6379', pid, stop() {} }
  }
  const port = await freePort()
  const p = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  })
  for (let i = 0; i < 100 && !(await ping(port)); i++) await sleep(50)
  return { url: `redis://127.0.0.1:${port}`, pid: p.pid ?? 0, stop: () => p.kill('SIGKILL') }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

async function startNode(extra: string[]): Promise<Proc> {
  const dir = mkdtempSync(join(tmpdir(), 'wirelog-bench-'))
  const proc = spawn(
    process.execPath,
    [CLI, '--host', '127.0.0.1', '--port', '0', '--log-dir', dir, ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
  })
  for (let i = 0; i < 200; i++) {
    const m = /listening on ws:\/\/[^:]+:(\d+)/.exec(err)
    if (m) {
      proc.once('exit', () => rmSync(dir, { recursive: true, force: true }))
      const pid = proc.pid!
      return { proc, port: Number(m[1]), pids: () => [pid, ...childPids(pid)] }
    }
    await sleep(25)
  }
  throw new Error(`node did not start: ${err}`)
}

async function stopNode(p: Proc): Promise<void> {
  if (p.proc.exitCode !== null) return
  p.proc.kill('SIGTERM')
  await once(p.proc, 'exit')
}

async function open(url: string, protocol?: string): Promise<WebSocket> {
  const ws = new WebSocket(url, protocol ? [protocol] : [])
  ws.on('error', () => {})
  await once(ws, 'open')
  return ws
}

/** A wirelog.v1 client that subscribed to `topic` (resolves after the ack). */
async function subscriber(url: string, topic: string, onMessage: (data: string) => void) {
  const ws = await open(url, 'wirelog.v1')
  await new Promise<void>((resolve) => {
    ws.on('message', (d: Buffer) => {
      const s = d.toString()
      if (s.startsWith('{"op":"message"')) onMessage(s)
      else if (s.includes('"request":"subscribe"')) resolve()
    })
    ws.send(JSON.stringify({ op: 'subscribe', topic, id: 1 }))
  })
  return ws
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

interface PubSubRow {
  name: string
  msgsPerSec: number
  p50Ms: number
  p99Ms: number
  /** Server CPU (all wirelog processes) per message, µs. */
  serverCpuUs: number
  /** Redis CPU per message, µs (when measurable). */
  redisCpuUs: number | undefined
}

/** Publisher on `pubUrl`, subscriber on `subUrl`. */
async function pubsubRun(
  name: string,
  pubUrl: string,
  subUrl: string,
  procs: Proc[],
  redisPid: number,
): Promise<PubSubRow> {
  const topic = `bench.${randomBytes(3).toString('hex')}`
  let got = 0
  const lat: number[] = []
  let measuring = false
  const sub = await subscriber(subUrl, topic, (s) => {
    got++
    if (!measuring) return
    const at = s.indexOf('"data":')
    const sent = Number(s.slice(at + 7, s.indexOf('}', at)).replace(/[^0-9.]/g, ''))
    lat.push(performance.now() - sent)
  })
  // A client's ops run one after another (in order), so one publisher waits a broker round
  // trip per publish: throughput uses PUBLISHERS connections, pipelined.
  const pubs = await Promise.all(
    Array.from({ length: PUBLISHERS }, () => open(pubUrl, 'wirelog.v1')),
  )
  const N = QUICK ? 10_000 : 50_000
  const cpu0 = cpuOf(procs.flatMap((p) => p.pids()))
  const r0 = redisPid ? cpuTicks(redisPid) : 0
  const t0 = performance.now()
  let sent = 0
  while (sent < N) {
    while (sent < N && sent - got < 100 * PUBLISHERS) {
      pubs[sent % PUBLISHERS]!.send(`{"op":"publish","topic":"${topic}","data":0}`)
      sent++
    }
    await new Promise((r) => setImmediate(r))
  }
  const deadline = Date.now() + 60_000
  while (got < N && Date.now() < deadline) await sleep(2)
  const secs = (performance.now() - t0) / 1000
  const cpu = cpuOf(procs.flatMap((p) => p.pids())) - cpu0
  const rcpu = redisPid ? cpuTicks(redisPid) - r0 : undefined
  // Latency: open loop at a fixed rate.
  const rate = QUICK ? 1000 : 2000
  const dur = QUICK ? 2 : 5
  measuring = true
  const start = performance.now()
  let k = 0
  while (performance.now() - start < dur * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate)
    for (; k < due; k++)
      pubs[k % PUBLISHERS]!.send(
        `{"op":"publish","topic":"${topic}","data":${performance.now().toFixed(3)}}`,
      )
    await sleep(1)
  }
  const want = got + 0
  await sleep(200)
  measuring = false
  void want
  sub.close()
  for (const p of pubs) p.close()
  return {
    name,
    msgsPerSec: Math.round(got >= N ? N / secs : 0),
    p50Ms: round(pct(lat, 50)),
    p99Ms: round(pct(lat, 99)),
    serverCpuUs: round(((cpu / TICKS) * 1e6) / N),
    redisCpuUs: rcpu === undefined ? undefined : round(((rcpu / TICKS) * 1e6) / N),
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100
}

interface WorkersRow {
  workers: number
  scenario: 'echo' | 'fan-out'
  msgsPerSec: number
  serverCpuUs: number
}

async function echoRun(w: number): Promise<WorkersRow> {
  const node = await startNode(['--workers', String(w)])
  const url = `ws://127.0.0.1:${node.port}`
  const conns = await Promise.all(Array.from({ length: 50 }, () => open(url)))
  const msg = 'x'.repeat(64)
  let got = 0
  const WINDOW = 10
  for (const ws of conns) {
    ws.on('message', () => {
      got++
      if (running) ws.send(msg)
    })
  }
  let running = true
  const cpu0 = cpuOf(node.pids())
  const t0 = performance.now()
  for (const ws of conns) for (let i = 0; i < WINDOW; i++) ws.send(msg)
  await sleep(QUICK ? 2000 : 5000)
  running = false
  const secs = (performance.now() - t0) / 1000
  const n = got
  const cpu = cpuOf(node.pids()) - cpu0
  for (const ws of conns) ws.close()
  await stopNode(node)
  return {
    workers: w,
    scenario: 'echo',
    msgsPerSec: Math.round(n / secs),
    serverCpuUs: round(((cpu / TICKS) * 1e6) / n),
  }
}

async function fanoutRun(w: number): Promise<WorkersRow> {
  const node = await startNode(['--workers', String(w)])
  const url = `ws://127.0.0.1:${node.port}`
  const topic = 'fan'
  let got = 0
  const subs = await Promise.all(
    Array.from({ length: 100 }, () =>
      subscriber(url, topic, () => {
        got++
      }),
    ),
  )
  const pubs = await Promise.all(Array.from({ length: PUBLISHERS }, () => open(url, 'wirelog.v1')))
  const cpu0 = cpuOf(node.pids())
  const t0 = performance.now()
  const dur = QUICK ? 2000 : 5000
  let sent = 0
  while (performance.now() - t0 < dur) {
    // At most 50 publishes per publisher whose deliveries are not all in.
    while (sent - got / 100 < 50 * PUBLISHERS) {
      pubs[sent % PUBLISHERS]!.send(`{"op":"publish","topic":"${topic}","data":0}`)
      sent++
    }
    await new Promise((r) => setImmediate(r))
  }
  const secs = (performance.now() - t0) / 1000
  const n = got
  const cpu = cpuOf(node.pids()) - cpu0
  for (const s of subs) s.close()
  for (const p of pubs) p.close()
  await stopNode(node)
  return {
    workers: w,
    scenario: 'fan-out',
    msgsPerSec: Math.round(n / secs),
    serverCpuUs: round(((cpu / TICKS) * 1e6) / n),
  }
}

async function main(): Promise<void> {
  const r = await redis()
  const prefix = `wirelog-bench:${process.pid}:`
  const redisArgs = ['--broker', 'redis', '--redis-url', r.url, '--redis-prefix', prefix]
  const rows: PubSubRow[] = []
  try {
    const mem = await startNode([])
    rows.push(
      await pubsubRun(
        'one node, memory broker',
        `ws://127.0.0.1:${mem.port}`,
        `ws://127.0.0.1:${mem.port}`,
        [mem],
        0,
      ),
    )
    await stopNode(mem)
    const a = await startNode(redisArgs)
    const b = await startNode(redisArgs)
    rows.push(
      await pubsubRun(
        'one node, redis broker',
        `ws://127.0.0.1:${a.port}`,
        `ws://127.0.0.1:${a.port}`,
        [a],
        r.pid,
      ),
    )
    rows.push(
      await pubsubRun(
        'node A → node B via redis',
        `ws://127.0.0.1:${a.port}`,
        `ws://127.0.0.1:${b.port}`,
        [a, b],
        r.pid,
      ),
    )
    await stopNode(a)
    await stopNode(b)
  } finally {
    try {
      const { createClient } = await import('@redis/client')
      const c = createClient({ url: r.url })
      c.on('error', () => {})
      await c.connect()
      let cursor = '0'
      do {
        const [next, keys] = (await c.sendCommand([
          'SCAN',
          cursor,
          'MATCH',
          `${prefix}*`,
          'COUNT',
          '1000',
        ])) as [string, string[]]
        cursor = next
        if (keys.length > 0) await c.sendCommand(['DEL', ...keys])
      } while (cursor !== '0')
      c.destroy()
    } catch {}
    r.stop()
  }
  const workers: WorkersRow[] = []
  for (const w of [1, 2]) workers.push(await echoRun(w))
  for (const w of [1, 2]) workers.push(await fanoutRun(w))

  const base = rows[0]!
  const cross = rows[2]!
  const hop = {
    latencyP50Ms: round(cross.p50Ms - base.p50Ms),
    latencyP99Ms: round(cross.p99Ms - base.p99Ms),
    serverCpuUs: round(cross.serverCpuUs - base.serverCpuUs),
    redisCpuUs: cross.redisCpuUs,
  }
  console.log('\n== topic messages (publisher and subscriber over real sockets)')
  console.table(rows)
  console.log('== cost of the Redis hop per message (A → B against one node, memory)')
  console.table([hop])
  console.log('== --workers (load generator in this process)')
  console.table(workers)
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    quick: QUICK,
    pubsub: rows,
    redisHop: hop,
    workers,
  }
  mkdirSync(join(ROOT, 'bench-results'), { recursive: true })
  writeFileSync(
    join(ROOT, 'bench-results', 'cluster-latest.json'),
    `${JSON.stringify(out, null, 2)}\n`,
  )
  console.log('wrote bench-results/cluster-latest.json')
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
