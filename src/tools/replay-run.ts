/**
 * Playing a recording against a WebSocket server: one connection per recorded client (times
 * a multiplier, for load), each recorded message sent at its recorded offset from the first
 * event (divided by the speed), and what comes back checked against what the server sent
 * in the recording, in order.
 *
 * Timing is absolute from the start of the replay, not from the previous message, so a late
 * timer does not push every later message back: a replay is never faster than the
 * recording at `speed` 1, and drifts only as much as the event loop is late.
 */
import { performance } from 'node:perf_hooks'
import { WebSocket } from 'ws'
import {
  payloadOf,
  type RecordedClient,
  type RecordedMessage,
  type RecordedReply,
  type Recording,
} from './replay-log.js'

export interface ReplayOptions {
  /** `ws://host:port` (or `wss://`); a recorded path replaces the target's. */
  readonly target: string
  /** Recorded time divided by this; `Infinity` = as fast as possible. */
  readonly speed: number
  /** Connections opened per recorded client. */
  readonly multiplier: number
  /** Milliseconds to wait for replies still missing (and a recorded server close) at the end. */
  readonly replyTimeout: number
  /**
   * How replies are compared: `content` (equal content where recorded whole, else size),
   * `size` (size and type only), `none` (type only; replies are still counted). Default
   * `content`.
   */
  readonly compare?: CompareMode
  /** Differences kept in the summary (all are counted). */
  readonly keepDifferences?: number
}

export type CompareMode = 'content' | 'size' | 'none'

export type DifferenceKind = 'type' | 'content' | 'size' | 'missing' | 'unexpected' | 'close'

export interface Difference {
  /** The recorded client id (`#k` for the k-th copy with a multiplier). */
  readonly client: string
  /** Index of the reply among that client's replies (0-based); -1 for the close. */
  readonly index: number
  readonly kind: DifferenceKind
  readonly expected: string
  readonly actual: string
}

export interface ReplayCounters {
  clients: number
  opened: number
  open: number
  failed: number
  sent: number
  received: number
  expected: number
  errors: number
  differences: number
}

export interface ReplaySummary {
  readonly target: string
  readonly speed: number | 'max'
  readonly multiplier: number
  readonly clients: {
    readonly recorded: number
    readonly replayed: number
    readonly opened: number
    readonly failed: number
  }
  readonly messages: { readonly sent: number; readonly received: number; readonly expected: number }
  /** Whether replies were checked (the recording has `message.sent` lines). */
  readonly repliesChecked: boolean
  readonly errors: { readonly count: number; readonly first: readonly string[] }
  /** Reply after the client message it followed in the recording, in milliseconds. */
  readonly latencyMs: { readonly count: number; readonly p50: number; readonly p99: number } | null
  readonly differences: { readonly count: number; readonly first: readonly Difference[] }
  /** Recorded span (first to last replayed event) and the replay's own duration. */
  readonly recordedMs: number
  readonly durationMs: number
}

/** The replay of one recording; `counters` are live for a progress line. */
export class Replay {
  readonly counters: ReplayCounters = {
    clients: 0,
    opened: 0,
    open: 0,
    failed: 0,
    sent: 0,
    received: 0,
    expected: 0,
    errors: 0,
    differences: 0,
  }
  readonly #rec: Recording
  readonly #opts: ReplayOptions
  readonly #errors: string[] = []
  readonly #differences: Difference[] = []
  readonly #latencies: number[] = []
  #start = 0
  #t0 = 0

  constructor(rec: Recording, opts: ReplayOptions) {
    this.#rec = rec
    this.#opts = opts
  }

