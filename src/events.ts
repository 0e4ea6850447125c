/**
 * The event bus: the spine every producer triggers into and every consumer (activity log,
 * user handlers, metrics) subscribes to.
 *
 * Events live in namespaces. `ws` belongs to the server: its event names are a closed set
 * (`WsEvents`), and only the server can trigger them — user code gets a TypeError (and, in
 * TypeScript, a compile error). Users add their own namespaces
 * (`register('app', 'order.created', fn)`) and trigger those freely.
 *
 * Order: a *recorder* (the activity log) sees every event before any handler does, so a
 * line caused by a handler (a sent message, a user event) always follows the line of its
 * cause. Then handlers run synchronously, in registration order: exact handlers, then
 * `ns:*`, then `*:*`. Async handlers are not awaited. A handler that throws or rejects is
 * reported as `ws:handler.failed` and never stops delivery to the others.
 */
import type { Client } from './connection.js'

/** A client refused before any 101 (admission, bad handshake, header timeout). */
export interface ClientRejected {
  readonly ip: string
  readonly port: number
  /** HTTP status of the refusal. */
  readonly status: number
  readonly reason: string
  readonly origin: string | undefined
  readonly userAgent: string | undefined
  /** Request path, credentials in the query redacted. */
  readonly path: string | undefined
  /** The TCP peer when the address came through a trusted proxy. */
  readonly proxy: string | undefined
}

export interface MessageReceived {
  readonly client: Client
  /** The message: a string for text, a Buffer for binary. */
  readonly data: string | Buffer
  /** The raw bytes as received (text included). */
  readonly raw: Buffer
  readonly binary: boolean
  readonly bytes: number
}

export interface MessageSent {
  readonly client: Client
  readonly bytes: number
  readonly binary: boolean
  /**
   * What was sent (a reference, not a copy): a string, or the bytes. The activity log
   * records it with `log.payloads: full`.
   */
  readonly data?: string | Buffer
}

export interface MessageDropped {
  readonly client: Client
  readonly reason: string
  /** Messages dropped since the last report (reports come at most once per second). */
  readonly dropped: number
}

export interface ClientDisconnected {
  readonly client: Client
  /** The close code: the one the server sent if it closed first, else the peer's (1005/1006 if none). */
  readonly code: number
  readonly reason: string
  /** Who started the close. */
  readonly initiator: 'client' | 'server'
  readonly durationMs: number
  readonly messagesIn: number
  readonly messagesOut: number
  readonly bytesIn: number
  readonly bytesOut: number
}

export interface ClientConnected {
  readonly client: Client
}

export interface ClientError {
  readonly client: Client
  /** `ws`'s error code (`WS_ERR_…`). */
  readonly code: string
  readonly message: string
  /** The close code this error implies (sent to the client). */
  readonly closeCode: number
}

export interface HandlerFailed {
  /** `ns:name` of the event whose handler failed. */
  readonly event: string
  readonly error: unknown
}

export interface ServerListening {
  readonly address: string
  readonly port: number
  readonly url: string
}

export interface ServerClosing {
  readonly reason: string
  readonly clients: number
}

export interface ServerClosed {
  readonly reason: string
}

export interface LogError {
  readonly path: string
  readonly code: string
  readonly message: string
}

export interface LogDropped {
  readonly path: string
  readonly dropped: number
}

export interface LogRotated {
  readonly path: string
  readonly rotatedTo: string
}

export interface TopicSubscribed {
  readonly client: Client
  /** The topic or pattern. */
  readonly topic: string
  readonly pattern: boolean
  /** Messages replayed from history (`since`). */
  readonly replayed: number
}

export interface TopicUnsubscribed {
  readonly client: Client
  readonly topic: string
}

export interface TopicPublished {
  /** The publisher; undefined for `server.publish()`. */
  readonly client: Client | undefined
  readonly topic: string
  readonly seq: number
  /** Subscribers on this node that got it. */
  readonly recipients: number
  /** Size of `data` (JSON). */
  readonly bytes: number
  /** The message content as JSON text. */
  readonly data: string
}

