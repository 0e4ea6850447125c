/**
 * The contract every `Broker` implementation passes, run unchanged against each one. Two
 * nodes (A and B) share one deployment; each test starts them fresh.
 */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import type {
  Broker,
  BrokerHandler,
  BrokerLimits,
  Signal,
  SignalTarget,
  TopicMessage,
} from '../src/broker/types.js'
import { waitFor } from './helpers.js'

export interface Deployment {
  a: Broker
  b: Broker
  /** Called after the test, after both brokers were stopped. */
  cleanup?: () => Promise<void>
}

interface Node {
  broker: Broker
  messages: TopicMessage[]
  signals: Array<[SignalTarget, Signal]>
}

export function brokerContract(
  name: string,
  make: (limits: BrokerLimits) => Promise<Deployment>,
): void {
  const limits: BrokerLimits = { historySize: 5, historyTtl: 60_000, historyTopics: 100 }

  async function run(
    fn: (a: Node, b: Node) => Promise<void>,
    l: BrokerLimits = limits,
  ): Promise<void> {
    const d = await make(l)
    const nodes: Node[] = []
    for (const [id, broker] of [
      ['node-a', d.a],
      ['node-b', d.b],
    ] as const) {
      const n: Node = { broker, messages: [], signals: [] }
      const handler: BrokerHandler = {
        message: (m) => n.messages.push(m),
        signal: (t, s) => n.signals.push([t, s]),
      }
      await broker.start({ id }, handler)
      nodes.push(n)
    }
    try {
      await fn(nodes[0]!, nodes[1]!)
    } finally {
      await d.a.stop()
      await d.b.stop()
      await d.cleanup?.()
    }
  }

  describe(`broker contract: ${name}`, () => {
    it('assigns 1, 2, 3, … per topic, with one epoch, across nodes', async () => {
      await run(async (a, b) => {
        const m1 = await a.broker.publish('t.one', { client: 'c1' }, '"x"')
        const m2 = await b.broker.publish('t.one', { client: 'c2', user: 'u' }, '{"n":2}')
        const other = await a.broker.publish('t.two', {}, 'null')
        assert.deepEqual([m1.seq, m2.seq, other.seq], [1, 2, 1])
        assert.equal(m1.epoch, m2.epoch)
        assert.ok(m1.epoch.length > 0)
        assert.equal(m2.data, '{"n":2}')
        assert.deepEqual(m2.from, { client: 'c2', user: 'u' })
        assert.equal(m1.node, 'node-a')
        assert.ok(Math.abs(m1.time - Date.now()) < 5000)
      })
    })

    it('keeps a bounded history and reports first/last', async () => {
      await run(async (a) => {
        for (let i = 1; i <= 8; i++) await a.broker.publish('h', {}, String(i))
        const all = await a.broker.history('h', 0, 100)
        assert.deepEqual(
          all.messages.map((m) => m.seq),
          [4, 5, 6, 7, 8],
        )
        assert.deepEqual([all.first, all.last], [4, 8])
        const since = await a.broker.history('h', 6, 100)
        assert.deepEqual(
          since.messages.map((m) => m.data),
          ['7', '8'],
        )
        const limited = await a.broker.history('h', 0, 2)
        assert.deepEqual(
          limited.messages.map((m) => m.seq),
          [4, 5],
        )
        const none = await a.broker.history('never', 0, 10)
        assert.deepEqual([none.messages.length, none.first, none.last], [0, 0, 0])
      })
    })

    it('drops history older than historyTtl', async () => {
      await run(
        async (a) => {
          await a.broker.publish('ttl', {}, '1')
          await waitFor(
            async () => (await a.broker.history('ttl', 0, 10)).messages.length === 0,
            'the message to age out',
          )
          const h = await a.broker.history('ttl', 0, 10)
          assert.equal(h.last, 1, 'the sequence is not forgotten')
          assert.equal((await a.broker.publish('ttl', {}, '2')).seq, 2)
        },
        { ...limits, historyTtl: 300 },
      )
    })

    it('fans out to nodes with interest (topics and patterns), never back to the publisher', async () => {
      await run(async (a, b) => {
        await b.broker.interest('room.*', true)
        await a.broker.interest('room.*', true)
        await a.broker.publish('room.1', {}, '1')
        await a.broker.publish('other', {}, '2')
        await waitFor(() => b.messages.length === 1, 'B gets room.1')
        assert.equal(b.messages[0]!.topic, 'room.1')
        await b.broker.interest('room.*', false)
        await b.broker.interest('exact', true)
        await a.broker.publish('room.2', {}, '3')
        await a.broker.publish('exact', {}, '4')
        await waitFor(() => b.messages.length === 2, 'B gets exact')
        assert.deepEqual(
          b.messages.map((m) => m.data),
          ['1', '4'],
        )
        assert.equal(a.messages.length, 0, 'A never hears its own publishes')
      })
    })

    it('lists topics with history matching a pattern', async () => {
      await run(async (a) => {
        await a.broker.publish('p.x', {}, '1')
        await a.broker.publish('p.y', {}, '1')
        await a.broker.publish('q.x', {}, '1')
        assert.deepEqual((await a.broker.topics('p.*')).sort(), ['p.x', 'p.y'])
        assert.deepEqual((await a.broker.topics('>')).sort(), ['p.x', 'p.y', 'q.x'])
      })
    })

    it('routes signals to the node holding a client, a user, a topic or a node', async () => {
      await run(async (a, b) => {
        await b.broker.registryAdd({ client: 'cb', user: 'bob', node: 'node-b' })
        await a.broker.registryAdd({ client: 'ca', user: 'alice', node: 'node-a' })
        assert.equal(await a.broker.locate({ client: 'cb' }), 1)
        assert.equal(await a.broker.locate({ user: 'bob' }), 1)
        assert.equal(await a.broker.locate({ user: 'nobody' }), 0)
        const s = (kind: Signal['kind']): Signal => ({ kind, node: 'node-a', body: { x: 1 } })
        await a.broker.signal({ client: 'cb' }, s('direct'))
        await a.broker.signal({ user: 'bob' }, s('direct'))
        await b.broker.interest('pres', true)
        await a.broker.signal({ topic: 'pres' }, s('join'))
        await a.broker.signal({ node: 'node-b' }, s('kick'))
        await waitFor(() => b.signals.length === 4, 'B gets four signals')
        assert.deepEqual(
          b.signals.map(([t, sig]) => [Object.keys(t)[0], sig.kind, sig.body.x]),
          [
            ['client', 'direct', 1],
            ['user', 'direct', 1],
            ['topic', 'join', 1],
            ['node', 'kick', 1],
          ],
        )
        await a.broker.signal({ client: 'ca' }, s('direct'))
        assert.equal(a.signals.length, 0, 'a node does not signal itself')
        await b.broker.registryRemove('cb')
        assert.equal(await a.broker.locate({ user: 'bob' }), 0)
      })
    })

    it('shares presence across nodes', async () => {
      await run(async (a, b) => {
        await a.broker.presenceAdd('room', { client: 'c1', user: 'u1', node: 'node-a', since: 1 })
        await b.broker.presenceAdd('room', { client: 'c2', node: 'node-b', since: 2 })
        const list = await a.broker.presence('room')
        assert.deepEqual(list.map((e) => e.client).sort(), ['c1', 'c2'])
        assert.equal(list.find((e) => e.client === 'c1')!.user, 'u1')
        await a.broker.presenceRemove('room', 'c1')
        assert.deepEqual(
          (await b.broker.presence('room')).map((e) => e.client),
          ['c2'],
        )
      })
    })

    it('keeps sessions until their TTL, readable from any node', async () => {
      await run(async (a, b) => {
        const rec = {
          id: 'sess-1',
          secretHash: 'h',
          user: 'u',
          subscriptions: [{ topic: 't', pattern: false, presence: false, since: 5 }],
          createdAt: 1,
          detachedAt: 2,
        }
        await a.broker.sessionSave(rec, 60_000)
        assert.deepEqual(await b.broker.sessionLoad('sess-1'), rec)
        await b.broker.sessionDelete('sess-1')
        assert.equal(await a.broker.sessionLoad('sess-1'), undefined)
        await a.broker.sessionSave({ ...rec, id: 'sess-2' }, 200)
        await waitFor(async () => (await b.broker.sessionLoad('sess-2')) === undefined, 'expiry')
      })
    })

    it('claims idempotency keys once', async () => {
      await run(async (a, b) => {
        assert.equal(await a.broker.claim('k', 60_000), undefined)
        assert.equal(await b.broker.claim('k', 60_000), 'pending')
        const m = await a.broker.publish('claims', { client: 'c1' }, '1', {
          key: 'k',
          ttlMs: 60_000,
        })
        assert.equal(await b.broker.claim('k', 60_000), String(m.seq))
      })
    })

    it('settles a claim with the seq in the publish itself; a release drops only a pending claim', async () => {
      await run(async (a, b) => {
        const from = { client: 'c1' }
        assert.equal(await a.broker.claim('p1', 60_000), undefined)
        const m = await a.broker.publish('claimed', from, '1', { key: 'p1', ttlMs: 60_000 })
        // As a retry elsewhere sees it, with no settle() in between (a lost reply).
        assert.equal(await b.broker.claim('p1', 60_000), String(m.seq))
        await a.broker.release('p1')
        assert.equal(await b.broker.claim('p1', 60_000), String(m.seq), 'a settled claim stays')
        // A publish that never ran: its pending claim is released, and the next claim wins.
        assert.equal(await a.broker.claim('p2', 60_000), undefined)
        await a.broker.release('p2')
        assert.equal(await b.broker.claim('p2', 60_000), undefined, 'free again')
        assert.equal(await a.broker.claim('p2', 60_000), 'pending')
        // Without a claim, publish stores none.
        await a.broker.publish('claimed', from, '2')
        assert.equal(await b.broker.claim('p3', 60_000), undefined)
      })
    })

    it('forgets the least recently published topics beyond historyTopics', async () => {
      await run(
        async (a) => {
          for (const t of ['t1', 't2', 't3', 't4']) await a.broker.publish(t, {}, '1')
          await a.broker.publish('t1', {}, '2') // t1 is recent again
          const kept = (await a.broker.topics('>')).sort()
          assert.ok(kept.length <= 3, `at most 3 topics kept, got ${kept.join(',')}`)
          assert.ok(kept.includes('t1') && kept.includes('t4'))
          assert.ok(!kept.includes('t2'))
        },
        { ...limits, historyTopics: 3 },
      )
    })
  })
}
