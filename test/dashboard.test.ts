/**
 * The dashboard without a browser: who may open the page and the feed, that the feed is not
 * a client (not logged, not counted), that its rate stays bounded under a burst, and that
 * it ends with the server.
 */
import { strict as assert } from 'node:assert'
import { once } from 'node:events'
import { request } from 'node:http'
import { describe, it } from 'node:test'
import { WebSocket } from 'ws'
import { describe as describeEvent, PREVIEW_CHARS } from '../src/http/dashboard/describe.js'
import { FEED_LIMITS } from '../src/http/dashboard/feed.js'
import { createRedactor } from '../src/redact.js'
import {
  connect,
  expectRejected,
  startCli,
  startServer,
  waitFor,
  waitForLine,
  withServer,
} from './helpers.js'

const TOKEN = 'dashboard-admin-token-0123456789'

function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

interface Feed {
  ws: WebSocket
  frames: Array<Record<string, any>>
  /** Tail rows received so far. */
  rows(): Array<Record<string, any>>
  /** Sum of `dropped` over the event frames. */
  dropped(): number
  /** Reception times of event frames. */
  eventTimes: number[]
}

async function openFeed(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}) {
  const ws = new WebSocket(url, opts)
  const frames: Array<Record<string, any>> = []
  const eventTimes: number[] = []
  ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString()) as Record<string, any>
    if (m.t === 'events') eventTimes.push(Date.now())
    frames.push(m)
  })
  ws.on('error', () => {})
  await once(ws, 'open')
  await waitFor(() => frames.some((f) => f.t === 'hello'), 'the hello frame')
  const feed: Feed = {
    ws,
    frames,
    eventTimes,
    rows: () => frames.filter((f) => f.t === 'events').flatMap((f) => f.events),
    dropped: () => frames.reduce((n, f) => n + (f.t === 'events' ? f.dropped : 0), 0),
  }
  return feed
}

describe('dashboard access', () => {
  it('on a public bind without a token: the page and the feed are refused like every admin route', async () => {
    await withServer({ host: '0.0.0.0' }, async (t) => {
      const page = await get(t.port, '/dashboard')
      assert.equal(page.status, 403)
      assert.match(page.body, /admin endpoints are off on a non-loopback bind/)
      assert.equal(await expectRejected(`ws://127.0.0.1:${t.port}/dashboard/feed`), 403)
      assert.equal(t.server.clients.size, 0)
    })
  })

  it('with --admin-token: the right token (query or Bearer) opens both, a wrong or missing one is refused', async () => {
    await withServer({ host: '0.0.0.0', adminToken: TOKEN }, async (t) => {
      const base = `ws://127.0.0.1:${t.port}/dashboard/feed`
      assert.equal((await get(t.port, '/dashboard')).status, 401)
      assert.equal((await get(t.port, '/dashboard?token=wrong-token-0123456789')).status, 401)
      assert.equal(
        (await get(t.port, '/dashboard', { authorization: 'Bearer wrong-token-0123456789' }))
          .status,
        401,
      )
      const ok = await get(t.port, `/dashboard?token=${TOKEN}`)
      assert.equal(ok.status, 200)
      assert.match(String(ok.headers['content-type']), /^text\/html/)
      assert.match(ok.body, /<title>wirelog dashboard<\/title>/)
      assert.match(String(ok.headers['content-security-policy']), /default-src 'none'/)
      assert.equal(
        (await get(t.port, '/dashboard', { authorization: `Bearer ${TOKEN}` })).status,
        200,
      )
      assert.equal(await expectRejected(base), 401)
      assert.equal(await expectRejected(`${base}?token=wrong-token-0123456789`), 401)
      assert.equal(
        await expectRejected(base, { headers: { authorization: 'Bearer wrong-token-0123456789' } }),
        401,
      )
      const byQuery = await openFeed(`${base}?token=${TOKEN}`)
      const byHeader = await openFeed(base, { headers: { authorization: `Bearer ${TOKEN}` } })
      const hello = byQuery.frames[0]!
      assert.equal(hello.t, 'hello')
      assert.equal(hello.server.port, t.port)
      assert.deepEqual(hello.limits, { ...FEED_LIMITS })
      byQuery.ws.close()
      byHeader.ws.close()
      // The refusals are logged as rejections, with the token redacted.
      const rejected = await waitForLine(t.logPath, /Client rejected.* status=401/, 3)
      assert.ok(rejected.every((l) => !l.includes('wrong-token')))
    })
  })

  it('refuses a feed opened from another site (Origin), accepts its own page', async () => {
    await withServer({}, async (t) => {
      const url = `${t.url}/dashboard/feed`
      assert.equal(await expectRejected(url, { origin: 'http://evil.example' }), 403)
      const own = await openFeed(url, { origin: `http://127.0.0.1:${t.port}` })
      own.ws.close()
    })
  })

  it('dashboard: false leaves /dashboard and its feed unrouted', async () => {
    await withServer({ dashboard: false }, async (t) => {
      assert.equal((await get(t.port, '/dashboard')).status, 426)
      // The feed path is then an ordinary client path.
      const c = await connect(`${t.url}/dashboard/feed`)
      assert.equal(t.server.clients.size, 1)
      c.ws.close()
      await c.closed
    })
  })
})

