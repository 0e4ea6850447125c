/**
 * The in-process broker: one node by default. Several `MemoryBroker`s can share a
 * `MemoryHub` to act as several nodes in one process (the contract suite uses that to check
 * cross-node behaviour without a network).
 *
 * Memory is bounded: `historySize` messages per topic for at most `historyTtl` ms, at most
 * `historyTopics` topics with history (least recently published forgotten first), sessions
 * until their TTL (at most `maxSessions`), idempotency keys until their TTL (at most
 * `maxClaims`).
 */
import { randomBytes } from 'node:crypto'
import { matches, SubscriptionIndex } from '../pubsub/topics.js'
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

interface TopicLog {
  epoch: string
  last: number
  /** Retained messages, oldest first: `items[head …]`. */
  items: TopicMessage[]
  head: number
}

/** State shared by every node of one in-process deployment. */
export class MemoryHub {
  readonly nodes = new Map<
    string,
    { handler: BrokerHandler; interest: SubscriptionIndex<string> }
  >()
  readonly topics = new Map<string, TopicLog>()
  readonly presence = new Map<string, Map<string, PresenceEntry>>()
  readonly sessions = new Map<string, { record: SessionRecord; expires: number }>()
  readonly registry = new Map<string, RegistryEntry>()
  readonly users = new Map<string, Set<string>>()
  readonly claims = new Map<string, { value: string; expires: number }>()
}

export interface MemoryBrokerOptions extends BrokerLimits {
  /** Share state with other nodes in this process (default: a private hub). */
  hub?: MemoryHub
  /** Most sessions kept (oldest detached first beyond). Default 100,000. */
  maxSessions?: number
  /** Most idempotency keys kept. Default 100,000. */
  maxClaims?: number
}

export class MemoryBroker implements Broker {
  readonly kind = 'memory'
  readonly connected = true
  #hub: MemoryHub
  #opts: Required<Omit<MemoryBrokerOptions, 'hub'>>
  #node: NodeIdentity | undefined
  #sweep: NodeJS.Timeout | undefined
  #published = 0
  #received = 0

