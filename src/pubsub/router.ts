/**
 * The pubsub router: the `wirelog.v1` behaviour. Topics with history and per-topic sequence
 * numbers, patterns, direct messages, presence, sessions that survive a reconnect, and an
 * event (and so a log line) for every decision.
 *
 * Delivery guarantees, per topic and client:
 * - In order and at most once: this node delivers a topic's messages strictly in sequence
 *   (a sequencer holds back a message that arrives before its predecessor, and fills holes
 *   from history), and a client catching up from history never gets a message twice.
 * - Resume is exactly once or explicit: a client that resumes with its last seen sequence
 *   per topic gets every message after it from history before any new one; what history no
 *   longer holds is announced with a `gap` frame naming the missing range.
 *
 * Fan-out frames each message once and writes the same bytes to every recipient's socket,
 * corked until the end of the tick; a publish is one event (one log line), not one per
 * recipient.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { sha256 } from '../auth/index.js'
import type { Authorizer, Op } from '../auth/permissions.js'
import type { Behaviour } from '../behaviour.js'
import type {
  Broker,
  HistoryResult,
  PresenceEntry,
  Signal,
  SignalTarget,
  TopicMessage,
} from '../broker/types.js'
import { CloseCode } from '../close-codes.js'
import type { Client, ClientUser, Connection } from '../connection.js'
import { type EventBus, emit } from '../events.js'
import type { WirelogServer } from '../server.js'
import {
  type ClientFrame,
  type ErrorCodeName,
  errorFrame,
  frameText,
  loadSchema,
  messageFrame,
  PROTOCOL_VERSION,
  parseFrame,
  schemaLoaded,
} from './protocol.js'
import { checkTopic, SubscriptionIndex } from './topics.js'
import { wsTextFrame } from './wire.js'

export interface PubSubOptions {
  /** Subscriptions one client may hold. */
  maxSubscriptions: number
  /** Largest `data` of a publish or send, in bytes of JSON. */
  maxDataBytes: number
  /** How long a detached session can be resumed, in ms. */
  sessionTtl: number
  /** Most messages replayed per topic on a resume or `since`. */
  replayLimit: number
  /** How long a publish `id` is remembered for idempotent retries, in ms. */
  dedupeTtl: number
  /** How long the sequencer waits for a missing message before asking history, in ms. */
  reorderWait: number
}

export interface PubSubDeps {
  broker: Broker
  authorizer: Authorizer
  /** Verify a refresh token (undefined when authentication is off). */
  verify: ((token: string) => Promise<ClientUser>) | undefined
  /** Tell the server a client's credential changed (resets its expiry). */
  refreshed: (client: Client, user: ClientUser) => void
  /** This node's id. */
  node: string
}

interface Sub {
  readonly topic: string
  readonly pattern: boolean
  readonly presence: boolean
  readonly since: number
}

/** A client catching up on one topic from history: live messages wait here. */
interface CatchUp {
  queue: TopicMessage[] | undefined
  /** Highest seq sent to the client on this topic (live messages at or below it are dropped). */
  lastSent: number
  epoch: string
}

interface State {
  readonly conn: Connection
  sessionId: string
  secret: string
  readonly createdAt: number
  readonly subs: Map<string, Sub>
  /** Ops handled so far (resume must come first). */
  ops: number
  /** Serialises this client's ops. */
  chain: Promise<void>
  pending: number
  /** Delivery dedupe mark: the last fan-out that reached this client. */
  mark: number
  catchUp: Map<string, CatchUp> | undefined
  closed: boolean
}

interface TopicSeq {
  epoch: string
  last: number
  pending: Map<number, TopicMessage> | undefined
  timer: NodeJS.Timeout | undefined
  /** History reads that failed in a row while filling a hole. */
  failures?: number
}

/** Attempts to read a hole from history while the broker cannot answer (about 20 s in all). */
const HISTORY_RETRIES = 12
/** Ops a client may have queued before it is told to slow down. */
const MAX_PENDING_OPS = 256
/** Topics whose sequence this node tracks without an exact local subscriber (pattern matches). */
const MAX_TRACKED_TOPICS = 10_000

export class PubSub implements Behaviour {
  readonly name = 'pubsub'
  #o: PubSubOptions
  #d: PubSubDeps
  #events: EventBus | undefined
  #index = new SubscriptionIndex<State>()
  /** Subscriptions per key on this node: broker interest is taken once per key. */
  #interest = new Map<string, number>()
  /** Per exact topic: local subscriptions that asked for presence (join/leave is sent only to them). */
  readonly #watchers = new Map<string, number>()
  #states = new Map<Connection, State>()
  #byClient = new Map<string, State>()
  #byUser = new Map<string, Set<State>>()
  #seq = new Map<string, TopicSeq>()
  #mark = 0
  #sessionTimer: NodeJS.Timeout | undefined
  #started = false
  /** When the broker went down (undefined while it is up). */
  #downSince: number | undefined
  /** The broker's refusal count at the last recovery (each `broker.up` reports the difference). */
  #droppedAtUp = 0

  constructor(options: PubSubOptions, deps: PubSubDeps) {
    this.#o = options
    this.#d = deps
  }

  get broker(): Broker {
    return this.#d.broker
  }

