/**
 * The broker contract against a real Redis (two nodes on one Redis, a fresh key prefix per
 * test), then what only a networked broker has: concurrent publishers on several nodes,
 * epochs after Redis lost a topic, nodes that die, and counters.
 */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { BrokerUnavailableError, RedisBroker } from '../src/broker/redis.js'
import type { BrokerHandler, BrokerLimits, TopicMessage } from '../src/broker/types.js'
import { brokerContract } from './broker-contract.js'
import { waitFor } from './helpers.js'
import { deletePrefix, privateRedis, sharedRedis, uniquePrefix } from './redis-helpers.js'

brokerContract('redis', async (limits) => {
  const url = await sharedRedis()
  const prefix = uniquePrefix('contract')
  return {
    a: new RedisBroker({ ...limits, url, prefix }),
    b: new RedisBroker({ ...limits, url, prefix }),
    cleanup: () => deletePrefix(url, prefix),
  }
})

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const limits: BrokerLimits = { historySize: 1000, historyTtl: 60_000, historyTopics: 100 }

function collector(): BrokerHandler & { messages: TopicMessage[] } {
  const messages: TopicMessage[] = []
  return { messages, message: (m) => messages.push(m), signal: () => {} }
}

async function nodes(
  n: number,
  extra: Partial<ConstructorParameters<typeof RedisBroker>[0]> = {},
): Promise<{
  brokers: RedisBroker[]
  handlers: ReturnType<typeof collector>[]
  url: string
  prefix: string
  done: () => Promise<void>
}> {
  const url = await sharedRedis()
  const prefix = uniquePrefix('redis')
  const brokers: RedisBroker[] = []
  const handlers: ReturnType<typeof collector>[] = []
  for (let i = 0; i < n; i++) {
    const b = new RedisBroker({ ...limits, url, prefix, ...extra })
    const h = collector()
    await b.start({ id: `n${i}` }, h)
    brokers.push(b)
    handlers.push(h)
  }
  return {
    brokers,
    handlers,
    url,
    prefix,
    done: async () => {
      await Promise.all(brokers.map((b) => b.stop()))
      await deletePrefix(url, prefix)
    },
  }
}

