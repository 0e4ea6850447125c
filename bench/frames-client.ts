/**
 * The frames generator: WebSocket clients made of plain `node:net` sockets, cheap enough that
 * one generator core can keep a server core busy.
 *
 * - The upgrade handshake is written by hand and its Sec-WebSocket-Accept checked.
 * - Messages are pre-built, pre-masked frames (a FrameRing); sending n of them is one write of
 *   a slice of the ring (two where it wraps), never a copy or a per-message mask.
 * - Replies are parsed by length (frames.ts), read into one reused buffer (`onread`), and every
 *   echo is compared byte for byte with the expected `Echo: ` + message, in order.
 * - Closed loop: `pipeline` messages in flight per connection; the echoes of one read are
 *   answered with as many new messages in one write.
 * - Open loop: messages are scheduled by the clock (`rate` per second over all connections,
 *   round-robin) and each round trip is timed from its scheduled send time, not from when it
 *   was actually written, so a stall (in the server or here) is counted, not omitted. To keep
 *   that schedule to a few µs the loop spins on setImmediate while messages are due within
 *   2 ms (node's timers have 1 ms granularity): the generator's core looks busy in open loop.
 * - Pings are answered with pongs (wirelog's heartbeat is on), and the phase ends with a close
 *   handshake on every connection.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import {
  checkUpgradeResponse,
  closeFrame,
  FrameReader,
  FrameRing,
  maskedFrame,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  upgradeRequest,
} from './frames.js'
import {
  ECHO_PREFIX,
  type LoadgenReport,
  type LoadgenResult,
  type PhaseConfig,
} from './protocol.js'
import { Samples, TimeQueue } from './stats.js'

const HANDSHAKE_TIMEOUT_MS = 20_000
const DRAIN_TIMEOUT_MS = 10_000
const CLOSE_TIMEOUT_MS = 5_000
/** Open loop: sleep on a timer instead of spinning when the next message is this far off (ms). */
const SPIN_WINDOW_MS = 2

