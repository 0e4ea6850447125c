/**
 * Write a large, realistic activity log fast, to measure `wirelog logs` on it:
 *
 *   node .build/bench/gen-log.js --format json --size 1e9 --out /tmp/big.log
 *
 * The lines have the server's exact shape (the text/json layouts of src/log/format.ts, the
 * same escaping): 500 clients connected at a time, churning; each sends chat-like JSON
 * messages of 20–300 bytes (a few heavy talkers send far more), a little binary, and
 * occasional rejections, client errors and odd close codes; times spread over `--hours`
 * ending now. Written in 4 MiB chunks with one write call each.
 */
import { closeSync, openSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'
import { jsonInner, jsonString, textValue } from '../src/log/escape.js'

interface Opts {
  format: 'text' | 'json'
  size: number
  out: string
  hours: number
}

function parse(argv: string[]): Opts {
  const o: Opts = { format: 'json', size: 1e9, out: 'big-activity.log', hours: 2 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const v = argv[++i]
    if (a === '--format' && (v === 'text' || v === 'json')) o.format = v
    else if (a === '--size' && Number(v) > 0) o.size = Number(v)
    else if (a === '--out' && v) o.out = v
    else if (a === '--hours' && Number(v) > 0) o.hours = Number(v)
    else {
      process.stderr.write(
        `gen-log: bad option ${a} ${v ?? ''}\nusage: gen-log [--format text|json] [--size bytes] [--out file] [--hours h]\n`,
      )
      process.exit(2)
    }
  }
  return o
}

// mulberry32: a small deterministic PRNG, the same file every run.
let seed = 42
function rnd(): number {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!

const WORDS =
  'the quick brown fox jumps over lazy dog hello world order price ready ok "quoted" tab\there'.split(
    ' ',
  )
const USERS = [
  'alice',
  'bob',
  'carol',
  'dave',
  'erin',
  'frank',
  'grace',
  'heidi',
  undefined,
  undefined,
]

interface Client {
  id: string
  ip: string
  port: number
  user: string | undefined
  /** Messages left before it disconnects. */
  left: number
  heavy: boolean
  in: number
  inBytes: number
  connectedAt: number
}

const o = parse(process.argv.slice(2))
const json = o.format === 'json'
const LABEL = { 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR' } as const
const head = `,"pid":${process.pid},"hostname":${jsonString(hostname())},"event":`
let nextId = 1
let time = Date.now() - o.hours * 3_600_000
const end = Date.now()
// Spread the lines evenly up to now: the step follows the line size seen so far.
let step = (o.hours * 3_600_000) / (o.size / 200)
let isoMs = -1
let iso = ''
const isoOf = (t: number): string => {
  const ms = Math.floor(t)
  if (ms !== isoMs) {
    isoMs = ms
    iso = new Date(ms).toISOString()
  }
  return iso
}

function line(
  level: 20 | 30 | 40 | 50,
  event: string,
  msg: string,
  fields: Array<[string, string | number | boolean | undefined]>,
): string {
  if (json) {
    let s = `{"level":${level},"time":${Math.floor(time)}${head}"${event}"`
    for (const [k, v] of fields) {
      if (v === undefined) continue
      s += typeof v === 'string' ? `,"${k}":${jsonString(v)}` : `,"${k}":${v}`
    }
    return `${s},"msg":${jsonString(msg)}}\n`
  }
  let s = `${isoOf(time)} ${LABEL[level]} ${msg} event=${event}`
  for (const [k, v] of fields) {
    if (v === undefined) continue
    s += typeof v === 'string' ? ` ${k}=${textValue(v)}` : ` ${k}=${v}`
  }
  return `${s}\n`
}

function newClient(): Client {
  const ip = `10.${Math.floor(rnd() * 4)}.${Math.floor(rnd() * 256)}.${Math.floor(rnd() * 256)}`
  return {
    id: `9f3a1c2e-${nextId++}`,
    ip,
    port: 1024 + Math.floor(rnd() * 60000),
    user: pick(USERS),
    left: 20 + Math.floor(rnd() * 400),
    heavy: rnd() < 0.02,
    in: 0,
    inBytes: 0,
    connectedAt: time,
  }
}

function connected(c: Client): string {
  return line(30, 'client.connected', `Client connected: ${c.ip}`, [
    ['client', c.id],
    ['ip', c.ip],
    ['user', c.user],
    ['port', c.port],
    ['path', '/ws?room=lobby&token=[redacted]'],
    ['origin', 'https://app.example.com'],
    ['ua', 'Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0'],
  ])
}

function message(c: Client): string {
  if (rnd() < 0.03) {
    const n = 16 + Math.floor(rnd() * 200)
    c.in++
    c.inBytes += n
    const hex = 'a1b2c3d4e5f60718'.repeat(4)
    if (json)
      return line(30, 'message.received', `Message received: [binary ${n} bytes] ${hex}…`, [
        ['client', c.id],
        ['ip', c.ip],
        ['user', c.user],
        ['bytes', n],
        ['binary', true],
        ['data', 'obLD1OX2BxihssPU5fYHGKGyw9Tl9gcY'],
      ])
    return line(30, 'message.received', `Message received: [binary ${n} bytes] ${hex}…`, [
      ['client', c.id],
      ['ip', c.ip],
      ['user', c.user],
      ['bytes', n],
      ['binary', true],
    ])
  }
  let text = `{"type":"chat","room":"r${Math.floor(rnd() * 50)}","text":"`
  const words = c.heavy ? 40 + Math.floor(rnd() * 40) : 2 + Math.floor(rnd() * 30)
  for (let i = 0; i < words; i++) text += `${pick(WORDS)} `
  text += '"}'
  const bytes = Buffer.byteLength(text)
  c.in++
  c.inBytes += bytes
  const preview = bytes > 256 ? `${text.slice(0, 256)}… (${bytes} bytes)` : text
  const sentence = `Message received: ${preview.replace(/\t/g, '\\t')}`
  const fields: Array<[string, string | number | boolean | undefined]> = [
    ['client', c.id],
    ['ip', c.ip],
    ['user', c.user],
    ['bytes', bytes],
  ]
  if (bytes > 256) fields.push(['truncated', true])
  if (json) {
    // data before msg, as the server writes it.
    const d = `,"data":"${jsonInner(bytes > 256 ? text.slice(0, 256) : text)}"`
    const l = line(30, 'message.received', sentence, fields)
    const at = l.lastIndexOf(',"msg":')
    return l.slice(0, at) + d + l.slice(at)
  }
  return line(30, 'message.received', sentence, fields)
}

function disconnected(c: Client): string {
  const r = rnd()
  const [code, reason, initiator] =
    r < 0.9
      ? [1000, '', 'client']
      : r < 0.95
        ? [1001, 'going away', 'client']
        : r < 0.97
          ? [1006, '', 'client']
          : r < 0.985
            ? [4001, 'idle timeout', 'server']
            : [1009, 'message too big', 'server']
  return line(30, 'client.disconnected', `Client disconnected: ${c.ip}`, [
    ['client', c.id],
    ['ip', c.ip],
    ['user', c.user],
    ['code', code],
    ['reason', reason],
    ['initiator', initiator],
    ['duration_ms', Math.floor(time - c.connectedAt)],
    ['msgs_in', c.in],
    ['msgs_out', c.in],
    ['bytes_in', c.inBytes],
    ['bytes_out', c.inBytes + 6 * c.in],
  ])
}

function oddLine(): string {
  const r = rnd()
  if (r < 0.6)
    return line(40, 'client.rejected', `Client rejected: 203.0.113.${Math.floor(rnd() * 255)}`, [
      ['ip', `203.0.113.${Math.floor(rnd() * 255)}`],
      ['port', 40000],
      ['status', r < 0.4 ? 403 : 429],
      ['reason', r < 0.4 ? 'origin not allowed' : 'too many connections from this address'],
      ['path', '/ws'],
      ['origin', 'https://evil.example'],
    ])
  return line(40, 'client.error', 'Client error: 10.0.0.1', [
    ['client', `9f3a1c2e-${Math.max(1, nextId - 3)}`],
    ['ip', '10.0.0.1'],
    ['code', 'WS_ERR_INVALID_UTF8'],
    ['close_code', 1007],
    ['error', 'Invalid UTF-8 sequence'],
  ])
}

const fd = openSync(o.out, 'w')
const live: Client[] = []
let written = 0
let lines = 0
let chunk = ''
const t0 = Date.now()
while (written < o.size) {
  while (live.length < 500) {
    const c = newClient()
    live.push(c)
    chunk += connected(c)
    lines++
  }
  for (let k = 0; k < 2000; k++) {
    time = Math.min(end, time + step)
    const i = Math.floor(rnd() * live.length)
    const c = live[i]!
    if (rnd() < 0.002) chunk += oddLine()
    else if (--c.left <= 0) {
      chunk += disconnected(c)
      live[i] = newClient()
      chunk += connected(live[i]!)
      lines++
    } else chunk += message(c)
    lines++
  }
  if (chunk.length >= 4 << 20) {
    written += writeSync(fd, chunk)
    chunk = ''
    const perLine = written / lines
    step = Math.max(0, (end - time) / Math.max(1, (o.size - written) / perLine))
  }
}
if (chunk) written += writeSync(fd, chunk)
closeSync(fd)
const s = (Date.now() - t0) / 1000
process.stderr.write(
  `gen-log: ${o.out}: ${lines.toLocaleString('en-US')} ${o.format} lines, ${(written / 1e6).toFixed(0)} MB in ${s.toFixed(1)} s\n`,
)