describe('redis broker', () => {
  it('concurrent publishers on three nodes get 1…N, stored and delivered in that order', async () => {
    const d = await nodes(4)
    try {
      const [watcher] = d.handlers
      await d.brokers[0]!.interest('race', true)
      const PER = 200
      const publishers = d.brokers.slice(1)
      const results = await Promise.all(
        publishers.map((b, i) =>
          Promise.all(
            Array.from({ length: PER }, (_, k) => b.publish('race', { client: `p${i}` }, `${k}`)),
          ),
        ),
      )
      const seqs = results.flat().map((m) => m.seq)
      assert.deepEqual(
        [...seqs].sort((x, y) => x - y),
        Array.from({ length: PER * 3 }, (_, i) => i + 1),
        'every seq once, none skipped',
      )
      await waitFor(() => watcher!.messages.length === PER * 3, 'all messages on the watcher')
      assert.deepEqual(
        watcher!.messages.map((m) => m.seq),
        Array.from({ length: PER * 3 }, (_, i) => i + 1),
        'pub/sub delivers in seq order',
      )
      const h = await d.brokers[0]!.history('race', 0, 10_000)
      assert.deepEqual(
        h.messages.map((m) => m.seq),
        Array.from({ length: PER * 3 }, (_, i) => i + 1),
        'the stream holds them in seq order',
      )
      // Each publisher's own messages keep their order in the sequence.
      for (let i = 0; i < 3; i++) {
        const mine = h.messages.filter((m) => m.from.client === `p${i}`).map((m) => Number(m.data))
        assert.deepEqual(
          mine,
          Array.from({ length: PER }, (_, k) => k),
        )
      }
    } finally {
      await d.done()
    }
  })

  it('history after any position, bounded by count and age, reads the right slice', async () => {
    const d = await nodes(1, { historySize: 50 })
    try {
      const b = d.brokers[0]!
      for (let i = 1; i <= 120; i++) await b.publish('slice', {}, String(i))
      const h = await b.history('slice', 0, 1000)
      assert.deepEqual([h.first, h.last, h.messages.length], [71, 120, 50])
      for (const since of [0, 70, 71, 99, 118, 119, 120, 500]) {
        const r = await b.history('slice', since, 7)
        const from = Math.max(since + 1, 71)
        const want = Array.from({ length: Math.max(0, Math.min(7, 120 - from + 1)) }, (_, i) =>
          String(from + i),
        )
        assert.deepEqual(
          r.messages.map((m) => m.data),
          want,
          `since ${since}`,
        )
      }
    } finally {
      await d.done()
    }
  })

  it('a topic whose keys vanished (Redis restarted empty) starts a new epoch', async () => {
    const d = await nodes(1)
    try {
      const b = d.brokers[0]!
      const m1 = await b.publish('ep', {}, '1')
      await b.publish('ep', {}, '2')
      const c = await (await import('@redis/client')).createClient({ url: d.url }).connect()
      await c.del([`${d.prefix}{ep}:meta`])
      c.destroy()
      const m3 = await b.publish('ep', {}, '3')
      assert.equal(m3.seq, 1)
      assert.notEqual(m3.epoch, m1.epoch)
      const h = await b.history('ep', 0, 10)
      assert.equal(h.epoch, m3.epoch)
      assert.deepEqual(
        h.messages.map((m) => m.data),
        ['3'],
        'nothing of the old epoch is served',
      )
    } finally {
      await d.done()
    }
  })

  it('patterns: one delivery per node, exact and overlapping patterns included', async () => {
    const d = await nodes(2)
    try {
      const [a, b] = d.brokers
      const got = d.handlers[1]!.messages
      await b!.interest('p.*', true)
      await b!.interest('p.>', true)
      await b!.interest('p.x', true)
      await a!.publish('p.x', {}, '1') // exact + both patterns: once
      await a!.publish('p.y', {}, '2') // both patterns: once
      await a!.publish('p.y.z', {}, '3') // only p.> (the glob p.* also matches it)
      await a!.publish('q.x', {}, '4') // nothing
      await waitFor(() => got.length >= 3, 'three deliveries')
      await a!.publish('p.end', {}, '5')
      await waitFor(() => got.length >= 4, 'the marker')
      assert.deepEqual(
        got.map((m) => m.data),
        ['1', '2', '3', '5'],
      )
    } finally {
      await d.done()
    }
  })

  it('presence and registry entries of a node that dies disappear within its TTL', async () => {
    const d = await nodes(2, { nodeTtl: 600 })
    try {
      const [a, b] = d.brokers
      await a!.presenceAdd('room', { client: 'ca', node: 'n0', since: 1 })
      await b!.presenceAdd('room', { client: 'cb', node: 'n1', since: 1 })
      await b!.registryAdd({ client: 'cb', user: 'bob', node: 'n1' })
      assert.equal(await b!.claim('unsettled', 60_000), undefined)
      assert.equal((await a!.presence('room')).length, 2)
      assert.equal(await a!.locate({ user: 'bob' }), 1)
      const t0 = Date.now()
      b!.kill()
      await waitFor(
        async () => (await a!.presence('room')).length === 1,
        'the dead node’s presence to go',
      )
      assert.ok(Date.now() - t0 < 600 + 500, `gone within the TTL (${Date.now() - t0} ms)`)
      assert.equal(await a!.locate({ user: 'bob' }), 0)
      assert.equal(await a!.locate({ client: 'cb' }), 0)
      // And the sweeper deletes what it owned.
      const c = await (await import('@redis/client')).createClient({ url: d.url }).connect()
      await waitFor(
        async () => (await c.exists(`${d.prefix}c:cb`)) === 0,
        'the dead node’s registry entry to be swept',
      )
      c.destroy()
      assert.equal(
        await a!.claim('unsettled', 60_000),
        undefined,
        'a claim the dead node never settled is free again',
      )
    } finally {
      await d.done()
    }
  })

  it('a node that stops cleanly takes its entries with it at once', async () => {
    const d = await nodes(2)
    try {
      const [a, b] = d.brokers
      await b!.presenceAdd('leave', { client: 'cb', node: 'n1', since: 1 })
      await b!.registryAdd({ client: 'cb', user: 'bob', node: 'n1' })
      await b!.stop()
      assert.deepEqual(await a!.presence('leave'), [])
      assert.equal(await a!.locate({ user: 'bob' }), 0)
      const c = await (await import('@redis/client')).createClient({ url: d.url }).connect()
      assert.equal(await c.zScore(`${d.prefix}nodes`, 'n1'), null)
      assert.equal(await c.exists([`${d.prefix}c:cb`, `${d.prefix}node:n1`]), 0)
      c.destroy()
    } finally {
      await d.done()
    }
  })

  it('counts what it publishes and receives', async () => {
    const d = await nodes(2)
    try {
      const [a, b] = d.brokers
      await b!.interest('count', true)
      for (let i = 0; i < 5; i++) await a!.publish('count', {}, '1')
      await waitFor(() => b!.stats().received === 5, 'five received')
      assert.equal(a!.stats().published, 5)
      assert.equal(a!.stats().connected, true)
      assert.equal(a!.stats().queue, 0)
    } finally {
      await d.done()
    }
  })
})

