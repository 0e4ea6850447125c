/**
 * Events for other services: a copy of every activity event (or those matching
 * `forward.events`) as its json log line, appended to a Redis Stream (`XADD … MAXLEN ~ N`,
 * fields `event` and `line`) and/or published on a NATS subject (a JetStream stream bound to
 * the subject stores them).
 *
 * It is a second recorder on the bus: a json activity log without a file whose lines go to
 * the destinations, so the lines are exactly those of `--log-format json` (redaction
 * included). Nothing of it exists when no destination is configured.
 *
 * Never in the way of the sockets: a line is pushed into a bounded per-destination buffer
 * (`forward.backlog` lines) and sent in batches, one batch in flight per destination (the
 * next waits for its acknowledgement: back-pressure); when the buffer is full, lines are
 * dropped and counted. A destination that is down keeps reconnecting; what its buffer
 * held when it came back is sent then. The client libraries are loaded only when a
 * destination is configured.
 */
import type { Config } from './config.js'
import type { EventBus } from './events.js'
import { ActivityLog } from './log/activity-log.js'

/** Lines sent per batch. */
const BATCH = 500

export interface ForwardStats {
  /** `redis-stream:<key>` or `nats:<subject>`. */
  readonly destination: string
  readonly connected: boolean
  /** Lines the destination acknowledged. */
  readonly forwarded: number
  /** Lines dropped because the buffer was full. */
  readonly dropped: number
  /** Lines waiting now. */
  readonly buffered: number
}

interface Transport {
  readonly name: string
  connected: boolean
  open(onState: (up: boolean, why: string) => void): Promise<void>
  send(batch: ReadonlyArray<readonly [string, string]>): Promise<void>
  close(): Promise<void>
}

/** One destination: a bounded buffer in front of a transport. */
class Destination {
  readonly #t: Transport
  readonly #max: number
  #buf: Array<readonly [string, string]> = []
  #head = 0
  #sending = false
  #closed = false
  #forwarded = 0
  #dropped = 0
  #report: (msg: string) => void
  #retry: NodeJS.Timeout | undefined

  constructor(t: Transport, max: number, report: (msg: string) => void) {
    this.#t = t
    this.#max = max
    this.#report = report
  }

  stats(): ForwardStats {
    return {
      destination: this.#t.name,
      connected: this.#t.connected,
      forwarded: this.#forwarded,
      dropped: this.#dropped,
      buffered: this.#buf.length - this.#head,
    }
  }

