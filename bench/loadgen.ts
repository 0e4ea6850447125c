/**
 * Load generator (a child process of run.ts) against 127.0.0.x only, driven by JSON commands
 * on stdin and reporting JSON on stdout. One process serves every phase of a session
 * (starting node costs more than a phase's warm-up), one phase at a time, with one of two
 * clients:
 *
 * - `ws`, the realistic client: the `ws` package's WebSocket (with bufferutil, as installed),
 *   as an application would use it; it costs more CPU per message than the servers do, so
 *   in closed loop it is usually the generator, not the server, that saturates;
 * - `frames`: raw sockets and pre-masked frames (frames-client.ts), cheap enough to saturate
 *   the server from one core.
 *
 * Phases:
 * - closed loop: every connection keeps `pipeline` messages in flight; each verified echo
 *   sends the next one;
 * - open loop: `rate` messages per second in total, whatever the server does, each round
 *   trip timed from its message's scheduled send time;
 * - idle (ws client): open `connections` connections and hold them.
 *
 * Every echo is checked byte for byte. Bounded: the process ends itself after `hardLimitMs`,
 * or when its stdin closes (the orchestrator is done or died).
 */
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { WebSocket } from 'ws'
import { FramesPhase } from './frames-client.js'
import { Payload } from './payload.js'
import type {
  LoadgenCommand,
  LoadgenConfig,
  LoadgenReport,
  LoadgenResult,
  PhaseConfig,
} from './protocol.js'
import { percentiles } from './stats.js'

const cfg = JSON.parse(process.argv[2] ?? '{}') as LoadgenConfig
const DRAIN_TIMEOUT_MS = 10_000
const CLOSE_TIMEOUT_MS = 15_000
/** Open loop: send times queued per connection before we call the server hopelessly behind. */
const MAX_QUEUE = 1 << 20

