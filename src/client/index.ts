/**
 * `wirelog/client`: a `wirelog.v1` client for browsers and Node ≥ 20, with no dependency:
 * it uses the global `WebSocket` (browsers, Node ≥ 22) or, on Node 20, the `ws` package
 * that wirelog itself depends on (or a `WebSocket` constructor you pass).
 *
 * It connects with a token (sent as a `bearer.<token>` subprotocol, since browsers cannot
 * set headers), subscribes with callbacks or async iterators, publishes with an ack promise
 * (retried with the same id after a reconnect, so the server publishes it once), reconnects
 * with exponential backoff and jitter, and resumes its session: the server replays every
 * message missed while disconnected, in order, before any new one, or says which range it
 * could not (`gap` events).
 *
 * This file must not import anything at run time: it is served to browsers as is.
 */

export const PROTOCOL = 'wirelog.v1'

/** A message on a topic. */
export interface TopicMessage<T = unknown> {
  readonly topic: string
  readonly seq: number
  readonly epoch: string
  readonly time: number
  readonly from: { readonly client?: string; readonly user?: string }
  readonly data: T
}

/** A direct message. */
export interface DirectMessage<T = unknown> {
  readonly from: { readonly client?: string; readonly user?: string }
  readonly time: number
  readonly data: T
}

/** Missed messages the server could not replay. */
export interface Gap {
  readonly topic: string
  readonly reason: 'history' | 'epoch' | 'lost' | 'unavailable'
  readonly epoch?: string
  readonly from?: number
  readonly to?: number
}

export interface PresenceEvent {
  readonly topic: string
  readonly client: string
  readonly user?: string
}

/** An `error` frame, or a failed op. */
export class WirelogError extends Error {
  readonly code: string
  readonly op: string | undefined
  constructor(code: string, message: string, op?: string) {
    super(message)
    this.name = 'WirelogError'
    this.code = code
    this.op = op
  }
}

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

/** The part of the WebSocket API this client uses (browser, Node ≥ 22, `ws`). */
export interface WebSocketLike {
  readonly readyState: number
  readonly protocol: string
  send(data: string): void
  close(code?: number, reason?: string): void
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number; reason: string }) => void) | null
  onerror: ((ev: unknown) => void) | null
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

export interface ReconnectOptions {
  /** First delay, ms (default 250). */
  readonly initialDelay?: number
  /** Longest delay, ms (default 10,000). */
  readonly maxDelay?: number
  /** Growth per attempt (default 2). */
  readonly factor?: number
  /** Share of each delay that is random, 0–1 (default 0.5). */
  readonly jitter?: number
  /** Give up after this many attempts in a row (default: never). */
  readonly maxAttempts?: number
}

export interface ClientOptions {
  /**
   * More servers (nodes of one deployment behind a shared broker): each reconnect tries the
   * next one, so a client whose node died resumes its session on another.
   */
  readonly urls?: readonly string[]
  /** A token, or a function returning a fresh one for every (re)connection. */
  readonly token?: string | (() => string | Promise<string>)
  /** The WebSocket implementation (default: the global one, else the `ws` package). */
  readonly WebSocket?: WebSocketConstructor
  /** `false` to never reconnect. */
  readonly reconnect?: ReconnectOptions | false
  /** How long an op waits for its answer, ms (default 10,000). */
  readonly timeout?: number
  /**
   * How long a connection may take to be welcomed, ms (default 5,000); then it is dropped and
   * the next attempt made. A TCP connection can be accepted and never served (its server
   * process died between the accept and the handshake); without this it would hang.
   */
  readonly connectTimeout?: number
}

export interface SubscribeOptions {
  /** Receive `join` / `leave` events for this topic. */
  readonly presence?: boolean
  /** Replay history after this position first. */
  readonly since?: { readonly seq: number; readonly epoch?: string }
}

export interface Subscription<T = unknown> extends AsyncIterable<TopicMessage<T>> {
  readonly topic: string
  /** Resolves once the server accepted the subscription. */
  readonly ready: Promise<void>
  unsubscribe(): Promise<void>
}

