/**
 * Soak: one wirelog server (the real CLI, a child process) under a bounded run of steady
 * traffic, connection churn and a few hostile clients, sampling its RSS as it goes.
 *
 *   npm run soak                      # 5 minutes
 *   npm run soak -- --duration 30     # the CI version
 *
 * Options: --duration <s> (300), --rate <msg/s> steady messages (2000), --clients <n> steady
 * connections (50), --churn <conn/s> short-lived connections (20), --hostile-every <s> (2),
 * --keep (keep the log directory), --sync (run the server with --log-sync).
 *
 * Load (all to 127.0.0.1):
 * - steady: `--clients` long-lived connections sharing `--rate` messages per second, at most
 *   8 in flight each, every echo checked;
 * - churn: `--churn` connections per second that each send 5 messages (one at a time), get
 *   their echoes and close normally;
 * - hostile, one every `--hostile-every` seconds in turn: a message over `--max-payload`
 *   (expects close 1009), a text message that is not UTF-8 (expects 1007), and a client that
 *   never reads while sending 4 MB (the server must close it as a slow consumer, 4000).
 *
 * Fails (exit 1) when:
 * - RSS keeps growing after warm-up. Warm-up is the first third of the run (at most 60 s);
 *   the samples after it are split in thirds, and the run fails if the median RSS of the last
 *   third exceeds the median of the first third × 1.5 + 20 MB. (The least-squares slope over
 *   the same samples is printed, in MB/min, for information.)
 * - any log line is missing, duplicated or torn: every connection that opened has exactly one
 *   connect and one disconnect line, every message sent by a steady or churn client (all of
 *   them are echoed before they close) has exactly one `Message received` line, every line
 *   parses as JSON, and the last line is `Server closed`;
 * - a hostile client is not closed with its expected code (per the log's disconnect lines),
 *   an echo is wrong, a well-behaved client is closed abnormally, or the server does not
 *   exit 0 on SIGTERM at the end.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import {
  createReadStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { duration, Progress } from './progress.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')
const MB = 1024 * 1024
const MAX_PAYLOAD = 64 * 1024
const MAX_BUFFERED = 256 * 1024
const STEADY_WINDOW = 8
const CHURN_MESSAGES = 5
const MAX_CHURNERS = 200

interface Options {
  duration: number
  rate: number
  clients: number
  churn: number
  hostileEvery: number
  keep: boolean
  sync: boolean
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    duration: 300,
    rate: 2000,
    clients: 50,
    churn: 20,
    hostileEvery: 2,
    keep: false,
    sync: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const num = (): number => {
      const v = Number(argv[++i])
      if (!Number.isFinite(v) || v < 0) usage(`${a} needs a non-negative number`)
      return v
    }
    if (a === '--duration') o.duration = num()
    else if (a === '--rate') o.rate = num()
    else if (a === '--clients') o.clients = Math.max(1, Math.floor(num()))
    else if (a === '--churn') o.churn = num()
    else if (a === '--hostile-every') o.hostileEvery = Math.max(0.1, num())
    else if (a === '--keep') o.keep = true
    else if (a === '--sync') o.sync = true
    else usage(`unknown option ${a}`)
  }
  if (o.duration < 5) usage('--duration must be at least 5 seconds')
  return o
}

function usage(msg: string): never {
  process.stderr.write(
    `soak: ${msg}\nusage: npm run soak -- [--duration s] [--rate msg/s] [--clients n] [--churn conn/s] [--hostile-every s] [--keep] [--sync]\n`,
  )
  process.exit(2)
}

// ---------------------------------------------------------------------------------------
// Counters

type Kind = 'steady' | 'churn' | 'oversize' | 'utf8' | 'noread'
const EXPECTED_CODE: Partial<Record<Kind, number>> = { oversize: 1009, utf8: 1007, noread: 4000 }

const stats = {
  echoes: 0,
  badEchoes: 0,
  opened: { steady: 0, churn: 0, oversize: 0, utf8: 0, noread: 0 } as Record<Kind, number>,
  /** Client-side close codes per kind. */
  closeCodes: new Map<string, number>(),
  connectErrors: 0,
  /** Well-behaved clients closed with anything but 1000 before the end. */
  abnormal: 0,
  hostileUnexpected: 0,
}

