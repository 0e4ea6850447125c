/**
 * Hostile input, part 2: abuse of the HTTP upgrade. Bad handshakes, slow-loris headers, the
 * origin allow-list and the connection caps. Every refusal must be the right HTTP status,
 * before any 101, with exactly one `client.rejected` line and no `client.connected` event,
 * while a bystander stays connected and served.
 */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import type { WirelogOptions } from '../src/index.js'
import {
  assertServing,
  entries,
  type HttpResult,
  type LogEntry,
  openFds,
  rawConnect,
  rawHttp,
  upgradeRequest,
  waitEntries,
} from './frames.js'
import {
  connect,
  startServer,
  type TestClient,
  type TestServer,
  waitFor,
  waitForLine,
} from './helpers.js'

interface Harness {
  t: TestServer
  bystander: TestClient
  /** `client.connected` events so far. */
  connects(): number
}

async function withServer(
  options: WirelogOptions,
  body: (h: Harness) => Promise<void>,
  bystanderFrom?: string,
): Promise<void> {
  const t = await startServer({ ...options, log: { format: 'json', ...options.log } })
  let n = 0
  t.server.events.on('ws', 'client.connected', () => {
    n++
  })
  const bystander = await connect(t.url, bystanderFrom ? { localAddress: bystanderFrom } : {})
  n = 0
  try {
    await body({ t, bystander, connects: () => n })
  } finally {
    bystander.ws.close()
    await t.stop()
  }
}

const rejected = (status: number) => (e: LogEntry) =>
  e.event === 'client.rejected' && e.status === status

/**
 * Run `attempt` and check: the response has `status` (and no 101 anywhere), exactly one new
 * `client.rejected` line with that status and a reason matching `reason`, no connect event,
 * and the server still serving.
 */
async function expectRefusal(
  h: Harness,
  attempt: () => Promise<HttpResult>,
  status: number,
  reason: RegExp,
): Promise<LogEntry> {
  const before = entries(h.t).filter((e) => e.event === 'client.rejected').length
  const connectsBefore = h.connects()
  const r = await attempt()
  assert.equal(r.status, status, `status (response: ${r.head.split('\r\n')[0]})`)
  assert.doesNotMatch(r.head + r.body, /101 Switching/)
  await waitEntries(
    h.t,
    (e) => e.event === 'client.rejected',
    `client.rejected status=${status}`,
    before + 1,
  )
  await assertServing(h.t, h.bystander)
  // The bystander's echo is a barrier: any second line for this refusal would be written by now.
  const all = entries(h.t).filter((x) => x.event === 'client.rejected')
  assert.equal(all.length, before + 1, 'exactly one client.rejected line per refusal')
  const line = all[all.length - 1]!
  assert.equal(line.status, status)
  assert.match(String(line.reason), reason)
  assert.equal(
    h.connects(),
    connectsBefore + 1,
    'no client.connected for the refused request (only the fresh client)',
  )
  return line
}

