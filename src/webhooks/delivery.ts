/**
 * Outgoing webhooks: every matching event POSTed as signed JSON to each configured
 * endpoint, off the socket path.
 *
 * The server loads this module (dynamic import) only when `webhooks` is not empty. It is a
 * recorder on the bus, like the activity log: it sees every event, keeps those an endpoint's
 * patterns match and only *enqueues* them (the body is built then, a snapshot; nothing is
 * awaited). Each endpoint has its own bounded queue (items and bytes; full → the new or the
 * oldest delivery is dropped and counted), at most `concurrency` deliveries in flight, a
 * timeout per attempt and retries with exponential backoff and jitter on network errors,
 * timeouts, 5xx, 408 and 429. A delivery given up is recorded as `webhook.failed` (the dead
 * letter), drops as `webhook.dropped` (at most one line a second per endpoint). The server's
 * own `webhook.*` events are never delivered (a dead endpoint would feed itself).
 *
 * Requests use Node's own `http`/`https` with a keep-alive agent per endpoint (about a
 * fifth of `fetch`'s CPU per request, measured here). The secret never leaves this module: it is neither logged
 * nor in the stats, and the endpoint is named by its host only.
 */
import { createHmac, randomUUID } from 'node:crypto'
import type { ClientRequest } from 'node:http'
import { Agent as HttpAgent, request as httpRequest, type RequestOptions } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { Config } from '../config.js'
import { addRecorder, type EventBus, emit, type Recorder } from '../events.js'
import { payloadJson } from './payload.js'
import { compilePatterns } from './spec.js'

type EndpointConfig = Config['webhooks'][number]

/** Counters of one endpoint (`server.webhooks?.stats()`), for health and metrics. */
export interface WebhookStats {
  /** The endpoint's host (`hooks.example.com`, `127.0.0.1:9000`). */
  readonly endpoint: string
  /** Its URL without credentials or query (`https://hooks.example.com/wirelog`). */
  readonly url: string
  /** Deliveries the endpoint answered with 2xx. */
  readonly delivered: number
  /** Deliveries given up (retries exhausted, refused with a 4xx, 3xx, or cut by shutdown). */
  readonly failed: number
  /** Attempts repeated after a failure (a delivery retried 3 times counts 3). */
  readonly retried: number
  /** Deliveries dropped without an attempt: queue full, or still queued at shutdown. */
  readonly dropped: number
  /** Deliveries waiting now. */
  readonly queued: number
  /** Bytes of the bodies waiting now. */
  readonly queuedBytes: number
  /** Deliveries being attempted or waiting to be retried now. */
  readonly inFlight: number
}

interface Item {
  readonly id: string
  readonly event: string
  readonly body: string
  /** UTF-8 length of `body`. */
  readonly bytes: number
}

/** What one attempt came to. */
interface Outcome {
  readonly status: number | undefined
  readonly error: string
  readonly retryAfterMs: number | undefined
  /** Not attempted at all (shutdown came first). */
  readonly skipped?: boolean
}

const DROP_REPORT_MS = 1000

/** 2xx: delivered. 408, 429, 5xx and no response: worth another attempt. Others: refused. */
function retryable(status: number | undefined): boolean {
  return status === undefined || status === 408 || status === 429 || status >= 500
}

/** `Retry-After` (seconds or an HTTP date) in milliseconds; undefined if absent or bad. */
function retryAfter(h: string | null): number | undefined {
  if (h === null) return undefined
  const s = h.trim()
  if (/^\d+$/.test(s)) return Number(s) * 1000
  const t = Date.parse(s)
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now())
}

function headerValue(v: string | string[] | undefined): string | null {
  return v === undefined ? null : Array.isArray(v) ? (v[0] ?? null) : v
}

/** `ECONNREFUSED`, `ENOTFOUND`, …: the code of the deepest cause, else its message. */
function describe(err: unknown): string {
  let e = err as { cause?: unknown; code?: unknown; message?: unknown } | undefined
  for (let i = 0; i < 4 && e?.cause !== undefined; i++) e = e.cause as typeof e
  if (typeof e?.code === 'string') return e.code
  return typeof e?.message === 'string' ? e.message : String(err)
}