export interface MessageDirect {
  /** The sender; undefined for `server.send()`. */
  readonly client: Client | undefined
  /** `client:<id>` or `user:<id>`. */
  readonly to: string
  readonly recipients: number
  readonly bytes: number
}

export interface SessionResumed {
  readonly client: Client
  readonly session: string
  /** Messages replayed from history. */
  readonly replayed: number
  /** Gaps announced (history no longer covered them). */
  readonly gaps: number
}

export interface SessionExpired {
  readonly client: Client
  readonly session: string
}

export interface AuthRefreshed {
  readonly client: Client
  readonly expiresAt: number | undefined
}

export interface AuthExpired {
  readonly client: Client
}

export interface AccessDenied {
  readonly client: Client
  /** subscribe, publish, presence, history or send. */
  readonly op: string
  /** The topic, pattern or direct-message target. */
  readonly topic: string
}

export interface PubsubError {
  readonly client: Client
  readonly op: string
  /** The protocol error code (`BAD_FRAME`, `TOO_BIG`, …). */
  readonly code: string
  readonly message: string
}

export interface BrokerDown {
  /** `redis`, … */
  readonly broker: string
  /** Why (the connection error). */
  readonly reason: string
}

export interface BrokerUp {
  readonly broker: string
  /** How long the broker was unreachable, ms. */
  readonly downMs: number
  /** Commands refused while it was (publishes among them, answered `UNAVAILABLE`). */
  readonly dropped: number
  /** Connections re-established so far. */
  readonly reconnects: number
}

export interface WorkerStarted {
  /** The worker's slot, 1 … N (a restarted worker keeps its slot). */
  readonly worker: number
  readonly pid: number
  /** Times this slot was restarted after a crash. */
  readonly restarts: number
}

export interface WorkerExited {
  readonly worker: number
  readonly pid: number
  /** Exit code, or undefined when a signal ended it. */
  readonly code: number | undefined
  readonly signal: string | undefined
  /** True when the worker ended without being asked (it is restarted). */
  readonly crashed: boolean
}

/** A webhook delivery given up (the dead letter): retries exhausted, or refused by the endpoint. */
export interface WebhookFailed {
  /** The endpoint's host (`hooks.example.com:8443`); never its path, query or credentials. */
  readonly endpoint: string
  /** The event delivered (`message.received`, `app:order.created`). */
  readonly event: string
  /** The delivery id (`Wirelog-Delivery`), the same across retries. */
  readonly delivery: string
  readonly attempts: number
  /** HTTP status of the last attempt; undefined when it got no response. */
  readonly status: number | undefined
  /** What went wrong last (`HTTP 500`, `timeout after 5000 ms`, `ECONNREFUSED`). */
  readonly error: string
  /** `retries exhausted`, `not retried (HTTP 400)` or `shutdown`. */
  readonly reason: string
}

/** Webhook deliveries dropped before any attempt (queue full, shutdown); at most once a second. */
export interface WebhookDropped {
  readonly endpoint: string
  /** Deliveries dropped since the last report. */
  readonly dropped: number
  /** `queue full` or `shutdown`. */
  readonly reason: string
  /** The event of the last one dropped. */
  readonly event: string
}

/** Payloads of the built-in `ws` events: the closed set of names the server triggers. */
export interface WsEvents {
  'server.listening': ServerListening
  'server.closing': ServerClosing
  'server.closed': ServerClosed
  'client.connected': ClientConnected
  'client.rejected': ClientRejected
  'message.received': MessageReceived
  'message.sent': MessageSent
  'message.dropped': MessageDropped
  'client.disconnected': ClientDisconnected
  'client.error': ClientError
  'handler.failed': HandlerFailed
  'log.error': LogError
  'log.dropped': LogDropped
  'log.rotated': LogRotated
  'topic.subscribed': TopicSubscribed
  'topic.unsubscribed': TopicUnsubscribed
  'topic.published': TopicPublished
  'message.direct': MessageDirect
  'session.resumed': SessionResumed
  'session.expired': SessionExpired
  'auth.refreshed': AuthRefreshed
  'auth.expired': AuthExpired
  'access.denied': AccessDenied
  'pubsub.error': PubsubError
  'broker.down': BrokerDown
  'broker.up': BrokerUp
  'worker.started': WorkerStarted
  'worker.exited': WorkerExited
  'webhook.failed': WebhookFailed
  'webhook.dropped': WebhookDropped
}