/** key → messages sent; each is `<key>-<seq>`, every one must appear exactly once in the log. */
const sentBy = new Map<string, number>()

function countClose(kind: Kind, code: number): void {
  const k = `${kind}:${code}`
  stats.closeCodes.set(k, (stats.closeCodes.get(k) ?? 0) + 1)
}

// ---------------------------------------------------------------------------------------
// Clients

interface Steady {
  key: string
  ws: WebSocket
  sent: number
  echoed: number
  closed: Promise<number>
}

function openWs(url: string, kind: Kind): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { 'User-Agent': `soak-${kind}` } })
    ws.once('open', () => {
      stats.opened[kind]++
      resolve(ws)
    })
    ws.once('error', (err) => {
      if (ws.readyState !== WebSocket.OPEN) {
        stats.connectErrors++
        reject(err)
      }
    })
  })
}

/** Check an echo: `Echo: <key>-<seq>` for the next expected seq. */
function checkEcho(data: Buffer, key: string, seq: number): void {
  stats.echoes++
  if (data.toString('utf8') !== `Echo: ${key}-${seq}`) stats.badEchoes++
}

async function openSteady(url: string, index: number, stopping: () => boolean): Promise<Steady> {
  const ws = await openWs(url, 'steady')
  const key = `s${index}`
  const c: Steady = { key, ws, sent: 0, echoed: 0, closed: Promise.resolve(0) }
  sentBy.set(key, 0)
  ws.on('error', () => {})
  ws.on('message', (data: Buffer) => checkEcho(data, key, c.echoed++))
  c.closed = new Promise((resolve) => {
    ws.on('close', (code) => {
      countClose('steady', code)
      if (code !== 1000 || !stopping()) stats.abnormal++
      resolve(code)
    })
  })
  return c
}

function sendSteady(c: Steady): void {
  c.ws.send(`${c.key}-${c.sent++}`)
  sentBy.set(c.key, c.sent)
}

let churnSeq = 0
let churners = 0

/** A short-lived client: connect, 5 messages one at a time, close 1000. */
async function churnOnce(url: string): Promise<void> {
  churners++
  const key = `c${churnSeq++}`
  try {
    const ws = await openWs(url, 'churn')
    ws.on('error', () => {})
    sentBy.set(key, 0)
    let seq = 0
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => ws.terminate(), 10_000)
      ws.on('message', (data: Buffer) => {
        checkEcho(data, key, seq - 1)
        if (seq < CHURN_MESSAGES) {
          ws.send(`${key}-${seq++}`)
          sentBy.set(key, seq)
        } else ws.close(1000)
      })
      ws.on('close', (code) => {
        clearTimeout(t)
        countClose('churn', code)
        if (code !== 1000) stats.abnormal++
        resolve()
      })
      ws.send(`${key}-${seq++}`)
      sentBy.set(key, seq)
    })
  } catch {
    // counted in connectErrors
  } finally {
    churners--
  }
}

/** A message bigger than maxPayload: the server must close with 1009. */
async function hostileOversize(url: string): Promise<void> {
  const ws = await openWs(url, 'oversize')
  ws.on('error', () => {})
  const code = await new Promise<number>((resolve) => {
    const t = setTimeout(() => ws.terminate(), 5000)
    ws.on('close', (c) => {
      clearTimeout(t)
      resolve(c)
    })
    ws.send('x'.repeat(MAX_PAYLOAD + 4096))
  })
  countClose('oversize', code)
  if (code !== 1009) stats.hostileUnexpected++
}

/** A text frame that is not UTF-8: the server must close with 1007. */
async function hostileUtf8(url: string): Promise<void> {
  const ws = await openWs(url, 'utf8')
  ws.on('error', () => {})
  const code = await new Promise<number>((resolve) => {
    const t = setTimeout(() => ws.terminate(), 5000)
    ws.on('close', (c) => {
      clearTimeout(t)
      resolve(c)
    })
    ws.send(Buffer.from([0x68, 0x69, 0xc3, 0x28, 0xff]), { binary: false })
  })
  countClose('utf8', code)
  if (code !== 1007) stats.hostileUnexpected++
}

function maskedFrame(payload: Buffer): Buffer {
  const len = payload.length
  const head =
    len < 126
      ? Buffer.from([0x81, 0x80 | len])
      : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 255])
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78])
  const body = Buffer.allocUnsafe(len)
  for (let i = 0; i < len; i++) body[i] = payload[i]! ^ mask[i & 3]!
  return Buffer.concat([head, mask, body])
}