describe('dashboard from the command line', () => {
  it('is on by default; --no-dashboard and WIRELOG_DASHBOARD=false turn it off', async () => {
    for (const [args, env, status] of [
      [[], {}, 200],
      [['--no-dashboard'], {}, 426],
      [[], { WIRELOG_DASHBOARD: 'false' }, 426],
    ] as const) {
      const c = await startCli(['--no-log', ...args], { env })
      try {
        assert.equal(
          (await get(c.port, '/dashboard')).status,
          status,
          JSON.stringify({ args, env }),
        )
      } finally {
        c.proc.kill('SIGTERM')
        await c.exited
      }
    }
  })
})

describe('dashboard feed', () => {
  it('is not a client: not in server.clients, not in the activity log; it shows client traffic', async () => {
    await withServer({}, async (t) => {
      const feed = await openFeed(`${t.url}/dashboard/feed`)
      assert.equal(t.server.clients.size, 0)
      const c = await connect(t.url)
      const id = [...t.server.clients][0]!.id
      c.ws.send('hello dashboard')
      await c.waitMessages(1)
      c.ws.close(1000, 'bye')
      await c.closed
      await waitFor(
        () => feed.rows().some((r) => r.event === 'client.disconnected'),
        'the disconnect row',
      )
      const mine = feed.rows().filter((r) => r.client === id)
      assert.deepEqual(
        mine.map((r) => r.event),
        ['client.connected', 'message.received', 'client.disconnected'],
      )
      assert.equal(mine[1]!.text, 'hello dashboard')
      assert.equal(mine[1]!.ip, '127.0.0.1')
      assert.match(mine[2]!.text, /code=1000 reason=bye/)
      // A snapshot counts the close code.
      await waitFor(
        () =>
          feed.frames.some(
            (f) =>
              f.t === 'stats' && f.closeCodes.some((cc: any) => cc.code === 1000 && cc.count === 1),
          ),
        'close code 1000 in a snapshot',
      )
      const stats = feed.frames.filter((f) => f.t === 'stats').at(-1)!
      assert.equal(stats.totals.connects, 1)
      assert.equal(stats.totals.in, 1)
      assert.equal(stats.log.writable, true)
      assert.ok(stats.log.lines >= 3)
      feed.ws.close()
      await once(feed.ws, 'close')
      await waitForLine(t.logPath, /Client disconnected/)
      const lines = t.lines()
      assert.equal(lines.filter((l) => / Client connected/.test(l)).length, 1)
      assert.equal(lines.filter((l) => / Client disconnected/.test(l)).length, 1)
      assert.ok(!lines.some((l) => l.includes('/dashboard')), 'the feed is never logged')
    })
  })

  it('lists connected clients with their counters in the snapshot', async () => {
    await withServer({}, async (t) => {
      const c = await connect(`${t.url}/room?x=1`)
      c.ws.send('one')
      c.ws.send('two')
      await c.waitMessages(2)
      const feed = await openFeed(`${t.url}/dashboard/feed`)
      const hello = feed.frames[0]!
      assert.equal(hello.clientsTotal, 1)
      const row = hello.clients[0]
      assert.equal(row.id, [...t.server.clients][0]!.id)
      assert.equal(row.ip, '127.0.0.1')
      assert.equal(row.path, '/room?x=1')
      assert.equal(row.in, 2)
      assert.equal(row.out, 2)
      assert.equal(row.bytesIn, 6)
      assert.ok(row.since <= Date.now())
      feed.ws.close()
      c.ws.close()
      await c.closed
    })
  })

  it('lists the newest 100 clients of more, with the total', async () => {
    await withServer({ log: { enabled: false } }, async (t) => {
      const cs = []
      for (let i = 0; i < FEED_LIMITS.maxClients + 5; i++) cs.push(await connect(t.url))
      const feed = await openFeed(`${t.url}/dashboard/feed`)
      const hello = feed.frames[0]!
      const ids = [...t.server.clients].map((c) => c.id)
      assert.equal(hello.clientsTotal, FEED_LIMITS.maxClients + 5)
      assert.equal(hello.clients.length, FEED_LIMITS.maxClients)
      assert.deepEqual(
        hello.clients.map((c: { id: string }) => c.id),
        ids.slice(5).reverse(),
        'newest first',
      )
      feed.ws.close()
      for (const c of cs) c.ws.terminate()
    })
  })

  it('a burst of 5,000 messages: at most 10 frames a second of at most 100 rows, the rest counted as dropped', async (ctx) => {
    await withServer({ behaviour: 'silent', log: { flushInterval: 50 } }, async (t) => {
      const feed = await openFeed(`${t.url}/dashboard/feed`)
      const c = await connect(t.url)
      const payload = 'x'.repeat(64)
      for (let i = 0; i < 5000; i++) c.ws.send(payload)
      await waitFor(
        () => [...t.server.clients][0]?.messagesIn === 5000,
        'the 5,000 messages',
        20_000,
      )
      c.ws.close()
      await c.closed
      // 1 connect + 5,000 messages + 1 disconnect, every one either sent or counted.
      await waitFor(() => feed.rows().length + feed.dropped() === 5002, 'every row accounted for')
      const frames = feed.frames.filter((f) => f.t === 'events')
      for (const f of frames) assert.ok(f.events.length <= FEED_LIMITS.eventsPerFrame)
      assert.ok(feed.dropped() > 0, 'the burst was over the bound')
      const rows = feed.rows()
      assert.ok(rows.length <= frames.length * FEED_LIMITS.eventsPerFrame)
      // Connects and closes are kept out of the message share of a frame.
      assert.equal(rows.filter((r) => r.event === 'client.connected').length, 1)
      assert.equal(rows.filter((r) => r.event === 'client.disconnected').length, 1)
      // Frame rate: over the span the frames arrived in, at most 10 a second (+1 for the first).
      const span = (feed.eventTimes.at(-1)! - feed.eventTimes[0]!) / 1000
      assert.ok(
        frames.length <= Math.ceil(span * FEED_LIMITS.framesPerSecond) + 1,
        `${frames.length} frames in ${span.toFixed(2)} s`,
      )
      ctx.diagnostic(
        `${frames.length} frames in ${span.toFixed(2)} s, ${rows.length} rows sent, ${feed.dropped()} dropped, largest frame ${Math.max(...frames.map((f) => JSON.stringify(f).length))} bytes`,
      )
      feed.ws.close()
    })
  })

  it('ends with the server: pages get 1001 and close() does not wait for them', async () => {
    const t = await startServer({})
    const feed = await openFeed(`${t.url}/dashboard/feed`)
    const closed = once(feed.ws, 'close') as Promise<[number, Buffer]>
    const started = Date.now()
    await t.stop()
    const [code] = await closed
    assert.equal(code, 1001)
    assert.ok(Date.now() - started < 3000)
    assert.ok(feed.rows().some((r) => r.event === 'server.closing'))
  })
})

