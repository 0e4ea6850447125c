/**
 * Outgoing webhooks against real HTTP receivers on port 0: signed deliveries, retries of 5xx,
 * timeouts and refused connections with a dead letter in the activity log, 4xx not retried,
 * event patterns, bounded queues (memory measured), the CLI flag and its errors.
 */
import { strict as assert } from 'node:assert'
import { createHmac, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { after, describe, it } from 'node:test'
import { parseArgs } from '../src/cli-args.js'
import { fromEnv, resolveConfig } from '../src/config.js'
import {
  connect,
  ROOT,
  runCli,
  startCli,
  startServer,
  type TestServer,
  waitFor,
  waitForLine,
} from './helpers.js'
import { v1 } from './v1.js'

const SECRET = 'test-secret-0123456789'

interface Received {
  headers: IncomingHttpHeaders
  body: string
  at: number
}

interface Receiver {
  url: string
  port: number
  requests: Received[]
  /** Wait until `n` requests have arrived. */
  wait(n: number, timeoutMs?: number): Promise<Received[]>
  close(): Promise<void>
}

/**
 * A local endpoint; `answer` gets the request number (0-based) and returns a status, or
 * 'hang' to never answer.
 */
async function receiver(answer: (n: number) => number | 'hang' = () => 200): Promise<Receiver> {
  const requests: Received[] = []
  const hanging: ServerResponse[] = []
  const server: Server = createHttpServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => {
      body += d
    })
    req.on('end', () => {
      const n = requests.length
      requests.push({ headers: req.headers, body, at: Date.now() })
      const a = answer(n)
      if (a === 'hang') hanging.push(res)
      else res.writeHead(a, { 'content-type': 'text/plain' }).end(`status ${a}`)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/hook?token=abc`,
    port,
    requests,
    wait: (n, timeoutMs = 10_000) =>
      waitFor(
        () => (requests.length >= n ? requests : undefined),
        `${n} webhook requests`,
        timeoutMs,
      ),
    close: async () => {
      for (const r of hanging) r.destroy()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
}

/** The receiver side of docs/webhooks.md: signature over `<timestamp>.<body>`, 5 minutes' tolerance. */
function verify(secret: string, headers: IncomingHttpHeaders, body: string): boolean {
  const ts = String(headers['wirelog-timestamp'] ?? '')
  const sig = String(headers['wirelog-signature'] ?? '')
  if (!/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false
  const expected = `sha256=${createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')}`
  const a = Buffer.from(sig)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** Fast settings for tests (the defaults wait seconds between attempts). */
const FAST = { retryDelay: 20, maxRetryDelay: 100, timeout: 2000 }

const servers: Array<TestServer | Receiver> = []
after(async () => {
  for (const s of servers.splice(0).reverse())
    await ('stop' in s ? s.stop() : s.close()).catch(() => {})
})

async function setup(
  answer: (n: number) => number | 'hang',
  hook: Record<string, unknown> & { events?: string[] } = {},
  options: Record<string, unknown> = {},
): Promise<{ rx: Receiver; ts: TestServer }> {
  const rx = await receiver(answer)
  servers.push(rx)
  const ts = await startServer({
    webhookSecret: SECRET,
    // close() gives hanging deliveries this long.
    shutdownTimeout: 500,
    ...options,
    webhooks: [{ events: ['message.received'], url: rx.url, ...FAST, ...hook }],
  } as never)
  servers.push(ts)
  return { rx, ts }
}

/** The activity log lines of `webhook.failed` / `webhook.dropped`, parsed from the json format. */
function jsonLines(ts: TestServer, event: string): Array<Record<string, unknown>> {
  return ts
    .lines()
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.event === event)
}

/** Round trip of one echo, ms. */
async function echoTrip(c: Awaited<ReturnType<typeof connect>>, text: string): Promise<number> {
  const t0 = performance.now()
  const n = c.received.length
  c.ws.send(text)
  await c.waitMessages(n + 1)
  return performance.now() - t0
}

describe('webhooks: delivery', () => {
  it('POSTs signed JSON with the Wirelog headers; the documented check verifies it', async () => {
    const { rx, ts } = await setup(() => 200)
    const c = await connect(ts.url)
    c.ws.send('hello webhook')
    c.ws.send(Buffer.from([0, 1, 2, 255]))
    const [text, bin] = await rx.wait(2)
    for (const r of [text!, bin!]) {
      assert.equal(r.headers['content-type'], 'application/json')
      assert.equal(r.headers['wirelog-event'], 'message.received')
      assert.match(String(r.headers['wirelog-delivery']), /^[0-9a-f-]{36}$/)
      assert.match(String(r.headers['wirelog-timestamp']), /^\d{10}$/)
      assert.match(String(r.headers['wirelog-signature']), /^sha256=[0-9a-f]{64}$/)
      assert.ok(verify(SECRET, r.headers, r.body), 'signature verifies')
      assert.ok(!verify('another-secret', r.headers, r.body), 'a wrong secret does not')
      assert.ok(!verify(SECRET, r.headers, `${r.body} `), 'a changed body does not')
    }
    const t = JSON.parse(text!.body)
    assert.deepEqual(Object.keys(t), ['id', 'event', 'time', 'payload'])
    assert.equal(t.id, text!.headers['wirelog-delivery'])
    assert.equal(t.event, 'message.received')
    assert.ok(Math.abs(Date.parse(t.time) - Date.now()) < 60_000)
    assert.deepEqual(t.payload, {
      client: { id: t.payload.client.id, ip: '127.0.0.1', user: null },
      data: 'hello webhook',
      binary: false,
      bytes: 13,
    })
    const b = JSON.parse(bin!.body)
    assert.equal(b.payload.binary, true)
    assert.deepEqual(Buffer.from(b.payload.data, 'base64'), Buffer.from([0, 1, 2, 255]))
    await waitFor(() => ts.server.webhooks?.stats()[0]?.delivered === 2, 'delivered count')
    const s = ts.server.webhooks!.stats()[0]!
    assert.deepEqual(
      { ...s, endpoint: '', url: '' },
      {
        endpoint: '',
        url: '',
        delivered: 2,
        failed: 0,
        retried: 0,
        dropped: 0,
        queued: 0,
        queuedBytes: 0,
        inFlight: 0,
      },
    )
    assert.equal(s.endpoint, `127.0.0.1:${rx.port}`)
    assert.equal(s.url, `http://127.0.0.1:${rx.port}/hook`, 'no query (credentials) in the stats')
    c.ws.close()
  })

  it('retries a 500 with the same delivery id and delivers once', async () => {
    const { rx, ts } = await setup((n) => (n === 0 ? 500 : 200))
    const c = await connect(ts.url)
    c.ws.send('retry me')
    const [first, second] = await rx.wait(2)
    assert.equal(first!.headers['wirelog-delivery'], second!.headers['wirelog-delivery'])
    assert.equal(first!.body, second!.body, 'the same body')
    assert.ok(verify(SECRET, second!.headers, second!.body))
    await waitFor(() => ts.server.webhooks?.stats()[0]?.delivered === 1, 'delivered')
    const s = ts.server.webhooks!.stats()[0]!
    assert.equal(s.retried, 1)
    assert.equal(s.failed, 0)
    await new Promise((r) => setTimeout(r, 150))
    assert.equal(rx.requests.length, 2, 'no third request')
    c.ws.close()
  })

  it('does not retry a 400: one attempt, then a dead letter in the log', async () => {
    const { rx, ts } = await setup(() => 400, {}, { log: { format: 'json' } })
    const c = await connect(ts.url)
    c.ws.send('refused')
    await rx.wait(1)
    await waitForLine(ts.logPath, /"event":"webhook.failed"/)
    const [line] = jsonLines(ts, 'webhook.failed')
    assert.equal(line!.endpoint, `127.0.0.1:${rx.port}`)
    assert.equal(line!.webhook_event, 'message.received')
    assert.equal(line!.delivery, rx.requests[0]!.headers['wirelog-delivery'])
    assert.equal(line!.attempts, 1)
    assert.equal(line!.status, 400)
    assert.equal(line!.reason, 'not retried (HTTP 400)')
    assert.equal(line!.level, 50, 'an error line')
    await new Promise((r) => setTimeout(r, 150))
    assert.equal(rx.requests.length, 1)
    const s = ts.server.webhooks!.stats()[0]!
    assert.equal(s.failed, 1)
    assert.equal(s.retried, 0)
    c.ws.close()
  })

  it('a hanging endpoint times out, is retried and dead-lettered; echoes stay fast', async () => {
    const { rx, ts } = await setup(
      () => 'hang',
      { timeout: 300, retries: 2 },
      {
        log: { format: 'json' },
      },
    )
    const c = await connect(ts.url)
    const t0 = Date.now()
    c.ws.send('into the void')
    await c.waitMessages(1)
    // While the deliveries hang: echo round trips are unaffected.
    const trips: number[] = []
    for (let i = 0; i < 20; i++) trips.push(await echoTrip(c, `ping ${i}`))
    trips.sort((a, b) => a - b)
    const median = trips[10]!
    assert.ok(
      median < 100,
      `median echo round trip ${median.toFixed(1)} ms while the endpoint hangs`,
    )
    await rx.wait(3)
    // Four deliveries hang at once; their backoff jitter decides which is given up first.
    const id = rx.requests[0]!.headers['wirelog-delivery']
    const first = await waitFor(
      () => jsonLines(ts, 'webhook.failed').find((l) => l.delivery === id),
      'the dead letter of the first delivery',
      10_000,
    )
    assert.equal(first.attempts, 3)
    assert.equal(first.status, undefined)
    assert.equal(first.error, 'timeout after 300 ms')
    assert.equal(first.reason, 'retries exhausted')
    assert.ok(Date.now() - t0 >= 900, 'three attempts of 300 ms each')
    assert.equal(ts.server.webhooks!.stats()[0]!.retried >= 2, true)
    c.ws.close()
  })

  it('a refused connection is retried, then dead-lettered (text log line)', async () => {
    const probe = await receiver()
    const port = probe.port
    await probe.close()
    const ts = await startServer({
      webhooks: [
        { events: ['message.received'], url: `http://127.0.0.1:${port}/gone`, ...FAST, retries: 2 },
      ],
    })
    servers.push(ts)
    const c = await connect(ts.url)
    c.ws.send('nobody home')
    const [line] = await waitForLine(ts.logPath, /event=webhook\.failed/, 1, 10_000)
    assert.match(
      line!,
      / ERROR Webhook failed: 127\.0\.0\.1:\d+ message\.received \(retries exhausted\)/,
    )
    assert.match(line!, /attempts=3/)
    assert.match(line!, /error=ECONNREFUSED/)
    assert.match(line!, /delivery=[0-9a-f-]{36}/)
    assert.doesNotMatch(line!, /\/gone/, 'the endpoint is named by its host only')
    const s = ts.server.webhooks!.stats()[0]!
    assert.equal(s.failed, 1)
    assert.equal(s.retried, 2)
    c.ws.close()
  })
})

describe('webhooks: status codes and shutdown', () => {
  it('retries 429 and 408, gives up on a redirect', async () => {
    const { rx, ts } = await setup((n) => [429, 408, 200, 302][n] ?? 200, { events: ['app:*'] })
    ts.server.events.trigger('app', 'first', {})
    await rx.wait(3)
    await waitFor(() => ts.server.webhooks?.stats()[0]?.delivered === 1, 'delivered after 429, 408')
    ts.server.events.trigger('app', 'second', {})
    const [line] = await waitForLine(ts.logPath, /event=webhook\.failed/)
    assert.match(line!, /app:second \(not retried \(HTTP 302\)\)/)
    assert.match(line!, /attempts=1 status=302/)
    const s = ts.server.webhooks!.stats()[0]!
    assert.deepEqual([s.delivered, s.retried, s.failed], [1, 2, 1])
  })

  it('shutdown gives deliveries the grace period, then records what was cut and dropped', async () => {
    const { rx, ts } = await setup(
      () => 'hang',
      { events: ['app:*'], concurrency: 1, queue: 10, timeout: 60_000 },
      { shutdownTimeout: 200, log: { format: 'json' } },
    )
    for (let i = 0; i < 4; i++) ts.server.events.trigger('app', 'n', { i })
    await rx.wait(1)
    const t0 = Date.now()
    await ts.server.close()
    assert.ok(Date.now() - t0 < 3000, 'close() waited about shutdownTimeout, not the 60 s timeout')
    const failed = jsonLines(ts, 'webhook.failed')
    assert.equal(failed.length, 1)
    assert.equal(failed[0]!.reason, 'shutdown')
    assert.equal(failed[0]!.error, 'aborted at shutdown')
    const dropped = jsonLines(ts, 'webhook.dropped')
    assert.deepEqual(
      dropped.map((d) => [d.count, d.reason]),
      [[3, 'shutdown']],
    )
    const s = ts.server.webhooks!.stats()[0]!
    assert.deepEqual([s.failed, s.dropped, s.queued, s.inFlight], [1, 3, 0, 0])
  })
})

describe('webhooks: patterns', () => {
  it('client.* gets connected and disconnected, not message.received; app:order.* its namespace', async () => {
    const rx = await receiver()
    servers.push(rx)
    const ts = await startServer({
      webhooks: [{ events: ['client.*', 'app:order.*'], url: rx.url, ...FAST }],
    })
    servers.push(ts)
    const c = await connect(ts.url)
    c.ws.send('not for the hook')
    await c.waitMessages(1)
    ts.server.events.trigger('app', 'order.created', {
      id: 7,
      at: new Date(0),
      blob: Buffer.from('hi'),
    })
    ts.server.events.trigger('app', 'user.created', { id: 8 })
    c.ws.close()
    await c.closed
    const reqs = await rx.wait(3)
    await new Promise((r) => setTimeout(r, 100))
    const events = reqs.map((r) => r.headers['wirelog-event'])
    assert.deepEqual(events.sort(), [
      'app:order.created',
      'client.connected',
      'client.disconnected',
    ])
    const order = JSON.parse(
      reqs.find((r) => r.headers['wirelog-event'] === 'app:order.created')!.body,
    )
    assert.deepEqual(order.payload, {
      id: 7,
      at: '1970-01-01T00:00:00.000Z',
      blob: { base64: 'aGk=' },
    })
    assert.equal(reqs[0]!.headers['wirelog-signature'], undefined, 'no secret: unsigned')
    const disc = JSON.parse(
      reqs.find((r) => r.headers['wirelog-event'] === 'client.disconnected')!.body,
    )
    assert.equal(disc.payload.client.ip, '127.0.0.1')
    assert.equal(typeof disc.payload.durationMs, 'number')
  })

  it('the credentials of wirelog.v1 frames are redacted, as in the log', async () => {
    const { rx, ts } = await setup(() => 200)
    const c = await v1(ts.url)
    c.send({ op: 'refresh', token: 'very-secret-token-value' })
    const [r] = await rx.wait(1)
    assert.doesNotMatch(r!.body, /very-secret-token-value/)
    assert.match(JSON.parse(r!.body).payload.data, /"token":\s*"\[redacted\]"/)
    await c.close()
  })

  it('* never delivers the webhook events themselves (a dead endpoint does not feed itself)', async () => {
    const { rx, ts } = await setup(() => 400, { events: ['*'] })
    const c = await connect(ts.url)
    c.ws.send('x')
    await waitForLine(ts.logPath, /event=webhook\.failed/)
    await new Promise((r) => setTimeout(r, 200))
    assert.ok(rx.requests.every((r) => !String(r.headers['wirelog-event']).startsWith('webhook.')))
    c.ws.close()
  })
})

describe('webhooks: bounded', () => {
  it('50,000 events to a hanging endpoint: drops counted, heap bounded by the queue, echo unaffected', async () => {
    const { rx, ts } = await setup(
      () => 'hang',
      { events: ['app:*'], queue: 100, concurrency: 2, timeout: 60_000 },
      { log: { enabled: false } },
    )
    const c = await connect(ts.url)
    const before: number[] = []
    for (let i = 0; i < 10; i++) before.push(await echoTrip(c, `a${i}`))
    const big = 'x'.repeat(2048)
    const heap0 = process.memoryUsage().heapUsed
    const t0 = performance.now()
    for (let i = 0; i < 50_000; i++) ts.server.events.trigger('app', 'tick', { i, big })
    const triggerMs = performance.now() - t0
    await rx.wait(2)
    const during: number[] = []
    for (let i = 0; i < 10; i++) during.push(await echoTrip(c, `b${i}`))
    const heapGrowth = process.memoryUsage().heapUsed - heap0
    const s = ts.server.webhooks!.stats()[0]!
    assert.equal(s.queued, 100)
    assert.equal(s.inFlight, 2)
    assert.equal(s.dropped, 50_000 - 102)
    // Unbounded, 50,000 bodies of 2 KiB would hold over 100 MB.
    assert.ok(heapGrowth < 24 * 1024 * 1024, `heap grew ${(heapGrowth / 1048576).toFixed(1)} MB`)
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[5]!
    assert.ok(med(during) < 100, `echo median ${med(during).toFixed(1)} ms`)
    console.log(
      `# 50,000 events: trigger ${triggerMs.toFixed(0)} ms (${((triggerMs * 1000) / 50_000).toFixed(2)} µs each), heap +${(heapGrowth / 1048576).toFixed(1)} MB, echo median ${med(before).toFixed(2)} → ${med(during).toFixed(2)} ms, dropped ${s.dropped}`,
    )
    c.ws.close()
  })

  it('drop-oldest keeps the newest deliveries', async () => {
    const { rx, ts } = await setup((n) => (n === 0 ? 'hang' : 200), {
      events: ['app:*'],
      queue: 3,
      concurrency: 1,
      overflow: 'drop-oldest',
      timeout: 500,
      retries: 0,
    })
    for (let i = 0; i < 10; i++) ts.server.events.trigger('app', 'n', { i })
    assert.equal(ts.server.webhooks!.stats()[0]!.dropped, 6)
    const reqs = await rx.wait(4)
    const seen = reqs.map((r) => JSON.parse(r.body).payload.i)
    assert.deepEqual(seen, [0, 7, 8, 9])
    await waitForLine(ts.logPath, /event=webhook\.dropped .*count=6 reason="?queue full/)
  })
})

describe('webhooks: options', () => {
  it('the config form validates URL, events and numbers, naming the option', () => {
    assert.throws(
      () => resolveConfig({ webhooks: [{ events: ['*'], url: 'ftp://x' }] }),
      /webhooks\.0\.url.*http:\/\/ or https:\/\/ URL/,
    )
    assert.throws(
      () => resolveConfig({ webhooks: [{ events: [], url: 'http://x' }] }),
      /webhooks\.0\.events/,
    )
    assert.throws(
      () => resolveConfig({ webhooks: [{ events: ['*'], url: 'http://x', retries: -1 }] }),
      /option "webhooks\.0\.retries": expected an integer from 0 to 100, got -1/,
    )
    const c = resolveConfig({ webhooks: [{ events: ['client.*'], url: 'https://h.example/x' }] })
    assert.deepEqual(c.webhooks[0], {
      events: ['client.*'],
      url: 'https://h.example/x',
      timeout: 10_000,
      retries: 5,
      retryDelay: 1000,
      maxRetryDelay: 60_000,
      concurrency: 4,
      queue: 1000,
      queueBytes: 8 * 1024 * 1024,
      overflow: 'drop-new',
    })
  })

  it('--webhook is repeatable and splits at the first =', () => {
    const p = parseArgs([
      '--webhook',
      'message.received,client.*=https://a.example/h?x=1',
      '--webhook=app:order.*=http://b.example/',
    ])
    assert.deepEqual(p.values.webhooks, [
      { events: ['message.received', 'client.*'], url: 'https://a.example/h?x=1' },
      { events: ['app:order.*'], url: 'http://b.example/' },
    ])
  })

  it('WIRELOG_WEBHOOK takes several, separated by whitespace', () => {
    const c = resolveConfig(
      fromEnv({
        WIRELOG_WEBHOOK: 'client.*=http://a.example/1 \n message.received=http://b.example/2',
      }),
    )
    assert.deepEqual(
      c.webhooks.map((w) => [w.events, w.url]),
      [
        [['client.*'], 'http://a.example/1'],
        [['message.received'], 'http://b.example/2'],
      ],
    )
    assert.throws(
      () => fromEnv({ WIRELOG_WEBHOOK: 'client.*' }),
      /WIRELOG_WEBHOOK: expected EVENTS=URL/,
    )
  })

  it('the CLI exits 2 on a --webhook without = or with another scheme', async () => {
    const a = runCli(['--webhook', 'https://example.com/hook'])
    assert.equal(await a.exited, 2)
    assert.match(
      a.stderr(),
      /--webhook: expected EVENTS=URL.*no "=" between the events and the URL/,
    )
    const c = runCli(['--webhook', 'client.* message.received=http://example.com/hook'])
    assert.equal(await c.exited, 2)
    assert.match(c.stderr(), /--webhook: bad event pattern "client\.\* message\.received"/)
    const b = runCli(['--webhook', 'client.*=ftp://example.com/hook'])
    assert.equal(await b.exited, 2)
    assert.match(
      b.stderr(),
      /--webhook: expected an http:\/\/ or https:\/\/ URL after "=", got "ftp:\/\/example.com\/hook"/,
    )
  })

  it('the CLI delivers with the secret from WIRELOG_WEBHOOK_SECRET', async () => {
    const rx = await receiver()
    servers.push(rx)
    const cli = await startCli(['--no-log', '--webhook', `client.connected=${rx.url}`], {
      env: { WIRELOG_WEBHOOK_SECRET: SECRET },
    })
    try {
      const c = await connect(`ws://127.0.0.1:${cli.port}`)
      const [r] = await rx.wait(1)
      assert.equal(r!.headers['wirelog-event'], 'client.connected')
      assert.ok(verify(SECRET, r!.headers, r!.body))
      c.ws.close()
    } finally {
      cli.proc.kill('SIGTERM')
      await cli.exited
    }
    assert.doesNotMatch(cli.stderr(), new RegExp(SECRET), 'the secret is never printed')
  })

  it('the delivery module is not in the static import graph (loaded only when configured)', () => {
    const seen = new Set<string>()
    const walk = (file: string): void => {
      if (seen.has(file)) return
      seen.add(file)
      const src = readFileSync(file, 'utf8')
      for (const m of src.matchAll(/^(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gm))
        walk(join(dirname(file), m[1]!))
    }
    walk(join(ROOT, 'dist', 'index.js'))
    assert.ok(seen.has(join(ROOT, 'dist', 'server.js')))
    assert.ok(!seen.has(join(ROOT, 'dist', 'webhooks', 'delivery.js')))
  })
})