/** A built-in event name. */
export type WsEventName = keyof WsEvents

/**
 * The event map: `'ns:name' → payload`. Augment it to type your own events:
 *
 * ```ts
 * declare module 'wirelog' {
 *   interface EventMap { 'app:order.created': { id: number } }
 * }
 * ```
 */
export interface EventMap extends WsEventMap {}

type WsEventMap = { [K in keyof WsEvents as `ws:${K}`]: WsEvents[K] }

/** Names accepted for a namespace: the closed built-in set for `ws`, anything for others. */
export type EventNameFor<N extends string> = N extends 'ws'
  ? WsEventName | '*'
  : N extends '*'
    ? '*'
    : string

/** What `trigger()` accepts as a namespace: anything but `ws` (the server's) and `*`. */
export type UserNamespace<N extends string> = N extends 'ws'
  ? 'error: the "ws" namespace belongs to the server; trigger your own namespace'
  : N extends '*'
    ? 'error: trigger() needs a concrete namespace, not "*"'
    : N

/** Payload of event `name` in namespace `ns`: typed where known, a plain record otherwise. */
export type PayloadOf<N extends string, E extends string> = N extends '*'
  ? unknown
  : E extends '*'
    ? unknown
    : `${N}:${E}` extends keyof EventMap
      ? EventMap[`${N}:${E}`]
      : Record<string, unknown>

/**
 * A handler receives the payload, then the event's name and namespace (useful with
 * wildcards). Its return value is ignored; a returned promise that rejects is reported.
 */
export type Handler<P = unknown> = (payload: P, name: string, ns: string) => unknown

/**
 * Sees every event before any handler (the activity log). Internal: not exported from the
 * package root.
 */
export interface Recorder {
  record(ns: string, name: string, payload: unknown): void
  /** Whether `ns:name` would produce anything (lets producers skip building payloads). */
  wants(ns: string, name: string): boolean
}

interface Entry {
  fn: Handler<any>
  once: boolean
}

const NO_HANDLERS: readonly Entry[] = []

/** Set up by the class's static block: the server-only entry points. */
let builtinEmit: <K extends WsEventName>(bus: EventBus, name: K, payload: WsEvents[K]) => number
let recorderAdd: (bus: EventBus, r: Recorder) => () => void
let versionOf: (bus: EventBus) => number

export class EventBus {
  /** ns → name → handlers. Copy-on-write arrays so dispatch never sees a mutation mid-loop. */
  #handlers = new Map<string, Map<string, readonly Entry[]>>()
  #recorders: readonly Recorder[] = []
  #failureDepth = 0
  /** Bumped on every (un)subscription, so callers can cache `has()`. */
  #version = 0

  static {
    builtinEmit = (bus, name, payload) => bus.#dispatch('ws', name, payload)
    recorderAdd = (bus, r) => {
      bus.#recorders = [...bus.#recorders, r]
      bus.#version++
      return () => {
        bus.#recorders = bus.#recorders.filter((x) => x !== r)
        bus.#version++
      }
    }
    versionOf = (bus) => bus.#version
  }

  /** Subscribe; returns a function that unsubscribes. Alias of `on`. */
  register<N extends string, E extends EventNameFor<N>>(
    ns: N,
    name: E,
    handler: Handler<PayloadOf<N, E>>,
  ): () => void {
    return this.on(ns, name, handler)
  }

  on<N extends string, E extends EventNameFor<N>>(
    ns: N,
    name: E,
    handler: Handler<PayloadOf<N, E>>,
  ): () => void {
    this.#add(ns, name, { fn: handler, once: false })
    return () => this.off(ns, name, handler)
  }