  async run(): Promise<ReplaySummary> {
    const clients = this.#rec.clients
    this.#t0 = this.#rec.start
    const last = clients.reduce(
      (t, c) => Math.max(t, c.close?.at ?? 0, c.sends.at(-1)?.at ?? 0, c.replies.at(-1)?.at ?? 0),
      this.#t0,
    )
    this.#start = performance.now()
    const runs: Promise<void>[] = []
    for (const c of clients)
      for (let k = 1; k <= this.#opts.multiplier; k++) {
        const name = this.#opts.multiplier > 1 ? `${c.id}#${k}` : c.id
        this.counters.clients++
        this.counters.expected += this.#rec.hasSentLines ? c.replies.length : 0
        runs.push(new ClientRun(this, c, name).done)
      }
    await Promise.all(runs)
    const speed = this.#opts.speed
    const lat = this.#latencies.sort((a, b) => a - b)
    return {
      target: this.#opts.target,
      speed: speed === Infinity ? 'max' : speed,
      multiplier: this.#opts.multiplier,
      clients: {
        recorded: clients.length,
        replayed: this.counters.clients,
        opened: this.counters.opened,
        failed: this.counters.failed,
      },
      messages: {
        sent: this.counters.sent,
        received: this.counters.received,
        expected: this.counters.expected,
      },
      repliesChecked: this.#rec.hasSentLines,
      errors: { count: this.counters.errors, first: this.#errors },
      latencyMs:
        lat.length === 0
          ? null
          : { count: lat.length, p50: round(quantile(lat, 0.5)), p99: round(quantile(lat, 0.99)) },
      differences: { count: this.counters.differences, first: this.#differences },
      recordedMs: clients.length === 0 ? 0 : last - this.#t0,
      durationMs: Math.round(performance.now() - this.#start),
    }
  }

  /** @internal The monotonic time at which a recorded time is due. */
  due(recordedAt: number): number {
    const speed = this.#opts.speed
    return speed === Infinity ? 0 : this.#start + (recordedAt - this.#t0) / speed
  }

  /** @internal */
  get options(): ReplayOptions {
    return this.#opts
  }

  /** @internal */
  get checkReplies(): boolean {
    return this.#rec.hasSentLines
  }

  /** @internal */
  error(client: string, message: string): void {
    this.counters.errors++
    if (this.#errors.length < (this.#opts.keepDifferences ?? 10))
      this.#errors.push(`${client}: ${message}`)
  }

  /** @internal */
  difference(d: Difference): void {
    this.counters.differences++
    if (this.#differences.length < (this.#opts.keepDifferences ?? 10)) this.#differences.push(d)
  }

  /** @internal */
  latency(ms: number): void {
    this.#latencies.push(ms)
  }
}

/** Yield to the event loop after this many messages sent back to back (`speed max`). */
const BURST = 256

/** One connection replaying one recorded client. */
class ClientRun {
  readonly done: Promise<void>
  readonly #r: Replay
  readonly #c: RecordedClient
  readonly #name: string
  #ws: WebSocket | undefined
  #resolve!: () => void
  #next = 0
  #received = 0
  /** When each recorded message was actually sent (monotonic ms). */
  #sentAt: number[] = []
  #timer: NodeJS.Timeout | undefined
  /** Set once every message is sent: waiting for replies, then closing. */
  #closing: { due: number; deadline: number } | undefined
  #closeSent = false
  #opened = false
  #finished = false

  constructor(r: Replay, c: RecordedClient, name: string) {
    this.#r = r
    this.#c = c
    this.#name = name
    this.done = new Promise((resolve) => {
      this.#resolve = resolve
    })
    // Connected before the window (`--since`): due before the start, so opened at once.
    this.#at(r.due(c.connectedAt), () => this.#open())
  }

  /** Run `fn` at monotonic time `t` (now if it is past). */
  #at(t: number, fn: () => void): void {
    if (this.#timer) clearTimeout(this.#timer)
    const wait = t - performance.now()
    this.#timer = setTimeout(fn, wait > 0 ? Math.ceil(wait) : 0)
  }

  #open(): void {
    const c = this.#c
    const target = new URL(this.#r.options.target)
    const url = c.path !== undefined ? new URL(c.path, target.origin).href : target.href
    let ws: WebSocket
    try {
      ws = new WebSocket(url, c.protocol !== undefined ? [c.protocol] : [], {
        perMessageDeflate: false,
        ...(c.origin !== undefined ? { origin: c.origin } : {}),
      })
    } catch (err) {
      this.#fail((err as Error).message)
      return
    }
    this.#ws = ws
    ws.on('open', () => {
      this.#opened = true
      this.#r.counters.opened++
      this.#r.counters.open++
      this.#sendDue()
    })
    ws.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(data, isBinary))
    // A refused upgrade is an error too ("Unexpected server response: 403"), then a close.
    ws.on('error', (err) => this.#r.error(this.#name, err.message))
    ws.on('close', (code, reason) => this.#onClose(code, reason.toString()))
  }

  #fail(message: string): void {
    this.#r.counters.failed++
    this.#r.error(this.#name, message)
    this.#finish()
  }

  /** Send every message that is due, then wait for the next one (or start closing). */
  #sendDue(): void {
    const ws = this.#ws
    if (ws === undefined || ws.readyState !== WebSocket.OPEN) return
    const sends = this.#c.sends
    let burst = 0
    while (this.#next < sends.length) {
      const m = sends[this.#next]!
      const due = this.#r.due(m.at)
      if (due > performance.now()) {
        this.#at(due, () => this.#sendDue())
        return
      }
      if (++burst > BURST) {
        this.#timer = setTimeout(() => this.#sendDue(), 0)
        return
      }
      this.#sentAt[this.#next] = performance.now()
      ws.send(payloadOf(m), { binary: m.binary })
      this.#next++
      this.#r.counters.sent++
    }
    this.#startClosing()
  }

  #startClosing(): void {
    const close = this.#c.close
    const due = close !== undefined ? this.#r.due(close.at) : performance.now()
    this.#closing = {
      due,
      deadline: Math.max(due, performance.now()) + this.#r.options.replyTimeout,
    }
    this.#maybeClose()
  }

  /** Close once the recorded close is due and the replies are in (or the wait is over). */
  #maybeClose(): void {
    const st = this.#closing
    const ws = this.#ws
    if (st === undefined || ws === undefined || this.#closeSent) return
    if (ws.readyState !== WebSocket.OPEN) return
    const now = performance.now()
    const close = this.#c.close
    const repliesIn = !this.#r.checkReplies || this.#received >= this.#c.replies.length
    const serverCloses = close?.initiator === 'server'
    if (now < st.deadline && (now < st.due || !repliesIn || serverCloses)) {
      // The server closed first in the recording: give it until the deadline to do so again.
      this.#at(now < st.due ? st.due : st.deadline, () => this.#maybeClose())
      return
    }
    this.#closeSent = true
    if (serverCloses && now >= st.deadline)
      this.#r.difference({
        client: this.#name,
        index: -1,
        kind: 'close',
        expected: `server closes with ${close!.code}`,
        actual: 'the server did not close',
      })
    const code = close?.code ?? 1000
    if (code === 1006) ws.terminate()
    else if (code === 1005) ws.close()
    else {
      try {
        ws.close(code, close?.reason ?? '')
      } catch {
        // A code a client may not send (1001 from a shutdown, 1011, …): a normal close.
        ws.close(1000)
      }
    }
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    const i = this.#received++
    this.#r.counters.received++
    if (!this.#r.checkReplies) return
    const want = this.#c.replies[i]
    if (want === undefined) {
      this.#r.difference({
        client: this.#name,
        index: i,
        kind: 'unexpected',
        expected: 'no more messages',
        actual: describe(data, isBinary),
      })
      return
    }
    const sentAt = want.cause >= 0 ? this.#sentAt[want.cause] : undefined
    if (sentAt !== undefined) this.#r.latency(performance.now() - sentAt)
    const kind = compare(want, data, isBinary, this.#r.options.compare ?? 'content')
    if (kind !== undefined)
      this.#r.difference({
        client: this.#name,
        index: i,
        kind,
        expected: describe(want),
        actual: describe(data, isBinary),
      })
    if (this.#closing !== undefined) this.#maybeClose()
  }