export interface Welcome {
  readonly client: string
  readonly session: string
  readonly user?: string
  readonly resumed: boolean
  /** Messages replayed on resume. */
  readonly replayed: number
}

type Listener<T> = (value: T) => void

interface Events {
  state: ClientState
  open: Welcome
  direct: DirectMessage
  gap: Gap
  join: PresenceEvent
  leave: PresenceEvent
  error: WirelogError
  close: { code: number; reason: string }
}

interface Pending {
  resolve(v: Record<string, unknown>): void
  reject(e: Error): void
  timer: ReturnType<typeof setTimeout>
  frame: Record<string, unknown>
  /** Re-sent after a reconnect, or after `UNAVAILABLE`, until answered (publishes). */
  retry: boolean
  /** `UNAVAILABLE` answers so far (the retry delay grows with them). */
  refusals: number
  /** The last refusal: what the op fails with if its time runs out. */
  lastError?: WirelogError
  /** The connection it was sent on (0: not sent yet). */
  sentOn: number
}

interface SubState {
  topic: string
  options: SubscribeOptions
  handlers: Set<Listener<TopicMessage>>
  iterators: Set<Iter>
  /** The server holds it on the current connection. */
  active: boolean
  ready: Promise<void>
  settle: (err?: Error) => void
}

interface Iter {
  queue: TopicMessage[]
  wake: (() => void) | undefined
  done: boolean
}

/** Op failures that a reconnect may fix. */
const TRANSIENT = new Set(['DISCONNECTED', 'TIMEOUT', 'UNAVAILABLE'])

/** Close codes after which reconnecting is pointless (see the server's close-code registry). */
const TERMINAL = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010, 4004])

/**
 * Connect to a wirelog server speaking `wirelog.v1`; with a list of URLs (or `urls`), each
 * reconnect goes to the next.
 */
export function connect(
  url: string | readonly string[],
  options: ClientOptions = {},
): WirelogClient {
  return new WirelogClient(url, options)
}

export class WirelogClient {
  #urls: readonly string[]
  #urlIndex = 0
  #o: ClientOptions
  #ws: WebSocketLike | undefined
  #state: ClientState = 'connecting'
  #listeners = new Map<keyof Events, Set<Listener<never>>>()
  #subs = new Map<string, SubState>()
  /** Last seq seen per topic, the basis of a loss-free resume. */
  #positions = new Map<string, { seq: number; epoch: string }>()
  #pending = new Map<string, Pending>()
  #nextId = 0
  #resume: string | undefined
  #attempt = 0
  #timer: ReturnType<typeof setTimeout> | undefined
  #connectTimer: ReturnType<typeof setTimeout> | undefined
  #welcome: Welcome | undefined
  #ready: Promise<Welcome>
  #readyResolve!: (w: Welcome) => void
  #readyReject!: (e: Error) => void
  /** Between `welcome` and the end of a resume: messages are replays. */
  #resuming = false
  /** Counts connections, so a queued op is sent once per connection. */
  #generation = 0