  /** Subscribe for one delivery only. */
  once<N extends string, E extends EventNameFor<N>>(
    ns: N,
    name: E,
    handler: Handler<PayloadOf<N, E>>,
  ): () => void {
    this.#add(ns, name, { fn: handler, once: true })
    return () => this.off(ns, name, handler)
  }

  /** Remove one registration of `handler` (the latest). */
  off(ns: string, name: string, handler: Handler<any>): void {
    const names = this.#handlers.get(ns)
    const list = names?.get(name)
    if (!names || !list) return
    let idx = -1
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i]!.fn === handler) {
        idx = i
        break
      }
    }
    if (idx < 0) return
    this.#version++
    const next = list.slice(0, idx).concat(list.slice(idx + 1))
    if (next.length === 0) names.delete(name)
    else names.set(name, next)
    if (names.size === 0) this.#handlers.delete(ns)
  }

  /**
   * Whether anything (the activity log or a handler) would receive `ns:name`: lets a
   * producer skip building a payload nobody reads.
   */
  has(ns: string, name: string): boolean {
    const names = this.#handlers.get(ns)
    if (names !== undefined && (names.has(name) || names.has('*'))) return true
    if (this.#handlers.has('*')) return true
    for (const r of this.#recorders) if (r.wants(ns, name)) return true
    return false
  }

  /** Number of handlers registered under exactly `ns` / `name` (wildcards are their own keys). */
  listenerCount(ns: string, name: string): number {
    return this.#handlers.get(ns)?.get(name)?.length ?? 0
  }

  /**
   * Trigger a user event: record it, then deliver `payload` to every matching handler,
   * synchronously. Never throws because of a handler; returns the number of handlers
   * called. The `ws` namespace is the server's: triggering it throws a TypeError.
   */
  trigger<N extends string, E extends string>(
    ns: UserNamespace<N>,
    name: E,
    payload: PayloadOf<N, E>,
  ): number {
    const n = ns as string
    if (n === 'ws')
      throw new TypeError(
        'events.trigger(): the "ws" namespace belongs to the server; trigger events in your own namespace (e.g. "app")',
      )
    if (n === '*' || name === '*' || typeof n !== 'string' || typeof name !== 'string')
      throw new TypeError('events.trigger() needs a concrete namespace and name, not "*"')
    if (n.length === 0 || name.length === 0)
      throw new TypeError('events.trigger(): namespace and name must be non-empty strings')
    return this.#dispatch(n, name, payload)
  }

  /** Remove every handler. */
  clear(): void {
    this.#handlers.clear()
    this.#version++
  }

  #dispatch(ns: string, name: string, payload: unknown): number {
    const recorders = this.#recorders
    for (let i = 0; i < recorders.length; i++) {
      try {
        recorders[i]!.record(ns, name, payload)
      } catch (err) {
        process.emitWarning(
          `wirelog: recording ${ns}:${name} failed: ${err instanceof Error ? err.message : String(err)}`,
          'WirelogWarning',
        )
      }
    }
    const names = this.#handlers.get(ns)
    let n = 0
    if (names !== undefined) {
      n += this.#run(names.get(name) ?? NO_HANDLERS, payload, name, ns, names, name)
      n += this.#run(names.get('*') ?? NO_HANDLERS, payload, name, ns, names, '*')
    }
    const all = this.#handlers.get('*')
    if (all !== undefined) n += this.#run(all.get('*') ?? NO_HANDLERS, payload, name, ns, all, '*')
    return n
  }

  #add(ns: string, name: string, entry: Entry): void {
    if (typeof ns !== 'string' || ns.length === 0)
      throw new TypeError('namespace must be a non-empty string')
    if (typeof name !== 'string' || name.length === 0)
      throw new TypeError('event name must be a non-empty string')
    if (typeof entry.fn !== 'function') throw new TypeError('handler must be a function')
    if (ns === 'ws' && name !== '*' && !BUILTIN.has(name))
      throw new TypeError(
        `no built-in event "ws:${name}"${suggest(name)}; the ws events are: ${[...BUILTIN].join(', ')}`,
      )
    if (ns === '*' && name !== '*')
      throw new TypeError('a "*" namespace only takes the "*" name (every event)')
    let names = this.#handlers.get(ns)
    if (names === undefined) {
      names = new Map()
      this.#handlers.set(ns, names)
    }
    this.#version++
    names.set(name, [...(names.get(name) ?? NO_HANDLERS), entry])
  }

  #run(
    list: readonly Entry[],
    payload: unknown,
    name: string,
    ns: string,
    owner: Map<string, readonly Entry[]>,
    key: string,
  ): number {
    for (let i = 0; i < list.length; i++) {
      const entry = list[i]!
      if (entry.once) this.#removeEntry(owner, key, entry)
      try {
        const r = entry.fn(payload, name, ns)
        if (
          r !== undefined &&
          r !== null &&
          typeof (r as PromiseLike<unknown>).then === 'function'
        ) {
          ;(r as PromiseLike<unknown>).then(undefined, (err: unknown) =>
            this.#failed(ns, name, err),
          )
        }
      } catch (err) {
        this.#failed(ns, name, err)
      }
    }
    return list.length
  }

  #removeEntry(owner: Map<string, readonly Entry[]>, key: string, entry: Entry): void {
    const cur = owner.get(key)
    if (!cur) return
    this.#version++
    const next = cur.filter((e) => e !== entry)
    if (next.length === 0) owner.delete(key)
    else owner.set(key, next)
  }

  #failed(ns: string, name: string, error: unknown): void {
    // A failing `handler.failed` subscriber must not recurse into itself.
    if (this.#failureDepth > 0 || (ns === 'ws' && name === 'handler.failed')) {
      process.emitWarning(
        `wirelog: a handler.failed handler threw: ${String(error)}`,
        'WirelogWarning',
      )
      return
    }
    this.#failureDepth++
    try {
      this.#dispatch('ws', 'handler.failed', { event: `${ns}:${name}`, error })
    } finally {
      this.#failureDepth--
    }
  }
}