describe('upgrade abuse → 4xx before any 101', () => {
  it('POST, missing/invalid key, wrong or missing version, bad Upgrade header', async () => {
    await withServer({}, async (h) => {
      const port = h.t.port
      const r405 = await expectRefusal(
        h,
        () => rawHttp(port, upgradeRequest(port, { method: 'POST' })),
        405,
        /method/i,
      )
      assert.equal(r405.status, 405)
      await expectRefusal(
        h,
        () => rawHttp(port, upgradeRequest(port, { drop: ['Sec-WebSocket-Key'] })),
        400,
        /Sec-WebSocket-Key/,
      )
      await expectRefusal(
        h,
        () => rawHttp(port, upgradeRequest(port, { set: { 'Sec-WebSocket-Key': 'dG9vIHNob3J0' } })),
        400,
        /Sec-WebSocket-Key/,
      )
      const wrong = await rawHttp(
        port,
        upgradeRequest(port, { set: { 'Sec-WebSocket-Version': '12' } }),
      )
      assert.equal(wrong.status, 426, 'a version we do not speak is 426 Upgrade Required')
      assert.match(
        wrong.head,
        /\r\nSec-WebSocket-Version: 13, 8(\r\n|$)/,
        'and says which versions we do speak',
      )
      await waitEntries(h.t, rejected(426), 'client.rejected status=426')
      await expectRefusal(
        h,
        () => rawHttp(port, upgradeRequest(port, { set: { 'Sec-WebSocket-Version': '7' } })),
        426,
        /version/i,
      )
      await expectRefusal(
        h,
        () => rawHttp(port, upgradeRequest(port, { drop: ['Sec-WebSocket-Version'] })),
        400,
        /version/i,
      )
      await expectRefusal(
        h,
        () => rawHttp(port, upgradeRequest(port, { set: { Upgrade: 'h2c' } })),
        400,
        /Upgrade/,
      )
    })
  })

  it('cuts off a slow-loris that keeps trickling header bytes, after limits.headersTimeout (not Node’s 60 s)', async () => {
    const headersTimeout = 400
    await withServer({ limits: { headersTimeout } }, async (h) => {
      // One byte every 20 ms for ever: the connection is never idle, the headers never end.
      const slow = rawHttp(
        h.t.port,
        `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: `,
        {
          trickleMs: 20,
          timeoutMs: 3000,
        },
      )
      // And one that sends nothing at all after connecting.
      const silent = rawHttp(h.t.port, '', { trickleMs: 60_000, timeoutMs: 3000 })
      const [r, s] = await Promise.all([slow, silent])
      for (const x of [r, s]) {
        assert.equal(x.status, 408)
        // Node checks the timeout every min(1 s, headersTimeout): the cut comes in (t, 2t].
        assert.ok(
          x.ms >= headersTimeout - 50 && x.ms < 2 * headersTimeout + 1000,
          `cut off after ${x.ms} ms`,
        )
      }
      const lines = await waitEntries(h.t, rejected(408), 'two client.rejected status=408', 2)
      assert.equal(lines.length, 2)
      assert.match(String(lines[0]!.reason), /headers timed out/)
      assert.equal(h.connects(), 0)
      await assertServing(h.t, h.bystander)
    })
  })
})

describe('origin allow-list', () => {
  it('refuses disallowed and look-alike origins with 403 before any 101; allows exact and wildcard matches', async () => {
    await withServer(
      { allowedOrigins: ['https://app.example.com', 'https://*.example.com'] },
      async (h) => {
        const port = h.t.port
        const refused = [
          'https://evil.net',
          'https://example.com.evil.net',
          'https://app.example.com.evil.net',
          'https://evil.net/.example.com',
          'https://evil.net?.example.com',
          'https://user@evil.net#.example.com',
          'http://app.example.com',
          'https://example.com',
          'https://app.example.com:8443',
          'null',
        ]
        for (const origin of refused) {
          const e = await expectRefusal(
            h,
            () => rawHttp(port, upgradeRequest(port, { set: { Origin: origin } })),
            403,
            /origin not allowed/,
          )
          assert.ok(
            entries(h.t).some((x) => x.event === 'client.rejected' && x.origin === origin),
            `the rejection of ${origin} is logged with its origin (${JSON.stringify(e)})`,
          )
        }
        for (const origin of [
          'https://app.example.com',
          'HTTPS://App.Example.COM',
          'https://a.b.example.com',
        ]) {
          const c = await connect(h.t.url, { origin })
          c.ws.close()
          await c.closed
        }
        await waitEntries(
          h.t,
          (e) => e.event === 'client.connected' && e.origin === 'https://a.b.example.com',
          'wildcard origin connected',
        )
      },
    )
  })
})

