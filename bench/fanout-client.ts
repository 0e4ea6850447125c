/**
 * The fan-out generator (a child process of fanout.ts): `subscribers` plain-socket WebSocket
 * clients of one topic and one publisher, in this one process. Deliveries are counted by
 * parsing frames by length (frames.ts), nothing is decoded. The publisher keeps at most
 * `window` messages in flight (published × subscribers − delivered ≤ window × subscribers),
 * so the server runs at its capacity without an unbounded queue.
 *
 * Protocols: `wirelog` (wirelog.v1: subscribe/ack, publish frames) or `plain` (the reference
 * servers of fanout-server.ts: `sub`/`ok`, any other text is published).
 *
 * Prints `{ type: 'subscribed' }` once every subscriber holds its subscription, then
 * `{ type: 'mark' }` after the warm-up and `{ type: 'done', … }` at the end of the window.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import {
  acceptFor,
  FrameReader,
  maskedFrame,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
} from './frames.js'

export interface FanoutClientConfig {
  url: string
  protocol: 'wirelog' | 'plain'
  subscribers: number
  /** Payload bytes of each published message. */
  size: number
  warmup: number
  duration: number
  window: number
  localAddresses: string[]
  /** Only subscribe, then hold the connections idle until killed (memory figures). */
  idle?: boolean
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as FanoutClientConfig
const url = new URL(cfg.url)
const port = Number(url.port)
const CONCURRENCY = 200
const TIMEOUT_MS = 60_000

const say = (msg: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(msg)}\n`)
}
const fail = (message: string): never => {
  say({ type: 'error', message })
  process.exit(1)
}
setTimeout(() => fail('fan-out generator: no result within its deadline'), TIMEOUT_MS * 3).unref()

let delivered = 0
let published = 0
let stopped = false

/** One client; `onText` is called for each text frame. */
function open(
  id: number,
  onText: (buf: Buffer, start: number, end: number) => void,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64')
    const local =
      cfg.localAddresses.length > 0 ? cfg.localAddresses[id % cfg.localAddresses.length] : undefined
    const socket = connect({ host: url.hostname, port, ...(local ? { localAddress: local } : {}) })
    socket.setNoDelay(true)
    let head: Buffer | undefined = Buffer.alloc(0)
    const reader = new FrameReader(
      (op, _fin, buf, start, end) => {
        if (op === OP_TEXT) onText(buf, start, end)
        else if (op === OP_PING)
          socket.write(maskedFrame(OP_PONG, buf.subarray(start, end), 0x01020304))
        else if (op === OP_CLOSE && !stopped) fail(`client ${id}: the server closed the connection`)
      },
      (m) => fail(`client ${id}: ${m}`),
    )
    socket.on('error', (err) =>
      head ? reject(err) : stopped || fail(`client ${id}: ${err.message}`),
    )
    socket.on('data', (d: Buffer) => {
      if (head === undefined) return reader.push(d, 0, d.length)
      head = Buffer.concat([head, d])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      const text = head.toString('latin1', 0, end)
      const rest = head.subarray(end + 4)
      head = undefined
      if (!text.startsWith('HTTP/1.1 101') || !text.includes(acceptFor(key)))
        return reject(new Error(`client ${id}: upgrade refused: ${text.split('\r\n')[0]}`))
      resolve(socket)
      if (rest.length > 0) reader.push(rest, 0, rest.length)
    })
    socket.write(
      `GET / HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        (cfg.protocol === 'wirelog' ? 'Sec-WebSocket-Protocol: wirelog.v1\r\n' : '') +
        '\r\n',
    )
  })
}

const subscribeFrame = maskedFrame(
  OP_TEXT,
  Buffer.from(cfg.protocol === 'wirelog' ? '{"op":"subscribe","id":"s","topic":"bench"}' : 'sub'),
  0x0a0b0c0d,
)
/** Text frames before the subscription holds: wirelog's welcome and ack; the reference's `ok`. */
const SETUP_FRAMES = cfg.protocol === 'wirelog' ? 2 : 1
const data = 'x'.repeat(cfg.size)
const publishFrame = maskedFrame(
  OP_TEXT,
  Buffer.from(
    cfg.protocol === 'wirelog' ? `{"op":"publish","topic":"bench","data":"${data}"}` : data,
  ),
  0x11223344,
)
const BATCH = 16
const publishBatch = Buffer.concat(Array.from({ length: BATCH }, () => publishFrame))

let publisher: Socket | undefined
const limit = cfg.window * cfg.subscribers

function pump(): void {
  if (stopped || publisher === undefined) return
  let room = Math.floor((limit - (published * cfg.subscribers - delivered)) / cfg.subscribers)
  if (room <= 0) return
  publisher.cork()
  while (room > 0) {
    const n = Math.min(room, BATCH)
    publisher.write(n === BATCH ? publishBatch : publishBatch.subarray(0, n * publishFrame.length))
    published += n
    room -= n
  }
  publisher.uncork()
}

async function main(): Promise<void> {
  let subscribed = 0
  let allSubscribed: () => void = () => {}
  const whenSubscribed = new Promise<void>((r) => {
    allSubscribed = r
  })
  const sockets: Socket[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < cfg.subscribers) {
      const id = next++
      let setup = 0
      const s = await open(id, (buf, start, end) => {
        if (setup < SETUP_FRAMES) {
          if (++setup === SETUP_FRAMES) {
            if (cfg.protocol === 'wirelog' && !buf.toString('latin1', start, end).includes('"ack"'))
              fail(`client ${id}: subscribe not acknowledged: ${buf.toString('utf8', start, end)}`)
            if (++subscribed === cfg.subscribers) allSubscribed()
          }
          return
        }
        delivered++
        pump()
      })
      s.write(subscribeFrame)
      sockets.push(s)
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, cfg.subscribers) }, worker))
  await whenSubscribed
  say({ type: 'subscribed' })
  if (cfg.idle) {
    stopped = true
    return
  }
  publisher = await open(cfg.subscribers, () => {})
  sockets.push(publisher)
  if (cfg.protocol === 'wirelog') await new Promise((r) => setTimeout(r, 50))
  pump()
  await new Promise((r) => setTimeout(r, cfg.warmup * 1000))
  const d0 = delivered
  const p0 = published
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  say({ type: 'mark' })
  await new Promise((r) => setTimeout(r, cfg.duration * 1000))
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  say({
    type: 'done',
    seconds,
    deliveries: delivered - d0,
    publishes: published - p0,
    generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
  })
  stopped = true
  for (const s of sockets) s.destroy()
  process.exit(0)
}

main().catch((err: unknown) => fail((err as Error).message))