describe('dashboard tail rows', () => {
  const redact = createRedactor()
  const client = {
    id: 'c-1',
    ip: '10.0.0.7',
    protocol: '',
    user: { id: 'alice', claims: {} },
  }
  const message = (text: string | Buffer, protocol = '') => {
    const raw = Buffer.isBuffer(text) ? text : Buffer.from(text)
    return {
      client: { ...client, protocol },
      raw,
      data: text,
      binary: Buffer.isBuffer(text),
      bytes: raw.length,
    }
  }

  it('name the client, its address and user; cut long messages; show binary as hex', () => {
    const row = describeEvent('ws', 'message.received', message('hello'), redact)
    assert.equal(row.event, 'message.received')
    assert.equal(row.client, 'c-1')
    assert.equal(row.ip, '10.0.0.7')
    assert.equal(row.user, 'alice')
    assert.equal(row.text, 'hello')
    const long = describeEvent('ws', 'message.received', message('é'.repeat(100_000)), redact)
    assert.equal(long.text, `${'é'.repeat(PREVIEW_CHARS)}… (200000 bytes)`)
    const bin = describeEvent('ws', 'message.received', message(Buffer.alloc(40, 0xab)), redact)
    assert.equal(bin.text, `[binary 40 bytes] ${'ab'.repeat(16)}…`)
  })

  it('redact credentials: wirelog.v1 tokens, credential-named fields of user events', () => {
    const frame = JSON.stringify({ op: 'resume', session: 's1', token: 'secret-resume-token' })
    const row = describeEvent('ws', 'message.received', message(frame, 'wirelog.v1'), redact)
    assert.ok(!row.text.includes('secret-resume-token'), row.text)
    assert.match(row.text, /"token":"\[redacted\]"/)
    const user = describeEvent(
      'app',
      'order.created',
      { id: 42, card_token: 'tok_1', client },
      redact,
    )
    assert.equal(user.event, 'app:order.created')
    assert.equal(user.text, '{"id":42,"card_token":"[redacted]","client":"c-1"}')
  })

  it("show a disconnect and a rejection with the activity log's field names", () => {
    const d = describeEvent(
      'ws',
      'client.disconnected',
      {
        client,
        code: 1000,
        reason: 'bye',
        initiator: 'client',
        durationMs: 5,
        messagesIn: 1,
        messagesOut: 2,
        bytesIn: 3,
        bytesOut: 4,
      },
      redact,
    )
    assert.equal(
      d.text,
      'code=1000 reason=bye initiator=client duration_ms=5 msgs_in=1 msgs_out=2 bytes_in=3 bytes_out=4',
    )
    const r = describeEvent(
      'ws',
      'client.rejected',
      { ip: '10.0.0.9', port: 1, status: 403, reason: 'origin not allowed', origin: 'http://x' },
      redact,
    )
    assert.equal(r.ip, '10.0.0.9')
    assert.equal(r.client, undefined)
    assert.equal(r.text, 'port=1 status=403 reason=origin not allowed origin=http://x')
  })
})
