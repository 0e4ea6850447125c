/**
 * The in-host broker for `--workers N` without Redis: the primary process holds one
 * `MemoryHub` and a `MemoryBroker` per worker; each worker's `IpcBroker` forwards every call
 * to it over the cluster IPC channel and gets other workers' messages and signals back.
 * Local delivery stays in the worker (from `publish()`'s result), as with any broker.
 *
 * The transport is a `Port` (send a message, receive messages), so the same code runs over
 * `process` / a cluster `Worker` and, in tests, over an in-process pair.
 */
import { MemoryBroker, MemoryHub } from './memory.js'
import type {
  Broker,
  BrokerHandler,
  BrokerLimits,
  BrokerStats,
  HistoryResult,
  NodeIdentity,
  PresenceEntry,
  PublishClaim,
  Publisher,
  RegistryEntry,
  SessionRecord,
  Signal,
  SignalTarget,
  TopicMessage,
} from './types.js'

/** One end of a message channel (a worker's `process`, the primary's `Worker`). */
export interface Port {
  send(message: unknown): unknown
  on(event: 'message', listener: (message: unknown) => void): unknown
  off(event: 'message', listener: (message: unknown) => void): unknown
}

type Method = Exclude<keyof Broker, 'kind' | 'connected' | 'stats'>

interface Call {
  readonly wl: 'broker'
  readonly id: number
  readonly method: Method
  readonly args: unknown[]
}
interface Reply {
  readonly wl: 'broker-reply'
  readonly id: number
  readonly ok: boolean
  readonly value?: unknown
  readonly error?: string
}
type Push =
  | { readonly wl: 'broker-push'; readonly kind: 'message'; readonly m: TopicMessage }
  | {
      readonly wl: 'broker-push'
      readonly kind: 'signal'
      readonly target: SignalTarget
      readonly s: Signal
    }

function isMsg<T extends { wl: string }>(m: unknown, wl: T['wl']): m is T {
  return typeof m === 'object' && m !== null && (m as { wl?: unknown }).wl === wl
}

/** A worker's broker: every call is a request to the primary's host. */
export class IpcBroker implements Broker {
  readonly kind = 'ipc'
  readonly connected = true
  #port: Port
  #next = 0
  #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()
  #handler: BrokerHandler | undefined
  #published = 0
  #received = 0
  #listener = (msg: unknown): void => this.#onMessage(msg)

  constructor(port: Port) {
    this.#port = port
  }

  stats(): BrokerStats {
    return {
      connected: true,
      published: this.#published,
      received: this.#received,
      dropped: 0,
      reconnects: 0,
      errors: 0,
      queue: this.#waiting.size,
    }
  }

  #onMessage(msg: unknown): void {
    if (isMsg<Reply>(msg, 'broker-reply')) {
      const w = this.#waiting.get(msg.id)
      if (w === undefined) return
      this.#waiting.delete(msg.id)
      if (msg.ok) w.resolve(msg.value)
      else w.reject(new Error(msg.error ?? 'broker call failed'))
    } else if (isMsg<Push>(msg, 'broker-push')) {
      const h = this.#handler
      if (h === undefined) return
      if (msg.kind === 'message') {
        this.#received++
        h.message(msg.m)
      } else h.signal(msg.target, msg.s)
    }
  }

  #call<T>(method: Method, ...args: unknown[]): Promise<T> {
    const id = ++this.#next
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject })
      try {
        this.#port.send({ wl: 'broker', id, method, args } satisfies Call)
      } catch (err) {
        this.#waiting.delete(id)
        reject(err as Error)
      }
    })
  }

  async start(node: NodeIdentity, handler: BrokerHandler): Promise<void> {
    this.#handler = handler
    this.#port.on('message', this.#listener)
    await this.#call('start', { id: node.id })
  }

  async stop(): Promise<void> {
    try {
      await this.#call('stop')
    } finally {
      this.#port.off('message', this.#listener)
      for (const w of this.#waiting.values()) w.reject(new Error('broker stopped'))
      this.#waiting.clear()
    }
  }

  async publish(
    topic: string,
    from: Publisher,
    data: string,
    claim?: PublishClaim,
  ): Promise<TopicMessage> {
    // Not sent when absent (IPC turns an undefined argument into null).
    const m = await this.#call<TopicMessage>(
      'publish',
      ...(claim ? [topic, from, data, claim] : [topic, from, data]),
    )
    this.#published++
    return m
  }
  interest(topicOrPattern: string, on: boolean): Promise<void> {
    return this.#call('interest', topicOrPattern, on)
  }
  history(topic: string, since: number, limit: number): Promise<HistoryResult> {
    return this.#call('history', topic, since, limit)
  }
  topics(pattern: string): Promise<string[]> {
    return this.#call('topics', pattern)
  }
  signal(target: SignalTarget, s: Signal): Promise<void> {
    return this.#call('signal', target, s)
  }
  presenceAdd(topic: string, entry: PresenceEntry): Promise<void> {
    return this.#call('presenceAdd', topic, entry)
  }
  presenceRemove(topic: string, client: string): Promise<void> {
    return this.#call('presenceRemove', topic, client)
  }
  presence(topic: string): Promise<PresenceEntry[]> {
    return this.#call('presence', topic)
  }
  sessionSave(s: SessionRecord, ttlMs: number): Promise<void> {
    return this.#call('sessionSave', s, ttlMs)
  }
  sessionLoad(id: string): Promise<SessionRecord | undefined> {
    return this.#call('sessionLoad', id)
  }
  sessionDelete(id: string): Promise<void> {
    return this.#call('sessionDelete', id)
  }
  registryAdd(e: RegistryEntry): Promise<void> {
    return this.#call('registryAdd', e)
  }
  registryRemove(client: string): Promise<void> {
    return this.#call('registryRemove', client)
  }
  locate(target: { client: string } | { user: string }): Promise<number> {
    return this.#call('locate', target)
  }
  claim(key: string, ttlMs: number): Promise<string | undefined> {
    return this.#call('claim', key, ttlMs)
  }
  release(key: string): Promise<void> {
    return this.#call('release', key)
  }
}

