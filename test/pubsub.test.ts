/**
 * The `wirelog.v1` router over real sockets: negotiation, topics and patterns, publish with
 * ack and idempotent retries, direct messages, presence, history, bad input, and the log.
 */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { checkTopic, covers, matches } from '../src/index.js'
import { SubscriptionIndex } from '../src/pubsub/topics.js'
import { connect, waitFor, waitForLine, withServer } from './helpers.js'
import { type Frame, v1 } from './v1.js'

describe('topic grammar', () => {
  it('accepts dot-separated segments; * and > only in patterns; limits length', () => {
    assert.deepEqual(checkTopic('chat.room-1', false), { ok: true, pattern: false })
    assert.deepEqual(checkTopic('chat.*', true), { ok: true, pattern: true })
    assert.deepEqual(checkTopic('orders.>', true), { ok: true, pattern: true })
    for (const bad of ['', 'a..b', '.a', 'a.', 'a b', 'a.>.b', 'x'.repeat(257), 'a/b'])
      assert.equal(checkTopic(bad, true).ok, false, JSON.stringify(bad))
    assert.equal(checkTopic('chat.*', false).ok, false)
    assert.equal(checkTopic(Array(17).fill('a').join('.'), false).ok, false)
    assert.equal(checkTopic(42, false).ok, false)
  })

  it('matches * as one segment and > as the rest, without regular expressions', () => {
    assert.ok(matches('chat.*', 'chat.room1'))
    assert.ok(!matches('chat.*', 'chat.room1.x'))
    assert.ok(!matches('chat.*', 'chat'))
    assert.ok(matches('orders.>', 'orders.eu.created'))
    assert.ok(!matches('orders.>', 'orders'))
    assert.ok(matches('*.created', 'orders.created'))
    assert.ok(matches('>', 'anything.at.all'))
    // A pathological-looking pattern is just segment comparisons.
    const long = Array(16).fill('*').join('.')
    assert.ok(matches(long, Array(16).fill('a').join('.')))
  })

  it('covers(): a grant of chat.> covers chat.* and chat.x.y, not chat or other.*', () => {
    assert.ok(covers('chat.>', 'chat.*'))
    assert.ok(covers('chat.>', 'chat.x.y'))
    assert.ok(covers('chat.*', 'chat.x'))
    assert.ok(!covers('chat.*', 'chat.>'))
    assert.ok(!covers('chat.>', 'chat'))
    assert.ok(!covers('chat.*', 'other.x'))
    assert.ok(covers('>', 'a.>'))
  })

  it('the index delivers to exact and pattern subscribers and prunes on remove', () => {
    const idx = new SubscriptionIndex<string>()
    idx.add('a.b', false, 'exact')
    idx.add('a.*', true, 'star')
    idx.add('a.>', true, 'rest')
    idx.add('*.b', true, 'first')
    const got: string[] = []
    idx.match('a.b', (w) => got.push(w))
    assert.deepEqual(got.sort(), ['exact', 'first', 'rest', 'star'])
    idx.remove('a.*', true, 'star')
    idx.remove('a.>', true, 'rest')
    idx.remove('*.b', true, 'first')
    assert.equal(idx.patterns, 0)
    assert.equal(idx.has('a.c'), false)
    assert.equal(idx.has('a.b'), true)
  })
})