/**
 * A client that never reads: it completes the handshake, stops reading and sends 1 KiB
 * messages (with backpressure) until the server drops the connection, at most 64 MB or 15 s.
 * Their echoes fill the kernel buffers (several MB on loopback), then the server's queue,
 * until it closes the client as a slow consumer (4000, checked in the log).
 */
async function hostileNoRead(port: number): Promise<void> {
  const sock = netConnect(port, '127.0.0.1')
  sock.on('error', () => {})
  try {
    await new Promise<void>((resolve, reject) => {
      let head = ''
      const t = setTimeout(() => reject(new Error('no 101')), 5000)
      const onData = (d: Buffer): void => {
        head += d.toString('latin1')
        if (!head.includes('\r\n\r\n')) return
        clearTimeout(t)
        sock.off('data', onData)
        sock.pause()
        if (head.startsWith('HTTP/1.1 101')) resolve()
        else reject(new Error(head.split('\r\n')[0]))
      }
      sock.on('data', onData)
      sock.write(
        'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUser-Agent: soak-noread\r\n\r\n',
      )
    })
    stats.opened.noread++
    const frame = maskedFrame(Buffer.alloc(1024, 0x6e))
    const closed = new Promise<void>((r) => sock.once('close', () => r()))
    const deadline = Date.now() + 15_000
    let written = 0
    while (!sock.destroyed && written < 64 * MB && Date.now() < deadline) {
      written += frame.length
      if (!sock.write(frame)) {
        await Promise.race([
          new Promise((r) => sock.once('drain', r)),
          closed,
          new Promise((r) => setTimeout(r, 200)),
        ])
      }
    }
  } catch {
    stats.connectErrors++
  } finally {
    sock.destroy()
  }
}

// ---------------------------------------------------------------------------------------
// Server, RSS

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