/**
 * One read buffer for every connection: `onread` hands each read to its callback
 * synchronously, and whatever must outlive the callback (a split frame, the handshake) is
 * copied out of it.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

type State = 'handshake' | 'open' | 'closing' | 'closed'

class FramesConn {
  readonly id: number
  readonly phase: FramesPhase
  readonly socket: Socket
  readonly reader: FrameReader
  /** Send (closed loop) or scheduled (open loop) times of the messages in flight. */
  readonly times = new TimeQueue()
  state: State = 'handshake'
  /** Ring index of the next message to send, and of the next echo expected. */
  next: number
  expect: number
  /** Open loop: messages scheduled in this tick, not yet written. */
  due = 0
  /** Echoes parsed in the current read. */
  echoesInRead = 0
  /** performance.now() when the current read arrived. */
  readAt = 0
  /** The upgrade response so far (until its blank line). */
  #head: Buffer | undefined = Buffer.alloc(0)
  readonly #key = randomBytes(16).toString('base64')
  /** Settle open(): the 101 checked out, or the handshake failed. */
  #opened: (() => void) | undefined
  #handshakeFailed: ((err: Error) => void) | undefined

  constructor(phase: FramesPhase, id: number, start: number) {
    this.phase = phase
    this.id = id
    this.next = start
    this.expect = start
    this.reader = new FrameReader(
      (op, fin, buf, s, e) => this.#onFrame(op, fin, buf, s, e),
      (msg) => this.#protocolError(msg),
    )
    const p = phase.p
    const url = new URL(p.url)
    this.socket = connect({
      host: url.hostname,
      port: Number(url.port),
      localAddress:
        p.localAddresses.length > 0 ? p.localAddresses[id % p.localAddresses.length] : undefined,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array): boolean => {
          this.#onRead(buf as Buffer, n)
          return true
        },
      },
    })
  }

  /** Resolves once the 101 arrived and checked out. */
  open(): Promise<void> {
    const url = new URL(this.phase.p.url)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error('handshake timed out')), HANDSHAKE_TIMEOUT_MS)
      const fail = (err: Error): void => {
        clearTimeout(timer)
        this.state = 'closed'
        this.socket.destroy()
        reject(err)
      }
      this.#opened = () => {
        clearTimeout(timer)
        this.socket.removeListener('error', fail)
        this.socket.removeListener('close', closed)
        this.socket.on('error', (err) => this.phase.onSocketError(this, err))
        this.socket.on('close', () => this.phase.onSocketClose(this))
        resolve()
      }
      this.#handshakeFailed = fail
      const closed = (): void => fail(new Error('closed during the handshake'))
      this.socket.once('error', fail)
      this.socket.once('close', closed)
      this.socket.once('connect', () =>
        this.socket.write(upgradeRequest(url.hostname, Number(url.port), this.#key)),
      )
    })
  }

  /** Write `n` messages from the ring (one write; two, corked, where the ring wraps). */
  write(n: number): void {
    const ring = this.phase.ring
    const parts = ring.slices(this.next, n)
    this.next = (this.next + n) % ring.count
    if (parts.length === 1) this.socket.write(parts[0])
    else {
      this.socket.cork()
      this.socket.write(parts[0])
      this.socket.write(parts[1])
      this.socket.uncork()
    }
  }

  /** Start the close handshake; resolves when the socket is gone (or after a timeout). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.state === 'closed' || this.socket.destroyed) {
        this.state = 'closed'
        return resolve()
      }
      const t = setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS)
      this.socket.once('close', () => {
        clearTimeout(t)
        resolve()
      })
      if (this.state === 'open') {
        this.state = 'closing'
        this.socket.write(closeFrame(1000, this.phase.mask()))
      }
    })
  }

  #onRead(buf: Buffer, n: number): void {
    if (this.state === 'handshake') {
      this.#handshake(buf, n)
      return
    }
    this.readAt = performance.now()
    this.echoesInRead = 0
    this.reader.push(buf, 0, n)
    if (this.echoesInRead > 0) this.phase.afterRead(this)
  }

  #handshake(buf: Buffer, n: number): void {
    const head = Buffer.concat([this.#head!, buf.subarray(0, n)])
    const end = head.indexOf('\r\n\r\n')
    if (end < 0) {
      if (head.length > 16 * 1024) this.#handshakeFailed?.(new Error('upgrade response too long'))
      else this.#head = head
      return
    }
    this.#head = undefined
    const problem = checkUpgradeResponse(head.toString('latin1', 0, end), this.#key)
    if (problem !== undefined) {
      this.#handshakeFailed?.(new Error(problem))
      return
    }
    this.state = 'open'
    this.#opened?.()
    if (head.length > end + 4) {
      this.readAt = performance.now()
      this.reader.push(head, end + 4, head.length)
    }
  }

  #onFrame(op: number, fin: boolean, buf: Buffer, s: number, e: number): void {
    if (op === OP_TEXT && fin) {
      const sentAt = this.times.shift()
      if (Number.isNaN(sentAt)) {
        this.phase.onEcho(this, 'an echo of nothing (more replies than messages sent)', 0)
        return
      }
      const problem = this.phase.ring.check(this.expect, buf, s, e)
      this.expect = (this.expect + 1) % this.phase.ring.count
      this.echoesInRead++
      this.phase.onEcho(this, problem, this.readAt - sentAt)
    } else if (op === OP_PING) {
      this.socket.write(maskedFrame(OP_PONG, buf.subarray(s, e), this.phase.mask()))
    } else if (op === OP_PONG) {
      // Unsolicited pongs are allowed (RFC 6455 §5.5.3).
    } else if (op === OP_CLOSE) {
      const code = e - s >= 2 ? buf.readUInt16BE(s) : 1005
      if (this.state === 'open') {
        this.phase.onServerClose(this, code)
        this.socket.write(closeFrame(code === 1005 ? 1000 : code, this.phase.mask()))
      }
      this.state = 'closing'
      this.socket.end()
    } else {
      this.phase.onEcho(this, `unexpected frame: opcode ${op}, fin ${fin}, ${e - s} bytes`, 0)
    }
  }

  #protocolError(message: string): void {
    this.phase.error(`connection ${this.id}: ${message}`)
    this.state = 'closed'
    this.socket.destroy()
  }
}

export class FramesPhase {
  readonly p: PhaseConfig
  readonly ring: FrameRing
  readonly conns: FramesConn[] = []
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
  readonly #report: (m: LoadgenReport) => void
  #marks = 0
  #recording = false
  #samples: Samples | undefined
  #onDrained: (() => void) | undefined
  #ticker: NodeJS.Timeout | NodeJS.Immediate | undefined
  #rng: number

  constructor(p: PhaseConfig, index: number, report: (m: LoadgenReport) => void) {
    const host = new URL(p.url).hostname
    if (!host.startsWith('127.') || p.localAddresses.some((a) => !a.startsWith('127.'))) {
      throw new Error(`refusing to load anything but 127.0.0.0/8 (url ${p.url})`)
    }
    this.p = p
    this.#report = report
    this.#rng = (0x2545f491 ^ (process.pid << 4) ^ index) | 1
    this.ring = new FrameRing(p.size, Buffer.from(ECHO_PREFIX), index, 2 * p.pipeline + 1)
  }

  /** A fresh nonzero mask for a control frame. */
  mask(): number {
    this.#rng ^= this.#rng << 13
    this.#rng ^= this.#rng >>> 17
    this.#rng ^= this.#rng << 5
    return this.#rng >>> 0 || 1
  }

  error(msg: string): void {
    if (this.result.errors.length < 20) this.result.errors.push(msg)
  }

  get inFlight(): number {
    return this.result.sent - this.result.echoed
  }

  onEcho(c: FramesConn, problem: string | undefined, rtt: number): void {
    const r = this.result
    r.echoed++
    if (problem !== undefined && r.mismatches++ === 0)
      r.firstMismatch = `connection ${c.id}: ${problem}`
    if (this.#recording) this.#samples?.add(rtt)
    if (this.#onDrained !== undefined && this.inFlight === 0) this.#onDrained()
  }

  /** Closed loop: answer the echoes of one read with as many new messages, in one write. */
  afterRead(c: FramesConn): void {
    if (!this.running || this.p.mode !== 'closed' || c.state !== 'open') return
    this.#send(c, c.echoesInRead, performance.now())
  }

  onServerClose(c: FramesConn, code: number): void {
    if (!this.stopping) {
      this.result.unexpectedCloses++
      this.error(`connection ${c.id} closed by the server (${code}) before the phase ended`)
    }
  }

  onSocketError(c: FramesConn, err: Error): void {
    if (!this.stopping) this.error(`connection ${c.id}: ${err.message}`)
  }

  onSocketClose(c: FramesConn): void {
    if (c.state === 'open' && !this.stopping) {
      this.result.unexpectedCloses++
      this.error(`connection ${c.id}: socket closed before the phase ended`)
    }
    c.state = 'closed'
  }

  /** Send `n` messages on `c`, each stamped `t` (closed loop) — within the phase's message cap. */
  #send(c: FramesConn, n: number, t: number): void {
    const room = this.p.maxMessages - this.result.sent
    if (n > room) {
      if (this.running)
        this.error(`message cap (${this.p.maxMessages}) reached before the phase was stopped`)
      this.running = false
      n = Math.max(0, room)
    }
    if (n === 0) return
    for (let i = 0; i < n; i++) c.times.push(t)
    c.write(n)
    this.result.sent += n
  }

  async connect(): Promise<void> {
    const t0 = performance.now()
    let next = 0
    let failed = 0
    let firstError: string | undefined
    const worker = async (): Promise<void> => {
      while (next < this.p.connections) {
        const i = next++
        // Spread the connections over the ring so they do not all send the same bytes.
        const c = new FramesConn(this, i, (i * 7919) % this.ring.count)
        try {
          await c.open()
          this.conns.push(c)
        } catch (err) {
          failed++
          firstError ??= (err as Error).message
        }
      }
    }
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(this.p.concurrency, this.p.connections)) }, worker),
    )
    this.#report({
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
    this.#samples = new Samples(this.p.maxSamples)
    if (this.p.mode === 'closed') {
      const now = performance.now()
      for (const c of this.conns) this.#send(c, this.p.pipeline, now)
      return
    }
    this.#openLoop()
  }

  #openLoop(): void {
    const conns = this.conns
    const perMs = this.p.rate / 1000
    const t0 = performance.now()
    let scheduled = 0
    const touched: FramesConn[] = []
    const tick = (): void => {
      this.#ticker = undefined
      if (!this.running) return
      const now = performance.now()
      // Message k is due at t0 + k / perMs.
      const due = Math.floor((now - t0) * perMs) + 1
      if (due > scheduled) {
        const lag = now - (t0 + scheduled / perMs)
        if (lag > this.result.maxScheduleLagMs) this.result.maxScheduleLagMs = lag
      }
      for (; scheduled < due; scheduled++) {
        const c = conns[scheduled % conns.length]!
        if (c.state !== 'open') continue
        if (!c.times.push(t0 + scheduled / perMs)) {
          this.error('open loop: the server is hopelessly behind; stopped sending')
          this.running = false
          return
        }
        if (c.due++ === 0) touched.push(c)
      }
      for (const c of touched) {
        const n = Math.min(c.due, this.p.maxMessages - this.result.sent)
        c.due = 0
        if (n > 0) {
          c.write(n)
          this.result.sent += n
        }
      }
      touched.length = 0
      if (this.result.sent >= this.p.maxMessages) {
        this.error(`message cap (${this.p.maxMessages}) reached before the phase was stopped`)
        this.running = false
        return
      }
      const wait = t0 + scheduled / perMs - performance.now()
      this.#ticker =
        wait > SPIN_WINDOW_MS ? setTimeout(tick, Math.floor(wait - 1)) : setImmediate(tick)
    }
    tick()
  }

  mark(): void {
    this.#marks++
    this.#recording = this.#marks === 1
    this.#report({
      type: 'mark',
      t: performance.now(),
      sent: this.result.sent,
      echoed: this.result.echoed,
    })
  }

  async stop(): Promise<void> {
    this.running = false
    if (this.#ticker !== undefined) {
      clearTimeout(this.#ticker as NodeJS.Timeout)
      clearImmediate(this.#ticker as NodeJS.Immediate)
    }
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
    await Promise.all(this.conns.map((c) => c.close()))
    if (this.#samples !== undefined && this.#samples.count > 0)
      r.latency = this.#samples.percentiles()
    this.#report({ type: 'done', result: r })
  }
}
