/**
 * The scale-out seam. A broker is the only thing that knows where other nodes are: it moves
 * topic messages between nodes (with a per-topic sequence and bounded history), ephemeral
 * signals (direct messages, presence joins and leaves), and keeps sessions, presence and the
 * client registry. Every method is async and every value serialisable, so the same contract
 * holds for the in-process `memory` broker and for a networked one (Redis).
 *
 * Local delivery is not the broker's job: the node that publishes delivers to its own
 * subscribers from `publish()`'s result; the broker hands a node only what other nodes
 * produced (`BrokerHandler`).
 */

/** A node: one wirelog process. */
export interface NodeIdentity {
  /** Unique per process lifetime. */
  readonly id: string
}

/** Who published, as subscribers see it. */
export interface Publisher {
  readonly client?: string
  readonly user?: string
}

/** A message as stored in a topic's history and delivered to subscribers. */
export interface TopicMessage {
  readonly topic: string
  /** 1, 2, 3, … per topic, without gaps, across every node. */
  readonly seq: number
  /** Changes when the topic's sequence starts over (history lost): positions from another epoch are void. */
  readonly epoch: string
  /** Epoch milliseconds when the broker accepted it. */
  readonly time: number
  readonly from: Publisher
  /** The message content as JSON text. */
  readonly data: string
  /** The node that published it. */
  readonly node: string
}

export interface HistoryResult {
  readonly epoch: string
  /** Messages with seq > since, oldest first, at most `limit`. */
  readonly messages: readonly TopicMessage[]
  /** Lowest seq still retained (0 when the history is empty). */
  readonly first: number
  /** Highest seq ever assigned in this epoch (0 when none). */
  readonly last: number
}

/** Where an ephemeral signal goes. */
export type SignalTarget =
  | { readonly client: string }
  | { readonly user: string }
  | { readonly topic: string }
  | { readonly node: string }

/** An ephemeral message between nodes: not stored, delivered at most once. */
export interface Signal {
  readonly kind: 'direct' | 'join' | 'leave' | 'kick'
  readonly node: string
  readonly body: Readonly<Record<string, unknown>>
}

export interface PresenceEntry {
  readonly client: string
  readonly user?: string
  readonly node: string
  /** Epoch ms when the client subscribed. */
  readonly since: number
}

export interface SessionRecord {
  readonly id: string
  /** sha256 (hex) of the resume secret. */
  readonly secretHash: string
  readonly user?: string
  readonly subscriptions: ReadonlyArray<{
    readonly topic: string
    readonly pattern: boolean
    readonly presence: boolean
    /** Epoch ms of the subscription (patterns replay unseen topics from here). */
    readonly since: number
  }>
  /** The client currently attached, and its node (undefined while detached). */
  readonly attached?: { readonly client: string; readonly node: string }
  readonly createdAt: number
  /** Epoch ms of the last detach (undefined while attached). */
  readonly detachedAt?: number
}

export interface RegistryEntry {
  readonly client: string
  readonly user?: string
  readonly node: string
}

export interface BrokerHandler {
  /** A topic message another node published, for a topic this node has interest in. */
  message(m: TopicMessage): void
  /** A signal for a target on this node. */
  signal(target: SignalTarget, s: Signal): void
  /** The broker lost or regained its connection (degraded: local delivery only). */
  state?(connected: boolean, reason: string): void
}

export interface BrokerLimits {
  /** Messages kept per topic. */
  readonly historySize: number
  /** Milliseconds a message is kept. */
  readonly historyTtl: number
  /** Topics whose history is kept (the least recently published beyond it are forgotten). */
  readonly historyTopics: number
}

/** Counters of a broker, for metrics and readiness. */
export interface BrokerStats {
  /** Whether the backend is reachable now. */
  readonly connected: boolean
  /** Messages this node published through the broker. */
  readonly published: number
  /** Messages of other nodes handed to this node. */
  readonly received: number
  /** Commands refused without being executed (backend down, queue full, timed out waiting to be sent). */
  readonly dropped: number
  /** Connections re-established after a loss. */
  readonly reconnects: number
  /** Connection errors seen. */
  readonly errors: number
  /** Commands in flight toward the backend now. */
  readonly queue: number
}

export interface Broker {
  /** `memory`, `redis`, … */
  readonly kind: string
  /** Whether the broker can reach its backend (always true in memory). */
  readonly connected: boolean
  /** Counters for metrics (optional: a broker without them reports nothing). */
  stats?(): BrokerStats
  start(node: NodeIdentity, handler: BrokerHandler): Promise<void>
  stop(): Promise<void>

  /**
   * Assign the next seq, store in history, fan out to every other node with interest. With
   * `claim`, the claim is settled with the seq in the same step: a retry after a lost reply
   * finds the seq, and never publishes the message a second time.
   */
  publish(topic: string, from: Publisher, data: string, claim?: PublishClaim): Promise<TopicMessage>
  /** Whether this node wants other nodes' messages for `topicOrPattern`. */
  interest(topicOrPattern: string, on: boolean): Promise<void>
  /** History of `topic` after `since`. */
  history(topic: string, since: number, limit: number): Promise<HistoryResult>
  /** Topics with history that match `pattern`. */
  topics(pattern: string): Promise<string[]>

  /** Send an ephemeral signal to whichever node holds the target. */
  signal(target: SignalTarget, s: Signal): Promise<void>

  presenceAdd(topic: string, entry: PresenceEntry): Promise<void>
  presenceRemove(topic: string, client: string): Promise<void>
  presence(topic: string): Promise<PresenceEntry[]>

  sessionSave(s: SessionRecord, ttlMs: number): Promise<void>
  sessionLoad(id: string): Promise<SessionRecord | undefined>
  sessionDelete(id: string): Promise<void>

  /** Clients connected anywhere (for direct messages to unknown targets). */
  registryAdd(e: RegistryEntry): Promise<void>
  registryRemove(client: string): Promise<void>
  /** How many connected clients `target` names (a client id: 0 or 1; a user: any). */
  locate(target: { client: string } | { user: string }): Promise<number>

  /**
   * Idempotency: the first `claim(key)` gets `undefined`; later claims within `ttlMs` get
   * the seq a `publish()` with that claim stored (or `'pending'` before that).
   */
  claim(key: string, ttlMs: number): Promise<string | undefined>
  /** Drop a claim that is still pending (its publish did not run): the next claim wins it. */
  release(key: string): Promise<void>
}

/** The idempotency claim a publish settles. */
export interface PublishClaim {
  readonly key: string
  readonly ttlMs: number
}
