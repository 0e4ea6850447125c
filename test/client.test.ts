/**
 * `wirelog/client` in Node (20: through the `ws` package) and in headless Chromium (the
 * page imports `/wirelog-client.js` from the server, the token rides in the subprotocol),
 * and several nodes sharing one in-process broker.
 */
import { strict as assert } from 'node:assert'
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { SignJWT } from 'jose'
import { MemoryBroker, MemoryHub } from '../src/broker/memory.js'
import { connect, type WirelogError } from '../src/client/index.js'
import type { Connection } from '../src/connection.js'
import { createServer } from '../src/index.js'
import { withChromium } from './chromium.js'
import { ROOT, tempDir, waitFor, withServer } from './helpers.js'
import { v1 } from './v1.js'

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

  it('a connection accepted but never served is dropped after connectTimeout; the next URL serves', async () => {
    // A listener that accepts TCP and never answers the handshake (as when the process a
    // connection was handed to died before reading it).
    const held: Socket[] = []
    const black = createNetServer((s) => held.push(s))
    await new Promise<void>((r) => black.listen(0, '127.0.0.1', r))
    const port = (black.address() as AddressInfo).port
    try {
      await withServer({}, async (t) => {
        const c = connect(`ws://127.0.0.1:${port}/`, {
          urls: [t.url],
          connectTimeout: 200,
          reconnect: { initialDelay: 5, maxDelay: 20 },
        })
        try {
          const started = Date.now()
          const w = await c.ready
          assert.ok(w.client.length > 0)
          assert.ok(Date.now() - started >= 150, 'waited for the connect timeout first')
          assert.equal(held.length, 1, 'the silent listener got the first attempt')
          assert.deepEqual(await c.publish('t', 1).then((a) => typeof a.seq), 'number')
        } finally {
          c.close()
        }
      })
    } finally {
      for (const s of held) s.destroy()
      black.close()
    }
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
  it('examples/chat.html in two tabs: JWT in the subprotocol, publish in one, receive in the other, cut, resume with no loss', async () => {
    const secret = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const keyPath = join(tempDir('wirelog-key-'), 'jwt.pem')
    writeFileSync(keyPath, secret.publicKey.export({ type: 'spki', format: 'pem' }))
    const token = (sub: string) =>
      new SignJWT({ wirelog: { subscribe: ['chat.>'], publish: ['chat.>'] } })
        .setProtectedHeader({ alg: 'ES256' })
        .setSubject(sub)
        .setExpirationTime('1h')
        .sign(secret.privateKey)
    await withServer(
      { behaviour: 'pubsub', auth: { mode: 'jwt', jwt: { key: keyPath } } },
      async (t) => {
        await withChromium(async (browser) => {
          // The README's demo: examples/chat.html opened from disk in two tabs.
          const page = (tok: string) =>
            `${pathToFileURL(join(ROOT, 'examples', 'chat.html')).href}#server=${t.url}&token=${tok}`
          const sender = await browser.newPage()
          const receiver = await browser.newPage()
          const errors: string[] = []
          for (const p of [sender, receiver]) p.on('pageerror', (e) => errors.push(e.message))
          await receiver.goto(page(await token('bob')))
          await sender.goto(page(await token('alice')))
          await receiver.locator('#state', { hasText: 'open' }).waitFor()
          await sender.locator('#state', { hasText: 'open' }).waitFor()
          const say = async (text: string) => {
            await sender.fill('#text', text)
            await sender.press('#text', 'Enter')
          }
          const shown = async () =>
            ((await receiver.textContent('#log')) ?? '')
              .split('\n')
              .filter((l) => l.startsWith('#'))
          for (let i = 1; i <= 5; i++) await say(`m${i}`)
          await waitFor(async () => (await shown()).length === 5, 'five messages in the other tab')
          // Cut bob's TCP connection and publish while he is away.
          const bob = [...t.server.clients].find((c) => c.user?.id === 'bob') as Connection
          bob.terminate(1006, 'test: network cut')
          for (let i = 6; i <= 10; i++) await t.server.publish('chat.lobby', { text: `m${i}` })
          await waitFor(async () => (await shown()).length === 10, 'the missed messages', 10_000)
          await say('m11')
          await waitFor(async () => (await shown()).length === 11, 'a new message after the resume')
          assert.deepEqual(
            await shown(),
            Array.from(
              { length: 11 },
              (_, i) => `#${i + 1} ${i < 5 || i === 10 ? 'alice' : 'server'}: m${i + 1}`,
            ),
          )
          assert.match(
            (await receiver.textContent('#log')) ?? '',
            /— resumed, 5 missed messages replayed/,
          )
          assert.deepEqual(errors, [])
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