describe('wirelog.v1', () => {
  it('is negotiated by subprotocol; other clients keep the echo', async () => {
    await withServer({}, async (t) => {
      const a = await v1(t.url)
      assert.equal(a.ws.protocol, 'wirelog.v1')
      assert.equal(a.welcome.v, 1)
      assert.equal(typeof a.welcome.client, 'string')
      assert.equal(typeof a.welcome.session, 'string')
      assert.match(String(a.welcome.resume), /^[\w-]+\.[\w-]+$/)
      const plain = await connect(t.url)
      plain.ws.send('hi')
      assert.deepEqual(await plain.waitMessages(1), ['Echo: hi'])
      plain.ws.close()
      await a.close()
    })
  })

  it('--behaviour pubsub makes the router everyone\u2019s behaviour', async () => {
    await withServer({ behaviour: 'pubsub' }, async (t) => {
      const c = await connect(t.url)
      await c.waitMessages(1)
      assert.equal((JSON.parse(String(c.received[0])) as Frame).op, 'welcome')
      c.ws.close()
    })
  })

  it('publish reaches exact and pattern subscribers once, in order, with seq; publisher gets an ack', async () => {
    await withServer({ log: { format: 'json' } }, async (t) => {
      const sub = await v1(t.url)
      const pat = await v1(t.url)
      const pub = await v1(t.url)
      assert.equal((await sub.call({ op: 'subscribe', topic: 'chat.room1' })).op, 'ack')
      await pat.call({ op: 'subscribe', topic: 'chat.*' })
      await pat.call({ op: 'subscribe', topic: 'chat.>' }) // overlapping: still one copy
      for (let i = 1; i <= 5; i++) {
        const ack = await pub.call({ op: 'publish', topic: 'chat.room1', data: { n: i } })
        assert.deepEqual([ack.op, ack.seq], ['ack', i])
      }
      await waitFor(() => sub.messages().length === 5 && pat.messages().length === 5, 'deliveries')
      for (const c of [sub, pat]) {
        assert.deepEqual(
          c.messages().map((m) => [m.seq, (m.data as { n: number }).n]),
          [
            [1, 1],
            [2, 2],
            [3, 3],
            [4, 4],
            [5, 5],
          ],
        )
        const m = c.messages()[0]!
        assert.equal(m.topic, 'chat.room1')
        assert.deepEqual(m.from, { client: pub.welcome.client })
        assert.equal(typeof m.time, 'number')
      }
      assert.equal(pub.messages().length, 0, 'the publisher is not subscribed')
      // One log line per publish, with the recipient count.
      const lines = await waitForLine(t.logPath, /"event":"topic.published"/, 5)
      const e = JSON.parse(lines[0]!) as Record<string, unknown>
      assert.deepEqual([e.topic, e.seq, e.recipients], ['chat.room1', 1, 2])
      assert.deepEqual(e.data, { n: 1 })
      for (const c of [sub, pat, pub]) await c.close()
    })
  })

  it('a publish retried with the same id is published once and acked as a duplicate', async () => {
    await withServer({}, async (t) => {
      const sub = await v1(t.url)
      await sub.call({ op: 'subscribe', topic: 'orders' })
      const pub = await v1(t.url)
      pub.send({ op: 'publish', id: 'order-1', topic: 'orders', data: 'x' })
      const first = await pub.next((f) => f.id === 'order-1', 'first ack')
      pub.send({ op: 'publish', id: 'order-1', topic: 'orders', data: 'x' })
      const again = await pub.next((f) => f.id === 'order-1' && f.duplicate === true, 'dup ack')
      assert.equal(first.seq, 1)
      assert.equal(again.seq, 1)
      await pub.call({ op: 'ping' })
      await waitFor(() => sub.messages().length >= 1, 'delivery')
      assert.equal(sub.messages().length, 1)
      await sub.close()
      await pub.close()
    })
  })

  it('direct messages to a client id and to every connection of a user', async () => {
    await withServer(
      {
        admit: (req) => ({
          accept: true,
          user: { id: req.query.get('u') ?? 'anon', claims: {} },
        }),
      },
      async (t) => {
        const bob1 = await v1(`${t.url}/?u=bob`)
        const bob2 = await v1(`${t.url}/?u=bob`)
        const alice = await v1(`${t.url}/?u=alice`)
        assert.equal(
          (await alice.call({ op: 'send', to: { user: 'bob' }, data: 'hi bob' })).op,
          'ack',
        )
        for (const b of [bob1, bob2]) {
          const d = await b.next((f) => f.op === 'direct', 'direct')
          assert.deepEqual([d.data, (d.from as { user: string }).user], ['hi bob', 'alice'])
        }
        await alice.call({ op: 'send', to: { client: String(bob1.welcome.client) }, data: 1 })
        await bob1.next((f) => f.op === 'direct' && f.data === 1, 'direct to client')
        const unknown = await alice.call({ op: 'send', to: { client: 'nobody' }, data: 1 })
        assert.deepEqual([unknown.op, unknown.code], ['error', 'UNKNOWN_TARGET'])
        // The server can send too.
        assert.equal(await t.server.send({ user: 'bob' }, { from: 'server' }), 2)
        await bob2.next(
          (f) => f.op === 'direct' && JSON.stringify(f.data) === '{"from":"server"}',
          'server direct',
        )
        await waitForLine(t.logPath, /Direct message: user:bob \(2\)/)
        for (const c of [bob1, bob2, alice]) await c.close()
      },
    )
  })

  it('presence lists subscribers; join/leave go to those who asked', async () => {
    await withServer({}, async (t) => {
      const watcher = await v1(t.url)
      await watcher.call({ op: 'subscribe', topic: 'room', presence: true })
      const joiner = await v1(t.url)
      await joiner.call({ op: 'subscribe', topic: 'room' })
      const join = await watcher.next((f) => f.op === 'join', 'join')
      assert.equal(join.client, joiner.welcome.client)
      const p = await watcher.call({ op: 'presence', topic: 'room' })
      assert.deepEqual(
        (p.clients as Array<{ client: string }>).map((c) => c.client).sort(),
        [String(watcher.welcome.client), String(joiner.welcome.client)].sort(),
      )
      assert.equal((await t.server.presence('room')).length, 2)
      await joiner.close()
      const leave = await watcher.next((f) => f.op === 'leave', 'leave')
      assert.equal(leave.client, joiner.welcome.client)
      await watcher.close()
    })
  })

  it('history and subscribe with since replay from a position', async () => {
    await withServer({}, async (t) => {
      for (let i = 1; i <= 10; i++) await t.server.publish('feed', i)
      const c = await v1(t.url)
      const h = await c.call({ op: 'history', topic: 'feed', since: 7 })
      assert.deepEqual(
        (h.messages as Frame[]).map((m) => m.data),
        [8, 9, 10],
      )
      const ack = await c.call({
        op: 'subscribe',
        topic: 'feed',
        since: { seq: 5, epoch: String(h.epoch) },
      })
      assert.equal(ack.replayed, 5)
      assert.deepEqual(
        c.messages('feed').map((m) => m.seq),
        [6, 7, 8, 9, 10],
      )
      await t.server.publish('feed', 11)
      await waitFor(() => c.messages('feed').length === 6, 'live after replay')
      await c.close()
    })
  })

  it('bad input: each gets an error frame with its code and one log line; the socket stays open', async () => {
    await withServer({ pubsub: { maxSubscriptions: 2, maxDataBytes: 64 } }, async (t) => {
      const c = await v1(t.url)
      const bystander = await v1(t.url)
      await bystander.call({ op: 'subscribe', topic: 'ok' })
      const cases: Array<[string | Record<string, unknown>, string]> = [
        ['not json', 'BAD_JSON'],
        ['[1,2]', 'BAD_JSON'],
        [{ op: 'nope' }, 'UNKNOWN_OP'],
        [{ op: 'subscribe', topic: 5 }, 'BAD_FRAME'],
        [{ op: 'subscribe', topic: 'a..b' }, 'BAD_TOPIC'],
        [{ op: 'publish', topic: 'a.*', data: 1 }, 'BAD_TOPIC'],
        [{ op: 'publish', topic: 'a', data: 'x'.repeat(100) }, 'TOO_BIG'],
        [{ op: 'unsubscribe', topic: 'never' }, 'NOT_SUBSCRIBED'],
        [{ op: 'send', to: { client: 'ghost' }, data: 1 }, 'UNKNOWN_TARGET'],
        [{ op: 'refresh', token: 'x' }, 'AUTH_DISABLED'],
        [{ op: 'resume', token: 'junk' }, 'SESSION_INVALID'],
      ]
      let id = 0
      for (const [frame, code] of cases) {
        const fid = `bad${++id}`
        const from = c.frames.length
        c.ws.send(typeof frame === 'string' ? frame : JSON.stringify({ ...frame, id: fid }))
        const err = await c.next((f) => f.op === 'error' && f.code === code, code, from)
        if (typeof frame !== 'string') assert.equal(err.id, fid)
        assert.equal(typeof err.message, 'string')
      }
      await c.call({ op: 'subscribe', topic: 'one' })
      await c.call({ op: 'subscribe', topic: 'two' })
      assert.equal(
        (await c.call({ op: 'subscribe', topic: 'three' })).code,
        'TOO_MANY_SUBSCRIPTIONS',
      )
      c.ws.send(Buffer.from([1, 2, 3]))
      await c.next((f) => f.code === 'BINARY_NOT_SUPPORTED', 'binary refused')
      // Still open, still served; the bystander too.
      assert.equal((await c.call({ op: 'ping' })).op, 'pong')
      await t.server.publish('ok', 'fine')
      await bystander.next((f) => f.op === 'message', 'bystander served')
      const lines = await waitForLine(t.logPath, /Request refused: /, cases.length + 2)
      assert.ok(lines.length >= cases.length + 2)
      await c.close()
      await bystander.close()
    })
  })

  it('a flood of bad frames counts against the rate limit like any message', async () => {
    await withServer({ limits: { rateLimit: 20, rateLimitAction: 'close' } }, async (t) => {
      const c = await v1(t.url)
      for (let i = 0; i < 200; i++) c.ws.send('garbage')
      const [code] = (await new Promise((r) => c.ws.once('close', (code) => r([code])))) as [number]
      assert.equal(code, 1008)
    })
  })

  it('server.publish / history / subscriptions from the library', async () => {
    await withServer({}, async (t) => {
      const c = await v1(t.url)
      await c.call({ op: 'subscribe', topic: 'news.*' })
      const r = await t.server.publish('news.eu', { headline: 'x' })
      assert.deepEqual([r.seq, r.recipients], [1, 1])
      const m = await c.next((f) => f.op === 'message', 'message')
      assert.deepEqual(m.from, {})
      assert.deepEqual(t.server.subscriptions([...t.server.clients][0]!), ['news.*'])
      const h = await t.server.history('news.eu')
      assert.equal(h.messages.length, 1)
      await assert.rejects(() => t.server.publish('bad..topic', 1), TypeError)
      await c.close()
    })
  })
})
