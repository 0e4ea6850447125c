/**
 * Many nodes: real wirelog processes (the CLI) on different ports behind one Redis. Fan-out
 * in order across nodes, direct messages and presence across nodes, a node killed with
 * SIGKILL mid-stream whose clients resume on another node exactly once, and Redis going
 * away under load (restarted empty, or its connections dropped) with recovery logged.
 */
import { strict as assert } from 'node:assert'
import { after, before, describe, it } from 'node:test'
import { WebSocket } from 'ws'
import {
  connect,
  type Gap,
  type WebSocketConstructor,
  type WebSocketLike,
  type WirelogClient,
} from '../src/client/index.js'
import { tempDir, waitFor } from './helpers.js'
import { type Node, startNode, tokensFile } from './multinode-helpers.js'
import {
  deletePrefix,
  type PrivateRedis,
  privateRedis,
  sharedRedis,
  uniquePrefix,
} from './redis-helpers.js'
import { v1 } from './v1.js'

const fast = { reconnect: { initialDelay: 20, maxDelay: 200 } } as const

/** A WebSocket constructor whose connections after the first wait for `gate`. */
function gatedWebSocket(gate: Promise<void>): WebSocketConstructor {
  let n = 0
  return function Gated(url: string, protocols?: string | string[]) {
    if (n++ === 0) return new WebSocket(url, protocols)
    let ws: WebSocket | undefined
    const late: WebSocketLike & { readyState: number; protocol: string } = {
      readyState: 0,
      protocol: '',
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      send: (d) => ws?.send(d),
      close: (code, reason) => ws?.close(code, reason),
    }
    void gate.then(() => {
      const w = new WebSocket(url, protocols)
      ws = w
      w.onopen = (e) => {
        late.readyState = 1
        late.protocol = w.protocol
        late.onopen?.(e)
      }
      w.onmessage = (e) => late.onmessage?.(e)
      w.onclose = (e) => {
        late.readyState = 3
        late.onclose?.(e)
      }
      w.onerror = (e) => late.onerror?.(e)
    })
    return late
  } as unknown as WebSocketConstructor
}

/** Publish 1…n on `topic` with at most `window` in flight; resolves with the outcomes. */
async function publishAll(
  c: WirelogClient,
  topic: string,
  n: number,
  window: number,
  onEach?: (i: number) => Promise<void> | void,
  /** Filled as the acks come (the caller may look at it meanwhile). */
  acked: number[] = [],
): Promise<{ acked: number[]; failed: Array<[number, string]> }> {
  const failed: Array<[number, string]> = []
  const inflight = new Set<Promise<void>>()
  for (let i = 1; i <= n; i++) {
    const p: Promise<void> = c.publish(topic, { i }).then(
      () => {
        acked.push(i)
      },
      (err: Error & { code?: string }) => {
        failed.push([i, err.code ?? err.message])
      },
    )
    const tracked = p.finally(() => inflight.delete(tracked))
    inflight.add(tracked)
    if (inflight.size >= window) await Promise.race(inflight)
    await onEach?.(i)
  }
  await Promise.all(inflight)
  return { acked, failed }
}

