/**
 * Prometheus metrics: a recorder on the event bus that counts every built-in event in plain
 * numbers, and a private prom-client `Registry` whose metrics read those numbers (and the
 * log's, the broker's and the process's own figures) when `/metrics` is scraped.
 *
 * Why plain numbers: the recorder runs for every message, before any handler. Incrementing
 * a field costs nothing measurable; a prom-client `inc()` hashes its labels on every call,
 * even on a child from `labels()`. So all counting happens here and prom-client only sees
 * totals, at scrape time (`collect()`).
 *
 * Why a recorder: like the activity log it sees every event of the bus, before and whatever
 * user handlers do. One exception by choice: it does not ask for `message.sent` (per fan-out
 * recipient, and built only when someone wants it); messages and bytes sent are the
 * connections' own counters instead — those of the clients gone, summed from
 * `client.disconnected`, plus those of the clients still connected, read at scrape time.
 * Same figures, nothing per message.
 *
 * Labels are bounded by construction: close codes the registry knows (others are `other`),
 * `ws` error codes, HTTP statuses and a fixed set of rejection categories. Never a client id,
 * an address, a user or a topic; and every labelled counter caps its distinct series.
 *
 * prom-client is imported only by `load()` (started by `listen()` once the port is bound), so a server with metrics off,
 * or code that only imports the package, never loads it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'
import type { BrokerStats } from '../broker/types.js'
import { CloseCode, describeCloseCode } from '../close-codes.js'
import {
  addRecorder,
  type EventBus,
  type Recorder,
  type WsEventName,
  type WsEvents,
} from '../events.js'
import { ErrorCode } from '../pubsub/protocol.js'
import { type HealthSource, readiness } from './health.js'

/** The prom-client module, as handed to `ServerMetrics.use()` callbacks. */
export type PromClient = typeof import('prom-client')

/** What the metrics read from the server at scrape time (`WirelogServer` fits). */
export interface MetricsSource extends HealthSource {
  readonly clients: { readonly size: number } & Iterable<{
    readonly messagesOut: number
    readonly bytesOut: number
  }>
  readonly broker?: { readonly connected: boolean; stats?(): BrokerStats } | undefined
  /** Outgoing webhooks, one entry per configured endpoint (a bounded label). */
  readonly webhooks?:
    | {
        stats(): ReadonlyArray<{
          readonly endpoint: string
          readonly delivered: number
          readonly failed: number
          readonly retried: number
          readonly dropped: number
          readonly queued: number
        }>
      }
    | undefined
}

/** Most distinct label sets one counter keeps; the rest are counted under `other`. */
export const MAX_SERIES = 64
/** How often the event-loop delay is sampled, ms. */
const EVENT_LOOP_SAMPLE_MS = 20
const OTHER = 'other'

/** A labelled count with a bounded number of label sets. */
class LabelledCount {
  readonly names: readonly string[]
  #series = new Map<string, { labels: Record<string, string>; value: number }>()
  constructor(names: readonly string[]) {
    this.names = names
  }
  add(values: readonly string[], n = 1): void {
    const key = values.join('\u0000')
    const s = this.#series.get(key)
    if (s !== undefined) {
      s.value += n
      return
    }
    const capped = this.#series.size >= MAX_SERIES - 1
    const vals = capped ? this.names.map(() => OTHER) : values
    const k = capped ? vals.join('\u0000') : key
    const t = this.#series.get(k)
    if (t !== undefined) t.value += n
    else {
      const labels: Record<string, string> = {}
      this.names.forEach((name, i) => {
        labels[name] = vals[i]!
      })
      this.#series.set(k, { labels, value: n })
    }
  }
  series(): IterableIterator<{ labels: Record<string, string>; value: number }> {
    return this.#series.values()
  }
}

/** A close code as a label: the RFC 6455 range and wirelog's registry; anything else `other`. */
export function closeCodeLabel(code: number): string {
  return (code >= 1000 && code <= 1015) || describeCloseCode(code) !== undefined
    ? String(code)
    : OTHER
}

