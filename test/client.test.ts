/**
 * `wirelog/client` in Node (20: through the `ws` package) and in headless Chromium (the
 * page imports `/wirelog-client.js` from the server, the token rides in the subprotocol),
 * and several nodes sharing one in-process broker.
 */
import { strict as assert } from 'node:assert'
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { MemoryBroker, MemoryHub } from '../src/broker/memory.js'
import { connect, type WirelogError } from '../src/client/index.js'
import type { Connection } from '../src/connection.js'
import { createServer, type WirelogOptions } from '../src/index.js'
import { withChromium } from './chromium.js'
import { startServer, tempDir, waitFor } from './helpers.js'
import { v1 } from './v1.js'

type T = Awaited<ReturnType<typeof startServer>>

async function withServer(options: WirelogOptions, fn: (t: T) => Promise<void>): Promise<void> {
  const t = await startServer(options)
  try {
    await fn(t)
  } finally {
    await t.stop()
  }
}

describe('wirelog/client in Node', () => {
  it('subscribes with a callback and an async iterator, publishes with acks, gets directs', async () => {
    await withServer({}, async (t) => {
      const a = connect(t.url)
      const b = connect(t.url)
      const viaCallback: unknown[] = []
      const sub = b.subscribe('chat.*', (m) => viaCallback.push(m.data))
      await sub.ready
      await Promise.all([a.ready, b.ready])
      const acks = []
      for (let i = 1; i <= 3; i++) acks.push(await a.publish('chat.lobby', { i }))
      assert.deepEqual(
        acks.map((x) => x.seq),
        [1, 2, 3],
      )
      const it = b.subscribe<{ i: number }>('chat.lobby')
      const got: number[] = []
      await t.server.publish('chat.lobby', { i: 4 })
      for await (const m of it) {
        got.push(m.data.i)
        break
      }
      assert.deepEqual(got, [4])
      await waitFor(() => viaCallback.length === 4, 'callback deliveries')
      const direct = new Promise((r) => b.on('direct', (d) => r(d.data)))
      await a.send({ client: b.clientId! }, 'psst')
      assert.equal(await direct, 'psst')
      await assert.rejects(
        () => a.publish('bad..topic', 1),
        (e: WirelogError) => e.code === 'BAD_TOPIC',
      )
      a.close()
      b.close()
    })
  })

  it('a publish in flight across a TCP cut is retried and published once', async () => {
    await withServer({}, async (t) => {
      const watcher = await v1(t.url)
      await watcher.call({ op: 'subscribe', topic: 'once' })
      const c = connect(t.url, { reconnect: { initialDelay: 5 } })
      await c.ready
      // Cut the connection right after the publish leaves: the ack is lost, not the publish.
      const p = c.publish('once', 'x')
      const conn = [...t.server.clients].find((x) => x.id === c.clientId) as Connection
      conn.terminate(1006, 'test: cut')
      const ack = await p
      assert.equal(ack.seq, 1)
      await t.server.publish('once', 'y')
      await waitFor(() => watcher.messages().length === 2, 'two messages')
      assert.deepEqual(
        watcher.messages().map((m) => m.data),
        ['x', 'y'],
      )
      c.close()
      await watcher.close()
    })
  })

  it('stops reconnecting after a terminal close code', async () => {
    await withServer({}, async (t) => {
      const c = connect(t.url, { reconnect: { initialDelay: 5 } })
      await c.ready
      const closed = new Promise((r) => c.on('state', (s) => s === 'closed' && r(s)))
      const conn = [...t.server.clients][0]!
      conn.close(1008, 'policy')
      assert.equal(await closed, 'closed')
      await waitFor(() => t.server.clients.size === 0, 'the server to see it go')
      // 'closed' is final: only 'reconnecting' schedules another attempt.
      assert.equal(c.state, 'closed')
    })
  })
})

