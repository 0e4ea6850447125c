import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { connect, expectRejected, startServer, waitForLine } from './helpers.js'

const HELLO = [
  'Client connected: 127.0.0.1',
  'Message received: Hello Server',
  'Client disconnected: 127.0.0.1',
]

/** Connect, send "Hello Server", wait for the echo, close, wait for the disconnect line. */
async function helloSession(
  format: 'text' | 'json' | 'plain',
  extra: { host?: string; log?: Record<string, unknown> } = {},
) {
  const t = await startServer({ ...extra, log: { ...extra.log, format } })
  const c = await connect(t.url, {
    headers: { 'user-agent': 'test agent/1.0', origin: 'http://localhost' },
  })
  c.ws.send('Hello Server')
  await c.waitMessages(1)
  c.ws.close(1000, 'done')
  await c.closed
  const pattern = format === 'json' ? /"event":"client.disconnected"/ : /Client disconnected/
  await waitForLine(t.logPath, pattern)
  return t
}

describe('activity log', () => {
  it('plain format writes exactly the case-study sentences', async () => {
    const t = await helloSession('plain')
    try {
      const lines = t.lines().filter((l) => !l.startsWith('Server '))
      assert.deepEqual(lines, HELLO)
    } finally {
      await t.stop()
    }
  })

  it('text format: timestamp, level, sentence, key=value extras', async () => {
    const t = await helloSession('text')
    try {
      const lines = t.lines().filter((l) => / (Client|Message) /.test(l))
      assert.equal(lines.length, 3)
      const ts = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}/
      for (const [i, sentence] of HELLO.entries()) {
        assert.match(lines[i]!, ts)
        assert.ok(lines[i]!.includes(` ${sentence} `), lines[i])
      }
      assert.match(
        lines[0]!,
        / client=\S+ ip=127\.0\.0\.1 port=\d+ path=\/ origin=http:\/\/localhost ua="test agent\/1\.0"/,
      )
      assert.match(lines[1]!, / bytes=12/)
      assert.match(
        lines[2]!,
        / code=1000 reason=done initiator=client duration_ms=\d+ msgs_in=1 msgs_out=1 bytes_in=12 bytes_out=18/,
      )
    } finally {
      await t.stop()
    }
  })

  it('json format: every line parses, pino fields plus an event field', async () => {
    const t = await helloSession('json')
    try {
      const objs = t.lines().map((l) => JSON.parse(l) as Record<string, unknown>)
      const events = objs.map((o) => o.event)
      assert.deepEqual(events, [
        'server.listening',
        'client.connected',
        'message.received',
        'client.disconnected',
      ])
      for (const o of objs) {
        assert.equal(o.level, 30)
        assert.equal(typeof o.time, 'number')
        assert.equal(o.pid, process.pid)
        assert.equal(typeof o.hostname, 'string')
      }
      assert.deepEqual(
        objs.slice(1).map((o) => o.msg),
        HELLO,
      )
      const [conn, msg, disc] = objs.slice(1)
      assert.equal(conn!.client, msg!.client)
      assert.equal(msg!.bytes, 12)
      assert.equal(disc!.code, 1000)
      assert.equal(disc!.reason, 'done')
    } finally {
      await t.stop()
    }
  })

  it('shows IPv4-mapped IPv6 peers as IPv4', async () => {
    const t = await helloSession('plain', { host: '::' })
    try {
      assert.ok(t.lines().includes('Client connected: 127.0.0.1'), t.lines().join('\n'))
    } finally {
      await t.stop()
    }
  })

  it('client content cannot forge lines; long messages are cut with the byte count; binary is hex', async () => {
    const t = await startServer({ log: { format: 'text', preview: 32 } })
    try {
      const c = await connect(t.url)
      const forged =
        'x\n2026-01-01T00:00:00.000Z INFO  Client connected: 6.6.6.6\r\x1b[2J\u2028\u2029'
      c.ws.send(forged)
      c.ws.send('y'.repeat(5000))
      c.ws.send(Buffer.from([0xde, 0xad, 0xbe, 0xef]))
      await c.waitMessages(3)
      c.ws.close()
      await waitForLine(t.logPath, /Client disconnected/)
      const lines = t.lines()
      assert.equal(
        lines.filter((l) => l.includes('Client connected:')).length,
        1,
        'no forged connect line',
      )
      assert.ok(
        lines.every((l) => /^\d{4}-/.test(l)),
        'every line starts with a timestamp',
      )
      const all = lines.join('\n')
      assert.doesNotMatch(all, /[\r\x1b\u2028\u2029]/)
      const msgs = lines.filter((l) => l.includes('Message received:'))
      assert.equal(msgs.length, 3)
      assert.ok(msgs[0]!.includes('x\\n2026-01-01T00:00:00.000Z INFO'))
      assert.match(msgs[1]!, /Message received: y{32}… \(5000 bytes\) .* bytes=5000 truncated=true/)
      assert.match(msgs[2]!, /Message received: \[binary 4 bytes\] deadbeef .* bytes=4 binary=true/)
    } finally {
      await t.stop()
    }
  })

  it('json lines stay parseable whatever the client sends', async () => {
    const t = await startServer({ log: { format: 'json', preview: 64 } })
    try {
      const c = await connect(t.url)
      const nasty = [
        '"}\n{"level":60,"msg":"forged"}',
        '\\',
        '\u2028\u2029\x00\x1b[0m',
        '\ud83d\ude00 emoji',
        'é'.repeat(100),
      ]
      for (const m of nasty) c.ws.send(m)
      await c.waitMessages(nasty.length)
      c.ws.close()
      await waitForLine(t.logPath, /client.disconnected/)
      const objs = t.lines().map((l) => JSON.parse(l) as Record<string, unknown>)
      assert.ok(
        objs.every((o) => o.level !== 60),
        'no forged level-60 line',
      )
      const msgs = objs.filter((o) => o.event === 'message.received')
      assert.equal(msgs.length, nasty.length)
      assert.equal(msgs[0]!.msg, `Message received: "}\\n{"level":60,"msg":"forged"}`)
      assert.equal(msgs[4]!.truncated, true)
      assert.equal(msgs[4]!.bytes, 200)
    } finally {
      await t.stop()
    }
  })

  it('logs user events and handler failures like built-in ones', async () => {
    const t = await startServer({ log: { format: 'json' } })
    try {
      t.server.events.register('app', 'order.created', () => {
        throw new Error('handler broke')
      })
      t.server.events.trigger('app', 'order.created', { id: 42, note: 'line\nbreak' })
      await waitForLine(t.logPath, /handler.failed/)
      const objs = t.lines().map((l) => JSON.parse(l) as Record<string, unknown>)
      const ev = objs.find((o) => o.event === 'app:order.created')!
      assert.deepEqual(ev.data, { id: 42, note: 'line\nbreak' })
      assert.equal(ev.msg, 'Event app:order.created: {"id":42,"note":"line\\\\nbreak"}')
      const failed = objs.find((o) => o.event === 'handler.failed')!
      assert.equal(failed.level, 50)
      assert.equal(failed.handler_event, 'app:order.created')
      assert.match(String(failed.error), /handler broke/)
    } finally {
      await t.stop()
    }
  })

  it('a throwing message handler does not affect the client or other handlers', async () => {
    const t = await startServer({ log: { format: 'plain' } })
    try {
      let seen = 0
      t.server.events.register('ws', 'message.received', () => {
        throw new Error('nope')
      })
      t.server.events.register('ws', 'message.received', async () => {
        throw new Error('async nope')
      })
      t.server.events.register('ws', 'message.received', (e) => {
        seen += e.bytes
      })
      const c = await connect(t.url)
      c.ws.send('still works')
      assert.deepEqual(await c.waitMessages(1), ['Echo: still works'])
      assert.equal(seen, 11)
      await waitForLine(t.logPath, /Handler failed: ws:message.received/, 2)
      c.ws.close()
      await c.closed
    } finally {
      await t.stop()
    }
  })

  it('debug level adds message.sent lines; warn level drops info lines', async () => {
    const dbg = await helloSession('plain', { log: { level: 'debug' } })
    try {
      const lines = dbg.lines()
      assert.ok(
        lines.indexOf('Message sent: 127.0.0.1') > lines.indexOf('Message received: Hello Server'),
        lines.join('\n'),
      )
    } finally {
      await dbg.stop()
    }
    const t = await startServer({
      log: { format: 'plain', level: 'warn' },
      allowedOrigins: ['http://ok'],
    })
    try {
      const c = await connect(t.url)
      c.ws.send('x')
      await c.waitMessages(1)
      assert.equal(await expectRejected(t.url, { headers: { origin: 'http://evil' } }), 403)
      await waitForLine(t.logPath, /Client rejected: 127\.0\.0\.1/)
      c.ws.close()
      await c.closed
      assert.deepEqual(t.lines(), ['Client rejected: 127.0.0.1'])
    } finally {
      await t.stop()
    }
  })
})