/** `ws`'s error codes (`WS_ERR_…`) and a few socket ones; anything else `other`. */
export function errorCodeLabel(code: string): string {
  return /^(WS_ERR|ERR|E)[A-Z0-9_]{0,48}$/.test(code) ? code : OTHER
}

const PUBSUB_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode))

/** A `wirelog.v1` protocol error code (`BAD_FRAME`, …); anything else `other`. */
export function pubsubCodeLabel(code: string): string {
  return PUBSUB_CODES.has(code) ? code : OTHER
}

const REJECT_REASONS: ReadonlyMap<string, string> = new Map([
  ['origin not allowed', 'origin'],
  ['server at capacity', 'capacity'],
  ['too many connections from this address', 'ip_limit'],
  ['server shutting down', 'shutdown'],
  ['admission timed out', 'admission_timeout'],
  ['admission hook failed', 'admission_error'],
  ['client closed the connection during admission', 'client_gone'],
  ['request headers timed out', 'header_timeout'],
  ['admin token required', 'admin'],
  ['admin endpoints are off on a non-loopback bind', 'admin'],
])

/** A rejection's reason as one of a fixed set of categories. */
export function rejectCategory(status: number, reason: string): string {
  const known = REJECT_REASONS.get(reason)
  if (known !== undefined) return known
  if (reason.startsWith('bad HTTP request')) return 'bad_request'
  if (status === 401) return 'auth'
  if (status === 400 || status === 405 || status === 426) return 'handshake'
  if (status === 429) return 'rate'
  if (status === 403) return 'forbidden'
  return OTHER
}

/** Where a failing handler ran: `ws` (a handler of a built-in event), `http`, `behaviour`, `user`. */
export function failureSource(event: string): string {
  const i = event.indexOf(':')
  const ns = i < 0 ? event : event.slice(0, i)
  return ns === 'ws' || ns === 'http' || ns === 'behaviour' ? ns : 'user'
}

/** The plain numbers the recorder keeps (one object, fields only, for the hot path). */
class Tally {
  accepted = 0
  messagesIn = 0
  bytesIn = 0
  /** Messages and bytes sent to clients that have disconnected. */
  closedMessagesOut = 0
  closedBytesOut = 0
  rateLimitDropped = 0
  slowConsumerCloses = 0
  userEvents = 0
  published = 0
  accessDenied = 0
  authExpired = 0
  sessionsResumed = 0
  rejected = new LabelledCount(['status', 'reason'])
  disconnects = new LabelledCount(['code', 'initiator'])
  clientErrors = new LabelledCount(['code'])
  handlerFailures = new LabelledCount(['source'])
  pubsubErrors = new LabelledCount(['code'])
}

/**
 * The metrics of one server: counting starts when the server is created, the registry exists
 * once `listen()` has loaded prom-client. Reach it as `server.metrics` to add metrics of
 * your own (see `use()`).
 */
export class ServerMetrics {
  #t = new Tally()
  #src: MetricsSource
  #registry: Registry | undefined
  #prom: PromClient | undefined
  #loading: Promise<void> | undefined
  #pending: ((prom: PromClient, registry: Registry) => void)[] = []

  #exposition: (() => Promise<string>) | undefined

  /**
   * `exposition`, when given, produces the `/metrics` text instead of this registry (under
   * `--workers`, the primary's sum over every worker's registry).
   */
  constructor(bus: EventBus, src: MetricsSource, exposition?: () => Promise<string>) {
    this.#src = src
    this.#exposition = exposition
    const t = this.#t
    const recorder: Recorder = {
      wants: (ns, name) => ns === 'ws' && name !== 'message.sent',
      record: (ns, name, payload) => record(t, ns, name, payload),
    }
    addRecorder(bus, recorder)
  }

  /**
   * The server's private registry (not prom-client's global one); undefined until prom-client
   * is loaded, which `listen()` starts once the port is bound (`await metrics.load()` waits
   * for it; `use()` runs its callback then). Register extra metrics in it with
   * `registers: [registry]`.
   */
  get registry(): Registry | undefined {
    return this.#registry
  }

