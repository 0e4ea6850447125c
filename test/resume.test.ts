/**
 * Sessions that survive a reconnect: TCP cut mid-stream (the socket destroyed, no close
 * handshake), exactly-once in-order delivery over 10,000 messages, the explicit gap when
 * history is too short, expiry, another user's token, and takeover of a half-open session.
 */
import { strict as assert } from 'node:assert'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { connect as clientConnect, type TopicMessage } from '../src/client/index.js'
import type { Connection } from '../src/connection.js'
import { type startServer, waitFor, waitForLine, withServer } from './helpers.js'
import { type Frame, v1 } from './v1.js'

/** Cut the TCP connection of the server-side client with id `id`, no close frame. */
function cut(t: Awaited<ReturnType<typeof startServer>>, id: string): void {
  const conn = [...t.server.clients].find((c) => c.id === id) as Connection | undefined
  assert.ok(conn, `client ${id} is connected`)
  conn.terminate(1006, 'test: TCP cut')
}

describe('sessions and resume', () => {
  it('10,000 messages with three TCP cuts mid-stream arrive exactly once, in order', async () => {
    const TOTAL = 10_000
    await withServer(
      { pubsub: { historySize: TOTAL, sessionTtl: 60 }, log: { enabled: false } },
      async (t) => {
        const seqs: number[] = []
        const resumed: number[] = []
        t.server.events.on('ws', 'session.resumed', (e) => {
          resumed.push(e.replayed)
        })
        const client = clientConnect(t.url, { reconnect: { initialDelay: 5, maxDelay: 50 } })
        try {
          const sub = client.subscribe('stream', (m: TopicMessage) => {
            seqs.push(m.seq)
          })
          // The client's 'open' event comes once the session is settled (after `resumed`).
          let resumedOpens = 0
          client.on('open', (o) => {
            if (o.resumed) resumedOpens++
          })
          await client.ready
          await sub.ready
          const cutsAt = [2_000, 5_000, 8_000]
          let published = 0
          const publisher = (async () => {
            while (published < TOTAL) {
              // Batches, so the stream is really in flight when a cut comes.
              for (let i = 0; i < 250 && published < TOTAL; i++) {
                published++
                void t.server.publish('stream', { n: published })
              }
              await new Promise((r) => setImmediate(r))
            }
          })()
          for (const [i, at] of cutsAt.entries()) {
            await waitFor(() => seqs.length >= at, `${at} messages before a cut`, 20_000)
            const id = client.clientId!
            cut(t, id)
            // Reconnected and resumed (a cut during the resume itself would be a fourth cut).
            await waitFor(
              () => client.clientId !== id && resumedOpens === i + 1,
              'the client to reconnect and resume',
              20_000,
            )
          }
          await publisher
          await waitFor(() => seqs.length >= TOTAL, `${TOTAL} messages`, 30_000)
          // Let anything extra arrive before judging "exactly once".
          await waitFor(
            async () => (await client.history('stream', { since: TOTAL - 1 })).last === TOTAL,
            'history',
          )
          const wrong = seqs.findIndex((s, i) => s !== i + 1)
          assert.equal(
            wrong,
            -1,
            `message ${wrong + 1} in place (around it: ${seqs.slice(Math.max(0, wrong - 3), wrong + 4).join(',')})`,
          )
          assert.equal(seqs.length, TOTAL, 'no duplicates')
          assert.equal(
            resumed.length,
            cutsAt.length,
            `every reconnect resumed its session (replayed ${resumed.join(', ')})`,
          )
        } finally {
          client.close()
        }
      },
    )
  })

  it('a resume after history moved on says exactly which range is missing', async () => {
    await withServer({ pubsub: { historySize: 10 } }, async (t) => {
      const a = await v1(t.url)
      await a.call({ op: 'subscribe', topic: 'feed' })
      for (let i = 1; i <= 5; i++) await t.server.publish('feed', i)
      await waitFor(() => a.messages().length === 5, 'first five')
      const epoch = String(a.messages()[0]!.epoch)
      cut(t, String(a.welcome.client))
      await once(a.ws, 'close')
      for (let i = 6; i <= 55; i++) await t.server.publish('feed', i)
      const b = await v1(t.url)
      const r = await b.call({
        op: 'resume',
        token: String(a.welcome.resume),
        positions: { feed: { seq: 5, epoch } },
      })
      assert.equal(r.op, 'resumed')
      assert.equal(r.session, a.welcome.session)
      assert.deepEqual(r.subscriptions, ['feed'])
      assert.equal(r.replayed, 10)
      assert.deepEqual(r.gaps, [{ topic: 'feed', reason: 'history', epoch, from: 6, to: 45 }])
      const gapAt = b.frames.findIndex((f) => f.op === 'gap')
      const firstMsg = b.frames.findIndex((f) => f.op === 'message')
      assert.ok(gapAt >= 0 && gapAt < firstMsg, 'the gap is announced before the replay')
      assert.deepEqual(
        b.messages().map((m) => m.seq),
        [46, 47, 48, 49, 50, 51, 52, 53, 54, 55],
      )
      // Live again, after the replay.
      await t.server.publish('feed', 56)
      await waitFor(() => b.messages().length === 11, 'live message')
      await waitForLine(t.logPath, /Session resumed: 127\.0\.0\.1 .* replayed=10 gaps=1/)
      await b.close()
    })
  })

  it('a resume with no gap replays exactly what was missed before anything new', async () => {
    await withServer({}, async (t) => {
      const a = await v1(t.url)
      await a.call({ op: 'subscribe', topic: 'x' })
      await a.call({ op: 'subscribe', topic: 'y.*' })
      await t.server.publish('x', 1)
      await t.server.publish('y.a', 1)
      await waitFor(() => a.messages().length === 2, 'two messages')
      const pos = Object.fromEntries(
        a.messages().map((m) => [m.topic, { seq: m.seq, epoch: m.epoch }]),
      )
      cut(t, String(a.welcome.client))
      await once(a.ws, 'close')
      await t.server.publish('x', 2)
      await t.server.publish('y.a', 2)
      await t.server.publish('y.b', 1) // a topic the client never saw, under its pattern
      const b = await v1(t.url)
      const r = await b.call({ op: 'resume', token: String(a.welcome.resume), positions: pos })
      assert.equal(r.replayed, 3)
      assert.deepEqual(r.gaps, [])
      assert.deepEqual(
        b
          .messages()
          .map((m) => `${String(m.topic)}#${String(m.seq)}`)
          .sort(),
        ['x#2', 'y.a#2', 'y.b#1'],
      )
      await b.close()
    })
  })

  it('expired sessions and other users\u2019 tokens are refused explicitly', async () => {
    await withServer(
      {
        pubsub: { sessionTtl: 1 },
        admit: (req) => ({ accept: true, user: { id: req.query.get('u') ?? 'x', claims: {} } }),
      },
      async (t) => {
        const alice = await v1(`${t.url}/?u=alice`)
        await alice.call({ op: 'subscribe', topic: 't' })
        const token = String(alice.welcome.resume)
        await alice.close()
        const mallory = await v1(`${t.url}/?u=mallory`)
        const stolen = await mallory.call({ op: 'resume', token })
        assert.deepEqual([stolen.op, stolen.code], ['error', 'SESSION_INVALID'])
        await mallory.close()
        await waitFor(
          async () => {
            const probe = await v1(`${t.url}/?u=alice`)
            const r = await probe.call({ op: 'resume', token })
            await probe.close()
            return r.code === 'SESSION_EXPIRED' ? r : undefined
          },
          'the session to expire',
          8000,
        )
        await waitForLine(t.logPath, /Session expired: /)
        // Resume must come first.
        const late = await v1(`${t.url}/?u=alice`)
        await late.call({ op: 'subscribe', topic: 'z' })
        assert.equal((await late.call({ op: 'resume', token })).code, 'SESSION_INVALID')
        await late.close()
      },
    )
  })

  it('resuming a session still held by a half-open connection takes it over (4004)', async () => {
    await withServer({}, async (t) => {
      const old = await v1(t.url)
      await old.call({ op: 'subscribe', topic: 't' })
      const closed = new Promise<number>((r) => old.ws.once('close', (code) => r(code)))
      const fresh = await v1(t.url)
      const r: Frame = await fresh.call({ op: 'resume', token: String(old.welcome.resume) })
      assert.equal(r.op, 'resumed')
      assert.equal(await closed, 4004)
      await t.server.publish('t', 'after')
      await fresh.next((f) => f.op === 'message', 'delivered to the new connection')
      await fresh.close()
    })
  })
})