describe('several nodes on one broker', () => {
  it('publish, direct messages and presence cross nodes, in order', async () => {
    const hub = new MemoryHub()
    const limits = { historySize: 100, historyTtl: 60_000, historyTopics: 100 }
    const dir = tempDir()
    const nodes = [0, 1].map((i) =>
      createServer(
        {
          host: '127.0.0.1',
          port: 0,
          log: { dir, file: `node${i}.log` },
          admit: (req) => ({ accept: true, user: { id: req.query.get('u') ?? 'x', claims: {} } }),
        },
        { broker: new MemoryBroker({ ...limits, hub }) },
      ),
    )
    const ports = await Promise.all(nodes.map(async (n) => (await n.listen()).port))
    try {
      const onA = await v1(`ws://127.0.0.1:${ports[0]}/?u=alice`)
      const onB = await v1(`ws://127.0.0.1:${ports[1]}/?u=bob`)
      await onB.call({ op: 'subscribe', topic: 'x', presence: true })
      await onA.call({ op: 'subscribe', topic: 'x' })
      await onB.next((f) => f.op === 'join', 'join from the other node')
      for (let i = 1; i <= 50; i++) onA.send({ op: 'publish', topic: 'x', data: i })
      await waitFor(() => onB.messages('x').length === 50, 'cross-node deliveries')
      assert.deepEqual(
        onB.messages('x').map((m) => m.seq),
        Array.from({ length: 50 }, (_, i) => i + 1),
      )
      const p = await onA.call({ op: 'presence', topic: 'x' })
      assert.equal((p.clients as unknown[]).length, 2)
      await onA.call({ op: 'send', to: { user: 'bob' }, data: 'hi' })
      await onB.next((f) => f.op === 'direct' && f.data === 'hi', 'direct across nodes')
      await onA.close()
      await onB.close()
    } finally {
      await Promise.all(nodes.map((n) => n.close()))
    }
  })
})

describe('wirelog/client in Chromium', () => {
  it('two tabs: JWT in the subprotocol, publish in one, receive in the other, cut, resume with no loss', async () => {
    const secret = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const keyPath = join(tempDir('wirelog-key-'), 'jwt.pem')
    writeFileSync(keyPath, secret.publicKey.export({ type: 'spki', format: 'pem' }))
    const token = (sub: string) =>
      new SignJWT({ wirelog: { subscribe: ['room.>'], publish: ['room.>'] } })
        .setProtectedHeader({ alg: 'ES256' })
        .setSubject(sub)
        .setExpirationTime('1h')
        .sign(secret.privateKey)
    await withServer(
      { behaviour: 'pubsub', auth: { mode: 'jwt', jwt: { key: keyPath } } },
      async (t) => {
        t.server.route('/two-tabs', (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/html' })
          res.end(`<!doctype html><meta charset="utf-8"><title>tab</title><pre id="log"></pre>
<script type="module">
  import { connect } from '/wirelog-client.js'
  const q = new URLSearchParams(location.search)
  const client = connect('ws://' + location.host + '/', { token: q.get('token'), reconnect: { initialDelay: 20 } })
  window.seen = []
  window.client = client
  client.subscribe('room.1', (m) => { window.seen.push(m.data); document.getElementById('log').textContent += m.data + '\\n' })
  window.ready = client.ready.then((w) => w.user)
</script>`)
        })
        await withChromium(async (browser) => {
          const sender = await browser.newPage()
          const receiver = await browser.newPage()
          await receiver.goto(
            `${t.url.replace('ws:', 'http:')}/two-tabs?token=${await token('bob')}`,
          )
          await sender.goto(
            `${t.url.replace('ws:', 'http:')}/two-tabs?token=${await token('alice')}`,
          )
          assert.equal(await receiver.evaluate('window.ready'), 'bob')
          assert.equal(await sender.evaluate('window.ready'), 'alice')
          await receiver.waitForFunction('window.client.state === "open"')
          for (let i = 1; i <= 5; i++)
            await sender.evaluate(`window.client.publish('room.1', 'm${i}')`)
          await receiver.waitForFunction('window.seen.length === 5')
          // Cut bob's TCP connection and publish while he is away.
          const bob = [...t.server.clients].find((c) => c.user?.id === 'bob') as Connection
          bob.terminate(1006, 'test: network cut')
          for (let i = 6; i <= 10; i++) await t.server.publish('room.1', `m${i}`)
          await receiver.waitForFunction('window.seen.length >= 10', undefined, { timeout: 10_000 })
          await sender.evaluate(`window.client.publish('room.1', 'm11')`)
          await receiver.waitForFunction('window.seen.length >= 11')
          const seen = (await receiver.evaluate('window.seen')) as string[]
          assert.deepEqual(
            seen,
            Array.from({ length: 11 }, (_, i) => `m${i + 1}`),
          )
          const log = t.lines().join('\n')
          assert.match(
            log,
            /Session resumed: 127\.0\.0\.1 .* user=bob session=\S+ replayed=5 gaps=0/,
          )
          assert.ok(!/"token":"[^[]/.test(log), 'resume tokens are redacted in the log')
        })
      },
    )
  })
})