  async attach(server: WirelogServer): Promise<void> {
    if (this.#started) return
    this.#started = true
    this.#events = server.events
    await this.#d.broker.start(
      { id: this.#d.node },
      {
        message: (m) => this.#ingest(m),
        signal: (target, s) => this.#onSignal(target, s),
        state: (connected, reason) => this.#brokerState(connected, reason),
      },
    )
    // Keep attached sessions alive in the broker (a node that dies lets them expire).
    const every = Math.max(1000, Math.floor(this.#o.sessionTtl / 3))
    this.#sessionTimer = setInterval(() => {
      for (const st of this.#states.values()) void this.#saveSession(st).catch(() => {})
    }, every)
    this.#sessionTimer.unref()
  }

  async detach(): Promise<void> {
    if (this.#sessionTimer) clearInterval(this.#sessionTimer)
    for (const t of this.#seq.values()) if (t.timer) clearTimeout(t.timer)
    if (this.#started) await this.#d.broker.stop()
    this.#started = false
  }

  /**
   * The broker lost or regained its backend. Down: logged; publishes fail with
   * `UNAVAILABLE` meanwhile (clients retry them with their id). Up: logged with what was
   * refused, sessions are saved again (the backend may have restarted empty), and every
   * topic this node delivers is caught up from history, so what other nodes published
   * while this node could not hear them still arrives, in order.
   */
  #brokerState(connected: boolean, reason: string): void {
    const b = this.#d.broker
    if (!connected) {
      this.#downSince ??= Date.now()
      if (this.#events) emit(this.#events, 'broker.down', { broker: b.kind, reason })
      return
    }
    const since = this.#downSince
    this.#downSince = undefined
    if (since === undefined) return
    const stats = b.stats?.()
    if (this.#events)
      emit(this.#events, 'broker.up', {
        broker: b.kind,
        downMs: Date.now() - since,
        dropped: (stats?.dropped ?? 0) - this.#droppedAtUp,
        reconnects: stats?.reconnects ?? 0,
      })
    this.#droppedAtUp = stats?.dropped ?? 0
    for (const st of this.#states.values()) void this.#saveSession(st).catch(() => {})
    for (const topic of [...this.#seq.keys()]) void this.#recover(topic)
  }

  /** Deliver what history has beyond this node's position on `topic`. */
  async #recover(topic: string): Promise<void> {
    const t = this.#seq.get(topic)
    if (t === undefined) return
    try {
      let h = await this.#d.broker.history(topic, t.last, this.#o.replayLimit)
      if (this.#seq.get(topic) !== t) return
      // The topic started over while this node was away (the backend restarted empty):
      // deliver the new epoch from its start (the first message announces the epoch).
      if (h.epoch !== t.epoch && h.epoch !== '')
        h = await this.#d.broker.history(topic, 0, this.#o.replayLimit)
      for (const m of h.messages) this.#ingest(m)
    } catch {}
  }

  // —— connection lifecycle ——

  open(client: Client): void {
    const conn = client as Connection
    const st: State = {
      conn,
      sessionId: randomId(),
      secret: randomId(),
      createdAt: Date.now(),
      subs: new Map(),
      ops: 0,
      chain: Promise.resolve(),
      pending: 0,
      mark: 0,
      catchUp: undefined,
      closed: false,
    }
    this.#states.set(conn, st)
    this.#byClient.set(conn.id, st)
    if (conn.user) addTo(this.#byUser, conn.user.id, st)
    void this.#d.broker
      .registryAdd({
        client: conn.id,
        node: this.#d.node,
        ...(conn.user ? { user: conn.user.id } : {}),
      })
      .catch(() => {})
    this.#send(
      st,
      frameText('welcome', {
        v: PROTOCOL_VERSION,
        client: conn.id,
        session: st.sessionId,
        resume: `${st.sessionId}.${st.secret}`,
        ...(conn.user ? { user: conn.user.id } : {}),
        limits: {
          maxSubscriptions: this.#o.maxSubscriptions,
          maxDataBytes: this.#o.maxDataBytes,
          sessionTtl: Math.round(this.#o.sessionTtl / 1000),
        },
      }),
    )
  }

  message(client: Client, data: Buffer, binary: boolean): void {
    const st = this.#states.get(client as Connection)
    if (st === undefined) return
    if (binary) {
      this.#fail(
        st,
        undefined,
        undefined,
        'BINARY_NOT_SUPPORTED',
        'wirelog.v1 frames are JSON text',
      )
      return
    }
    if (!schemaLoaded()) {
      // Only the first frames after start-up: they wait, in order, for the frame schema.
      st.pending++
      st.chain = st.chain.then(loadSchema).then(
        () => {
          st.pending--
          if (!st.closed) this.message(client, data, binary)
        },
        (err: unknown) => {
          st.pending--
          this.#fail(st, undefined, undefined, 'INTERNAL', 'internal error')
          if (this.#events) emit(this.#events, 'handler.failed', { event: 'pubsub', error: err })
        },
      )
      return
    }
    const parsed = parseFrame(data.toString('utf8'))
    if (!parsed.ok) {
      const fail = (): void => this.#fail(st, undefined, parsed.id, parsed.code, parsed.message)
      // Answered in order: after the ops still in flight, if any.
      if (st.pending === 0) fail()
      else st.chain = st.chain.then(fail)
      return
    }
    if (st.pending >= MAX_PENDING_OPS) {
      this.#fail(
        st,
        parsed.frame.op,
        parsed.frame.id,
        'UNAVAILABLE',
        'too many ops in flight; slow down',
      )
      return
    }
    st.pending++
    const frame = parsed.frame
    st.chain = st.chain
      .then(() => (st.closed ? undefined : this.#op(st, frame)))
      .catch((err: unknown) => {
        this.#fail(st, frame.op, frame.id, 'INTERNAL', 'internal error')
        if (this.#events)
          emit(this.#events, 'handler.failed', { event: `pubsub:${frame.op}`, error: err })
      })
      .finally(() => {
        st.pending--
      })
  }

  close(client: Client): void {
    const conn = client as Connection
    const st = this.#states.get(conn)
    if (st === undefined) return
    st.closed = true
    this.#states.delete(conn)
    if (this.#byClient.get(conn.id) === st) this.#byClient.delete(conn.id)
    if (conn.user) removeFrom(this.#byUser, conn.user.id, st)
    for (const sub of st.subs.values()) this.#dropSub(st, sub)
    const b = this.#d.broker
    void b.registryRemove(conn.id).catch(() => {})
    void this.#saveSession(st, true).catch(() => {})
  }

  // —— ops ——

  async #op(st: State, f: ClientFrame): Promise<void> {
    st.ops++
    switch (f.op) {
      case 'ping':
        this.#send(st, frameText('pong', idOf(f.id)))
        return
      case 'subscribe':
        return this.#subscribe(st, f)
      case 'unsubscribe':
        return this.#unsubscribe(st, f)
      case 'publish':
        return this.#publishOp(st, f)
      case 'send':
        return this.#sendOp(st, f)
      case 'presence':
        return this.#presenceOp(st, f)
      case 'history':
        return this.#historyOp(st, f)
      case 'refresh':
        return this.#refresh(st, f)
      case 'resume':
        return this.#resume(st, f)
    }
  }

  async #allowed(
    st: State,
    op: Op,
    topic: string,
    fid: string | number | undefined,
  ): Promise<boolean> {
    if (await this.#d.authorizer.allowed(st.conn, op, topic)) return true
    this.#send(
      st,
      errorFrame('FORBIDDEN', `not allowed to ${op} ${topic}`, fid, { request: op, topic }),
    )
    if (this.#events) emit(this.#events, 'access.denied', { client: st.conn, op, topic })
    return false
  }

  #topicOk(
    st: State,
    op: string,
    topic: string,
    pattern: boolean,
    fid: string | number | undefined,
  ): boolean {
    const c = checkTopic(topic, pattern)
    if (c.ok) return true
    this.#fail(st, op, fid, 'BAD_TOPIC', `${JSON.stringify(topic).slice(0, 80)}: ${c.reason}`)
    return false
  }

  async #subscribe(st: State, f: Extract<ClientFrame, { op: 'subscribe' }>): Promise<void> {
    if (!this.#topicOk(st, f.op, f.topic, true, f.id)) return
    if (st.subs.has(f.topic)) {
      this.#send(
        st,
        frameText('ack', { ...idOf(f.id), request: 'subscribe', topic: f.topic, already: true }),
      )
      return
    }
    if (st.subs.size >= this.#o.maxSubscriptions) {
      this.#fail(
        st,
        f.op,
        f.id,
        'TOO_MANY_SUBSCRIPTIONS',
        `at most ${this.#o.maxSubscriptions} subscriptions`,
      )
      return
    }
    if (!(await this.#allowed(st, 'subscribe', f.topic, f.id))) return
    const pattern =
      checkTopic(f.topic, true).ok && f.topic.split('.').some((s) => s === '*' || s === '>')
    const presence =
      f.presence === true &&
      !pattern &&
      (await this.#d.authorizer.allowed(st.conn, 'presence', f.topic))
    const sub: Sub = { topic: f.topic, pattern, presence, since: Date.now() }
    let replay: { replayed: number; gaps: Gap[] } = { replayed: 0, gaps: [] }
    if (f.since !== undefined && !pattern) {
      replay = await this.#catchUp(
        st,
        [{ topic: f.topic, from: { seq: f.since.seq, epoch: f.since.epoch } }],
        () => this.#addSub(st, sub),
      )
    } else this.#addSub(st, sub)
    await this.#saveSession(st).catch(() => {})
    const seq = this.#seq.get(f.topic)
    this.#send(
      st,
      frameText('ack', {
        ...idOf(f.id),
        request: 'subscribe',
        topic: f.topic,
        ...(seq ? { seq: seq.last, epoch: seq.epoch } : {}),
        ...(f.since !== undefined ? { replayed: replay.replayed, gaps: replay.gaps } : {}),
      }),
    )
    if (this.#events)
      emit(this.#events, 'topic.subscribed', {
        client: st.conn,
        topic: f.topic,
        pattern,
        replayed: replay.replayed,
      })
  }

  #addSub(st: State, sub: Sub): void {
    st.subs.set(sub.topic, sub)
    this.#index.add(sub.topic, sub.pattern, st)
    const n = (this.#interest.get(sub.topic) ?? 0) + 1
    this.#interest.set(sub.topic, n)
    if (n === 1) void this.#d.broker.interest(sub.topic, true).catch(() => {})
    if (!sub.pattern) {
      if (sub.presence) this.#watchers.set(sub.topic, (this.#watchers.get(sub.topic) ?? 0) + 1)
      const entry: PresenceEntry = {
        client: st.conn.id,
        node: this.#d.node,
        since: sub.since,
        ...(st.conn.user ? { user: st.conn.user.id } : {}),
      }
      void this.#d.broker.presenceAdd(sub.topic, entry).catch(() => {})
      this.#presenceSignal(sub.topic, 'join', st)
    }
  }

  #dropSub(st: State, sub: Sub): void {
    this.#index.remove(sub.topic, sub.pattern, st)
    st.catchUp?.delete(sub.topic)
    const n = (this.#interest.get(sub.topic) ?? 1) - 1
    if (n <= 0) {
      this.#interest.delete(sub.topic)
      void this.#d.broker.interest(sub.topic, false).catch(() => {})
      if (!sub.pattern) this.#forgetSeq(sub.topic)
    } else this.#interest.set(sub.topic, n)
    if (!sub.pattern) {
      if (sub.presence) {
        const w = (this.#watchers.get(sub.topic) ?? 1) - 1
        if (w <= 0) this.#watchers.delete(sub.topic)
        else this.#watchers.set(sub.topic, w)
      }
      void this.#d.broker.presenceRemove(sub.topic, st.conn.id).catch(() => {})
      this.#presenceSignal(sub.topic, 'leave', st)
    }
  }

  async #unsubscribe(st: State, f: Extract<ClientFrame, { op: 'unsubscribe' }>): Promise<void> {
    const sub = st.subs.get(f.topic)
    if (sub === undefined) {
      this.#fail(
        st,
        f.op,
        f.id,
        'NOT_SUBSCRIBED',
        `not subscribed to ${JSON.stringify(f.topic).slice(0, 80)}`,
      )
      return
    }
    st.subs.delete(f.topic)
    this.#dropSub(st, sub)
    await this.#saveSession(st).catch(() => {})
    this.#send(st, frameText('ack', { ...idOf(f.id), request: 'unsubscribe', topic: f.topic }))
    if (this.#events) emit(this.#events, 'topic.unsubscribed', { client: st.conn, topic: f.topic })
  }

  #dataJson(
    st: State,
    op: string,
    data: unknown,
    fid: string | number | undefined,
  ): string | undefined {
    const json = data === undefined ? 'null' : JSON.stringify(data)
    if (Buffer.byteLength(json) > this.#o.maxDataBytes) {
      this.#fail(st, op, fid, 'TOO_BIG', `data is larger than ${this.#o.maxDataBytes} bytes`)
      return undefined
    }
    return json
  }

  async #publishOp(st: State, f: Extract<ClientFrame, { op: 'publish' }>): Promise<void> {
    if (!this.#topicOk(st, f.op, f.topic, false, f.id)) return
    const data = this.#dataJson(st, f.op, f.data, f.id)
    if (data === undefined) return
    if (!(await this.#allowed(st, 'publish', f.topic, f.id))) return
    const key = f.id !== undefined ? `pub:${st.sessionId}:${String(f.id)}` : undefined
    if (key !== undefined) {
      let prev: string | undefined
      try {
        prev = await this.#d.broker.claim(key, this.#o.dedupeTtl)
      } catch (err) {
        this.#fail(st, f.op, f.id, 'UNAVAILABLE', `publish failed: ${(err as Error).message}`)
        return
      }
      if (prev === 'pending') {
        // An earlier attempt with this id is still running (or died with its node): the
        // client retries, and gets that attempt's seq once it settles.
        this.#fail(st, f.op, f.id, 'UNAVAILABLE', 'a publish with this id is still in progress')
        return
      }
      if (prev !== undefined) {
        const seq = Number(prev)
        this.#send(
          st,
          frameText('ack', {
            id: f.id,
            request: 'publish',
            topic: f.topic,
            duplicate: true,
            ...(seq ? { seq } : {}),
          }),
        )
        return
      }
    }
    const from = { client: st.conn.id, ...(st.conn.user ? { user: st.conn.user.id } : {}) }
    let m: TopicMessage
    try {
      // The broker settles the claim with the seq in the same step as the publish.
      m = await this.#d.broker.publish(
        f.topic,
        from,
        data,
        key !== undefined ? { key, ttlMs: this.#o.dedupeTtl } : undefined,
      )
    } catch (err) {
      // Let the retry publish: the claim goes if it is still pending. If the publish ran and
      // only its reply was lost, the claim holds its seq and the retry is answered with it.
      if (key !== undefined) void this.#d.broker.release(key).catch(() => {})
      this.#fail(st, f.op, f.id, 'UNAVAILABLE', `publish failed: ${(err as Error).message}`)
      return
    }
    const recipients = this.#ingest(m)
    if (this.#events)
      emit(this.#events, 'topic.published', {
        client: st.conn,
        topic: f.topic,
        seq: m.seq,
        recipients,
        bytes: data.length,
        data,
      })
    if (key !== undefined) {
      this.#send(
        st,
        frameText('ack', {
          id: f.id,
          request: 'publish',
          topic: f.topic,
          seq: m.seq,
          epoch: m.epoch,
        }),
      )
    }
  }

  async #sendOp(st: State, f: Extract<ClientFrame, { op: 'send' }>): Promise<void> {
    const data = this.#dataJson(st, f.op, f.data, f.id)
    if (data === undefined) return
    const targetName = 'client' in f.to ? `client:${f.to.client}` : `user:${f.to.user}`
    if (!(await this.#allowed(st, 'send', targetName, f.id))) return
    const from = { client: st.conn.id, ...(st.conn.user ? { user: st.conn.user.id } : {}) }
    const n = await this.#direct(f.to, from, data)
    if (n === 0) {
      this.#fail(
        st,
        f.op,
        f.id,
        'UNKNOWN_TARGET',
        `${targetName.replace(/[^\x20-\x7e]/g, '?').slice(0, 160)} is not connected`,
      )
      return
    }
    if (f.id !== undefined) this.#send(st, frameText('ack', { id: f.id, request: 'send' }))
    if (this.#events)
      emit(this.#events, 'message.direct', {
        client: st.conn,
        to: targetName,
        recipients: n,
        bytes: data.length,
      })
  }

  async #presenceOp(st: State, f: Extract<ClientFrame, { op: 'presence' }>): Promise<void> {
    if (!this.#topicOk(st, f.op, f.topic, false, f.id)) return
    if (!(await this.#allowed(st, 'presence', f.topic, f.id))) return
    const entries = await this.#d.broker.presence(f.topic)
    this.#send(
      st,
      frameText('presence', {
        ...idOf(f.id),
        topic: f.topic,
        clients: entries.map((e) => ({
          client: e.client,
          ...(e.user !== undefined ? { user: e.user } : {}),
        })),
      }),
    )
  }

  async #historyOp(st: State, f: Extract<ClientFrame, { op: 'history' }>): Promise<void> {
    if (!this.#topicOk(st, f.op, f.topic, false, f.id)) return
    if (!(await this.#allowed(st, 'history', f.topic, f.id))) return
    const h = await this.#d.broker.history(f.topic, f.since ?? 0, f.limit ?? this.#o.replayLimit)
    this.#send(
      st,
      `{"op":"history"${f.id !== undefined ? `,"id":${JSON.stringify(f.id)}` : ''},"topic":${JSON.stringify(f.topic)},"epoch":${JSON.stringify(h.epoch)},"first":${h.first},"last":${h.last},"messages":[${h.messages.map(messageFrame).join(',')}]}`,
    )
  }

  async #refresh(st: State, f: Extract<ClientFrame, { op: 'refresh' }>): Promise<void> {
    const verify = this.#d.verify
    if (verify === undefined) {
      this.#fail(st, f.op, f.id, 'AUTH_DISABLED', 'authentication is not enabled')
      return
    }
    let user: ClientUser
    try {
      user = await verify(f.token)
    } catch (err) {
      this.#fail(st, f.op, f.id, 'TOKEN_INVALID', `refresh refused: ${(err as Error).message}`)
      return
    }
    if (st.conn.user !== undefined && user.id !== st.conn.user.id) {
      this.#fail(st, f.op, f.id, 'TOKEN_INVALID', 'refresh refused: the token is for another user')
      return
    }
    this.#d.refreshed(st.conn, user)
    this.#send(
      st,
      frameText('ack', {
        ...idOf(f.id),
        request: 'refresh',
        ...(user.expiresAt ? { expiresAt: user.expiresAt } : {}),
      }),
    )
  }

  async #resume(st: State, f: Extract<ClientFrame, { op: 'resume' }>): Promise<void> {
    if (st.ops !== 1 || st.subs.size > 0) {
      this.#fail(st, f.op, f.id, 'SESSION_INVALID', 'resume must be the first op of a connection')
      return
    }
    const dot = f.token.indexOf('.')
    const id = dot > 0 ? f.token.slice(0, dot) : ''
    const secret = dot > 0 ? f.token.slice(dot + 1) : ''
    if (!/^[A-Za-z0-9_-]{8,64}$/.test(id) || secret.length === 0) {
      this.#fail(st, f.op, f.id, 'SESSION_INVALID', 'malformed resume token')
      return
    }
    const rec = await this.#d.broker.sessionLoad(id)
    if (rec === undefined) {
      this.#fail(
        st,
        f.op,
        f.id,
        'SESSION_EXPIRED',
        'the session expired or does not exist; subscribe afresh',
      )
      if (this.#events) emit(this.#events, 'session.expired', { client: st.conn, session: id })
      return
    }
    if (!sameHash(sha256(secret), rec.secretHash) || (rec.user ?? undefined) !== st.conn.user?.id) {
      this.#fail(st, f.op, f.id, 'SESSION_INVALID', 'the resume token is not valid for this client')
      return
    }
    // Whoever still holds the session (a half-open connection) lets go of it.
    if (rec.attached !== undefined && rec.attached.client !== st.conn.id) {
      const local = this.#byClient.get(rec.attached.client)
      if (local !== undefined)
        local.conn.close(CloseCode.SESSION_TAKEN_OVER, 'session resumed elsewhere', true)
      else
        void this.#d.broker
          .signal(
            { client: rec.attached.client },
            { kind: 'kick', node: this.#d.node, body: { session: id } },
          )
          .catch(() => {})
    }
    st.sessionId = rec.id
    st.secret = randomId()
    const positions = f.positions ?? {}
    const items: Array<{
      topic: string
      from: { seq: number; epoch?: string | undefined } | { time: number }
    }> = []
    const subs: Sub[] = []
    const denied: string[] = []
    for (const s of rec.subscriptions) {
      if (!(await this.#d.authorizer.allowed(st.conn, 'subscribe', s.topic))) {
        denied.push(s.topic)
        if (this.#events)
          emit(this.#events, 'access.denied', { client: st.conn, op: 'subscribe', topic: s.topic })
        continue
      }
      subs.push(s)
      if (!s.pattern) {
        const p = positions[s.topic]
        items.push({ topic: s.topic, from: p ? { seq: p.seq, epoch: p.epoch } : { time: s.since } })
      } else {
        for (const t of await this.#d.broker.topics(s.topic)) {
          if (items.some((i) => i.topic === t)) continue
          const p = positions[t]
          items.push({ topic: t, from: p ? { seq: p.seq, epoch: p.epoch } : { time: s.since } })
        }
      }
    }
    const replay = await this.#catchUp(st, items, () => {
      for (const s of subs) this.#addSub(st, s)
    })
    await this.#saveSession(st).catch(() => {})
    this.#send(
      st,
      frameText('resumed', {
        ...idOf(f.id),
        session: st.sessionId,
        resume: `${st.sessionId}.${st.secret}`,
        subscriptions: subs.map((s) => s.topic),
        replayed: replay.replayed,
        gaps: replay.gaps,
        ...(denied.length ? { denied } : {}),
      }),
    )
    if (this.#events)
      emit(this.#events, 'session.resumed', {
        client: st.conn,
        session: st.sessionId,
        replayed: replay.replayed,
        gaps: replay.gaps.length,
      })
  }

  /**
   * Replay each topic from its position, then hand over to live delivery without a
   * duplicate or a hole. `attach` subscribes (synchronously) once every topic is marked as
   * catching up, so a live message can only be queued, never sent ahead of history.
   */
  async #catchUp(
    st: State,
    items: ReadonlyArray<{
      topic: string
      from: { seq: number; epoch?: string | undefined } | { time: number }
    }>,
    attach: () => void,
  ): Promise<{ replayed: number; gaps: Gap[] }> {
    st.catchUp ??= new Map()
    for (const it of items) st.catchUp.set(it.topic, { queue: [], lastSent: 0, epoch: '' })
    attach()
    let replayed = 0
    const gaps: Gap[] = []
    for (const it of items) {
      const cu = st.catchUp?.get(it.topic)
      if (cu === undefined) continue
      let h: HistoryResult
      try {
        h = await this.#d.broker.history(it.topic, 0, this.#o.replayLimit)
      } catch {
        gaps.push({ topic: it.topic, reason: 'unavailable' })
        this.#send(st, frameText('gap', { topic: it.topic, reason: 'unavailable' }))
        this.#finishCatchUp(st, it.topic, cu)
        continue
      }
      let start = 0
      if ('seq' in it.from) {
        const pos = it.from
        if (pos.epoch !== undefined && h.epoch !== '' && pos.epoch !== h.epoch) {
          // The topic's sequence started over: the old positions mean nothing now.
          const g: Gap = {
            topic: it.topic,
            reason: 'epoch',
            epoch: h.epoch,
            ...(h.first > 1 ? { from: 1, to: h.first - 1 } : {}),
          }
          gaps.push(g)
          this.#send(st, frameText('gap', { ...g }))
        } else {
          start = pos.seq
          if (h.last > pos.seq && h.first > pos.seq + 1) {
            const g: Gap = {
              topic: it.topic,
              reason: 'history',
              epoch: h.epoch,
              from: pos.seq + 1,
              to: h.first - 1,
            }
            gaps.push(g)
            this.#send(st, frameText('gap', { ...g }))
          }
        }
      }
      cu.epoch = h.epoch
      cu.lastSent = start
      for (const m of h.messages) {
        if (m.seq <= start) continue
        if ('time' in it.from && m.time < it.from.time) continue
        this.#sendMessage(st, m)
        cu.lastSent = m.seq
        replayed++
      }
      // The node's sequencer needs a baseline for a topic it has not delivered yet.
      if (h.epoch !== '' && !this.#seq.has(it.topic) && this.#index.has(it.topic))
        this.#trackSeq(it.topic, {
          epoch: h.epoch,
          last: h.last,
          pending: undefined,
          timer: undefined,
        })
      this.#finishCatchUp(st, it.topic, cu)
    }
    if (st.catchUp?.size === 0) st.catchUp = undefined
    return { replayed, gaps }
  }

  /** Send what queued meanwhile; keep filtering until the live stream is past what was sent. */
  #finishCatchUp(st: State, topic: string, cu: CatchUp): void {
    const queue = cu.queue ?? []
    cu.queue = undefined
    for (const m of queue) {
      if (m.epoch === cu.epoch && m.seq <= cu.lastSent) continue
      this.#sendMessage(st, m)
      cu.lastSent = m.seq
      cu.epoch = m.epoch
    }
    const node = this.#seq.get(topic)
    if (node === undefined || (node.epoch === cu.epoch && node.last >= cu.lastSent)) {
      st.catchUp?.delete(topic)
      if (st.catchUp?.size === 0) st.catchUp = undefined
    }
  }

  // —— delivery ——

  /**
   * A topic message from this node's publish or from another node: pass it through the
   * sequencer and deliver it (and whatever it unblocked). Returns local recipients.
   */
  #ingest(m: TopicMessage): number {
    let t = this.#seq.get(m.topic)
    if (t === undefined || t.epoch !== m.epoch) {
      if (!this.#index.has(m.topic)) return 0
      if (t?.timer) clearTimeout(t.timer)
      const restarted = t !== undefined
      // A topic this node was delivering started over (its history was lost, e.g. the
      // broker's backend restarted empty): say so, and deliver the new epoch from its start.
      t = { epoch: m.epoch, last: restarted ? 0 : m.seq - 1, pending: undefined, timer: undefined }
      this.#trackSeq(m.topic, t)
      if (restarted) this.#deliverGap({ topic: m.topic, reason: 'epoch', epoch: m.epoch })
    }
    if (m.seq <= t.last) return 0
    if (m.seq > t.last + 1) {
      t.pending ??= new Map()
      t.pending.set(m.seq, m)
      if (t.timer === undefined) {
        t.timer = setTimeout(() => void this.#fillHole(m.topic), this.#o.reorderWait)
        t.timer.unref()
      }
      return 0
    }
    let n = this.#deliver(m)
    t.last = m.seq
    while (t.pending !== undefined) {
      const next = t.pending.get(t.last + 1)
      if (next === undefined) break
      t.pending.delete(next.seq)
      n += this.#deliver(next)
      t.last = next.seq
    }
    if (t.pending?.size === 0) {
      t.pending = undefined
      if (t.timer) clearTimeout(t.timer)
      t.timer = undefined
    }
    return n
  }

  /** A message arrived ahead of its predecessor and the predecessor did not follow: ask history. */
  async #fillHole(topic: string): Promise<void> {
    const t = this.#seq.get(topic)
    if (t === undefined || t.pending === undefined) return
    t.timer = undefined
    let reason: Gap['reason'] = 'lost'
    try {
      const h = await this.#d.broker.history(topic, t.last, this.#o.replayLimit)
      for (const m of h.messages) if (m.epoch === t.epoch) this.#ingest(m)
      t.failures = 0
    } catch {
      // The broker cannot read history now (its backend is reconnecting): ask again a little
      // later, a few times, before calling the hole unavailable.
      const cur = this.#seq.get(topic)
      if (cur === t && t.pending !== undefined && t.pending.size > 0 && t.timer === undefined) {
        t.failures = (t.failures ?? 0) + 1
        if (t.failures <= HISTORY_RETRIES) {
          t.timer = setTimeout(
            () => void this.#fillHole(topic),
            Math.min(2000, this.#o.reorderWait * 2 ** t.failures),
          )
          t.timer.unref()
          return
        }
      }
      reason = 'unavailable'
    }
    const cur = this.#seq.get(topic)
    if (cur !== t || t.pending === undefined || t.pending.size === 0) return
    // History does not have it either (or cannot be read): announce the hole and move on.
    t.failures = 0
    const next = Math.min(...t.pending.keys())
    this.#deliverGap({ topic, reason, epoch: t.epoch, from: t.last + 1, to: next - 1 })
    t.last = next - 1
    const first = t.pending.get(next)!
    t.pending.delete(next)
    this.#ingest(first)
  }

  #trackSeq(topic: string, t: TopicSeq): void {
    this.#seq.set(topic, t)
    if (this.#seq.size > MAX_TRACKED_TOPICS) {
      for (const [k, v] of this.#seq) {
        if (this.#index.exact(k) !== undefined) continue
        if (v.timer) clearTimeout(v.timer)
        this.#seq.delete(k)
        if (this.#seq.size <= MAX_TRACKED_TOPICS) break
      }
    }
  }

  #forgetSeq(topic: string): void {
    if (this.#index.has(topic)) return
    const t = this.#seq.get(topic)
    if (t?.timer) clearTimeout(t.timer)
    this.#seq.delete(topic)
  }

  /** Fan a message out to this node's subscribers: one frame, written to each. */
  #deliver(m: TopicMessage): number {
    const mark = ++this.#mark
    let frame: Buffer | undefined
    let text: string | undefined
    let n = 0
    this.#index.match(m.topic, (st) => {
      if (st.mark === mark || st.closed) return
      st.mark = mark
      const cu = st.catchUp?.get(m.topic)
      if (cu !== undefined) {
        if (cu.queue !== undefined) {
          cu.queue.push(m)
          n++
          return
        }
        if (m.epoch === cu.epoch && m.seq <= cu.lastSent) return
        st.catchUp!.delete(m.topic)
        if (st.catchUp!.size === 0) st.catchUp = undefined
      }
      text ??= messageFrame(m)
      if (st.conn.rawFramesOk) {
        frame ??= wsTextFrame(text)
        st.conn.sendFrame(frame, frame.length - headerLength(frame), false)
      } else st.conn.send(text)
      n++
    })
    return n
  }

  #sendMessage(st: State, m: TopicMessage): void {
    this.#send(st, messageFrame(m))
  }

  #deliverGap(g: Gap): void {
    const text = frameText('gap', { ...g })
    this.#index.match(g.topic, (st) => this.#send(st, text))
  }

  #send(st: State, text: string): void {
    if (!st.closed) st.conn.send(text)
  }

  #fail(
    st: State,
    op: string | undefined,
    fid: string | number | undefined,
    code: ErrorCodeName,
    message: string,
  ): void {
    this.#send(st, errorFrame(code, message, fid, op ? { request: op } : {}))
    if (this.#events)
      emit(this.#events, 'pubsub.error', { client: st.conn, op: op ?? '', code, message })
  }

  // —— direct messages and presence ——

  async #direct(
    to: { client: string } | { user: string },
    from: { client?: string; user?: string },
    data: string,
  ): Promise<number> {
    const time = Date.now()
    const text = `${frameText('direct', { from, time }).slice(0, -1)},"data":${data}}`
    let local = 0
    if ('client' in to) {
      const st = this.#byClient.get(to.client)
      if (st !== undefined) {
        this.#send(st, text)
        return 1
      }
    } else {
      for (const st of this.#byUser.get(to.user) ?? []) {
        this.#send(st, text)
        local++
      }
    }
    const remote = await this.#d.broker.locate(to).catch(() => 0)
    const elsewhere = 'client' in to ? remote : Math.max(0, remote - local)
    if (elsewhere > 0)
      await this.#d.broker
        .signal(to, { kind: 'direct', node: this.#d.node, body: { text } })
        .catch(() => {})
    return local + elsewhere
  }

  #presenceSignal(topic: string, kind: 'join' | 'leave', st: State): void {
    const who = { client: st.conn.id, ...(st.conn.user ? { user: st.conn.user.id } : {}) }
    this.#presenceLocal(topic, kind, who, st)
    void this.#d.broker
      .signal({ topic }, { kind, node: this.#d.node, body: { topic, ...who } })
      .catch(() => {})
  }

  #presenceLocal(
    topic: string,
    kind: 'join' | 'leave',
    who: Record<string, unknown>,
    except?: State,
  ): void {
    // Without this, each join or leave walked every subscriber: N² for N joining one topic.
    if (this.#watchers.get(topic) === undefined) return
    const set = this.#index.exact(topic)
    if (set === undefined) return
    let text: string | undefined
    for (const other of set) {
      if (other === except) continue
      if (!other.subs.get(topic)?.presence) continue
      text ??= frameText(kind, { topic, ...who })
      this.#send(other, text)
    }
  }

  #onSignal(target: SignalTarget, s: Signal): void {
    if (s.kind === 'direct') {
      const text = String(s.body.text)
      if ('client' in target) {
        const st = this.#byClient.get(target.client)
        if (st) this.#send(st, text)
      } else if ('user' in target)
        for (const st of this.#byUser.get(target.user) ?? []) this.#send(st, text)
    } else if ((s.kind === 'join' || s.kind === 'leave') && 'topic' in target) {
      const { topic, ...who } = s.body as { topic: string }
      this.#presenceLocal(topic, s.kind, who)
    } else if (s.kind === 'kick' && 'client' in target) {
      this.#byClient
        .get(target.client)
        ?.conn.close(CloseCode.SESSION_TAKEN_OVER, 'session resumed elsewhere', true)
    }
  }

  // —— sessions ——

  async #saveSession(st: State, detached = false): Promise<void> {
    const now = Date.now()
    await this.#d.broker.sessionSave(
      {
        id: st.sessionId,
        secretHash: sha256(st.secret),
        ...(st.conn.user ? { user: st.conn.user.id } : {}),
        subscriptions: [...st.subs.values()],
        ...(detached
          ? { detachedAt: now }
          : { attached: { client: st.conn.id, node: this.#d.node } }),
        createdAt: st.createdAt,
      },
      this.#o.sessionTtl,
    )
  }

  // —— library API ——

  /** Publish from the server. */
  async publish(
    topic: string,
    data: unknown,
  ): Promise<{ seq: number; epoch: string; recipients: number }> {
    const c = checkTopic(topic, false)
    if (!c.ok) throw new TypeError(`publish(): ${c.reason}`)
    const json = data === undefined ? 'null' : JSON.stringify(data)
    const m = await this.#d.broker.publish(topic, {}, json)
    const recipients = this.#ingest(m)
    if (this.#events)
      emit(this.#events, 'topic.published', {
        client: undefined,
        topic,
        seq: m.seq,
        recipients,
        bytes: json.length,
        data: json,
      })
    return { seq: m.seq, epoch: m.epoch, recipients }
  }

  /** Send a direct message from the server to a client (or its id) or to every connection of a user. */
  async send(to: { client: string } | { user: string }, data: unknown): Promise<number> {
    const json = data === undefined ? 'null' : JSON.stringify(data)
    const n = await this.#direct(to, {}, json)
    if (this.#events)
      emit(this.#events, 'message.direct', {
        client: undefined,
        to: 'client' in to ? `client:${to.client}` : `user:${to.user}`,
        recipients: n,
        bytes: json.length,
      })
    return n
  }

  presence(topic: string): Promise<PresenceEntry[]> {
    return this.#d.broker.presence(topic)
  }

  history(topic: string, since = 0, limit = this.#o.replayLimit): Promise<HistoryResult> {
    return this.#d.broker.history(topic, since, limit)
  }

  /** Topics and patterns a client is subscribed to (wirelog.v1 clients only). */
  subscriptions(client: Client): string[] {
    return [...(this.#states.get(client as Connection)?.subs.keys() ?? [])]
  }

  /** Numbers for metrics and tests. */
  stats(): { clients: number; topics: number; patterns: number; tracked: number } {
    return {
      clients: this.#states.size,
      topics: this.#index.topics,
      patterns: this.#index.patterns,
      tracked: this.#seq.size,
    }
  }
}

export interface Gap {
  readonly topic: string
  /** `history` (too old), `epoch` (the topic started over), `lost` (never arrived), `unavailable` (broker down). */
  readonly reason: 'history' | 'epoch' | 'lost' | 'unavailable'
  readonly epoch?: string
  readonly from?: number
  readonly to?: number
}

function idOf(id: string | number | undefined): { id?: string | number } {
  return id === undefined ? {} : { id }
}

function randomId(): string {
  return randomBytes(18).toString('base64url')
}

function sameHash(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))
}

function headerLength(frame: Buffer): number {
  const len = frame[1]! & 0x7f
  return len < 126 ? 2 : len === 126 ? 4 : 10
}

function addTo<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  let s = map.get(k)
  if (s === undefined) {
    s = new Set()
    map.set(k, s)
  }
  s.add(v)
}

function removeFrom<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  const s = map.get(k)
  if (s?.delete(v) && s.size === 0) map.delete(k)
}