/** `Wirelog-Signature` of a body sent at `timestamp` (seconds). */
export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`
}

class Endpoint {
  readonly host: string
  readonly url: string
  readonly matches: (event: string) => boolean
  readonly #cfg: EndpointConfig
  readonly #secret: string | undefined
  readonly #bus: EventBus
  /** Waiting deliveries: `#q[#head…]`. */
  #q: Item[] = []
  #head = 0
  #bytes = 0
  #active = 0
  #delivered = 0
  #failed = 0
  #retried = 0
  #dropped = 0
  /** Drops not yet reported, and the event of the last one. */
  #unreported = 0
  #unreportedReason = ''
  #lastDropEvent = ''
  #lastReport = 0
  #reportTimer: NodeJS.Timeout | undefined
  #closing = false
  /** Set at shutdown past its grace period: no more attempts. */
  #stopped = false
  /** Cut short at shutdown: the attempts and backoff waits under way (a Set, not an
   * AbortSignal's listeners, which warn past ten). */
  readonly #cancels = new Set<() => void>()
  #idle: (() => void) | undefined
  readonly #target: URL
  /** Keep-alive connections, as many as deliveries may be in flight. */
  readonly #agent: HttpAgent
  readonly #request: (url: URL, opts: RequestOptions) => ClientRequest

  constructor(cfg: EndpointConfig, secret: string | undefined, bus: EventBus) {
    this.#cfg = cfg
    this.#secret = cfg.secret ?? secret
    this.#bus = bus
    const u = new URL(cfg.url)
    this.#target = u
    const tls = u.protocol === 'https:'
    this.#agent = tls
      ? new HttpsAgent({ keepAlive: true, maxSockets: cfg.concurrency })
      : new HttpAgent({ keepAlive: true, maxSockets: cfg.concurrency })
    this.#request = tls ? httpsRequest : httpRequest
    this.host = u.host
    this.url = `${u.protocol}//${u.host}${u.pathname}`
    this.matches = compilePatterns(cfg.events)
  }

  stats(): WebhookStats {
    return {
      endpoint: this.host,
      url: this.url,
      delivered: this.#delivered,
      failed: this.#failed,
      retried: this.#retried,
      dropped: this.#dropped,
      queued: this.#q.length - this.#head,
      queuedBytes: this.#bytes,
      inFlight: this.#active,
    }
  }

  /** Whether a new delivery would be dropped (drop-new): skips building its body. */
  full(): boolean {
    return this.#cfg.overflow === 'drop-new' && this.#q.length - this.#head >= this.#cfg.queue
  }

  /** Count a delivery dropped because the queue is full (drop-new). */
  dropNew(event: string): void {
    this.#drop(event, 'queue full')
  }

  enqueue(item: Item): void {
    if (this.#closing) return
    const cfg = this.#cfg
    if (item.bytes > cfg.queueBytes) {
      this.#drop(item.event, 'queue full')
      return
    }
    while (this.#q.length - this.#head >= cfg.queue || this.#bytes + item.bytes > cfg.queueBytes) {
      if (cfg.overflow === 'drop-new') {
        this.#drop(item.event, 'queue full')
        return
      }
      const old = this.#take()!
      this.#drop(old.event, 'queue full')
    }
    this.#q.push(item)
    this.#bytes += item.bytes
    if (this.#active < cfg.concurrency) this.#pump()
  }

  #take(): Item | undefined {
    if (this.#head >= this.#q.length) return undefined
    const item = this.#q[this.#head]!
    this.#q[this.#head] = undefined as unknown as Item
    this.#head++
    this.#bytes -= item.bytes
    // Compact now and then, so the array does not keep every delivery ever queued.
    if (this.#head >= 1024 && this.#head * 2 >= this.#q.length) {
      this.#q = this.#q.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  #pump(): void {
    while (this.#active < this.#cfg.concurrency && !this.#stopped) {
      const item = this.#take()
      if (item === undefined) break
      this.#active++
      void this.#deliver(item).finally(() => {
        this.#active--
        this.#pump()
        if (this.#active === 0 && this.#head >= this.#q.length) this.#idle?.()
      })
    }
  }

  async #deliver(item: Item): Promise<void> {
    const cfg = this.#cfg
    const max = cfg.retries + 1
    let last: Outcome | undefined
    for (let attempt = 1; ; attempt++) {
      let out = await this.#attempt(item)
      if (out.status !== undefined && out.status >= 200 && out.status < 300) {
        this.#delivered++
        return
      }
      // Stopped during the attempt, or during the wait before it: then it was not made,
      // and the one before is what the dead letter reports.
      const stopped = this.#stopped
      if (out.skipped && last !== undefined) {
        attempt--
        this.#retried--
        out = last
      }
      last = out
      if (stopped || !retryable(out.status) || attempt >= max) {
        this.#failed++
        emit(this.#bus, 'webhook.failed', {
          endpoint: this.host,
          event: item.event,
          delivery: item.id,
          attempts: attempt,
          status: out.status,
          error: out.error,
          reason: stopped
            ? 'shutdown'
            : !retryable(out.status)
              ? `not retried (HTTP ${out.status})`
              : 'retries exhausted',
        })
        return
      }
      this.#retried++
      // Exponential backoff with "equal jitter": half the step fixed, half random, so
      // endpoints recovering from an outage are not hit by every sender at once.
      const step = Math.min(cfg.maxRetryDelay, cfg.retryDelay * 2 ** (attempt - 1))
      let wait = step / 2 + Math.random() * (step / 2)
      if (out.retryAfterMs !== undefined)
        wait = Math.min(cfg.maxRetryDelay, Math.max(wait, out.retryAfterMs))
      await this.#sleep(wait)
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t)
        this.#cancels.delete(done)
        resolve()
      }
      const t = setTimeout(done, ms)
      this.#cancels.add(done)
    })
  }

  #attempt(item: Item): Promise<Outcome> {
    const cfg = this.#cfg
    if (this.#stopped)
      return Promise.resolve({
        status: undefined,
        error: 'aborted at shutdown',
        retryAfterMs: undefined,
        skipped: true,
      })
    // Per attempt: a receiver checks that it is recent, and retries go out later.
    const ts = String(Math.floor(Date.now() / 1000))
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': item.bytes,
      'user-agent': 'wirelog-webhook',
      'wirelog-event': item.event,
      'wirelog-delivery': item.id,
      'wirelog-timestamp': ts,
    }
    if (this.#secret !== undefined)
      headers['wirelog-signature'] = signature(this.#secret, ts, item.body)
    return new Promise<Outcome>((resolve) => {
      let settled = false
      const settle = (o: Outcome): void => {
        if (settled) return
        settled = true
        resolve(o)
      }
      const req = this.#request(this.#target, {
        method: 'POST',
        headers,
        agent: this.#agent,
      })
      const end = (why: string): void => {
        settle({ status: undefined, error: why, retryAfterMs: undefined })
        req.destroy()
      }
      // Until the answer's end: a response whose body never ends must not hold a socket.
      const timer = setTimeout(() => end(`timeout after ${cfg.timeout} ms`), cfg.timeout)
      const onStop = (): void => end('aborted at shutdown')
      const done = (): void => {
        clearTimeout(timer)
        this.#cancels.delete(onStop)
      }
      this.#cancels.add(onStop)
      req.on('response', (res) => {
        const status = res.statusCode ?? 0
        settle({
          status,
          error: `HTTP ${status}`,
          retryAfterMs:
            status === 429 || status === 503
              ? retryAfter(headerValue(res.headers['retry-after']))
              : undefined,
        })
        // The answer's body is not used: read and discarded so the connection is reused.
        res.resume()
        res.on('end', done)
        res.on('error', done)
        res.on('close', done)
      })
      req.on('error', (err) => {
        done()
        settle({ status: undefined, error: describe(err), retryAfterMs: undefined })
      })
      req.on('close', () => {
        if (!settled) {
          done()
          settle({ status: undefined, error: 'connection closed', retryAfterMs: undefined })
        }
      })
      req.end(item.body)
    })
  }

  #drop(event: string, reason: string): void {
    this.#dropped++
    if (this.#unreported > 0 && reason !== this.#unreportedReason) this.#report()
    this.#unreported++
    this.#unreportedReason = reason
    this.#lastDropEvent = event
    // Never from inside the recording of the event that caused it; at most once a second.
    if (this.#reportTimer === undefined) {
      const wait = Math.max(0, this.#lastReport + DROP_REPORT_MS - Date.now())
      this.#reportTimer = setTimeout(() => this.#report(), wait)
      this.#reportTimer.unref()
    }
  }

  #report(): void {
    if (this.#reportTimer !== undefined) clearTimeout(this.#reportTimer)
    this.#reportTimer = undefined
    if (this.#unreported === 0) return
    this.#lastReport = Date.now()
    const dropped = this.#unreported
    this.#unreported = 0
    emit(this.#bus, 'webhook.dropped', {
      endpoint: this.host,
      dropped,
      reason: this.#unreportedReason,
      event: this.#lastDropEvent,
    })
  }

  /**
   * Take no more; let what is queued and in flight finish for up to `ms`, then abort the
   * attempts (each recorded as failed) and drop what still waits (one line).
   */
  async close(ms: number): Promise<void> {
    this.#closing = true
    if (this.#active > 0 || this.#head < this.#q.length) {
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        this.#idle = resolve
        timer = setTimeout(resolve, ms)
      })
      clearTimeout(timer)
    }
    this.#stopped = true
    for (const cancel of [...this.#cancels]) cancel()
    for (let item = this.#take(); item !== undefined; item = this.#take())
      this.#drop(item.event, 'shutdown')
    // The aborted attempts settle (and record themselves) before the log closes.
    if (this.#active > 0)
      await new Promise<void>((resolve) => {
        this.#idle = resolve
      })
    this.#report()
    this.#agent.destroy()
  }
}

/** Every endpoint of a server, fed by one recorder on its bus. */
export class Webhooks implements Recorder {
  readonly #endpoints: Endpoint[]
  #detach: (() => void) | undefined
  #closed = false
  /** `wants()` of the built-in names, computed once. */
  readonly #wsWanted = new Map<string, boolean>()

  constructor(cfg: Config, bus: EventBus) {
    this.#endpoints = cfg.webhooks.map((w) => new Endpoint(w, cfg.webhookSecret, bus))
    this.#detach = addRecorder(bus, this)
  }

  /** Counters per endpoint, in configuration order. */
  stats(): WebhookStats[] {
    return this.#endpoints.map((e) => e.stats())
  }

  wants(ns: string, name: string): boolean {
    if (this.#closed) return false
    if (ns === 'ws') {
      let w = this.#wsWanted.get(name)
      if (w === undefined) {
        w = !name.startsWith('webhook.') && this.#endpoints.some((e) => e.matches(name))
        this.#wsWanted.set(name, w)
      }
      return w
    }
    const event = `${ns}:${name}`
    return this.#endpoints.some((e) => e.matches(event))
  }

  record(ns: string, name: string, payload: unknown): void {
    if (!this.wants(ns, name)) return
    const event = ns === 'ws' ? name : `${ns}:${name}`
    let head: string | undefined
    for (const e of this.#endpoints) {
      if (!e.matches(event)) continue
      if (e.full()) {
        e.dropNew(event)
        continue
      }
      // Built once for every endpoint; each gets its own delivery id.
      head ??= `","event":${JSON.stringify(event)},"time":"${new Date().toISOString()}","payload":${payloadJson(ns, name, payload)}}`
      const id = randomUUID()
      const body = `{"id":"${id}${head}`
      e.enqueue({ id, event, body, bytes: Buffer.byteLength(body) })
    }
  }

  /** Stop recording; give deliveries up to `ms` to finish (see `Endpoint.close`). */
  async close(ms: number): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#detach?.()
    this.#detach = undefined
    await Promise.all(this.#endpoints.map((e) => e.close(ms)))
  }
}
