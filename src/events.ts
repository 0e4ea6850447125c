/**
 * The event bus: the spine every producer triggers into and every consumer (activity log,
 * user handlers, metrics) subscribes to.
 *
 * Events live in namespaces: `ws` holds the built-in ones, users add their own
 * (`register('app', 'order.created', fn)`). A name of `*` matches every event of a
 * namespace, a namespace of `*` every namespace. Dispatch is synchronous and in registration
 * order (exact handlers, then `ns:*`, then `*:*`); async handlers are not awaited. A handler
 * that throws or rejects is reported as `ws:handler.failed` and never stops delivery to the
 * others.
 */
import type { Client } from './connection.js'

/** Payloads of the built-in `ws` events. */
export interface WsEvents {
  'server.listening': { address: string; port: number; url: string }
  'server.closing': { reason: string; clients: number }
  'server.closed': { reason: string }
  'client.connected': { client: Client }
  'client.rejected': {
    ip: string
    port: number
    status: number
    reason: string
    origin: string | undefined
    userAgent: string | undefined
  }
  'message.received': MessageReceived
  'message.sent': { client: Client; bytes: number; binary: boolean }
  'message.dropped': { client: Client; reason: string; dropped: number }
  'client.disconnected': ClientDisconnected
  'client.error': { client: Client; code: string; message: string; closeCode: number }
  'handler.failed': { event: string; error: unknown; suppressed: number }
  'log.error': { path: string; code: string; message: string }
  'log.dropped': { path: string; dropped: number }
  'log.rotated': { path: string; rotatedTo: string }
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

interface Entry {
  fn: Handler<any>
  once: boolean
}

const NO_HANDLERS: readonly Entry[] = []

export class EventBus {
  /** ns → name → handlers. Copy-on-write arrays so dispatch never sees a mutation mid-loop. */
  #handlers = new Map<string, Map<string, readonly Entry[]>>()
  #failureDepth = 0

  /** Subscribe; returns a function that unsubscribes. Alias of `on`. */
  register<N extends string, E extends string, P = PayloadOf<N, E>>(
    ns: N,
    name: E,
    handler: Handler<P>,
  ): () => void {
    return this.on(ns, name, handler)
  }

  on<N extends string, E extends string, P = PayloadOf<N, E>>(
    ns: N,
    name: E,
    handler: Handler<P>,
  ): () => void {
    this.#add(ns, name, { fn: handler, once: false })
    return () => this.off(ns, name, handler)
  }

  /** Subscribe for one delivery only. */
  once<N extends string, E extends string, P = PayloadOf<N, E>>(
    ns: N,
    name: E,
    handler: Handler<P>,
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
    const next = list.slice(0, idx).concat(list.slice(idx + 1))
    if (next.length === 0) names.delete(name)
    else names.set(name, next)
    if (names.size === 0) this.#handlers.delete(ns)
  }

  /** Whether anything would receive `ns:name` (lets producers skip building payloads). */
  has(ns: string, name: string): boolean {
    const names = this.#handlers.get(ns)
    if (names !== undefined && (names.has(name) || names.has('*'))) return true
    return this.#handlers.get('*') !== undefined
  }

  /** Number of handlers registered under exactly `ns` / `name` (wildcards are their own keys). */
  listenerCount(ns: string, name: string): number {
    return this.#handlers.get(ns)?.get(name)?.length ?? 0
  }

  /**
   * Deliver `payload` to every matching handler, synchronously. Never throws because of a
   * handler; returns the number of handlers called.
   */
  trigger<N extends string, E extends string>(ns: N, name: E, payload: PayloadOf<N, E>): number {
    if (ns === '*' || name === '*')
      throw new TypeError('trigger() needs a concrete namespace and name, not "*"')
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

  /** Remove every handler. */
  clear(): void {
    this.#handlers.clear()
  }

  #add(ns: string, name: string, entry: Entry): void {
    if (typeof ns !== 'string' || ns.length === 0)
      throw new TypeError('namespace must be a non-empty string')
    if (typeof name !== 'string' || name.length === 0)
      throw new TypeError('event name must be a non-empty string')
    if (typeof entry.fn !== 'function') throw new TypeError('handler must be a function')
    let names = this.#handlers.get(ns)
    if (names === undefined) {
      names = new Map()
      this.#handlers.set(ns, names)
    }
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
      this.trigger('ws', 'handler.failed', { event: `${ns}:${name}`, error, suppressed: 0 })
    } finally {
      this.#failureDepth--
    }
  }
}