function report(msg: LoadgenReport): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`)
}

/**
 * Masks from a cheap PRNG instead of crypto: on loopback they protect nothing, and a mask is
 * never all zeros, so ws always copies (masks) the payload into its own frame and the one
 * buffer a connection reuses for every message is never queued by reference.
 */
let rng = (0x9e3779b9 ^ (process.pid << 8) ^ cfg.index) | 1
function generateMask(mask: Buffer): void {
  rng ^= rng << 13
  rng ^= rng >>> 17
  rng ^= rng << 5
  mask.writeInt32LE(rng | 1, 0)
}

interface Corkable {
  cork(): void
  uncork(): void
}

class Conn {
  readonly ws: WebSocket
  readonly id: number
  readonly payload: Payload
  sentSeq = 0
  recvSeq = 0
  /** Open loop: send times of the messages in flight (a growable ring). */
  times = new Float64Array(64)
  head = 0
  count = 0
  corked = false
  /** The TCP socket (a ws internal), corked per tick so a burst of sends is one write. */
  socket: Corkable | undefined

  constructor(ws: WebSocket, id: number, size: number) {
    this.ws = ws
    this.id = id
    this.payload = new Payload(size, cfg.index * 100_003 + id)
    this.socket = (ws as unknown as { _socket?: Corkable })._socket
  }

  pushTime(t: number): boolean {
    if (this.count === this.times.length) {
      if (this.times.length >= MAX_QUEUE) return false
      const bigger = new Float64Array(this.times.length * 2)
      for (let i = 0; i < this.count; i++)
        bigger[i] = this.times[(this.head + i) % this.times.length]!
      this.times = bigger
      this.head = 0
    }
    this.times[(this.head + this.count) % this.times.length] = t
    this.count++
    return true
  }

  shiftTime(): number {
    const t = this.times[this.head]!
    this.head = (this.head + 1) % this.times.length
    this.count--
    return t
  }
}

function uncork(c: Conn): void {
  c.corked = false
  c.socket?.uncork()
}

/** Cork until the end of this tick: the sends a burst of echoes triggers go out as one write. */
function cork(c: Conn): void {
  if (c.corked || c.socket === undefined) return
  c.corked = true
  c.socket.cork()
  process.nextTick(uncork, c)
}

/** A phase with the `ws` client. */
class WsPhase {
  readonly p: PhaseConfig
  readonly conns: Conn[] = []
  readonly result: LoadgenResult = {
    sent: 0,
    echoed: 0,
    mismatches: 0,
    firstMismatch: undefined,
    unexpectedCloses: 0,
    missing: 0,
    latency: undefined,
    maxScheduleLagMs: 0,
    errors: [],
  }
  running = false
  stopping = false
  #marks = 0
  #recording = false
  #samples: Float64Array | undefined
  #nSamples = 0
  #onDrained: (() => void) | undefined
  #ticker: NodeJS.Timeout | undefined

  constructor(p: PhaseConfig) {
    // Loopback only, whatever the orchestrator was told.
    const host = new URL(p.url).hostname
    if (!host.startsWith('127.') || p.localAddresses.some((a) => !a.startsWith('127.'))) {
      throw new Error(`refusing to load anything but 127.0.0.0/8 (url ${p.url})`)
    }
    this.p = p
  }

  error(msg: string): void {
    if (this.result.errors.length < 20) this.result.errors.push(msg)
  }

  get inFlight(): number {
    return this.result.sent - this.result.echoed
  }

  send(c: Conn): void {
    if (this.result.sent >= this.p.maxMessages) {
      if (this.running)
        this.error(`message cap (${this.p.maxMessages}) reached before the phase was stopped`)
      this.running = false
      return
    }
    c.ws.send(c.payload.next(c.sentSeq++), { binary: false })
    this.result.sent++
  }

  onMessage(c: Conn, data: Buffer, isBinary: boolean): void {
    const r = this.result
    const problem = isBinary ? 'binary echo of a text message' : c.payload.check(data, c.recvSeq)
    c.recvSeq++
    r.echoed++
    if (problem !== undefined && r.mismatches++ === 0) {
      r.firstMismatch = `connection ${c.id} message ${c.recvSeq - 1}: ${problem}`
    }
    if (this.p.mode === 'open') {
      const rtt = performance.now() - c.shiftTime()
      if (this.#recording && this.#samples !== undefined && this.#nSamples < this.#samples.length) {
        this.#samples[this.#nSamples++] = rtt
      }
    } else if (this.running) {
      cork(c)
      this.send(c)
    }
    if (this.#onDrained !== undefined && this.inFlight === 0) this.#onDrained()
  }

  #open(i: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.p.url, {
        perMessageDeflate: false,
        // The generator checks every byte itself; ws's UTF-8 pass would only load its core.
        skipUTF8Validation: true,
        handshakeTimeout: 20_000,
        generateMask,
        // Only when asked (scale mode): bind() before connect() must find a port free of every
        // socket on that address, TIME_WAIT included, which gets slow once thousands linger;
        // a plain connect() may reuse those on loopback.
        localAddress:
          this.p.localAddresses.length > 0
            ? this.p.localAddresses[i % this.p.localAddresses.length]
            : undefined,
      })
      const fail = (err: Error): void => {
        ws.removeAllListeners()
        ws.on('error', () => {})
        ws.terminate()
        reject(err)
      }
      ws.once('error', fail)
      ws.once('unexpected-response', (_req, res) =>
        fail(new Error(`HTTP ${res.statusCode} at upgrade`)),
      )
      ws.once('close', (code) => fail(new Error(`closed (${code}) during the handshake`)))
      ws.once('open', () => {
        ws.removeAllListeners()
        const c = new Conn(ws, i, this.p.size)
        ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(c, data, isBinary))
        ws.on('error', (err) => this.error(`connection ${i}: ${err.message}`))
        ws.on('close', (code) => {
          if (!this.stopping) {
            this.result.unexpectedCloses++
            this.error(`connection ${i} closed by the server (${code}) before the phase ended`)
          }
        })
        resolve(c)
      })
    })
  }

  /** Open every connection, at most `concurrency` handshakes at a time. */
  async connect(): Promise<void> {
    const t0 = performance.now()
    let next = 0
    let failed = 0
    let firstError: string | undefined
    const worker = async (): Promise<void> => {
      while (next < this.p.connections) {
        const i = next++
        try {
          this.conns.push(await this.#open(i))
        } catch (err) {
          failed++
          firstError ??= (err as Error).message
        }
      }
    }
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(this.p.concurrency, this.p.connections)) }, worker),
    )
    report({
      type: 'ready',
      connected: this.conns.length,
      failed,
      ms: performance.now() - t0,
      firstError,
    })
  }

  start(): void {
    if (this.p.mode === 'idle' || this.running || this.conns.length === 0) return
    this.running = true
    if (this.p.mode === 'closed') {
      for (const c of this.conns) {
        cork(c)
        for (let i = 0; i < this.p.pipeline; i++) this.send(c)
      }
      return
    }
    this.#samples = new Float64Array(this.p.maxSamples)
    const t0 = performance.now()
    const perMs = this.p.rate / 1000
    let scheduled = 0
    let rr = 0
    // Every ~1 ms, send whatever the schedule says is due by now (a timer is as fine-grained
    // as Node gets without spinning a core). Each round trip is timed from its message's
    // scheduled time, so the timer's lateness counts as latency instead of being omitted.
    const tick = (): void => {
      if (!this.running) return
      const now = performance.now()
      const due = Math.floor((now - t0) * perMs) + 1
      if (due > scheduled) {
        const lag = now - (t0 + scheduled / perMs)
        if (lag > this.result.maxScheduleLagMs) this.result.maxScheduleLagMs = lag
      }
      for (; scheduled < due; scheduled++) {
        const c = this.conns[rr++ % this.conns.length]!
        if (!c.pushTime(t0 + scheduled / perMs)) {
          this.error('open loop: the server is hopelessly behind; stopped sending')
          this.running = false
          return
        }
        cork(c)
        this.send(c)
      }
      this.#ticker = setTimeout(tick, 1)
    }
    tick()
  }

  mark(): void {
    this.#marks++
    this.#recording = this.#marks === 1
    report({
      type: 'mark',
      t: performance.now(),
      sent: this.result.sent,
      echoed: this.result.echoed,
    })
  }

  async stop(): Promise<void> {
    this.running = false
    if (this.#ticker) clearTimeout(this.#ticker)
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, DRAIN_TIMEOUT_MS)
        this.#onDrained = () => {
          clearTimeout(t)
          resolve()
        }
      })
      this.#onDrained = undefined
    }
    const r = this.result
    r.missing = this.inFlight
    if (r.missing > 0) this.error(`${r.missing} echoes never arrived`)
    this.stopping = true
    await Promise.all(
      this.conns.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.ws.readyState === WebSocket.CLOSED) return resolve()
            const t = setTimeout(() => c.ws.terminate(), CLOSE_TIMEOUT_MS)
            c.ws.once('close', () => {
              clearTimeout(t)
              resolve()
            })
            c.ws.close(1000, 'bench done')
          }),
      ),
    )
    if (this.#samples !== undefined) r.latency = percentiles(this.#samples, this.#nSamples)
    report({ type: 'done', result: r })
  }
}

function fatal(err: unknown): never {
  report({ type: 'error', message: err instanceof Error ? err.message : String(err) })
  process.exit(1)
}

process.on('uncaughtException', fatal)
process.on('unhandledRejection', fatal)
setTimeout(
  () => fatal(new Error(`hard time limit (${cfg.hardLimitMs} ms) reached`)),
  cfg.hardLimitMs,
).unref()

interface AnyPhase {
  readonly stopping: boolean
  connect(): Promise<void>
  start(): void
  mark(): void
  stop(): Promise<void>
}

let phase: AnyPhase | undefined
createInterface({ input: process.stdin })
  .on('line', (line) => {
    const c = JSON.parse(line) as LoadgenCommand
    if (c.cmd === 'connect') {
      if (phase && !phase.stopping) fatal(new Error('connect: the previous phase was not stopped'))
      try {
        phase =
          c.phase.client === 'frames'
            ? new FramesPhase(c.phase, cfg.index, report)
            : new WsPhase(c.phase)
      } catch (err) {
        fatal(err)
      }
      phase.connect().catch(fatal)
    } else if (c.cmd === 'start') phase?.start()
    else if (c.cmd === 'mark') phase?.mark()
    else if (c.cmd === 'stop') phase?.stop().catch(fatal)
  })
  // Done (or the orchestrator died): whatever is still open goes with the process.
  .on('close', () => process.exit(0))

report({ type: 'hello', pid: process.pid })