  async open(): Promise<void> {
    let wasDown = false
    await this.#t.open((up, why) => {
      if (!up && !wasDown) {
        wasDown = true
        this.#report(`wirelog: forwarding to ${this.#t.name} interrupted (${why}); buffering`)
      } else if (up && wasDown) {
        wasDown = false
        this.#report(
          `wirelog: forwarding to ${this.#t.name} resumed (${this.#dropped} lines dropped so far)`,
        )
      }
      if (up) this.#pump()
    })
    this.#pump()
  }

  push(event: string, line: string): void {
    if (this.#closed) return
    if (this.#buf.length - this.#head >= this.#max) {
      this.#dropped++
      return
    }
    this.#buf.push([event, line])
    if (!this.#sending) queueMicrotask(() => this.#pump())
  }

  #pump(): void {
    if (this.#sending || !this.#t.connected || this.#head >= this.#buf.length) return
    this.#sending = true
    const end = Math.min(this.#buf.length, this.#head + BATCH)
    const batch = this.#buf.slice(this.#head, end)
    this.#t.send(batch).then(
      () => {
        this.#forwarded += batch.length
        this.#head = end
        if (this.#head > 4096 && this.#head * 2 > this.#buf.length) {
          this.#buf = this.#buf.slice(this.#head)
          this.#head = 0
        }
        this.#sending = false
        this.#pump()
      },
      () => {
        // Kept for the next attempt (the transport reports its own state).
        this.#sending = false
        if (this.#closed) return
        this.#retry = setTimeout(() => this.#pump(), 200)
        this.#retry.unref()
      },
    )
  }

  /** Send what is buffered (for at most `ms`), then close. */
  async close(ms: number): Promise<void> {
    this.#closed = true
    const deadline = Date.now() + ms
    while (
      (this.#head < this.#buf.length || this.#sending) &&
      this.#t.connected &&
      Date.now() < deadline
    ) {
      this.#pump()
      await new Promise((r) => setTimeout(r, 5))
    }
    if (this.#retry) clearTimeout(this.#retry)
    await this.#t.close().catch(() => {})
  }
}

function redisStream(url: string, key: string, maxLen: number): Transport {
  let client: import('@redis/client').RedisClientType | undefined
  const t: Transport = {
    name: `redis-stream:${key}`,
    connected: false,
    async open(onState) {
      const { createClient } = await import('@redis/client')
      const c = createClient({
        url,
        socket: {
          reconnectStrategy: (retries: number) => Math.min(2000, 50 * 2 ** retries),
        },
        disableOfflineQueue: true,
        disableClientInfo: true,
      }) as import('@redis/client').RedisClientType
      client = c
      c.on('error', (err: Error) => {
        if (t.connected) {
          t.connected = false
          onState(false, err.message)
        }
      })
      c.on('ready', () => {
        t.connected = true
        onState(true, 'ready')
      })
      // Not awaited: a destination that is down must not hold up the server's start.
      c.connect().catch(() => {})
    },
    async send(batch) {
      const c = client
      if (c === undefined) throw new Error('not connected')
      const m = c.multi()
      for (const [event, line] of batch)
        m.addCommand([
          'XADD',
          key,
          'MAXLEN',
          '~',
          String(maxLen),
          '*',
          'event',
          event,
          'line',
          line,
        ])
      await m.exec()
    },
    async close() {
      const c = client
      client = undefined
      t.connected = false
      if (c?.isOpen) await c.close().catch(() => c.destroy())
      else c?.destroy()
    },
  }
  return t
}

function natsSubject(servers: string, subject: string): Transport {
  let nc: import('nats').NatsConnection | undefined
  let stopped = false
  const enc = new TextEncoder()
  const t: Transport = {
    name: `nats:${subject}`,
    connected: false,
    async open(onState) {
      const nats = await import('nats')
      const connecting = nats.connect({
        servers: servers.split(',').map((s) => s.trim()),
        name: 'wirelog-forward',
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        waitOnFirstConnect: true,
      })
      void connecting.then(
        async (c) => {
          if (stopped) {
            await c.close()
            return
          }
          nc = c
          t.connected = true
          onState(true, 'connected')
          for await (const s of c.status()) {
            if (s.type === 'disconnect') {
              t.connected = false
              onState(false, 'disconnected')
            } else if (s.type === 'reconnect') {
              t.connected = true
              onState(true, 'reconnected')
            }
          }
        },
        () => {},
      )
    },
    async send(batch) {
      const c = nc
      if (c === undefined || c.isClosed()) throw new Error('not connected')
      for (const [, line] of batch) c.publish(subject, enc.encode(line))
      // A round trip per batch: the next one waits until the server has this one.
      await c.flush()
    },
    async close() {
      stopped = true
      t.connected = false
      const c = nc
      nc = undefined
      if (c !== undefined && !c.isClosed()) await c.drain().catch(() => c.close())
    },
  }
  return t
}

/** Glob of an event name (`*` any characters) → test. */
function compile(patterns: readonly string[]): (event: string) => boolean {
  if (patterns.includes('*')) return () => true
  const res = patterns.map(
    (p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`),
  )
  return (event) => res.some((r) => r.test(event))
}

export class Forwarder {
  readonly #log: ActivityLog
  readonly #dests: Destination[] = []

  constructor(cfg: Config, report: (msg: string) => void = (m) => process.stderr.write(`${m}\n`)) {
    const f = cfg.forward
    const buffer = f.backlog
    if (f.redis.stream !== undefined)
      this.#dests.push(
        new Destination(
          redisStream(f.redis.url ?? cfg.broker.redis.url, f.redis.stream, f.redis.maxLen),
          buffer,
          report,
        ),
      )
    if (f.nats.subject !== undefined)
      this.#dests.push(new Destination(natsSubject(f.nats.url, f.nats.subject), buffer, report))
    const wanted = compile(f.events)
    const eventOf = (ns: string, name: string): string => (ns === 'ws' ? name : `${ns}:${name}`)
    const dests = this.#dests
    this.#log = new ActivityLog(
      { ...cfg.log, format: 'json', enabled: false, stdout: false },
      report,
      {
        filter: (ns, name) => wanted(eventOf(ns, name)),
        line: (line) => {
          // The event name is the line's fourth field (`"event":"…"`), written by the builder.
          const at = line.indexOf(',"event":"') + 10
          const event = line.slice(at, line.indexOf('"', at))
          for (const d of dests) d.push(event, line.endsWith('\n') ? line.slice(0, -1) : line)
        },
      },
    )
  }

  /** Whether any destination is configured. */
  static wanted(cfg: Config): boolean {
    return cfg.forward.redis.stream !== undefined || cfg.forward.nats.subject !== undefined
  }

  /** Record events of `bus` from now on (lines wait until `start()`). */
  attach(bus: EventBus): void {
    this.#log.attach(bus)
  }

  async start(): Promise<void> {
    await Promise.all(this.#dests.map((d) => d.open()))
    await this.#log.open()
  }

  stats(): ForwardStats[] {
    return this.#dests.map((d) => d.stats())
  }

  /** Stop recording, send what is buffered (within `ms`), close the connections. */
  async close(ms = 2000): Promise<void> {
    await this.#log.close()
    await Promise.all(this.#dests.map((d) => d.close(ms)))
  }
}