  #onClose(code: number, reason: string): void {
    if (this.#finished) return
    if (!this.#opened) {
      this.#r.counters.failed++
      this.#finish()
      return
    }
    this.#r.counters.open--
    const close = this.#c.close
    if (close !== undefined && close.code !== code)
      this.#r.difference({
        client: this.#name,
        index: -1,
        kind: 'close',
        expected: `close ${close.code}${close.reason ? ` (${close.reason})` : ''}`,
        actual: `close ${code}${reason ? ` (${reason})` : ''}`,
      })
    if (this.#r.checkReplies)
      for (let i = this.#received; i < this.#c.replies.length; i++)
        this.#r.difference({
          client: this.#name,
          index: i,
          kind: 'missing',
          expected: describe(this.#c.replies[i]!),
          actual: 'nothing before the close',
        })
    if (this.#next < this.#c.sends.length)
      this.#r.error(
        this.#name,
        `closed by the server (${code}) with ${this.#c.sends.length - this.#next} messages not sent`,
      )
    this.#finish()
  }

  #finish(): void {
    if (this.#finished) return
    this.#finished = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#resolve()
  }
}

/** Why a reply differs from the recorded one (undefined: it does not). */
function compare(
  want: RecordedReply,
  data: Buffer,
  isBinary: boolean,
  mode: CompareMode,
): DifferenceKind | undefined {
  if (want.binary !== isBinary) return 'type'
  if (mode === 'none') return undefined
  if (want.data === undefined || mode === 'size')
    return data.length === want.bytes ? undefined : 'size'
  if (typeof want.data === 'string')
    return data.toString('utf8') === want.data ? undefined : 'content'
  return data.equals(want.data) ? undefined : 'content'
}

const SHOWN = 60

/** A message in one short line: `text "Echo: hi"` / `binary 4 bytes 000102ff`. */
function describe(m: RecordedMessage | Buffer, isBinary?: boolean): string {
  if (Buffer.isBuffer(m)) {
    if (isBinary) return `binary ${m.length} bytes ${hex(m)}`
    return `text ${m.length} bytes ${JSON.stringify(cut(m.toString('utf8')))}`
  }
  const content = m.data ?? m.prefix
  const known = m.data === undefined ? ' (recorded cut: compared by size)' : ''
  if (m.binary)
    return `binary ${m.bytes} bytes${Buffer.isBuffer(content) ? ` ${hex(content)}` : ''}${known}`
  return `text ${m.bytes} bytes${typeof content === 'string' ? ` ${JSON.stringify(cut(content))}` : ''}${known}`
}

function cut(s: string): string {
  return s.length > SHOWN ? `${s.slice(0, SHOWN)}…` : s
}

function hex(b: Buffer): string {
  return b.length > 16 ? `${b.subarray(0, 16).toString('hex')}…` : b.toString('hex')
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}