describe('the default text log', () => {
  it('a refusal is one client.rejected line with status= and reason=', async () => {
    const t = await startServer({ allowedOrigins: ['https://app.example.com'] })
    try {
      const r = await rawHttp(
        t.port,
        upgradeRequest(t.port, { set: { Origin: 'https://example.com.evil.net' } }),
      )
      assert.equal(r.status, 403)
      const [line] = await waitForLine(
        t.logPath,
        /Client rejected: 127\.0\.0\.1 event=client\.rejected /,
      )
      assert.match(
        line!,
        / status=403 reason="origin not allowed" path=\/ origin=https:\/\/example\.com\.evil\.net/,
      )
    } finally {
      await t.stop()
    }
  })
})

describe('connection caps → 503 at upgrade, fds released', () => {
  it('global cap (limits.maxConnections)', async () => {
    await withServer({ limits: { maxConnections: 3 } }, async (h) => {
      const a = await connect(h.t.url)
      const b = await connect(h.t.url)
      const fds = openFds()
      const before = h.connects()
      // These clients hang up as soon as they have the answer: the server must then release
      // its end on its own (the per-IP case below waits for the server to close instead).
      const tries = await Promise.all(
        Array.from({ length: 5 }, () =>
          rawHttp(h.t.port, upgradeRequest(h.t.port), { impatient: true }),
        ),
      )
      for (const r of tries) {
        assert.equal(r.status, 503)
        assert.match(r.head, /\r\nRetry-After: \d+/)
      }
      const lines = await waitEntries(h.t, rejected(503), '5 client.rejected status=503', 5)
      assert.ok(lines.every((l) => l.reason === 'server at capacity'))
      assert.equal(h.connects(), before, 'no connect event for a refused client')
      await waitFor(() => openFds() <= fds, `file descriptors back to ${fds}`, 3000)
      // The bystander is unaffected; free a slot so a fresh client fits, then check the count is exact.
      a.ws.close()
      await a.closed
      await assertServing(h.t, h.bystander)
      assert.equal(entries(h.t).filter(rejected(503)).length, 5, 'logged once per refusal')
      b.ws.close()
      await b.closed
    })
  })

  it('per-IP cap (limits.maxConnectionsPerIp): other addresses still get in, the slot frees on disconnect', async () => {
    // Linux routes all of 127/8 to loopback: the bystander and a neighbour use other source addresses.
    await withServer(
      { limits: { maxConnectionsPerIp: 2 } },
      async (h) => {
        const a = await connect(h.t.url, { localAddress: '127.0.0.1' })
        const b = await rawConnect(h.t.port, { localAddress: '127.0.0.1' })
        const fds = openFds()
        const tries = await Promise.all(
          Array.from({ length: 4 }, () =>
            rawHttp(h.t.port, upgradeRequest(h.t.port), { localAddress: '127.0.0.1' }),
          ),
        )
        for (const r of tries) assert.equal(r.status, 503)
        const lines = await waitEntries(h.t, rejected(503), '4 client.rejected status=503', 4)
        assert.ok(
          lines.every(
            (l) => l.reason === 'too many connections from this address' && l.ip === '127.0.0.1',
          ),
        )
        await waitFor(() => openFds() <= fds, `file descriptors back to ${fds}`, 3000)
        // Another address is not affected by 127.0.0.1 being full.
        const neighbour = await connect(h.t.url, { localAddress: '127.0.0.3' })
        neighbour.ws.send('hi')
        assert.deepEqual(await neighbour.waitMessages(1), ['Echo: hi'])
        neighbour.ws.close()
        await neighbour.closed
        // Free one 127.0.0.1 slot: a fresh 127.0.0.1 client (assertServing) now fits.
        a.ws.close()
        await a.closed
        await assertServing(h.t, h.bystander)
        assert.equal(entries(h.t).filter(rejected(503)).length, 4, 'logged once per refusal')
        b.destroy()
      },
      '127.0.0.2',
    )
  })
})