function startServer(
  dir: string,
  sync: boolean,
): Promise<{
  proc: ChildProcess
  port: number
  stderr: () => string
  exited: Promise<number | string>
}> {
  const args = [
    CLI,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--log-dir',
    dir,
    '--log-file',
    'soak.log',
    '--log-format',
    'json',
    '--log-rotate-size',
    String(64 * MB),
    '--log-rotate-keep',
    '1000',
    '--max-payload',
    String(MAX_PAYLOAD),
    '--max-buffered-bytes',
    String(MAX_BUFFERED),
    ...(sync ? ['--log-sync'] : []),
  ]
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exited = new Promise<number | string>((resolve) =>
    proc.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  )
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 10_000)
    const onData = (): void => {
      const m = /listening on ws:\/\/[^:]+:(\d+)/.exec(err)
      if (!m) return
      clearTimeout(t)
      proc.stderr!.off('data', onData)
      resolve({ proc, port: Number(m[1]), stderr: () => err, exited })
    }
    proc.stderr!.on('data', onData)
    void exited.then((code) =>
      reject(new Error(`server exited (${code}) before listening: ${err}`)),
    )
  })
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const n = s.length
  return n === 0 ? 0 : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length
  if (n < 2) return 0
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my)
    den += (xs[i]! - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

const mb = (bytes: number): string => (bytes / MB).toFixed(1)

// ---------------------------------------------------------------------------------------
// The log

interface LogCheck {
  lines: number
  torn: number
  lastEvent: string
  connects: number
  disconnects: number
  /** Client ids with other than exactly one connect and one disconnect line. */
  unpaired: number
  /** Close codes per kind (by user agent) from the disconnect lines. */
  codes: Map<string, number>
  missing: number
  duplicated: number
  unknown: number
  examples: string[]
}

async function checkLog(dir: string): Promise<LogCheck> {
  const files = readdirSync(dir)
    .filter((n) => n.startsWith('soak.log'))
    .map((n) => ({ n, k: n === 'soak.log' ? 0 : Number(n.slice('soak.log.'.length)) }))
    .sort((a, b) => b.k - a.k)
    .map((f) => join(dir, f.n))
  const r: LogCheck = {
    lines: 0,
    torn: 0,
    lastEvent: '',
    connects: 0,
    disconnects: 0,
    unpaired: 0,
    codes: new Map(),
    missing: 0,
    duplicated: 0,
    unknown: 0,
    examples: [],
  }
  const seen = new Map<string, Uint8Array>()
  for (const [key, n] of sentBy) seen.set(key, new Uint8Array(n))
  const conn = new Map<string, { ua: string; c: number; d: number }>()
  const note = (s: string): void => {
    if (r.examples.length < 10) r.examples.push(s)
  }
  for (const file of files) {
    const rl = createInterface({
      input: createReadStream(file, 'utf8'),
      crlfDelay: Number.POSITIVE_INFINITY,
    })
    for await (const line of rl) {
      if (line.length === 0) continue
      r.lines++
      let rec: { event: string; msg: string; client?: string; ua?: string; code?: number }
      try {
        rec = JSON.parse(line)
      } catch {
        r.torn++
        note(`torn line in ${file}: ${line.slice(0, 120)}`)
        continue
      }
      r.lastEvent = rec.event
      if (rec.event === 'client.connected') {
        r.connects++
        const e = conn.get(rec.client!) ?? { ua: rec.ua ?? '', c: 0, d: 0 }
        e.c++
        conn.set(rec.client!, e)
      } else if (rec.event === 'client.disconnected') {
        r.disconnects++
        const e = conn.get(rec.client!) ?? { ua: '?', c: 0, d: 0 }
        e.d++
        conn.set(rec.client!, e)
        const k = `${e.ua.replace(/^soak-/, '')}:${rec.code}`
        r.codes.set(k, (r.codes.get(k) ?? 0) + 1)
      } else if (rec.event === 'message.received') {
        const m = /^Message received: ([sc]\d+)-(\d+)$/.exec(rec.msg)
        if (!m) continue // never-reader traffic ("nnnn…")
        const arr = seen.get(m[1]!)
        const seq = Number(m[2])
        if (!arr || seq >= arr.length) {
          r.unknown++
          note(`line for a message never sent: ${rec.msg}`)
        } else if (arr[seq]! < 255) arr[seq]!++
      }
    }
  }
  for (const [id, e] of conn) {
    if (e.c !== 1 || e.d !== 1) {
      r.unpaired++
      note(`client ${id} (${e.ua}): ${e.c} connect / ${e.d} disconnect lines`)
    }
  }
  for (const [key, arr] of seen) {
    for (let i = 0; i < arr.length; i++) {
      if (arr[i] === 0) {
        r.missing++
        note(`no line for ${key}-${i}`)
      } else if (arr[i]! > 1) {
        r.duplicated++
        note(`${arr[i]} lines for ${key}-${i}`)
      }
    }
  }
  return r
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2))
  const dir = mkdtempSync(join(tmpdir(), 'wirelog-soak-'))
  const server = await startServer(dir, o.sync)
  const pid = server.proc.pid!
  const url = `ws://127.0.0.1:${server.port}`
  let serverDied = false
  void server.exited.then(() => {
    serverDied = true
  })
  const sampleEvery = Math.min(10, Math.max(1, Math.round(o.duration / 30)))
  const warmup = Math.min(60, o.duration / 3)
  console.log(
    `soak: ${o.duration} s against ${url} (pid ${pid}); steady ${o.clients} clients × ${o.rate} msg/s total, churn ${o.churn} conn/s, ` +
      `a hostile client every ${o.hostileEvery} s; log ${dir}${o.sync ? ' (--log-sync)' : ''}; RSS every ${sampleEvery} s, warm-up ${Math.round(warmup)} s`,
  )

  // On a terminal: a live line with the time left (stderr); the samples stay on stdout.
  const progress = new Progress()
  const t0p = Date.now()
  progress.status(() => {
    const t = (Date.now() - t0p) / 1000
    return `soak: ${duration(t)} of ${duration(o.duration)}, ETA ${duration(o.duration - t)}, ${stats.echoes.toLocaleString('en-US')} echoes`
  })
  const say = (line: string): void => {
    // Both on one terminal: the sample goes above the live line, not through it.
    if (progress.tty && process.stdout.isTTY) progress.line(line)
    else console.log(line)
  }

  let stopping = false
  const steady: Steady[] = []
  for (let i = 0; i < o.clients; i++) steady.push(await openSteady(url, i, () => stopping))

  const t0 = Date.now()
  const end = t0 + o.duration * 1000
  const samples: Array<{ t: number; rss: number }> = []
  const pending = new Set<Promise<void>>()
  const track = (p: Promise<void>): void => {
    pending.add(p)
    void p.finally(() => pending.delete(p))
  }

  // Steady traffic: a token bucket refilled every 10 ms, spread round-robin.
  let tokens = 0
  let rr = 0
  let last = Date.now()
  const steadyTimer = setInterval(() => {
    const now = Date.now()
    tokens = Math.min(o.rate, tokens + ((now - last) * o.rate) / 1000)
    last = now
    let blocked = 0
    while (tokens >= 1 && blocked < steady.length) {
      const c = steady[rr++ % steady.length]!
      if (c.ws.readyState === WebSocket.OPEN && c.sent - c.echoed < STEADY_WINDOW) {
        sendSteady(c)
        tokens--
        blocked = 0
      } else blocked++
    }
  }, 10)

  // Churn.
  let churnCarry = 0
  const churnTimer = setInterval(() => {
    churnCarry += o.churn / 20
    while (churnCarry >= 1) {
      churnCarry--
      if (churners < MAX_CHURNERS) track(churnOnce(url))
    }
  }, 50)

  // Hostile clients, in turn.
  let hostileTurn = 0
  const hostileTimer = setInterval(() => {
    const kind = hostileTurn++ % 3
    const p =
      kind === 0 ? hostileOversize(url) : kind === 1 ? hostileUtf8(url) : hostileNoRead(server.port)
    track(p.catch(() => {}))
  }, o.hostileEvery * 1000)

  // Samples.
  let lastEchoes = 0
  let lastOpened = 0
  const openedTotal = (): number => Object.values(stats.opened).reduce((a, b) => a + b, 0)
  await new Promise<void>((resolve) => {
    const sample = (): void => {
      const t = (Date.now() - t0) / 1000
      const rss = rssOf(pid)
      samples.push({ t, rss })
      const echoes = stats.echoes - lastEchoes
      const opened = openedTotal() - lastOpened
      lastEchoes = stats.echoes
      lastOpened = openedTotal()
      const hostile = [...stats.closeCodes]
        .filter(([k]) => !k.startsWith('steady') && !k.startsWith('churn'))
        .map(([k, n]) => `${k}×${n}`)
        .join(' ')
      say(
        `[${t.toFixed(0).padStart(4)} s] rss ${mb(rss).padStart(6)} MB | ${Math.round(
          echoes / sampleEvery,
        )
          .toString()
          .padStart(
            6,
          )} echoes/s | ${Math.round(opened / sampleEvery)} conn/s, ${churners} churning | ` +
          `errors: bad echo ${stats.badEchoes}, connect ${stats.connectErrors}, abnormal close ${stats.abnormal}, hostile unexpected ${stats.hostileUnexpected} | ${hostile}`,
      )
      if (Date.now() >= end || serverDied) {
        clearInterval(sampler)
        resolve()
      }
    }
    const sampler = setInterval(sample, sampleEvery * 1000)
  })

  // Wind down: stop the load, let in-flight messages finish, close everyone normally.
  progress.done()
  clearInterval(steadyTimer)
  clearInterval(churnTimer)
  clearInterval(hostileTimer)
  stopping = true
  const failures: string[] = []
  const deadline = Date.now() + 15_000
  while (
    !serverDied &&
    Date.now() < deadline &&
    (pending.size > 0 ||
      steady.some((c) => c.ws.readyState === WebSocket.OPEN && c.echoed < c.sent))
  ) {
    await new Promise((r) => setTimeout(r, 20))
  }
  for (const c of steady) c.ws.close(1000)
  await Promise.race([
    Promise.all(steady.map((c) => c.closed)),
    new Promise((r) => setTimeout(r, 10_000)),
  ])

  let exit: number | string = 'still running'
  if (serverDied) failures.push(`the server died during the soak: ${server.stderr()}`)
  else {
    server.proc.kill('SIGTERM')
    exit = await Promise.race([
      server.exited,
      new Promise<string>((r) => setTimeout(() => r('timeout'), 30_000)),
    ])
    if (exit !== 0) {
      failures.push(`the server exited ${exit} on SIGTERM`)
      server.proc.kill('SIGKILL')
    }
  }

  // RSS verdict.
  const after = samples.filter((s) => s.t > warmup)
  const third = Math.max(1, Math.floor(after.length / 3))
  const first = median(after.slice(0, third).map((s) => s.rss))
  const lastMed = median(after.slice(-third).map((s) => s.rss))
  const limit = first * 1.5 + 20 * MB
  const slopeMbMin =
    (slope(
      after.map((s) => s.t),
      after.map((s) => s.rss),
    ) /
      MB) *
    60
  const peak = Math.max(...samples.map((s) => s.rss))
  if (after.length < 3) failures.push(`too few RSS samples after warm-up (${after.length})`)
  else if (lastMed > limit)
    failures.push(
      `RSS keeps growing: last-third median ${mb(lastMed)} MB > first-third median ${mb(first)} MB × 1.5 + 20 MB`,
    )

  // Log verdict.
  const log = await checkLog(dir)
  const opened = openedTotal()
  if (log.torn > 0) failures.push(`${log.torn} torn log lines`)
  if (log.lastEvent !== 'server.closed')
    failures.push(`last log line is ${log.lastEvent}, not server.closed`)
  if (log.connects !== opened)
    failures.push(`${log.connects} connect lines for ${opened} connections opened`)
  if (log.disconnects !== log.connects)
    failures.push(`${log.disconnects} disconnect lines for ${log.connects} connect lines`)
  if (log.unpaired > 0)
    failures.push(`${log.unpaired} clients without exactly one connect and one disconnect line`)
  if (log.missing > 0) failures.push(`${log.missing} messages have no log line`)
  if (log.duplicated > 0) failures.push(`${log.duplicated} messages logged more than once`)
  if (log.unknown > 0) failures.push(`${log.unknown} message lines nobody sent`)
  for (const [kind, code] of Object.entries(EXPECTED_CODE)) {
    const wrong = [...log.codes].filter(
      ([k]) => k.startsWith(`${kind}:`) && k !== `${kind}:${code}`,
    )
    if (wrong.length > 0)
      failures.push(
        `${kind} clients closed with ${wrong.map(([k, n]) => `${k.split(':')[1]}×${n}`).join(', ')} (expected ${code})`,
      )
  }
  if (stats.badEchoes > 0) failures.push(`${stats.badEchoes} wrong echoes`)
  if (stats.abnormal > 0) failures.push(`${stats.abnormal} well-behaved clients closed abnormally`)
  if (stats.hostileUnexpected > 0)
    failures.push(`${stats.hostileUnexpected} hostile clients got an unexpected close code`)
  if (stats.connectErrors > 0) failures.push(`${stats.connectErrors} connections failed`)

  const messages = [...sentBy.values()].reduce((a, b) => a + b, 0)
  const secs = o.duration
  console.log('')
  console.log(
    `messages: ${messages} sent by steady+churn clients (${Math.round(messages / secs)}/s), ${stats.echoes} echoes checked`,
  )
  console.log(
    `connections: ${opened} opened (${Object.entries(stats.opened)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}); connect errors ${stats.connectErrors}`,
  )
  console.log(
    `log: ${log.lines} lines; ${log.connects} connect, ${log.disconnects} disconnect; missing ${log.missing}, duplicated ${log.duplicated}, torn ${log.torn}; ` +
      `close codes ${[...log.codes]
        .sort()
        .map(([k, n]) => `${k}×${n}`)
        .join(' ')}`,
  )
  console.log(
    `rss: peak ${mb(peak)} MB; after warm-up first-third median ${mb(first)} MB, last-third median ${mb(lastMed)} MB (limit ${mb(limit)} MB), slope ${slopeMbMin.toFixed(2)} MB/min`,
  )
  console.log(`server exit on SIGTERM: ${exit}`)
  const extra = server
    .stderr()
    .split('\n')
    .filter((l) => l && !/listening on/.test(l))
  if (extra.length > 0) console.log(`server stderr:\n  ${extra.slice(0, 20).join('\n  ')}`)
  for (const e of log.examples) console.log(`  ${e}`)

  if (!o.keep) rmSync(dir, { recursive: true, force: true })
  else if (existsSync(dir)) console.log(`log kept in ${dir}`)
  if (failures.length > 0) {
    console.log(`\nFAIL\n- ${failures.join('\n- ')}`)
    process.exit(1)
  }
  console.log('\nPASS')
  process.exit(0)
}

main().catch((err: unknown) => {
  console.error(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  process.exit(1)
})
