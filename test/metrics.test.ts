/**
 * /metrics on a real server: every counter moves by exactly what the clients did
 * (connections, messages, bytes, close codes, rejections, errors, drops, slow consumers,
 * handler failures, the log's and the broker's figures), the exposition passes the format
 * checker (and promtool when installed), the access rule of admin routes, the private
 * registry and its `use()` seam, and prom-client not being loaded with metrics off.
 */
import { strict as assert } from 'node:assert'
import { execFileSync, spawnSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { emit } from '../src/events.js'
import {
  closeCodeLabel,
  errorCodeLabel,
  failureSource,
  MAX_SERIES,
  rejectCategory,
  ServerMetrics,
} from '../src/http/metrics.js'
import {
  ActivityLog,
  type Client,
  createServer,
  EventBus,
  resolveConfig,
  type WirelogOptions,
} from '../src/index.js'
import { frame, OP, rawConnect } from './frames.js'
import { connect, expectRejected, ROOT, tempDir, waitFor, withServer } from './helpers.js'
import { http } from './http-helpers.js'
import { promlint, type Sample, sampleValue } from './promlint.js'

const TOKEN = 'metrics-admin-token-0123456789'
const KiB = 1024

async function scrape(port: number, headers: Record<string, string> = {}): Promise<Sample[]> {
  const r = await http(port, '/metrics', { headers })
  assert.equal(r.status, 200, r.body)
  const { problems, samples } = promlint(r.body)
  assert.deepEqual(problems, [], 'the exposition passes the format checker')
  return samples
}

describe('metrics: counters', () => {
  it('connections, messages, bytes, close codes and rejections move exactly', async () => {
    await withServer(
      { echoPrefix: 'E: ', allowedOrigins: ['https://ok.example'], limits: { maxConnections: 3 } },
      async (t) => {
        const v = (s: Sample[], name: string, labels?: Record<string, string>) =>
          sampleValue(s, name, labels)
        const before = await scrape(t.port)
        assert.equal(v(before, 'wirelog_connections_open'), 0)
        assert.equal(v(before, 'wirelog_connections_accepted_total'), 0)
        assert.equal(v(before, 'wirelog_messages_received_total'), 0)

        // A handler of message.sent makes the server build those events: not counted twice.
        let sentEvents = 0
        t.server.events.on('ws', 'message.sent', () => {
          sentEvents++
        })
        const clients = await Promise.all([connect(t.url), connect(t.url), connect(t.url)])
        let bytesIn = 0
        let bytesOut = 0
        let n = 0
        for (const [i, c] of clients.entries()) {
          for (let k = 0; k < 5; k++) {
            const msg = `client ${i} message ${k}${'x'.repeat(i * 10)}`
            c.ws.send(msg)
            bytesIn += Buffer.byteLength(msg)
            bytesOut += Buffer.byteLength(msg) + 3
            n++
          }
          c.ws.send(Buffer.alloc(100, 1)) // binary: echoed as it came
          bytesIn += 100
          bytesOut += 100
          n++
        }
        await Promise.all(clients.map((c) => c.waitMessages(6)))
        // Over capacity (1013-style 503) and a foreign origin (403), before any 101.
        assert.equal(await expectRejected(t.url), 503)
        assert.equal(await expectRejected(t.url, { origin: 'https://evil.example' }), 403)
        const during = await scrape(t.port)
        assert.equal(v(during, 'wirelog_connections_open'), 3)
        assert.equal(v(during, 'wirelog_connections_accepted_total'), 3)
        // Sent counts of clients still connected are read from them at scrape time.
        assert.equal(v(during, 'wirelog_messages_sent_total'), n)
        assert.equal(v(during, 'wirelog_sent_bytes_total'), bytesOut)
        assert.equal(sentEvents, n)

        clients[0]!.ws.close(1000)
        clients[1]!.ws.close(4321) // a code wirelog does not define: counted as other
        clients[2]!.ws.close(1000)
        await Promise.all(clients.map((c) => c.closed))
        await waitFor(() => t.server.clients.size === 0, 'the server to see the closes')

        const s = await scrape(t.port)
        assert.equal(v(s, 'wirelog_connections_open'), 0)
        assert.equal(v(s, 'wirelog_connections_accepted_total'), 3)
        assert.equal(v(s, 'wirelog_messages_received_total'), n)
        assert.equal(v(s, 'wirelog_received_bytes_total'), bytesIn)
        assert.equal(v(s, 'wirelog_messages_sent_total'), n)
        assert.equal(v(s, 'wirelog_sent_bytes_total'), bytesOut)
        assert.equal(v(s, 'wirelog_disconnects_total', { code: '1000', initiator: 'client' }), 2)
        assert.equal(v(s, 'wirelog_disconnects_total', { code: 'other', initiator: 'client' }), 1)
        assert.equal(
          v(s, 'wirelog_connections_rejected_total', { status: '503', reason: 'capacity' }),
          1,
        )
        assert.equal(
          v(s, 'wirelog_connections_rejected_total', { status: '403', reason: 'origin' }),
          1,
        )
        const rejected = s.filter((x) => x.name === 'wirelog_connections_rejected_total')
        assert.equal(rejected.length, 2, 'no other rejection series')
        assert.equal(
          v(s, 'wirelog_client_errors_total', { code: 'WS_ERR_INVALID_UTF8' }),
          undefined,
        )
        // The log's figures are the activity log's own counters, read at scrape time.
        assert.equal(v(s, 'wirelog_log_lines_total'), t.server.activityLog!.stats.lines)
        assert.equal(v(s, 'wirelog_log_writable'), 1)
        assert.equal(v(s, 'wirelog_log_write_errors_total'), 0)
        assert.equal(v(s, 'wirelog_ready'), 1)
        // No series names a client, an address or a path.
        for (const x of s)
          for (const [k, val] of Object.entries(x.labels)) {
            assert.ok(!/127\.0\.0\.1|client \d/.test(val), `${x.name}{${k}="${val}"}`)
          }
      },
    )
  })

  it('client errors by code, rate-limit drops and handler failures', async () => {
    await withServer(
      { echoPrefix: '', limits: { rateLimit: 5, rateLimitAction: 'drop' } },
      async (t) => {
        // Invalid UTF-8 in a text frame: a client error, closed by the server with 1007.
        const bad = await rawConnect(t.port)
        bad.write(frame(OP.TEXT, Buffer.from([0xff, 0xfe])))
        const info = await bad.waitClose(3000)
        assert.equal(info.code, 1007)
        bad.destroy()

        // 40 messages at once against 5/s (bursts of 10): the rest are dropped.
        const c = await connect(t.url)
        for (let i = 0; i < 40; i++) c.ws.send(`m${i}`)
        // The close frame follows the 40 in the stream: once it is handled, so are they.
        c.ws.close(1000)
        await c.closed
        await waitFor(() => t.server.clients.size === 0, 'the close')

        // A user handler that throws (reported as handler.failed), on a user event.
        t.server.events.on('app', 'boom', () => {
          throw new Error('boom')
        })
        t.server.events.trigger('app', 'boom', {})
        t.server.events.trigger('app', 'quiet', {})

        const s = await scrape(t.port)
        assert.equal(
          sampleValue(s, 'wirelog_client_errors_total', { code: 'WS_ERR_INVALID_UTF8' }),
          1,
        )
        assert.equal(
          sampleValue(s, 'wirelog_disconnects_total', { code: '1007', initiator: 'server' }),
          1,
        )
        const received = sampleValue(s, 'wirelog_messages_received_total')!
        const dropped = sampleValue(s, 'wirelog_rate_limit_dropped_total')!
        assert.ok(dropped > 0 && received < 40, `received ${received}, dropped ${dropped}`)
        assert.equal(received + dropped, 40, 'every message was either received or dropped')
        assert.equal(sampleValue(s, 'wirelog_handler_failures_total', { source: 'user' }), 1)
        assert.equal(sampleValue(s, 'wirelog_user_events_total'), 2)
      },
    )
  })

  it('a slow consumer closed with 4000 is counted', async () => {
    await withServer(
      { echoPrefix: '', limits: { maxBufferedBytes: 64 * KiB }, log: { enabled: false } },
      async (t) => {
        const c = await rawConnect(t.port)
        c.socket.pause() // read nothing: the echoes pile up on the server
        const msg = frame(OP.BINARY, Buffer.alloc(32 * KiB, 0x61))
        let gone = false
        t.server.events.once('ws', 'client.disconnected', () => {
          gone = true
        })
        for (let sent = 0; !gone && sent < 64 * 1024 * KiB; sent += msg.length) {
          if (!c.socket.write(msg))
            await Promise.race([new Promise((r) => c.socket.once('drain', r)), c.ended])
          if (c.socket.destroyed) break
          await new Promise((r) => setImmediate(r))
        }
        await waitFor(() => gone, 'the slow consumer to be closed')
        c.destroy()
        const s = await scrape(t.port)
        assert.equal(sampleValue(s, 'wirelog_slow_consumer_closes_total'), 1)
        assert.equal(
          sampleValue(s, 'wirelog_disconnects_total', { code: '4000', initiator: 'server' }),
          1,
        )
      },
    )
  })

  it('log write errors, writability and rotations come from the activity log', async () => {
    const reports: string[] = []
    const options: WirelogOptions = {
      host: '127.0.0.1',
      port: 0,
      log: { dir: '/dev', file: 'full', maxBuffer: 64 * KiB, flushInterval: 5 },
    }
    const server = createServer(options, {
      activityLog: new ActivityLog(resolveConfig(options).log, (m) => reports.push(m)),
    })
    const { port } = await server.listen()
    try {
      await waitFor(() => !server.activityLog!.stats.writable, 'a write error')
      const s = await scrape(port)
      assert.equal(sampleValue(s, 'wirelog_log_writable'), 0)
      assert.equal(sampleValue(s, 'wirelog_ready'), 0)
      const errors = sampleValue(s, 'wirelog_log_write_errors_total')!
      assert.ok(errors >= 1, `write errors ${errors}`)
      assert.equal(sampleValue(s, 'wirelog_log_buffered_bytes'), server.activityLog!.stats.buffered)
    } finally {
      await server.close()
    }

    await withServer({ log: { rotate: { size: 2048, keep: 2 } } }, async (t) => {
      const c = await connect(t.url)
      for (let i = 0; i < 40; i++) c.ws.send(`line ${i} ${'y'.repeat(100)}`)
      await c.waitMessages(40)
      await waitFor(() => t.server.activityLog!.stats.rotations >= 1, 'a rotation')
      const s = await scrape(t.port)
      assert.equal(
        sampleValue(s, 'wirelog_log_rotations_total'),
        t.server.activityLog!.stats.rotations,
      )
      c.ws.close()
      await c.closed
    })
  })

  it('broker state and counters come from broker.stats()', async () => {
    await withServer({ behaviour: 'pubsub', log: { enabled: false } }, async (t) => {
      await t.server.publish('news', { n: 1 })
      await t.server.publish('news', { n: 2 })
      // A wirelog.v1 request that is not JSON: answered with BAD_JSON, counted by code.
      const c = await connect(t.url)
      c.ws.send('not json')
      const [welcome, error] = await c.waitMessages(2)
      assert.match(String(welcome), /"op":"welcome"/)
      assert.match(String(error), /BAD_JSON/)
      c.ws.close()
      await c.closed
      const s = await scrape(t.port)
      assert.equal(sampleValue(s, 'wirelog_pubsub_errors_total', { code: 'BAD_JSON' }), 1)
      const stats = t.server.broker.stats!()
      assert.equal(sampleValue(s, 'wirelog_broker_connected'), 1)
      assert.equal(sampleValue(s, 'wirelog_broker_published_total'), stats.published)
      assert.equal(sampleValue(s, 'wirelog_broker_received_total'), stats.received)
      assert.equal(sampleValue(s, 'wirelog_topic_publishes_total'), 2)
    })
  })

  it('webhook deliveries, failures and queue per endpoint come from server.webhooks', async () => {
    let got = 0
    const ok = createHttpServer((req, res) => {
      req.resume()
      req.on('end', () => {
        got++
        res.end('ok')
      })
    })
    const bad = createHttpServer((req, res) => {
      req.resume()
      res.statusCode = 400
      res.end('no')
    })
    await Promise.all([ok, bad].map((h) => new Promise<void>((r) => h.listen(0, '127.0.0.1', r))))
    const okHost = `127.0.0.1:${(ok.address() as AddressInfo).port}`
    const badHost = `127.0.0.1:${(bad.address() as AddressInfo).port}`
    try {
      await withServer(
        {
          log: { enabled: false },
          webhooks: [
            { events: ['client.connected'], url: `http://${okHost}/` },
            { events: ['client.connected'], url: `http://${badHost}/` },
          ],
        },
        async (t) => {
          for (let i = 0; i < 3; i++) {
            const c = await connect(t.url)
            c.ws.close()
            await c.closed
          }
          await waitFor(
            () =>
              got === 3 &&
              t.server.webhooks!.stats().every((e) => e.queued === 0 && e.inFlight === 0),
            'the deliveries to settle',
          )
          const s = await scrape(t.port)
          const v = (name: string, endpoint: string) => sampleValue(s, name, { endpoint })
          assert.equal(v('wirelog_webhook_delivered_total', okHost), 3)
          assert.equal(v('wirelog_webhook_failed_total', okHost), 0)
          assert.equal(v('wirelog_webhook_delivered_total', badHost), 0)
          assert.equal(v('wirelog_webhook_failed_total', badHost), 3, '400 is not retried')
          assert.equal(v('wirelog_webhook_queued', okHost), 0)
        },
      )
    } finally {
      ok.close()
      bad.close()
    }
  })
})

describe('metrics: bounded labels', () => {
  it('codes, reasons and sources map to bounded sets; each counter caps its series', async () => {
    assert.equal(closeCodeLabel(1000), '1000')
    assert.equal(closeCodeLabel(1015), '1015')
    assert.equal(closeCodeLabel(4000), '4000')
    assert.equal(closeCodeLabel(4004), '4004')
    assert.equal(closeCodeLabel(4999), 'other')
    assert.equal(closeCodeLabel(3000), 'other')
    assert.equal(errorCodeLabel('WS_ERR_INVALID_UTF8'), 'WS_ERR_INVALID_UTF8')
    assert.equal(errorCodeLabel('user text'), 'other')
    assert.equal(rejectCategory(403, 'origin not allowed'), 'origin')
    assert.equal(rejectCategory(403, 'go away, 10.1.2.3'), 'forbidden')
    assert.equal(rejectCategory(418, 'teapot for user bob'), 'other')
    assert.equal(failureSource('app:order.created'), 'user')
    assert.equal(failureSource('http:/boom'), 'http')

    // 200 distinct error codes: at most MAX_SERIES series, none lost.
    const bus = new EventBus()
    const clients = new Set<{ messagesOut: number; bytesOut: number }>()
    const metrics = new ServerMetrics(bus, {
      state: 'RUNNING',
      clients,
      address: () => null,
    })
    const client = { id: 'c', ip: '127.0.0.1' } as unknown as Client
    for (let i = 0; i < 200; i++)
      emit(bus, 'client.error', {
        client,
        code: `WS_ERR_CODE_${i}`,
        message: '',
        closeCode: 1002,
      })
    const { problems, samples } = promlint(await metrics.text())
    assert.deepEqual(problems, [])
    const series = samples.filter((x) => x.name === 'wirelog_client_errors_total')
    assert.equal(series.length, MAX_SERIES)
    assert.equal(
      series.reduce((a, x) => a + x.value, 0),
      200,
    )
    assert.equal(
      sampleValue(samples, 'wirelog_client_errors_total', { code: 'other' }),
      200 - (MAX_SERIES - 1),
    )
  })
})

describe('metrics: exposition and access', () => {
  const servers: Array<{ close(): Promise<void> }> = []
  after(async () => {
    for (const s of servers) await s.close()
  })

  it('the real output is valid exposition text, with the default process metrics', async (ctx) => {
    await withServer({}, async (t) => {
      const c = await connect(t.url)
      c.ws.close(1000)
      await c.closed
      const r = await http(t.port, '/metrics')
      assert.equal(r.status, 200)
      assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/)
      assert.equal(r.headers['cache-control'], 'no-store')
      const { problems, samples } = promlint(r.body)
      assert.deepEqual(problems, [])
      const names = new Set(samples.map((s) => s.name))
      for (const n of [
        'wirelog_nodejs_eventloop_lag_seconds',
        'wirelog_nodejs_eventloop_lag_p99_seconds',
        'wirelog_process_cpu_seconds_total',
        'wirelog_process_resident_memory_bytes',
        'wirelog_nodejs_heap_size_used_bytes',
      ])
        assert.ok(names.has(n), `${n} is exposed`)
      for (const n of names) assert.ok(n.startsWith('wirelog_'), `${n} is prefixed`)
      const head = await http(t.port, '/metrics', { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.body, '')

      // promtool, when installed, agrees.
      const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' })
      if (promtool.error === undefined && promtool.status === 0) {
        const dir = tempDir()
        const file = join(dir, 'metrics.txt')
        writeFileSync(file, r.body)
        try {
          execFileSync('sh', ['-c', `promtool check metrics < "${file}"`], { stdio: 'pipe' })
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
        ctx.diagnostic('promtool check metrics: passed')
      } else ctx.diagnostic('promtool is not installed: its check was skipped')
    })
  })

  it('the checker catches broken exposition text', () => {
    const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total 1\n'
    assert.deepEqual(promlint(ok).problems, [])
    const cases: Array<[string, RegExp]> = [
      ['# HELP a A.\n# TYPE a counter\na 1\n', /"_total" suffix/],
      ['a_total 1\n', /no HELP/],
      ['# HELP a_total A.\n# TYPE a_total counter\na_total one\n', /not a float/],
      ['# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n', /duplicate series/],
      [
        '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 1\na_total{x="1"} 2\n',
        /duplicate series/,
      ],
      ['# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n', /invalid metric name/],
      ['# HELP a A.\n# TYPE a gauge\na{1x="v"} 1\n', /invalid label name/],
      ['# HELP a A.\n# TYPE a gauge\na{__x="v"} 1\n', /reserved/],
      ['# HELP a A.\n# TYPE a gauge\na{x=v} 1\n', /must be quoted/],
      ['# HELP a A.\n# TYPE a gauge\na{x="v",x="w"} 1\n', /repeated/],
      ['# HELP a A.\n# TYPE a gauge\na{x="\\q"} 1\n', /invalid escape/],
      ['# HELP a A.\na 1\n# TYPE a gauge\n', /after its samples/],
      ['# HELP a A.\n# TYPE a gauge\n# TYPE a gauge\na 1\n', /second TYPE/],
      ['# HELP a A.\n# TYPE a bogus\na 1\n', /unknown type/],
      [
        '# HELP a A.\n# TYPE a gauge\na{x="1"} 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x="2"} 1\n',
        /not contiguous/,
      ],
      ['# HELP fooBar A.\n# TYPE fooBar gauge\nfooBar 1\n', /camelCase/],
      ['# HELP h A.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /\+Inf/],
      ['# HELP a A.\n# TYPE a gauge\na{le="1"} 1\n', /reserved for histogram/],
      ['# HELP a A.\n# TYPE a gauge\na 1', /does not end/],
      ['# HELP a A.\n# TYPE a gauge\na 1 12.5\n', /timestamp/],
    ]
    for (const [text, re] of cases) {
      const { problems } = promlint(text)
      assert.ok(
        problems.some((p) => re.test(p)),
        `${JSON.stringify(text)}: expected a problem matching ${re}, got ${JSON.stringify(problems)}`,
      )
    }
  })

  /** A server bound to every interface (a non-loopback bind), reached on 127.0.0.1. */
  async function publicBind(options: WirelogOptions): Promise<number> {
    const s = createServer({ host: '0.0.0.0', port: 0, log: { enabled: false }, ...options })
    servers.push(s)
    return (await s.listen()).port
  }

  it('/metrics is admin: open on loopback, 403 on a public bind without a token, the token opens it', async () => {
    const noToken = await publicBind({})
    assert.equal((await http(noToken, '/metrics')).status, 403)
    const withToken = await publicBind({ adminToken: TOKEN })
    const anon = await http(withToken, '/metrics')
    assert.equal(anon.status, 401)
    assert.match(String(anon.headers['www-authenticate']), /^Bearer/)
    assert.equal(
      (
        await http(withToken, '/metrics', {
          headers: { authorization: 'Bearer not-the-token-0000000' },
        })
      ).status,
      401,
    )
    await scrape(withToken, { authorization: `Bearer ${TOKEN}` })
    // The health endpoints stay public meanwhile.
    assert.equal((await http(noToken, '/readyz')).status, 200)
  })

  it('a private registry per server; use() adds metrics of ones own', async () => {
    const a = createServer({ host: '127.0.0.1', port: 0, log: { enabled: false } })
    const b = createServer({ host: '127.0.0.1', port: 0, log: { enabled: false } })
    servers.push(a, b)
    let calls = 0
    a.metrics!.use((prom, registry) => {
      calls++
      new prom.Gauge({
        name: 'app_widgets',
        help: 'Widgets in stock.',
        registers: [registry],
        collect() {
          this.set(42)
        },
      })
    })
    assert.equal(a.metrics!.registry, undefined, 'no registry before listen()')
    assert.equal(calls, 0)
    const pa = (await a.listen()).port
    const pb = (await b.listen()).port
    // prom-client is loaded once the port is bound; load() waits for it.
    await Promise.all([a.metrics!.load(), b.metrics!.load()])
    assert.equal(calls, 1)
    const prom = await import('prom-client')
    const global = (prom as unknown as { default?: typeof prom }).default?.register ?? prom.register
    assert.notEqual(a.metrics!.registry, global)
    assert.notEqual(a.metrics!.registry, b.metrics!.registry)
    assert.equal(sampleValue(await scrape(pa), 'app_widgets'), 42)
    assert.equal(sampleValue(await scrape(pb), 'app_widgets'), undefined)
    // Once loaded, use() runs at once.
    a.metrics!.use(() => {
      calls++
    })
    assert.equal(calls, 2)
  })

  it('metrics: false routes nothing and never loads prom-client', () => {
    const script = `
      import { createRequire } from 'node:module'
      const { createServer } = await import(${JSON.stringify(join(ROOT, 'dist', 'index.js'))})
      const cache = createRequire(import.meta.url).cache
      const loaded = () => Object.keys(cache).some((k) => k.includes('/prom-client/'))
      const s = createServer({ host: '127.0.0.1', port: 0, metrics: false, log: { enabled: false } })
      const { port } = await s.listen()
      const r = await fetch('http://127.0.0.1:' + port + '/metrics')
      const out = { status: r.status, metrics: s.metrics === undefined, loaded: loaded() }
      await s.close()
      const on = createServer({ host: '127.0.0.1', port: 0, log: { enabled: false } })
      out.beforeListen = loaded()
      await on.listen()
      await on.metrics.load()
      out.afterListen = loaded()
      await on.close()
      console.log(JSON.stringify(out))
    `
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
    })
    assert.deepEqual(JSON.parse(out), {
      status: 426,
      metrics: true,
      loaded: false,
      beforeListen: false,
      afterListen: true,
    })
  })
})