  /**
   * Run `fn` with prom-client and the registry: now if they are loaded, else as soon as
   * `listen()` has loaded them (before the port is bound). The way for other parts of a
   * service to add metrics without importing prom-client themselves:
   *
   * ```ts
   * server.metrics?.use((prom, registry) => {
   *   jobs = new prom.Counter({ name: 'app_jobs_total', help: 'Jobs run.', registers: [registry] })
   * })
   * ```
   */
  use(fn: (prom: PromClient, registry: Registry) => void): void {
    if (this.#registry !== undefined && this.#prom !== undefined) fn(this.#prom, this.#registry)
    else this.#pending.push(fn)
  }

  /** Load prom-client and build the registry (idempotent; `listen()` calls it). @internal */
  load(): Promise<void> {
    this.#loading ??= this.#load()
    return this.#loading
  }

  async #load(): Promise<void> {
    const mod = await import('prom-client')
    const prom = ((mod as { default?: PromClient }).default ?? mod) as PromClient
    const registry = new prom.Registry()
    buildMetrics(prom, registry, this.#t, this.#src)
    // The event-loop delay is sampled by a timer: every 10 ms (prom-client's default) cost
    // ~3.7 ms of CPU per second on an idle 2-core machine, every 20 ms ~2 ms; a stall long
    // enough to matter still delays a sample.
    prom.collectDefaultMetrics({
      register: registry,
      prefix: 'wirelog_',
      eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
    })
    // Gauges named like counters, which promtool's lint rejects; their `{type}` siblings
    // (`wirelog_nodejs_active_handles{type=…}` …) carry the same figures.
    for (const name of ['active_resources_total', 'active_handles_total', 'active_requests_total'])
      registry.removeSingleMetric(`wirelog_nodejs_${name}`)
    this.#prom = prom
    this.#registry = registry
    const pending = this.#pending
    this.#pending = []
    for (const fn of pending) fn(prom, registry)
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  async text(): Promise<string> {
    await this.load()
    return this.#exposition ? this.#exposition() : this.#registry!.metrics()
  }

  /** The `/metrics` route (the server routes it as an admin route). @internal */
  async serve(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.text()
    res.writeHead(200, {
      'content-type': this.#registry!.contentType,
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(body),
    })
    res.end(body)
  }
}

/** The recorder: every event of the bus, in plain numbers. */
function record(t: Tally, ns: string, name: string, payload: unknown): void {
  if (ns !== 'ws') {
    t.userEvents++
    return
  }
  // The two per-message events first; everything else is per connection or rarer.
  if (name === 'message.received') {
    t.messagesIn++
    t.bytesIn += (payload as WsEvents['message.received']).bytes
    return
  }
  // Counted from the connections (see the module comment), also when a handler asks for it.
  if (name === 'message.sent') return
  switch (name as WsEventName) {
    case 'client.connected':
      t.accepted++
      return
    case 'client.rejected': {
      const p = payload as WsEvents['client.rejected']
      t.rejected.add([String(p.status), rejectCategory(p.status, p.reason)])
      return
    }
    case 'client.disconnected': {
      const p = payload as WsEvents['client.disconnected']
      t.closedMessagesOut += p.messagesOut
      t.closedBytesOut += p.bytesOut
      t.disconnects.add([closeCodeLabel(p.code), p.initiator === 'server' ? 'server' : 'client'])
      if (p.code === CloseCode.SLOW_CONSUMER && p.initiator === 'server') t.slowConsumerCloses++
      return
    }
    case 'client.error':
      t.clientErrors.add([errorCodeLabel((payload as WsEvents['client.error']).code)])
      return
    case 'message.dropped':
      t.rateLimitDropped += (payload as WsEvents['message.dropped']).dropped
      return
    case 'handler.failed':
      t.handlerFailures.add([failureSource((payload as WsEvents['handler.failed']).event)])
      return
    case 'topic.published':
      t.published++
      return
    case 'access.denied':
      t.accessDenied++
      return
    case 'auth.expired':
      t.authExpired++
      return
    case 'session.resumed':
      t.sessionsResumed++
      return
    case 'pubsub.error':
      t.pubsubErrors.add([pubsubCodeLabel((payload as WsEvents['pubsub.error']).code)])
      return
    default:
      // Lifecycle, log and broker events: their figures are read from the source at scrape.
      return
  }
}

/** Every wirelog metric, reading the tally and the source when collected. */
function buildMetrics(prom: PromClient, registry: Registry, t: Tally, src: MetricsSource): void {
  const registers = [registry]
  /** `aggregator`: how `--workers` combines the workers' values (a state: the lowest). */
  const gauge = (
    name: string,
    help: string,
    value: () => number,
    aggregator: 'sum' | 'min' = 'sum',
  ): void => {
    new prom.Gauge({
      name,
      help,
      registers,
      aggregator,
      collect() {
        this.set(value())
      },
    })
  }
  const counter = (name: string, help: string, value: () => number): void => {
    new prom.Counter({
      name,
      help,
      registers,
      collect() {
        this.reset()
        this.inc(value())
      },
    })
  }
  const labelled = (name: string, help: string, count: LabelledCount): void => {
    new prom.Counter({
      name,
      help,
      labelNames: count.names as string[],
      registers,
      collect() {
        this.reset()
        for (const s of count.series()) this.inc(s.labels, s.value)
      },
    })
  }
  const logStats = () => src.activityLog?.stats
  const brokerStats = (): BrokerStats | undefined => src.broker?.stats?.()

  gauge('wirelog_connections_open', 'Clients connected now.', () => src.clients.size)
  gauge(
    'wirelog_ready',
    '1 when /readyz would answer 200, else 0.',
    () => (readiness(src).ready ? 1 : 0),
    'min',
  )
  counter('wirelog_connections_accepted_total', 'Clients accepted (101 sent).', () => t.accepted)
  labelled(
    'wirelog_connections_rejected_total',
    'Upgrade requests refused before any 101, by HTTP status and reason category.',
    t.rejected,
  )
  counter(
    'wirelog_messages_received_total',
    'Whole messages received from clients (after the rate limit).',
    () => t.messagesIn,
  )
  counter(
    'wirelog_received_bytes_total',
    'Payload bytes of the messages received.',
    () => t.bytesIn,
  )
  const sent = (): { messages: number; bytes: number } => {
    let messages = t.closedMessagesOut
    let bytes = t.closedBytesOut
    for (const c of src.clients) {
      messages += c.messagesOut
      bytes += c.bytesOut
    }
    return { messages, bytes }
  }
  counter('wirelog_messages_sent_total', 'Messages sent to clients.', () => sent().messages)
  counter('wirelog_sent_bytes_total', 'Payload bytes of the messages sent.', () => sent().bytes)
  labelled(
    'wirelog_disconnects_total',
    'Clients disconnected, by close code (unregistered codes: other) and who closed first.',
    t.disconnects,
  )
  labelled(
    'wirelog_client_errors_total',
    'Protocol or socket errors of clients, by error code.',
    t.clientErrors,
  )
  labelled(
    'wirelog_handler_failures_total',
    'Event handlers, behaviours and routes that threw or rejected, by where they ran.',
    t.handlerFailures,
  )
  counter(
    'wirelog_rate_limit_dropped_total',
    'Messages dropped by the per-client rate limit (reported at most once a second per client).',
    () => t.rateLimitDropped,
  )
  counter(
    'wirelog_slow_consumer_closes_total',
    'Clients closed with 4000 because their outbound buffer passed the cap.',
    () => t.slowConsumerCloses,
  )
  counter('wirelog_user_events_total', 'Events triggered in user namespaces.', () => t.userEvents)
  counter(
    'wirelog_topic_publishes_total',
    'Messages published on topics (wirelog.v1 and server.publish()).',
    () => t.published,
  )
  counter(
    'wirelog_access_denied_total',
    'wirelog.v1 operations refused by the permission rules.',
    () => t.accessDenied,
  )
  counter(
    'wirelog_auth_expired_total',
    'Clients closed because their credential expired.',
    () => t.authExpired,
  )
  counter('wirelog_sessions_resumed_total', 'wirelog.v1 sessions resumed.', () => t.sessionsResumed)
  labelled(
    'wirelog_pubsub_errors_total',
    'wirelog.v1 requests answered with an error, by protocol error code.',
    t.pubsubErrors,
  )

  counter(
    'wirelog_log_lines_total',
    'Activity log lines written (handed to the sinks).',
    () => logStats()?.lines ?? 0,
  )
  counter(
    'wirelog_log_dropped_lines_total',
    'Activity log lines lost (file unwritable and log.maxBuffer full).',
    () => logStats()?.dropped ?? 0,
  )
  counter(
    'wirelog_log_write_errors_total',
    'Failed activity log write attempts.',
    () => logStats()?.writeErrors ?? 0,
  )
  gauge(
    'wirelog_log_buffered_bytes',
    'Activity log bytes held in memory, not yet written.',
    () => logStats()?.buffered ?? 0,
  )
  gauge(
    'wirelog_log_writable',
    '1 while the activity log is writable, 0 from a write error until it recovers.',
    () => (logStats()?.writable === false ? 0 : 1),
    'min',
  )
  counter(
    'wirelog_log_rotations_total',
    'Activity log rotations (size and time).',
    () => logStats()?.rotations ?? 0,
  )

  gauge(
    'wirelog_broker_connected',
    '1 while the broker reaches its backend, else 0.',
    () => (src.broker === undefined || src.broker.connected ? 1 : 0),
    'min',
  )
  counter(
    'wirelog_broker_published_total',
    'Messages this node published through the broker.',
    () => brokerStats()?.published ?? 0,
  )
  counter(
    'wirelog_broker_received_total',
    'Messages of other nodes the broker handed to this node.',
    () => brokerStats()?.received ?? 0,
  )
  counter(
    'wirelog_broker_dropped_total',
    'Broker commands refused without being executed (backend down, queue full).',
    () => brokerStats()?.dropped ?? 0,
  )
  counter(
    'wirelog_broker_reconnects_total',
    'Broker connections re-established after a loss.',
    () => brokerStats()?.reconnects ?? 0,
  )
  gauge('wirelog_broker_queue', 'Broker commands in flight now.', () => brokerStats()?.queue ?? 0)

  // Webhooks: one series per configured endpoint (its host), read at scrape time.
  const perEndpoint = (
    name: string,
    help: string,
    kind: 'delivered' | 'failed' | 'retried' | 'dropped' | 'queued',
  ): void => {
    const Metric = kind === 'queued' ? prom.Gauge : prom.Counter
    new Metric({
      name,
      help,
      labelNames: ['endpoint'],
      registers,
      collect(this: { reset(): void; inc(l: Record<string, string>, v: number): void }) {
        this.reset()
        for (const e of src.webhooks?.stats() ?? []) this.inc({ endpoint: e.endpoint }, e[kind])
      },
    } as never)
  }
  perEndpoint('wirelog_webhook_delivered_total', 'Webhook deliveries answered 2xx.', 'delivered')
  perEndpoint(
    'wirelog_webhook_failed_total',
    'Webhook deliveries given up (dead letters in the log).',
    'failed',
  )
  perEndpoint(
    'wirelog_webhook_retries_total',
    'Webhook attempts repeated after a failure.',
    'retried',
  )
  perEndpoint(
    'wirelog_webhook_dropped_total',
    'Webhook deliveries dropped unattempted (queue full, shutdown).',
    'dropped',
  )
  perEndpoint('wirelog_webhook_queued', 'Webhook deliveries waiting now.', 'queued')
}