  constructor(url: string | readonly string[], options: ClientOptions = {}) {
    const all = [...(typeof url === 'string' ? [url] : url), ...(options.urls ?? [])]
    this.#urls = all.filter((u, i) => all.indexOf(u) === i)
    if (this.#urls.length === 0) throw new TypeError('connect(): no server URL')
    this.#o = options
    this.#ready = new Promise((resolve, reject) => {
      this.#readyResolve = resolve
      this.#readyReject = reject
    })
    // Unobserved rejections of `ready` must not crash a program that never awaited it.
    this.#ready.catch(() => {})
    void this.#open()
  }

  /** The server this client connects (or last connected) to. */
  get url(): string {
    return this.#urls[this.#urlIndex % this.#urls.length]!
  }

  /** Resolves at the first successful connection (and session), rejects if closed before. */
  get ready(): Promise<Welcome> {
    return this.#ready
  }
  get state(): ClientState {
    return this.#state
  }
  /** The server's id for the current connection. */
  get clientId(): string | undefined {
    return this.#welcome?.client
  }
  get sessionId(): string | undefined {
    return this.#welcome?.session
  }
  /** Last seq seen per topic. */
  get positions(): ReadonlyMap<string, { seq: number; epoch: string }> {
    return this.#positions
  }

  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event)
    if (set === undefined) {
      set = new Set()
      this.#listeners.set(event, set)
    }
    set.add(fn as Listener<never>)
    return () => set.delete(fn as Listener<never>)
  }

  #emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const fn of this.#listeners.get(event) ?? []) {
      try {
        ;(fn as Listener<Events[K]>)(value)
      } catch {}
    }
  }

  #setState(s: ClientState): void {
    if (this.#state === s) return
    this.#state = s
    this.#emit('state', s)
  }

  /**
   * Subscribe to a topic or pattern. Messages go to `handler` and to async iterators over
   * the returned subscription. Kept across reconnects.
   */
  subscribe<T = unknown>(
    topic: string,
    handler?: Listener<TopicMessage<T>>,
    options: SubscribeOptions = {},
  ): Subscription<T> {
    let sub = this.#subs.get(topic)
    if (sub === undefined) {
      let settle!: (err?: Error) => void
      const ready = new Promise<void>((resolve, reject) => {
        settle = (err) => (err ? reject(err) : resolve())
      })
      ready.catch(() => {})
      sub = {
        topic,
        options,
        handlers: new Set(),
        iterators: new Set(),
        active: false,
        ready,
        settle,
      }
      this.#subs.set(topic, sub)
      if (this.#state === 'open' && !this.#resuming) this.#subscribeNow(sub)
    }
    const s = sub
    if (handler) s.handlers.add(handler as Listener<TopicMessage>)
    return {
      topic,
      ready: s.ready,
      unsubscribe: async () => {
        if (handler) s.handlers.delete(handler as Listener<TopicMessage>)
        if (s.handlers.size > 0 || s.iterators.size > 0) return
        await this.#unsubscribe(s)
      },
      [Symbol.asyncIterator]: (): AsyncIterator<TopicMessage<T>> => {
        const it: Iter = { queue: [], wake: undefined, done: false }
        s.iterators.add(it)
        return {
          next: async () => {
            for (;;) {
              const m = it.queue.shift()
              if (m !== undefined) return { value: m as TopicMessage<T>, done: false }
              if (it.done) return { value: undefined, done: true }
              await new Promise<void>((r) => {
                it.wake = r
              })
            }
          },
          return: async () => {
            it.done = true
            s.iterators.delete(it)
            if (s.handlers.size === 0 && s.iterators.size === 0) await this.#unsubscribe(s)
            return { value: undefined, done: true }
          },
        }
      },
    }
  }

  async #unsubscribe(s: SubState): Promise<void> {
    if (this.#subs.get(s.topic) !== s) return
    this.#subs.delete(s.topic)
    for (const it of s.iterators) {
      it.done = true
      it.wake?.()
    }
    if (s.active && this.#state === 'open') {
      s.active = false
      await this.#request({ op: 'unsubscribe', topic: s.topic }).catch(() => {})
    }
  }

  #subscribeNow(sub: SubState): void {
    const pos = this.#positions.get(sub.topic)
    const since = sub.options.since ?? (pos ? { seq: pos.seq, epoch: pos.epoch } : undefined)
    this.#request({
      op: 'subscribe',
      topic: sub.topic,
      ...(sub.options.presence ? { presence: true } : {}),
      ...(since ? { since } : {}),
    }).then(
      () => {
        sub.active = true
        sub.settle()
      },
      (err: Error) => {
        // A dropped connection is not an answer: the subscription is retried on the next one.
        if (err instanceof WirelogError && TRANSIENT.has(err.code)) return
        sub.settle(err)
        if (this.#subs.get(sub.topic) === sub) this.#subs.delete(sub.topic)
        if (err instanceof WirelogError) this.#emit('error', err)
      },
    )
  }

  /**
   * Publish; resolves with the message's seq once the server has it. The op carries an id,
   * so a publish interrupted by a disconnect is retried after the reconnect and still
   * published once.
   */
  publish(topic: string, data: unknown): Promise<{ seq: number; duplicate: boolean }> {
    return this.#request({ op: 'publish', topic, data }, true).then((r) => ({
      seq: Number(r.seq ?? 0),
      duplicate: r.duplicate === true,
    }))
  }

  /** A direct message to a client id or to every connection of a user. */
  async send(to: { client: string } | { user: string }, data: unknown): Promise<void> {
    await this.#request({ op: 'send', to, data })
  }

  async presence(topic: string): Promise<Array<{ client: string; user?: string }>> {
    const r = await this.#request({ op: 'presence', topic })
    return r.clients as Array<{ client: string; user?: string }>
  }

  async history(
    topic: string,
    options: { since?: number; limit?: number } = {},
  ): Promise<{ epoch: string; first: number; last: number; messages: TopicMessage[] }> {
    const r = await this.#request({ op: 'history', topic, ...options })
    return r as never
  }

  /** Present a fresh token before the current one expires (same user). */
  async refresh(token: string): Promise<void> {
    await this.#request({ op: 'refresh', token })
  }

  /** Close for good: no reconnect. */
  close(code = 1000, reason = ''): void {
    this.#setState('closed')
    if (this.#timer) clearTimeout(this.#timer)
    if (this.#connectTimer) clearTimeout(this.#connectTimer)
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer)
      p.reject(new WirelogError('CLOSED', 'the client was closed'))
    }
    this.#pending.clear()
    for (const s of this.#subs.values())
      for (const it of s.iterators) {
        it.done = true
        it.wake?.()
      }
    this.#readyReject(new WirelogError('CLOSED', 'the client was closed'))
    this.#ws?.close(code, reason)
  }

  #request(frame: Record<string, unknown>, retry = false): Promise<Record<string, unknown>> {
    if (this.#state === 'closed')
      return Promise.reject(new WirelogError('CLOSED', 'the client is closed'))
    const id = `c${++this.#nextId}`
    const full = { ...frame, id }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(
          p.lastError ??
            new WirelogError(
              'TIMEOUT',
              `${String(frame.op)}: no answer within ${this.#o.timeout ?? 10_000} ms`,
            ),
        )
      }, this.#o.timeout ?? 10_000)
      const p: Pending = { resolve, reject, timer, frame: full, retry, sentOn: 0, refusals: 0 }
      this.#pending.set(id, p)
      if (this.#state === 'open' && !this.#resuming) this.#transmit(p)
    })
  }

  #transmit(p: Pending): void {
    if (this.#ws === undefined || p.sentOn === this.#generation) return
    p.sentOn = this.#generation
    this.#ws.send(JSON.stringify(p.frame))
  }

  async #open(): Promise<void> {
    const Ctor = this.#o.WebSocket ?? (await defaultWebSocket())
    const protocols = [PROTOCOL]
    const t = this.#o.token
    if (t !== undefined) {
      const token = typeof t === 'function' ? await t() : t
      protocols.push(`bearer.${token}`)
    }
    if (this.#state === 'closed') return
    const ws = new Ctor(this.url, protocols)
    this.#ws = ws
    this.#generation++
    ws.onmessage = (ev) => this.#onFrame(String(ev.data))
    ws.onerror = () => {}
    ws.onclose = (ev) => this.#onClose(ev.code, ev.reason)
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = undefined
      if (this.#ws === ws) ws.close()
    }, this.#o.connectTimeout ?? 5_000)
  }

  #onClose(code: number, reason: string): void {
    if (this.#connectTimer) clearTimeout(this.#connectTimer)
    this.#ws = undefined
    this.#resuming = false
    for (const s of this.#subs.values()) s.active = false
    this.#emit('close', { code, reason })
    if (this.#state === 'closed') return
    const r = this.#o.reconnect
    const attempts = r === false ? 0 : (r?.maxAttempts ?? Number.POSITIVE_INFINITY)
    if (r === false || TERMINAL.has(code) || this.#attempt >= attempts) {
      this.#setState('closed')
      this.#failPending(new WirelogError('CLOSED', `connection closed (${code} ${reason})`))
      this.#readyReject(new WirelogError('CLOSED', `connection closed (${code} ${reason})`))
      return
    }
    this.#setState('reconnecting')
    this.#urlIndex++
    // Ops that cannot be retried safely fail now; publishes wait for the next connection.
    for (const [id, p] of this.#pending) {
      if (p.retry) continue
      clearTimeout(p.timer)
      this.#pending.delete(id)
      p.reject(new WirelogError('DISCONNECTED', `${String(p.frame.op)}: the connection dropped`))
    }
    const base = Math.min(
      r?.maxDelay ?? 10_000,
      (r?.initialDelay ?? 250) * (r?.factor ?? 2) ** this.#attempt,
    )
    const jitter = r?.jitter ?? 0.5
    const delay = base * (1 - jitter * Math.random())
    this.#attempt++
    this.#timer = setTimeout(() => void this.#open(), delay)
  }

  #failPending(err: Error): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    this.#pending.clear()
  }

  #onFrame(text: string): void {
    let f: Record<string, unknown>
    try {
      f = JSON.parse(text) as Record<string, unknown>
    } catch {
      return
    }
    switch (f.op) {
      case 'welcome':
        this.#onWelcome(f)
        break
      case 'resumed':
        this.#onResumed(f)
        break
      case 'message':
        this.#onMessage(f as unknown as TopicMessage)
        break
      case 'direct':
        this.#emit('direct', f as unknown as DirectMessage)
        break
      case 'gap':
        this.#emit('gap', f as unknown as Gap)
        break
      case 'join':
        this.#emit('join', f as unknown as PresenceEvent)
        break
      case 'leave':
        this.#emit('leave', f as unknown as PresenceEvent)
        break
      case 'error':
        this.#onError(f)
        break
      default:
        this.#answer(f)
        break
    }
  }

  #answer(f: Record<string, unknown>): void {
    const id = typeof f.id === 'string' ? f.id : undefined
    const p = id !== undefined ? this.#pending.get(id) : undefined
    if (p === undefined || id === undefined) return
    this.#pending.delete(id)
    clearTimeout(p.timer)
    p.resolve(f)
  }

  #onError(f: Record<string, unknown>): void {
    const err = new WirelogError(String(f.code), String(f.message), f.request as string | undefined)
    const id = typeof f.id === 'string' ? f.id : undefined
    const p = id !== undefined ? this.#pending.get(id) : undefined
    if (p !== undefined && id !== undefined) {
      if (p.retry && err.code === 'UNAVAILABLE') {
        // The server could not publish now (its broker is down or busy): send the same
        // frame (same id, so it is published once) again after a growing delay, until the
        // op's timeout, which then rejects with this error.
        p.lastError = err
        const delay = Math.min(1000, 50 * 2 ** p.refusals++) * (0.5 + Math.random() / 2)
        const gen = this.#generation
        setTimeout(() => {
          if (this.#pending.get(id) !== p || this.#state !== 'open' || this.#resuming) return
          if (p.sentOn === gen) p.sentOn = 0
          this.#transmit(p)
        }, delay)
        return
      }
      this.#pending.delete(id)
      clearTimeout(p.timer)
      // A resume the server cannot honour: start afresh (subscribing with positions).
      if (p.frame.op === 'resume') {
        this.#resuming = false
        this.#resume = undefined
        this.#afterSession(false, 0)
        return
      }
      p.reject(err)
      return
    }
    this.#emit('error', err)
  }

  #onWelcome(f: Record<string, unknown>): void {
    if (this.#connectTimer) clearTimeout(this.#connectTimer)
    this.#attempt = 0
    const previous = this.#resume
    this.#resume = String(f.resume)
    this.#welcome = {
      client: String(f.client),
      session: String(f.session),
      ...(typeof f.user === 'string' ? { user: f.user } : {}),
      resumed: false,
      replayed: 0,
    }
    this.#setState('open')
    if (previous !== undefined) {
      this.#resuming = true
      const positions: Record<string, { seq: number; epoch: string }> = {}
      for (const [t, p] of this.#positions) positions[t] = p
      // Sent directly: the pending queue waits until the resume is settled.
      const id = `c${++this.#nextId}`
      const frame = { op: 'resume', id, token: previous, positions }
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        this.#resuming = false
        this.#afterSession(false, 0)
      }, this.#o.timeout ?? 10_000)
      const p: Pending = {
        resolve: () => {},
        reject: () => {},
        timer,
        frame,
        retry: false,
        sentOn: 0,
        refusals: 0,
      }
      this.#pending.set(id, p)
      this.#transmit(p)
      return
    }
    this.#afterSession(false, 0)
  }

  #onResumed(f: Record<string, unknown>): void {
    const id = typeof f.id === 'string' ? f.id : undefined
    const p = id !== undefined ? this.#pending.get(id) : undefined
    if (p !== undefined && id !== undefined) {
      clearTimeout(p.timer)
      this.#pending.delete(id)
    }
    this.#resume = String(f.resume)
    this.#welcome = {
      ...this.#welcome!,
      session: String(f.session),
      resumed: true,
      replayed: Number(f.replayed ?? 0),
    }
    this.#resuming = false
    const restored = new Set(Array.isArray(f.subscriptions) ? (f.subscriptions as string[]) : [])
    for (const s of this.#subs.values()) if (restored.has(s.topic)) s.active = true
    this.#afterSession(true, Number(f.replayed ?? 0))
  }

  /** The session is settled: subscribe what the server does not hold, flush queued ops. */
  #afterSession(resumed: boolean, replayed: number): void {
    for (const p of this.#pending.values()) this.#transmit(p)
    for (const s of this.#subs.values()) if (!s.active) this.#subscribeNow(s)
    const w = { ...this.#welcome!, resumed, replayed }
    this.#welcome = w
    this.#readyResolve(w)
    this.#emit('open', w)
  }

  #onMessage(m: TopicMessage): void {
    const pos = this.#positions.get(m.topic)
    // Never twice: a replay and a live copy of the same message meet here at most once.
    if (pos !== undefined && pos.epoch === m.epoch && m.seq <= pos.seq) return
    this.#positions.set(m.topic, { seq: m.seq, epoch: m.epoch })
    for (const s of this.#subs.values()) {
      if (!topicMatches(s.topic, m.topic)) continue
      for (const h of s.handlers) {
        try {
          h(m)
        } catch {}
      }
      for (const it of s.iterators) {
        it.queue.push(m)
        const w = it.wake
        it.wake = undefined
        w?.()
      }
    }
  }
}

/** The topic grammar's matching (`*` one segment, `>` the rest). */
export function topicMatches(pattern: string, topic: string): boolean {
  if (pattern === topic) return true
  const p = pattern.split('.')
  const t = topic.split('.')
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false
  }
  return p.length === t.length
}

async function defaultWebSocket(): Promise<WebSocketConstructor> {
  const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (g !== undefined) return g
  // Node 20 has no global WebSocket: use the `ws` package (a dependency of wirelog). The
  // specifier is a variable so browser bundlers leave it alone.
  const name = 'ws'
  try {
    const mod = (await import(name)) as {
      WebSocket?: WebSocketConstructor
      default?: WebSocketConstructor
    }
    const C = mod.WebSocket ?? mod.default
    if (C !== undefined) return C
  } catch {}
  throw new WirelogError(
    'NO_WEBSOCKET',
    'no WebSocket implementation: pass { WebSocket } (e.g. from the ws package)',
  )
}