/** What one worker registered, dropped when it goes (a crashed worker's clients are gone). */
interface Owned {
  broker: MemoryBroker
  presence: Map<string, Set<string>>
  clients: Set<string>
  /** Publish claims it took and has not settled. */
  claims: Set<string>
}

/** The primary's side: one shared hub, one memory broker per attached worker. */
export class IpcBrokerHost {
  readonly hub = new MemoryHub()
  #limits: BrokerLimits
  #ports = new Map<Port, { listener: (m: unknown) => void; owned: Owned }>()

  constructor(limits: BrokerLimits) {
    this.#limits = limits
  }

  /** Serve the worker at the other end of `port`. */
  attach(port: Port): void {
    const owned: Owned = {
      broker: new MemoryBroker({ ...this.#limits, hub: this.hub }),
      presence: new Map(),
      clients: new Set(),
      claims: new Set(),
    }
    const listener = (msg: unknown): void => {
      if (isMsg<Call>(msg, 'broker')) void this.#serve(port, owned, msg)
    }
    port.on('message', listener)
    this.#ports.set(port, { listener, owned })
  }

  /** The worker is gone: forget it and everything it registered. */
  async detach(port: Port): Promise<void> {
    const e = this.#ports.get(port)
    if (e === undefined) return
    this.#ports.delete(port)
    port.off('message', e.listener)
    const { broker, presence, clients } = e.owned
    for (const [topic, set] of presence)
      for (const client of set) await broker.presenceRemove(topic, client).catch(() => {})
    for (const client of clients) await broker.registryRemove(client).catch(() => {})
    // A publish it claimed and never settled: a retry on another worker publishes.
    for (const key of e.owned.claims)
      if (this.hub.claims.get(key)?.value === 'pending') this.hub.claims.delete(key)
    await broker.stop().catch(() => {})
  }

  async #serve(port: Port, o: Owned, call: Call): Promise<void> {
    const b = o.broker
    const args = call.args
    let reply: Reply
    try {
      let value: unknown
      if (call.method === 'start') {
        const node = args[0] as NodeIdentity
        const send = (p: Push): void => {
          try {
            port.send(p)
          } catch {}
        }
        value = await b.start(node, {
          message: (m) => send({ wl: 'broker-push', kind: 'message', m }),
          signal: (target, s) => send({ wl: 'broker-push', kind: 'signal', target, s }),
        })
      } else {
        track(o, call.method, args)
        value = await (b[call.method] as (...a: unknown[]) => Promise<unknown>)(...args)
        if (call.method === 'claim' && value === undefined) o.claims.add(args[0] as string)
        else if (call.method === 'release') o.claims.delete(args[0] as string)
        else if (call.method === 'publish' && args[3] != null)
          o.claims.delete((args[3] as PublishClaim).key)
      }
      reply = { wl: 'broker-reply', id: call.id, ok: true, value }
    } catch (err) {
      reply = { wl: 'broker-reply', id: call.id, ok: false, error: (err as Error).message }
    }
    try {
      port.send(reply)
    } catch {}
  }
}

function track(o: Owned, method: Method, args: unknown[]): void {
  if (method === 'presenceAdd') {
    const topic = args[0] as string
    let set = o.presence.get(topic)
    if (set === undefined) {
      set = new Set()
      o.presence.set(topic, set)
    }
    set.add((args[1] as PresenceEntry).client)
  } else if (method === 'presenceRemove') {
    const set = o.presence.get(args[0] as string)
    if (set?.delete(args[1] as string) && set.size === 0) o.presence.delete(args[0] as string)
  } else if (method === 'registryAdd') o.clients.add((args[0] as RegistryEntry).client)
  else if (method === 'registryRemove') o.clients.delete(args[0] as string)
}

/** An in-process pair of ports (tests). */
export function portPair(): [Port, Port] {
  type L = (m: unknown) => void
  const make = (): { port: Port; listeners: Set<L> } => {
    const listeners = new Set<L>()
    const port: Port = {
      send: () => {},
      on: (_e, l) => listeners.add(l),
      off: (_e, l) => listeners.delete(l),
    }
    return { port, listeners }
  }
  const a = make()
  const b = make()
  // Asynchronous like real IPC, and a copy like structured clone.
  const deliver = (to: Set<L>, m: unknown): void => {
    setImmediate(() => {
      for (const l of to) l(structuredClone(m))
    })
  }
  a.port.send = (m) => deliver(b.listeners, m)
  b.port.send = (m) => deliver(a.listeners, m)
  return [a.port, b.port]
}