describe('redis broker outages (a private redis-server)', () => {
  it('Redis down: commands fail fast and are counted, state is reported, subscriptions come back', async () => {
    const redis = await privateRedis()
    const states: Array<[boolean, string]> = []
    const mk = (id: string, h: BrokerHandler) => {
      const b = new RedisBroker({ ...limits, url: redis.url, commandTimeout: 200 })
      return b.start({ id }, h).then(() => b)
    }
    const got = collector()
    const a = await mk('a', { ...collector(), state: (up, why) => states.push([up, why]) })
    const b = await mk('b', got)
    try {
      await b.interest('back', true)
      await a.publish('back', {}, '1')
      await waitFor(() => got.messages.length === 1, 'first message')
      await redis.stop()
      await waitFor(() => !a.connected && states.length > 0, 'A sees the outage')
      assert.equal(states[0]![0], false)
      // The subscriber connection may notice the outage before the command connection does:
      // a command written to a socket that is closing fails as "reply lost" (it may have run).
      // Once the command connection knows, a command is refused unsent. Every try fails fast.
      const refused = await waitFor(async () => {
        const t0 = Date.now()
        const e = await a.publish('back', {}, '2').then(
          () => assert.fail('a publish with Redis down succeeded'),
          (err: unknown) => err,
        )
        assert.ok(e instanceof BrokerUnavailableError, `a BrokerUnavailableError: ${String(e)}`)
        assert.ok(Date.now() - t0 < 1500, 'within the command timeout, not forever')
        return e.notExecuted ? e : undefined
      }, 'a publish refused as not sent')
      assert.match(refused.message, /not sent/)
      assert.ok(a.stats().dropped >= 1, 'the refusal is counted')
      await redis.start()
      await waitFor(() => a.connected && b.connected, 'both reconnect', 10_000)
      assert.deepEqual(states.at(-1), [true, 'reconnected'])
      assert.ok(a.stats().reconnects >= 1)
      // B resubscribed by itself.
      await waitFor(
        async () => {
          await a.publish('back', {}, 'again')
          return got.messages.some((m) => m.data === 'again')
        },
        'a message after the restart',
        10_000,
      )
    } finally {
      await a.stop()
      await b.stop()
      await redis.close()
    }
  })

  it('Redis paused (CLIENT PAUSE 2000): the queue toward it is bounded, what it refuses is counted', async () => {
    const redis = await privateRedis()
    const b = new RedisBroker({ ...limits, url: redis.url, maxQueue: 200, replyTimeout: 10_000 })
    await b.start({ id: 'p' }, collector())
    try {
      const c = await redis.client()
      await b.publish('paused', {}, '0')
      gc()
      const heapBefore = process.memoryUsage().heapUsed
      await c.sendCommand(['CLIENT', 'PAUSE', '2000', 'ALL'])
      const tries: Array<Promise<'ok' | 'refused'>> = []
      let maxQueue = 0
      for (let i = 0; i < 2000; i++) {
        // A distinct 50 kB payload each: holding them all would take 100 MB.
        const data = JSON.stringify(`${i}:${'x'.repeat(50_000)}`)
        tries.push(
          b.publish('paused', {}, data).then(
            () => 'ok' as const,
            () => 'refused' as const,
          ),
        )
        maxQueue = Math.max(maxQueue, b.stats().queue)
        // Publishes come from separate socket reads in a server: let refusals settle.
        if (i % 50 === 0) await new Promise((r) => setImmediate(r))
      }
      await new Promise((r) => setImmediate(r))
      gc()
      const held = process.memoryUsage().heapUsed - heapBefore
      assert.ok(maxQueue <= 200, `at most 200 in flight (saw ${maxQueue})`)
      // The bound keeps about 200 × 50 kB.
      assert.ok(held < 30 * 1024 * 1024, `memory stays bounded (${held} bytes held)`)
      const outcome = await Promise.all(tries)
      const ok = outcome.filter((o) => o === 'ok').length
      const refused = outcome.length - ok
      assert.ok(ok > 0 && ok <= 200, `the queued ones went through after the pause (${ok})`)
      assert.equal(b.stats().dropped, refused, 'every refusal counted')
      assert.equal(b.stats().queue, 0)
      const h = await b.history('paused', 0, 10_000)
      assert.equal(h.last, ok + 1, 'seqs only for what was accepted')
    } finally {
      await b.stop()
      await redis.close()
    }
  })
})