  constructor(options: MemoryBrokerOptions) {
    this.#hub = options.hub ?? new MemoryHub()
    this.#opts = {
      historySize: options.historySize,
      historyTtl: options.historyTtl,
      historyTopics: options.historyTopics,
      maxSessions: options.maxSessions ?? 100_000,
      maxClaims: options.maxClaims ?? 100_000,
    }
  }

  stats(): BrokerStats {
    return {
      connected: true,
      published: this.#published,
      received: this.#received,
      dropped: 0,
      reconnects: 0,
      errors: 0,
      queue: 0,
    }
  }

  async start(node: NodeIdentity, handler: BrokerHandler): Promise<void> {
    this.#node = node
    const counted: BrokerHandler = {
      ...handler,
      message: (m) => {
        this.#received++
        handler.message(m)
      },
    }
    this.#hub.nodes.set(node.id, { handler: counted, interest: new SubscriptionIndex() })
    this.#sweep = setInterval(() => this.#expire(Date.now()), 1000)
    this.#sweep.unref()
  }

  async stop(): Promise<void> {
    if (this.#sweep) clearInterval(this.#sweep)
    if (this.#node) this.#hub.nodes.delete(this.#node.id)
  }

  #self(): string {
    if (this.#node === undefined) throw new Error('broker not started')
    return this.#node.id
  }

  async publish(
    topic: string,
    from: Publisher,
    data: string,
    claim?: PublishClaim,
  ): Promise<TopicMessage> {
    const node = this.#self()
    const hub = this.#hub
    let log = hub.topics.get(topic)
    if (log === undefined) {
      log = { epoch: randomBytes(4).toString('hex'), last: 0, items: [], head: 0 }
    } else hub.topics.delete(topic) // re-inserted below: most recently published last
    hub.topics.set(topic, log)
    const now = Date.now()
    const m: TopicMessage = {
      topic,
      seq: ++log.last,
      epoch: log.epoch,
      time: now,
      from,
      data,
      node,
    }
    if (this.#opts.historySize > 0) {
      log.items.push(m)
      trim(log, this.#opts.historySize, now - this.#opts.historyTtl)
    }
    while (hub.topics.size > this.#opts.historyTopics) {
      const oldest = hub.topics.keys().next().value as string
      hub.topics.delete(oldest)
    }
    if (claim !== undefined)
      hub.claims.set(claim.key, { value: String(m.seq), expires: now + claim.ttlMs })
    for (const [id, n] of hub.nodes) {
      if (id !== node && n.interest.has(topic)) n.handler.message(m)
    }
    this.#published++
    return m
  }

  async interest(topicOrPattern: string, on: boolean): Promise<void> {
    const n = this.#hub.nodes.get(this.#self())!
    const pattern = topicOrPattern.includes('*') || topicOrPattern.endsWith('>')
    if (on) n.interest.add(topicOrPattern, pattern, 'node')
    else n.interest.remove(topicOrPattern, pattern, 'node')
  }

  async history(topic: string, since: number, limit: number): Promise<HistoryResult> {
    const log = this.#hub.topics.get(topic)
    if (log === undefined) return { epoch: '', messages: [], first: 0, last: 0 }
    trim(log, this.#opts.historySize, Date.now() - this.#opts.historyTtl)
    const out: TopicMessage[] = []
    for (let i = log.head; i < log.items.length && out.length < limit; i++) {
      const m = log.items[i]!
      if (m.seq > since) out.push(m)
    }
    const first = log.head < log.items.length ? log.items[log.head]!.seq : 0
    return { epoch: log.epoch, messages: out, first, last: log.last }
  }

  async topics(pattern: string): Promise<string[]> {
    const out: string[] = []
    for (const t of this.#hub.topics.keys()) if (matches(pattern, t)) out.push(t)
    return out
  }

  async signal(target: SignalTarget, s: Signal): Promise<void> {
    const self = this.#self()
    const hub = this.#hub
    const to = new Set<string>()
    if ('node' in target) to.add(target.node)
    else if ('client' in target) {
      const e = hub.registry.get(target.client)
      if (e) to.add(e.node)
    } else if ('user' in target) {
      for (const c of hub.users.get(target.user) ?? []) {
        const e = hub.registry.get(c)
        if (e) to.add(e.node)
      }
    } else {
      for (const [id, n] of hub.nodes) if (n.interest.has(target.topic)) to.add(id)
    }
    to.delete(self)
    for (const id of to) hub.nodes.get(id)?.handler.signal(target, s)
  }

  async presenceAdd(topic: string, entry: PresenceEntry): Promise<void> {
    let m = this.#hub.presence.get(topic)
    if (m === undefined) {
      m = new Map()
      this.#hub.presence.set(topic, m)
    }
    m.set(entry.client, entry)
  }

  async presenceRemove(topic: string, client: string): Promise<void> {
    const m = this.#hub.presence.get(topic)
    if (m?.delete(client) && m.size === 0) this.#hub.presence.delete(topic)
  }

  async presence(topic: string): Promise<PresenceEntry[]> {
    return [...(this.#hub.presence.get(topic)?.values() ?? [])]
  }

  async sessionSave(s: SessionRecord, ttlMs: number): Promise<void> {
    const sessions = this.#hub.sessions
    sessions.delete(s.id)
    sessions.set(s.id, { record: s, expires: Date.now() + ttlMs })
    while (sessions.size > this.#opts.maxSessions) {
      sessions.delete(sessions.keys().next().value as string)
    }
  }

  async sessionLoad(id: string): Promise<SessionRecord | undefined> {
    const e = this.#hub.sessions.get(id)
    if (e === undefined) return undefined
    if (e.expires <= Date.now()) {
      this.#hub.sessions.delete(id)
      return undefined
    }
    return e.record
  }

  async sessionDelete(id: string): Promise<void> {
    this.#hub.sessions.delete(id)
  }

  async registryAdd(e: RegistryEntry): Promise<void> {
    this.#hub.registry.set(e.client, e)
    if (e.user !== undefined) {
      let set = this.#hub.users.get(e.user)
      if (set === undefined) {
        set = new Set()
        this.#hub.users.set(e.user, set)
      }
      set.add(e.client)
    }
  }

  async registryRemove(client: string): Promise<void> {
    const e = this.#hub.registry.get(client)
    if (e === undefined) return
    this.#hub.registry.delete(client)
    if (e.user !== undefined) {
      const set = this.#hub.users.get(e.user)
      if (set?.delete(client) && set.size === 0) this.#hub.users.delete(e.user)
    }
  }

  async locate(target: { client: string } | { user: string }): Promise<number> {
    if ('client' in target) return this.#hub.registry.has(target.client) ? 1 : 0
    return this.#hub.users.get(target.user)?.size ?? 0
  }

  async claim(key: string, ttlMs: number): Promise<string | undefined> {
    const now = Date.now()
    const e = this.#hub.claims.get(key)
    if (e !== undefined && e.expires > now) return e.value
    const claims = this.#hub.claims
    claims.set(key, { value: 'pending', expires: now + ttlMs })
    while (claims.size > this.#opts.maxClaims) claims.delete(claims.keys().next().value as string)
    return undefined
  }

  async release(key: string): Promise<void> {
    if (this.#hub.claims.get(key)?.value === 'pending') this.#hub.claims.delete(key)
  }

  #expire(now: number): void {
    for (const [id, e] of this.#hub.sessions) if (e.expires <= now) this.#hub.sessions.delete(id)
    for (const [k, e] of this.#hub.claims) if (e.expires <= now) this.#hub.claims.delete(k)
    const horizon = now - this.#opts.historyTtl
    for (const log of this.#hub.topics.values()) trim(log, this.#opts.historySize, horizon)
  }
}

/** Drop messages beyond `size` or older than `horizon`; compact the array now and then. */
function trim(log: TopicLog, size: number, horizon: number): void {
  const items = log.items
  while (
    log.head < items.length &&
    (items.length - log.head > size || items[log.head]!.time < horizon)
  )
    log.head++
  if (log.head > 64 && log.head * 2 > items.length) {
    log.items = items.slice(log.head)
    log.head = 0
  }
}