describe('many nodes on one Redis', () => {
  let url: string
  let prefix: string | undefined
  const nodes: Node[] = []
  before(async () => {
    url = await sharedRedis()
  })
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
    if (prefix !== undefined) await deletePrefix(url, prefix)
  })

  before(() => {
    prefix = uniquePrefix('multinode')
  })

  it('a publish on A reaches B and C in order; direct messages and presence cross nodes', async () => {
    const tokens = tokensFile(tempDir())
    const auth = ['--auth', 'tokens', '--auth-tokens', tokens]
    const [a, b, c] = await Promise.all(
      ['a', 'b', 'c'].map((n) => startNode(n, url, prefix!, auth)),
    )
    nodes.push(a!, b!, c!)
    const onA = await v1(a!.url, { token: 'tok-alice' })
    const onB = await v1(b!.url, { token: 'tok-bob' })
    const onC = await v1(c!.url, { token: 'tok-carol' })
    await onB.call({ op: 'subscribe', topic: 'room', presence: true })
    await onC.call({ op: 'subscribe', topic: 'room.>' })
    await onC.call({ op: 'subscribe', topic: 'room' })
    await onA.call({ op: 'subscribe', topic: 'room' })
    await onB.next((f) => f.op === 'join' && f.user === 'alice', 'join from node A')
    const N = 200
    for (let i = 1; i <= N; i++) onA.send({ op: 'publish', topic: 'room', data: i })
    for (const [who, v] of [
      ['B', onB],
      ['C', onC],
    ] as const) {
      await waitFor(() => v.messages('room').length >= N, `${N} messages on ${who}`, 15_000)
      assert.deepEqual(
        v.messages('room').map((m) => [m.seq, m.data]),
        Array.from({ length: N }, (_, i) => [i + 1, i + 1]),
        `${who} gets every message once, in order`,
      )
    }
    assert.equal(onA.messages('room').length, N, 'A delivers its own publishes locally, once')
    // A pattern subscriber on C gets other topics under it, once.
    onA.send({ op: 'publish', topic: 'room.side', data: 'x' })
    await waitFor(() => onC.messages('room.side').length === 1, 'pattern delivery on C')

    const p = await onC.call({ op: 'presence', topic: 'room' })
    assert.deepEqual(
      (p.clients as Array<{ user: string }>).map((x) => x.user).sort(),
      ['alice', 'bob', 'carol'],
      'presence lists the clients of every node',
    )

    await onA.call({ op: 'send', to: { user: 'bob' }, data: 'hi bob' })
    await onB.next((f) => f.op === 'direct' && f.data === 'hi bob', 'direct to a user on B')
    await onB.call({ op: 'send', to: { client: onC.welcome.client }, data: 'hi carol' })
    await onC.next((f) => f.op === 'direct' && f.data === 'hi carol', 'direct to a client on C')
    const nobody = await onA.call({ op: 'send', to: { user: 'dave' }, data: '?' })
    assert.equal(nobody.code, 'UNKNOWN_TARGET')
    for (const v of [onA, onB, onC]) await v.close()
  })

  it('a node killed with SIGKILL mid-stream: its clients resume on another node exactly once, in order', async () => {
    const ttl = ['--redis-node-ttl', '1500', '--history-size', '5000']
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => startNode(n, url, prefix!, ttl)))
    nodes.push(a!, b!, c!)
    const seqs: number[] = []
    const gaps: Gap[] = []
    const sub = connect([a!.url, b!.url], fast)
    sub.on('gap', (g) => gaps.push(g))
    const resumed: boolean[] = []
    sub.on('open', (w) => resumed.push(w.resumed))
    const pub = connect(c!.url, fast)
    const watcher = connect(c!.url, fast)
    try {
      await sub.subscribe('feed', (m) => seqs.push(m.seq), { presence: true }).ready
      await Promise.all([pub.ready, watcher.ready])
      const onA = sub.clientId!
      assert.ok(
        (await watcher.presence('feed')).some((e) => e.client === onA),
        'the client on A is present',
      )
      const N = 1500
      let killed = false
      const result = await publishAll(pub, 'feed', N, 20, async (i) => {
        if (!killed && seqs.length >= 300) {
          killed = true
          await a!.kill()
        }
        if (i % 50 === 0) await new Promise((r) => setImmediate(r))
      })
      assert.ok(killed, 'A was killed mid-stream')
      assert.deepEqual(result.failed, [], 'every publish acked')
      await waitFor(() => seqs.length >= N, `${N} messages after the failover`, 20_000)
      assert.deepEqual(
        seqs,
        Array.from({ length: N }, (_, i) => i + 1),
        'exactly once, in order',
      )
      assert.deepEqual(gaps, [], 'no gap: history still covered what was missed')
      assert.deepEqual(resumed, [false, true], 'the session resumed on B')
      assert.notEqual(sub.clientId, onA)
      assert.match(sub.url, new RegExp(`:${b!.child.port}$`))
      // The dead node's presence entry goes with its liveness key.
      await waitFor(
        async () => !(await watcher.presence('feed')).some((e) => e.client === onA),
        'the dead node’s presence entry to expire',
        5000,
      )
    } finally {
      sub.close()
      pub.close()
      watcher.close()
    }
  })

  it('with a short history, the client resuming elsewhere is told exactly which range is gone', async () => {
    const args = ['--history-size', '20']
    const [a, b] = await Promise.all(['a', 'b'].map((n) => startNode(n, url, prefix!, args)))
    nodes.push(a!, b!)
    const seqs: number[] = []
    const gaps: Gap[] = []
    // The reconnect waits until the test lets it (a gated WebSocket), whatever the load.
    let open!: () => void
    const gate = new Promise<void>((r) => {
      open = r
    })
    const sub = connect([a!.url, b!.url], { ...fast, WebSocket: gatedWebSocket(gate) })
    sub.on('gap', (g) => gaps.push(g))
    const pub = connect(b!.url, fast)
    try {
      await sub.subscribe('short', (m) => seqs.push(m.seq)).ready
      await pub.ready
      for (let i = 1; i <= 10; i++) await pub.publish('short', i)
      await waitFor(() => seqs.length === 10, 'ten messages')
      await a!.kill()
      // While the client is away, 100 more: history keeps the last 20.
      for (let i = 11; i <= 110; i++) await pub.publish('short', i)
      open()
      await waitFor(() => seqs.length === 30, 'the replay of what history kept', 10_000)
      assert.equal(gaps.length, 1)
      assert.deepEqual([gaps[0]!.reason, gaps[0]!.from, gaps[0]!.to], ['history', 11, 90])
      assert.deepEqual(seqs, [
        ...Array.from({ length: 10 }, (_, i) => i + 1),
        ...Array.from({ length: 20 }, (_, i) => i + 91),
      ])
    } finally {
      sub.close()
      pub.close()
    }
  })
})