const BUILTIN_NAMES: Record<WsEventName, true> = {
  'server.listening': true,
  'server.closing': true,
  'server.closed': true,
  'client.connected': true,
  'client.rejected': true,
  'message.received': true,
  'message.sent': true,
  'message.dropped': true,
  'client.disconnected': true,
  'client.error': true,
  'handler.failed': true,
  'log.error': true,
  'log.dropped': true,
  'log.rotated': true,
  'topic.subscribed': true,
  'topic.unsubscribed': true,
  'topic.published': true,
  'message.direct': true,
  'session.resumed': true,
  'session.expired': true,
  'auth.refreshed': true,
  'auth.expired': true,
  'access.denied': true,
  'pubsub.error': true,
  'broker.down': true,
  'broker.up': true,
  'worker.started': true,
  'worker.exited': true,
  'webhook.failed': true,
  'webhook.dropped': true,
}
const BUILTIN: ReadonlySet<string> = new Set(Object.keys(BUILTIN_NAMES))

/** `, did you mean "x"?` for a name within two edits of a built-in one. */
function suggest(name: string): string {
  let best: string | undefined
  let bestD = 3
  for (const b of BUILTIN) {
    const d = editDistance(name, b)
    if (d < bestD) {
      bestD = d
      best = b
    }
  }
  return best ? ` (did you mean "${best}"?)` : ''
}

/** Levenshtein distance (small strings: option names, event names). */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = tmp
    }
  }
  return prev[b.length]!
}

/** Trigger a built-in `ws` event (server modules only; not exported from the package). */
export function emit<K extends WsEventName>(bus: EventBus, name: K, payload: WsEvents[K]): number {
  return builtinEmit(bus, name, payload)
}

/** Install a recorder that sees every event before any handler; returns its removal. */
export function addRecorder(bus: EventBus, recorder: Recorder): () => void {
  return recorderAdd(bus, recorder)
}

/** Changes whenever a handler or recorder is added or removed (to cache `has()`). */
export function subscriptionVersion(bus: EventBus): number {
  return versionOf(bus)
}
