/**
 * The Redis broker: many nodes behind one Redis (7.0 or later, standalone or a primary with
 * replicas). See `redis-scripts.ts` for the key layout and the scripts.
 *
 * - Fan-out: one sharded channel per topic (SSUBSCRIBE / SPUBLISH), so a node receives only
 *   the topics it has an exact interest in. Patterns use classic PSUBSCRIBE on a second
 *   channel per topic, published to only while some node has a pattern interest; the glob
 *   may match more than the pattern (`a.*` also matches `a.b.c` as a glob), and the node
 *   drops what its patterns do not match. A node gets its own publishes back from Redis
 *   (Redis has no "except me") and drops them: local delivery is the router's, from
 *   `publish()`'s result.
 * - Sequence: one Lua script assigns the seq, appends to the topic's stream with the id
 *   `<ms>-<seq>` and publishes, so concurrent publishers on different nodes get 1, 2, 3, …
 *   in stream order. The epoch lives in the topic's meta hash; a publish that finds it gone
 *   (Redis restarted empty) starts a new epoch.
 * - Liveness: each node refreshes `node:<id>` (PX `nodeTtl`) every `nodeTtl / 3`; presence
 *   and registry entries name their node, reads skip entries of dead nodes, and every node
 *   sweeps what dead nodes owned. A node whose key vanished (an outage longer than the TTL,
 *   Redis restarted) re-registers what it holds locally.
 * - Outages: commands wait at most `commandTimeout` to be sent (node-redis's timeout covers
 *   only the wait to be sent, so a timed-out command was never executed), at most
 *   `maxQueue` commands are in flight, and a reply that takes longer than `replyTimeout` is
 *   given up on. Every refusal is a `BrokerUnavailableError` (the router answers
 *   `UNAVAILABLE`; wirelog/client retries publishes with their id) and is counted.
 *
 * Client library: node-redis (`@redis/client`, its core package without the modules we do
 * not use): typed, promise-based, sharded pub/sub, per-command timeouts that only cover the
 * wait to be sent (so "timed out" means "not executed"), a bounded command queue
 * (`commandsQueueMaxLength`) and resubscription on reconnect. It is imported only when a
 * Redis broker starts, so a server without Redis never loads it.
 */