describe('Redis going away under load (a private redis-server)', () => {
  let redis: PrivateRedis
  const nodes: Node[] = []
  before(async () => {
    redis = await privateRedis()
  })
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
    await redis.close()
  })

  async function outage(
    name: string,
    disrupt: () => Promise<void>,
    restore: () => Promise<void>,
    refusals: boolean,
    /** Redis comes back empty (its history is gone). */
    emptied = false,
  ): Promise<void> {
    const prefix = uniquePrefix(name)
    const args = [
      '--redis-command-timeout',
      '300',
      '--redis-node-ttl',
      '3000',
      '--history-size',
      '5000',
    ]
    const [a, b] = await Promise.all(['a', 'b'].map((n) => startNode(n, redis.url, prefix, args)))
    nodes.push(a!, b!)
    const got = new Map<number, number>()
    const order: Array<[string, number]> = []
    const gaps: Gap[] = []
    const sub = connect(b!.url, fast)
    sub.on('gap', (g) => gaps.push(g))
    const pub = connect(a!.url, fast)
    // Two clients on A, to show local delivery goes on while Redis is away.
    const x = await v1(a!.url)
    const y = await v1(a!.url)
    try {
      await sub.subscribe('load', (m) => {
        const i = (m.data as { i: number }).i
        got.set(i, (got.get(i) ?? 0) + 1)
        order.push([m.epoch, m.seq])
      }).ready
      await pub.ready
      const N = 1500
      let phase: 'before' | 'during' | 'after' = 'before'
      const acked: number[] = []
      // Acked before the outage: written to the Redis that went away.
      let beforeOutage = new Set<number>()
      const result = await publishAll(
        pub,
        'load',
        N,
        10,
        async (i) => {
          if (phase === 'before' && got.size >= 300) {
            phase = 'during'
            await disrupt()
            await a!.waitLog('broker.down')
            await b!.waitLog('broker.down')
            beforeOutage = new Set(acked)
            const r = await x.call({ op: 'send', to: { client: y.welcome.client }, data: 'local' })
            assert.equal(r.op, 'ack', 'a direct message between clients of one node still goes')
            await y.next((f) => f.op === 'direct' && f.data === 'local', 'local direct')
            // Long enough for publishes to be refused (UNAVAILABLE) and retried by the client.
            // The publisher may have nothing in flight right now (its window all acked before
            // the cut): a publish of a client of ours on another topic is refused for sure.
            // (Right after the cut a command may still go to the closing socket and fail as
            // "reply lost"; once the node knows, it is refused unsent.)
            if (refusals)
              await waitFor(async () => {
                const probe = await x.call({ op: 'publish', topic: 'probe', data: 1 })
                assert.equal(probe.op, 'error', 'a publish with Redis away is refused')
                assert.equal(probe.code, 'UNAVAILABLE')
                return a!
                  .log()
                  .some(
                    (l) =>
                      l.event === 'pubsub.error' &&
                      l.code === 'UNAVAILABLE' &&
                      /not sent/.test(String(l.error)),
                  )
              }, 'a publish refused unsent')
            await restore()
            phase = 'after'
          }
          if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1))
        },
        acked,
      )
      assert.equal(phase, 'after')
      const up = await a!.waitLog('broker.up')
      await b!.waitLog('broker.up')
      assert.equal(typeof up.down_ms, 'number')
      assert.equal(typeof up.dropped, 'number')
      if (refusals) assert.ok(Number(up.dropped) > 0, 'refused commands are counted')
      // Published during the outage: acked after recovery (retried with the same id), or
      // reported to the publisher as failed. Never silently missing.
      await waitFor(
        () => result.acked.every((i) => got.has(i)),
        'every acked message at the subscriber',
        15_000,
      ).catch(() => {})
      const missing = result.acked.filter((i) => !got.has(i))
      const epochGap = gaps.some((g) => g.reason === 'epoch')
      // Redis restarted empty loses what it held: a message it acked just before it went away
      // and had not yet delivered is gone with its history. The subscriber is told (a gap
      // with reason "epoch": the topic started over). Anything acked later must arrive.
      const lostWithRedis = emptied && epochGap ? missing.filter((i) => beforeOutage.has(i)) : []
      assert.deepEqual(
        missing.filter((i) => !lostWithRedis.includes(i)),
        [],
        `missing; gaps ${JSON.stringify(gaps)}; epochs ${[...new Set(order.map((o) => o[0]))].join(',')}; failed ${result.failed.length}`,
      )
      assert.deepEqual(result.failed, [], 'the client retried through the outage')
      const dupes = [...got.values()].filter((n) => n > 1).length
      // A retry after a lost reply finds the seq its claim was settled with in the publish
      // itself: never published a second time.
      assert.equal(dupes, 0, 'nothing published twice')
      // Per epoch, the subscriber saw each seq once, in order.
      for (let k = 1; k < order.length; k++) {
        const [e0, s0] = order[k - 1]!
        const [e1, s1] = order[k]!
        if (e0 === e1) assert.equal(s1, s0 + 1, `in order at ${k}`)
      }
      const epochs = new Set(order.map((o) => o[0])).size
      if (epochs > 1)
        assert.ok(
          gaps.some((g) => g.reason === 'epoch'),
          'a new epoch is announced to the subscriber',
        )
      process.stdout.write(
        `# ${name}: ${result.acked.length} acked, ${dupes} published twice, ${lostWithRedis.length} lost with Redis's memory (announced), ${epochs} epoch(s), dropped ${String(up.dropped)}\n`,
      )
    } finally {
      sub.close()
      pub.close()
      await x.close()
      await y.close()
      // A failure mid-outage must not leave the next test without its Redis.
      if (!redis.running) await redis.start()
    }
  }

  it('Redis restarted empty: nodes reconnect and resubscribe, outage and recovery logged, nothing silently lost', async () => {
    await outage(
      'restart',
      () => redis.stop(),
      () => redis.start(),
      true,
      true,
    )
  })

  it('Redis connections dropped (CLIENT KILL): the same', async () => {
    let c: Awaited<ReturnType<PrivateRedis['client']>> | undefined
    await outage(
      'client-kill',
      async () => {
        c = await redis.client()
        await c.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'])
        await c.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub', 'SKIPME', 'yes'])
      },
      async () => {},
      false,
    )
  })
})