import { createHash, randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { RedisClientType } from '@redis/client'
import { matches } from '../pubsub/topics.js'
import * as lua from './redis-scripts.js'
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

export interface RedisBrokerOptions extends BrokerLimits {
  /** `redis://[user:pass@]host[:port][/db]`, or `rediss://…` for TLS. */
  url: string
  /** Prefix of every key and channel; deployments sharing a Redis use different ones. Default `wirelog:`. */
  prefix?: string
  /** Milliseconds to establish a connection. Default 5,000. */
  connectTimeout?: number
  /** Longest a command waits to be sent (while reconnecting) before it fails, ms. Default 2,000. */
  commandTimeout?: number
  /** Longest the broker waits for a reply to a sent command, ms. Default 10,000. */
  replyTimeout?: number
  /** Most commands in flight toward Redis; beyond, commands fail at once. Default 10,000. */
  maxQueue?: number
  /** Milliseconds a node's liveness key lives; refreshed every third of it. Default 15,000. */
  nodeTtl?: number
}

/** The broker could not do what was asked (Redis unreachable, queue full, timed out). */
export class BrokerUnavailableError extends Error {
  readonly code = 'BROKER_UNAVAILABLE'
  /** False when the command may have run (its reply was lost). */
  readonly notExecuted: boolean
  constructor(message: string, notExecuted: boolean) {
    super(message)
    this.name = 'BrokerUnavailableError'
    this.notExecuted = notExecuted
  }
}

type Client = RedisClientType

interface Script {
  readonly text: string
  sha: string
}

function script(text: string): Script {
  return { text, sha: '' }
}

const SCRIPTS = {
  publish: script(lua.PUBLISH),
  history: script(lua.HISTORY),
  signal: script(lua.SIGNAL),
  presence: script(lua.PRESENCE),
  presenceAdd: script(lua.PRESENCE_ADD),
  presenceRemove: script(lua.PRESENCE_REMOVE),
  registryAdd: script(lua.REGISTRY_ADD),
  registryRemove: script(lua.REGISTRY_REMOVE),
  locate: script(lua.LOCATE),
  heartbeat: script(lua.HEARTBEAT),
  sweep: script(lua.SWEEP),
  claim: script(lua.CLAIM),
  release: script(lua.RELEASE),
} as const

export class RedisBroker implements Broker {
  readonly kind = 'redis'
  #o: Required<RedisBrokerOptions>
  #p: string
  #node: NodeIdentity | undefined
  #handler: BrokerHandler | undefined
  #cmd: Client | undefined
  #sub: Client | undefined
  #connected = false
  #stopped = false
  /** start() finished: connection changes are reported from now on. */
  #running = false
  /** stop() is dropping this node's entries. */
  #leaving = false
  #heartbeat: NodeJS.Timeout | undefined
  /** Exact topics this node has interest in. */
  #exact = new Set<string>()
  /** Pattern → its glob; glob → patterns using it. */
  #patterns = new Map<string, string>()
  #globs = new Map<string, Set<string>>()
  /** What this node registered, to re-register after Redis lost it. */
  #mine = {
    presence: new Map<string, Map<string, PresenceEntry>>(),
    registry: new Map<string, RegistryEntry>(),
  }
  #inflight = 0
  #stats = { published: 0, received: 0, dropped: 0, reconnects: 0, errors: 0 }
  #everConnected = { cmd: false, sub: false }
  #lastError = ''
  #onMessage = (payload: string): void => this.#receive(payload)
  /** node-redis's error classes (the module is loaded in start()). */
  #errors: { reply: Function; timeout: Function } | undefined

  constructor(options: RedisBrokerOptions) {
    this.#o = {
      prefix: 'wirelog:',
      connectTimeout: 5000,
      commandTimeout: 2000,
      replyTimeout: 10_000,
      maxQueue: 10_000,
      nodeTtl: 15_000,
      ...options,
    }
    this.#p = this.#o.prefix
  }

  get connected(): boolean {
    return this.#connected
  }

  /** Counters for metrics: see `BrokerStats`. */
  stats(): BrokerStats {
    return {
      connected: this.#connected,
      published: this.#stats.published,
      received: this.#stats.received,
      dropped: this.#stats.dropped,
      reconnects: this.#stats.reconnects,
      errors: this.#stats.errors,
      queue: this.#inflight,
    }
  }

  async start(node: NodeIdentity, handler: BrokerHandler): Promise<void> {
    this.#node = node
    this.#handler = handler
    const { createClient, ErrorReply, TimeoutError } = await import('@redis/client')
    this.#errors = { reply: ErrorReply, timeout: TimeoutError }
    const base = {
      url: this.#o.url,
      socket: {
        connectTimeout: this.#o.connectTimeout,
        // Exponential backoff with jitter, at most 2 s between attempts.
        reconnectStrategy: (retries: number) =>
          Math.round(Math.min(2000, 50 * 2 ** retries) * (0.5 + Math.random() / 2)),
      },
      // The bound on what waits toward Redis; the broker's own `maxQueue` check comes first.
      commandsQueueMaxLength: this.#o.maxQueue + 100,
      disableClientInfo: true,
      name: `wirelog-${node.id}`,
    }
    const cmd = createClient(base) as unknown as Client
    const sub = cmd.duplicate({ name: `wirelog-${node.id}-sub` }) as unknown as Client
    this.#cmd = cmd
    this.#sub = sub
    for (const [which, c] of [
      ['cmd', cmd],
      ['sub', sub],
    ] as const) {
      c.on('error', (err: Error) => {
        this.#stats.errors++
        this.#lastError = err.message
        this.#update()
      })
      c.on('end', () => this.#update())
      c.on('reconnecting', () => this.#update())
      c.on('ready', () => {
        if (this.#everConnected[which]) this.#stats.reconnects++
        this.#everConnected[which] = true
        if (which === 'cmd') void this.#beat()
        this.#update()
      })
    }
    try {
      await withTimeout(
        Promise.all([cmd.connect(), sub.connect()]),
        this.#o.connectTimeout,
        () => `cannot connect to Redis within ${this.#o.connectTimeout} ms`,
      )
      await sub.sSubscribe(this.#ch(`n:${node.id}`), this.#onMessage)
      await this.#beat()
    } catch (err) {
      this.#stopped = true
      cmd.destroy()
      sub.destroy()
      const reason = this.#lastError || (err as Error).message
      throw new Error(`redis broker: ${redactUrl(this.#o.url)}: ${reason}`)
    }
    this.#heartbeat = setInterval(() => void this.#beat(), Math.max(100, this.#o.nodeTtl / 3))
    this.#heartbeat.unref()
    this.#connected = true
    this.#running = true
  }

  /** Leave cleanly: drop this node's entries, unsubscribe, close. */
  async stop(): Promise<void> {
    if (this.#stopped || this.#leaving || this.#cmd === undefined) return
    this.#leaving = true
    this.#running = false
    if (this.#heartbeat) clearInterval(this.#heartbeat)
    const cmd = this.#cmd
    const sub = this.#sub!
    if (cmd.isReady) {
      await this.#script(SCRIPTS.sweep, [], [this.#p, this.#self()]).catch(() => {})
      await this.#cmdRaw(['ZREM', `${this.#p}nodes`, this.#self()]).catch(() => {})
      await this.#cmdRaw([
        'ZREM',
        `${this.#p}patterns`,
        ...[...this.#patterns.keys()].map((p) => `${this.#self()} ${p}`),
      ]).catch(() => {})
    }
    this.#stopped = true
    this.#connected = false
    await Promise.allSettled([closeClient(sub), closeClient(cmd)])
  }

  /**
   * Die as a crashed node would: drop the connections, keep every key. Its entries expire
   * with its liveness key (tests, and a deliberate hard stop).
   */
  kill(): void {
    this.#stopped = true
    if (this.#heartbeat) clearInterval(this.#heartbeat)
    this.#connected = false
    this.#cmd?.destroy()
    this.#sub?.destroy()
  }

  #self(): string {
    if (this.#node === undefined) throw new Error('broker not started')
    return this.#node.id
  }

  /** Channel / key name under the prefix. */
  #ch(name: string): string {
    return this.#p + name
  }

  #topicKey(topic: string, suffix: string): string {
    return `${this.#p}{${topic}}${suffix}`
  }

  #update(): void {
    const up = !this.#stopped && this.#cmd?.isReady === true && this.#sub?.isReady === true
    if (up === this.#connected) return
    this.#connected = up
    // The first connection is start()'s business, not a state change.
    if (!this.#running) return
    try {
      this.#handler?.state?.(up, up ? 'reconnected' : this.#lastError || 'connection lost')
    } catch {}
  }

  // —— commands ——

  /** Run a command within the queue bound and the timeouts; refusals are counted. */
  async #cmdRaw<T>(args: string[]): Promise<T> {
    const c = this.#cmd
    if (c === undefined || this.#stopped)
      throw new BrokerUnavailableError('the Redis broker is stopped', true)
    if (this.#inflight >= this.#o.maxQueue) {
      this.#stats.dropped++
      throw new BrokerUnavailableError(
        `Redis queue full (${this.#o.maxQueue} commands waiting)`,
        true,
      )
    }
    this.#inflight++
    const p = c.sendCommand<T>(args, { timeout: this.#o.commandTimeout })
    // The slot is held until node-redis settles the command, so the bound is real memory.
    p.then(
      () => this.#inflight--,
      () => this.#inflight--,
    )
    try {
      return await withTimeout(p, this.#o.replyTimeout, () => 'no reply from Redis in time')
    } catch (err) {
      throw this.#unavailable(err)
    }
  }

  #unavailable(err: unknown): Error {
    if (err instanceof BrokerUnavailableError) return err
    const e = err as Error
    const msg = e?.message ?? String(err)
    // Redis answered with an error: a bug or a misconfiguration, not an outage.
    if (this.#errors && e instanceof this.#errors.reply) return e
    const notSent =
      (this.#errors !== undefined && e instanceof this.#errors.timeout) ||
      /queue is full|offline|client is closed/i.test(msg)
    if (notSent) this.#stats.dropped++
    return new BrokerUnavailableError(
      `Redis unavailable (${notSent ? 'not sent' : 'reply lost'}: ${msg})`,
      notSent,
    )
  }

  async #script<T>(s: Script, keys: string[], args: string[]): Promise<T> {
    if (s.sha === '') s.sha = sha1(s.text)
    try {
      return await this.#cmdRaw<T>(['EVALSHA', s.sha, String(keys.length), ...keys, ...args])
    } catch (err) {
      // A Redis that restarted (or flushed its script cache) no longer knows the script.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return this.#cmdRaw<T>(['EVAL', s.text, String(keys.length), ...keys, ...args])
    }
  }

  async #beat(): Promise<void> {
    if (this.#stopped || this.#leaving || this.#node === undefined) return
    try {
      const existed = await this.#script<number>(
        SCRIPTS.heartbeat,
        [],
        [
          this.#p,
          this.#self(),
          JSON.stringify({ pid: process.pid, host: hostname() }),
          String(this.#o.nodeTtl),
          ...this.#patterns.keys(),
        ],
      )
      if (existed === 0 && (this.#mine.registry.size > 0 || this.#mine.presence.size > 0))
        await this.#reregister()
      await this.#script(SCRIPTS.sweep, [], [this.#p, ''])
    } catch {}
  }

  /** Redis lost this node's entries (restart, long outage): put them back. */
  async #reregister(): Promise<void> {
    const jobs: Promise<unknown>[] = []
    for (const e of this.#mine.registry.values()) jobs.push(this.#registryWrite(e))
    for (const [topic, m] of this.#mine.presence)
      for (const e of m.values()) jobs.push(this.#presenceWrite(topic, e))
    await Promise.allSettled(jobs)
  }

  // —— topics ——

  async publish(
    topic: string,
    from: Publisher,
    data: string,
    claim?: PublishClaim,
  ): Promise<TopicMessage> {
    const node = this.#self()
    const fromJson = JSON.stringify(from)
    const r = await this.#script<[number, string, number]>(
      SCRIPTS.publish,
      [
        this.#topicKey(topic, ':meta'),
        this.#topicKey(topic, ':h'),
        this.#ch('topics'),
        this.#ch('tick'),
        this.#ch('patterns'),
        ...(claim ? [this.#ch(`k:${claim.key}`), this.#ch(`nk:${node}`)] : []),
      ],
      [
        topic,
        node,
        fromJson,
        data,
        randomBytes(4).toString('hex'),
        String(this.#o.historySize),
        String(this.#o.historyTtl),
        String(this.#o.historyTopics),
        this.#p,
        this.#topicKey(topic, ''),
        this.#ch(`t:${topic}`),
        ...(claim ? [String(Math.max(1, claim.ttlMs)), claim.key] : []),
      ],
    )
    this.#stats.published++
    return { topic, seq: Number(r[0]), epoch: String(r[1]), time: Number(r[2]), from, data, node }
  }

  async interest(topicOrPattern: string, on: boolean): Promise<void> {
    const sub = this.#sub
    if (sub === undefined) throw new Error('broker not started')
    const pattern = topicOrPattern.split('.').some((s) => s === '*' || s === '>')
    if (!pattern) {
      const ch = this.#topicKey(topicOrPattern, '')
      if (on) {
        if (this.#exact.has(topicOrPattern)) return
        await sub.sSubscribe(ch, this.#onMessage)
        this.#exact.add(topicOrPattern)
      } else if (this.#exact.delete(topicOrPattern)) await sub.sUnsubscribe(ch, this.#onMessage)
      return
    }
    if (on) {
      if (this.#patterns.has(topicOrPattern)) return
      const glob =
        globEscape(this.#ch('t:')) +
        topicOrPattern
          .split('.')
          .map((s) => (s === '*' || s === '>' ? '*' : s))
          .join('.')
      this.#patterns.set(topicOrPattern, glob)
      let set = this.#globs.get(glob)
      if (set === undefined) {
        set = new Set()
        this.#globs.set(glob, set)
        await sub.pSubscribe(glob, (payload) => this.#receive(payload, glob))
      }
      set.add(topicOrPattern)
      // Publishers start copying to pattern channels from the next message on.
      await this.#beat()
    } else {
      const glob = this.#patterns.get(topicOrPattern)
      if (glob === undefined) return
      this.#patterns.delete(topicOrPattern)
      const set = this.#globs.get(glob)
      set?.delete(topicOrPattern)
      if (set?.size === 0) {
        this.#globs.delete(glob)
        await sub.pUnsubscribe(glob)
      }
      await this.#cmdRaw(['ZREM', this.#ch('patterns'), `${this.#self()} ${topicOrPattern}`])
    }
  }

  /** A payload from a channel (`glob` set when it came through a pattern subscription). */
  #receive(payload: string, glob?: string): void {
    const h = this.#handler
    if (h === undefined || this.#stopped) return
    const f = fields(payload, payload.charCodeAt(0) === 109 /* m */ ? 8 : 6)
    if (f === undefined) return
    if (f[0] === 'm') {
      const node = f[4]!
      if (node === this.#node?.id) return
      const topic = f[5]!
      if (glob !== undefined && !this.#patternDelivers(topic, glob)) return
      this.#stats.received++
      let from: Publisher
      try {
        from = JSON.parse(f[6]!) as Publisher
      } catch {
        return
      }
      h.message({
        topic,
        seq: Number(f[1]),
        epoch: f[2]!,
        time: Number(f[3]),
        from,
        data: f[7]!,
        node,
      })
      return
    }
    if (f[0] !== 's') return
    const node = f[1]!
    if (node === this.#node?.id) return
    const kind = f[2] as Signal['kind']
    const type = f[3]!
    const target = { [type]: f[4]! } as SignalTarget
    let body: Record<string, unknown>
    try {
      body = JSON.parse(f[5]!) as Record<string, unknown>
    } catch {
      return
    }
    h.signal(target, { kind, node, body })
  }

  /**
   * One delivery per message and node: an exact interest gets it on the topic's own channel;
   * of the globs that carry it, only the smallest one whose patterns really match delivers.
   */
  #patternDelivers(topic: string, glob: string): boolean {
    if (this.#exact.has(topic)) return false
    let best: string | undefined
    for (const [p, g] of this.#patterns) {
      if ((best === undefined || g < best) && matches(p, topic)) best = g
    }
    return best === glob
  }

  async history(topic: string, since: number, limit: number): Promise<HistoryResult> {
    const r = await this.#script<[string, number, number, Array<[string, string[]]>]>(
      SCRIPTS.history,
      [this.#topicKey(topic, ':meta'), this.#topicKey(topic, ':h')],
      [
        String(Math.max(0, Math.floor(since))),
        String(Math.max(0, Math.floor(limit))),
        String(this.#o.historySize),
        String(this.#o.historyTtl),
      ],
    )
    const epoch = String(r[0])
    const messages: TopicMessage[] = []
    for (const [id, kv] of r[3]) {
      const dash = id.indexOf('-')
      let from: Publisher = {}
      let node = ''
      let data = 'null'
      for (let i = 0; i + 1 < kv.length; i += 2) {
        const k = kv[i]
        const v = kv[i + 1]!
        if (k === 'f') from = JSON.parse(v) as Publisher
        else if (k === 'n') node = v
        else if (k === 'd') data = v
      }
      messages.push({
        topic,
        seq: Number(id.slice(dash + 1)),
        epoch,
        time: Number(id.slice(0, dash)),
        from,
        data,
        node,
      })
    }
    return { epoch, messages, first: Number(r[1]), last: Number(r[2]) }
  }

  async topics(pattern: string): Promise<string[]> {
    const all = await this.#cmdRaw<string[]>(['ZRANGE', this.#ch('topics'), '0', '-1'])
    return all.filter((t) => matches(pattern, t))
  }

  // —— signals ——

  async signal(target: SignalTarget, s: Signal): Promise<void> {
    const [type, value] = Object.entries(target)[0] as [string, string]
    const payload = `s\n${s.node}\n${s.kind}\n${type}\n${value}\n${JSON.stringify(s.body)}`
    await this.#script(SCRIPTS.signal, [], [this.#p, this.#self(), type, value, payload])
  }

  // —— presence ——

  async presenceAdd(topic: string, entry: PresenceEntry): Promise<void> {
    let m = this.#mine.presence.get(topic)
    if (m === undefined) {
      m = new Map()
      this.#mine.presence.set(topic, m)
    }
    m.set(entry.client, entry)
    await this.#presenceWrite(topic, entry)
  }

  #presenceWrite(topic: string, entry: PresenceEntry): Promise<unknown> {
    return this.#script(
      SCRIPTS.presenceAdd,
      [this.#topicKey(topic, ':pr'), this.#ch(`nk:${entry.node}`)],
      [topic, entry.client, JSON.stringify(entry)],
    )
  }

  async presenceRemove(topic: string, client: string): Promise<void> {
    const m = this.#mine.presence.get(topic)
    if (m?.delete(client) && m.size === 0) this.#mine.presence.delete(topic)
    await this.#script(
      SCRIPTS.presenceRemove,
      [this.#topicKey(topic, ':pr')],
      [this.#p, topic, client],
    )
  }

  async presence(topic: string): Promise<PresenceEntry[]> {
    const list = await this.#script<string[]>(
      SCRIPTS.presence,
      [this.#topicKey(topic, ':pr')],
      [this.#p],
    )
    return list.map((j) => JSON.parse(j) as PresenceEntry)
  }

  // —— sessions ——

  async sessionSave(s: SessionRecord, ttlMs: number): Promise<void> {
    await this.#cmdRaw([
      'SET',
      this.#ch(`s:${s.id}`),
      JSON.stringify(s),
      'PX',
      String(Math.max(1, ttlMs)),
    ])
  }

  async sessionLoad(id: string): Promise<SessionRecord | undefined> {
    const v = await this.#cmdRaw<string | null>(['GET', this.#ch(`s:${id}`)])
    return v === null ? undefined : (JSON.parse(v) as SessionRecord)
  }

  async sessionDelete(id: string): Promise<void> {
    await this.#cmdRaw(['DEL', this.#ch(`s:${id}`)])
  }

  // —— registry ——

  async registryAdd(e: RegistryEntry): Promise<void> {
    this.#mine.registry.set(e.client, e)
    await this.#registryWrite(e)
  }

  #registryWrite(e: RegistryEntry): Promise<unknown> {
    return this.#script(
      SCRIPTS.registryAdd,
      [this.#ch(`c:${e.client}`), this.#ch(`nk:${e.node}`)],
      [this.#p, e.client, e.node, e.user ?? ''],
    )
  }

  async registryRemove(client: string): Promise<void> {
    this.#mine.registry.delete(client)
    await this.#script(SCRIPTS.registryRemove, [this.#ch(`c:${client}`)], [this.#p, client])
  }

  async locate(target: { client: string } | { user: string }): Promise<number> {
    const [type, id] = 'client' in target ? ['client', target.client] : ['user', target.user]
    return Number(await this.#script<number>(SCRIPTS.locate, [], [this.#p, type, id]))
  }

  // —— idempotency ——

  async claim(key: string, ttlMs: number): Promise<string | undefined> {
    const prev = await this.#script<string | null>(
      SCRIPTS.claim,
      [this.#ch(`k:${key}`), this.#ch(`nk:${this.#self()}`)],
      [String(Math.max(1, ttlMs)), key],
    )
    return prev ?? undefined
  }

  async release(key: string): Promise<void> {
    await this.#script(
      SCRIPTS.release,
      [this.#ch(`k:${key}`), this.#ch(`nk:${this.#self()}`)],
      [key],
    )
  }
}

/** Split `s` into at most `n` newline-separated fields (the last takes the rest). */
function fields(s: string, n: number): string[] | undefined {
  const out: string[] = []
  let at = 0
  for (let i = 0; i < n - 1; i++) {
    const nl = s.indexOf('\n', at)
    if (nl < 0) return undefined
    out.push(s.slice(at, nl))
    at = nl + 1
  }
  out.push(s.slice(at))
  return out
}

function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&')
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex')
}

async function closeClient(c: Client): Promise<void> {
  try {
    if (c.isOpen) await withTimeout(c.close(), 2000, () => 'close timed out')
  } catch {
    c.destroy()
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BrokerUnavailableError(what(), false)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** The URL without its password (for messages and logs). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '(invalid URL)'
  }
}
