/**
 * The activity log as evidence: causal order with user handlers, nothing lost before
 * listen(), no forged server lines, faithful json content, redacted credentials, and
 * escaping in every format.
 */
import { strict as assert } from 'node:assert'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { createServer } from '../src/index.js'
import { connect, readLines, startServer, tempDir, waitForLine } from './helpers.js'

type Entry = Record<string, unknown> & { event: string; msg: string }
const parse = (lines: string[]): Entry[] => lines.map((l) => JSON.parse(l) as Entry)

describe('log integrity', () => {
  it('records each event before any handler sees it: lines follow their causes', async () => {
    const t = await startServer({ log: { format: 'json', level: 'debug' } })
    try {
      // Handlers registered *before* anything else: in registration order they would run
      // before a `*:*` subscriber and their lines would come first.
      t.server.events.register('ws', 'client.connected', (e) => {
        e.client.send('welcome')
      })
      t.server.events.register('ws', 'message.received', (e) => {
        t.server.events.trigger('app', 'note', { about: e.client.id })
      })
      const c = await connect(t.url)
      await c.waitMessages(1)
      c.ws.send('hi')
      await c.waitMessages(2)
      c.ws.close()
      await waitForLine(t.logPath, /client\.disconnected/)
      const events = parse(t.lines())
        .map((e) => e.event)
        .filter((e) => e !== 'server.listening')
      assert.deepEqual(events, [
        'client.connected',
        'message.sent', // the welcome, caused by the connect
        'message.received',
        'app:note', // caused by the message
        'message.sent', // the echo
        'client.disconnected',
      ])
    } finally {
      await t.stop()
    }
  })

  it('logs events triggered before listen() once the log opens, in order', async () => {
    const dir = tempDir()
    try {
      const server = createServer({
        host: '127.0.0.1',
        port: 0,
        log: { dir, file: 'a.log', format: 'json' },
      })
      server.events.trigger('app', 'order.created', { id: 42 })
      server.log.info('configured')
      await server.listen()
      await server.close()
      const events = parse(readLines(join(dir, 'a.log'))).map((e) => e.event)
      assert.deepEqual(events, [
        'app:order.created',
        'app:log',
        'server.listening',
        'server.closing',
        'server.closed',
      ])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a server that never listens still writes what was recorded on close()', async () => {
    const dir = tempDir()
    try {
      const server = createServer({ log: { dir, file: 'a.log', format: 'plain' } })
      server.events.trigger('app', 'early', { n: 1 })
      await server.close()
      assert.deepEqual(readLines(join(dir, 'a.log')), ['Event app:early: {"n":1}'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('user code cannot write server lines: forged ws events throw and leave no line', async () => {
    const t = await startServer({ log: { format: 'json' } })
    try {
      const bus = t.server.events as unknown as {
        trigger(ns: string, name: string, p: unknown): number
      }
      assert.throws(() => bus.trigger('ws', 'server.closed', { reason: 'forged' }), TypeError)
      assert.throws(() => bus.trigger('ws', 'client.disconnected', { junk: true }), TypeError)
      t.server.log.info('Server closed')
      await waitForLine(t.logPath, /app:log/)
      const entries = parse(t.lines())
      assert.equal(entries.filter((e) => e.event === 'server.closed').length, 0)
      // A user line that copies a server sentence still says whose it is.
      const user = entries.find((e) => e.event === 'app:log')!
      assert.equal(user.msg, '[app] Server closed')
      assert.equal(user.source, 'app')
    } finally {
      await t.stop()
    }
  })

  it('json keeps the message content faithfully in `data`; msg stays the escaped sentence', async () => {
    const t = await startServer({ log: { format: 'json', preview: 24 } })
    try {
      const c = await connect(t.url)
      const hostile = 'line1\nline2\x1b[31m\u2028"\\'
      c.ws.send(hostile)
      c.ws.send(Buffer.from([0, 1, 2, 0xff]))
      const long = 'é'.repeat(20) // 40 bytes, cut at 24 on a character boundary
      c.ws.send(long)
      await c.waitMessages(3)
      c.ws.close()
      await waitForLine(t.logPath, /client\.disconnected/)
      const msgs = parse(t.lines()).filter((e) => e.event === 'message.received')
      assert.equal(msgs.length, 3)
      const [text, bin, cut] = msgs as [Entry, Entry, Entry]
      assert.equal(text.data, hostile, 'recovered exactly')
      assert.equal(text.msg, 'Message received: line1\\nline2\\x1b[31m\\u2028"\\\\')
      assert.equal(text.bytes, Buffer.byteLength(hostile))
      assert.equal(text.binary, undefined)
      assert.equal(bin.binary, true)
      assert.deepEqual(Buffer.from(bin.data as string, 'base64'), Buffer.from([0, 1, 2, 0xff]))
      assert.equal(cut.truncated, true)
      assert.equal(cut.data, 'é'.repeat(12))
      assert.equal(cut.bytes, 40)
    } finally {
      await t.stop()
    }
  })

  it('json carries every payload field of the built-in events', async () => {
    const dir = tempDir()
    try {
      const server = createServer({
        host: '127.0.0.1',
        port: 0,
        log: { dir, file: 'a.log', format: 'json' },
      })
      const addr = await server.listen()
      const c = await connect(`ws://127.0.0.1:${addr.port}/room?x=1`, {
        headers: { origin: 'http://localhost', 'user-agent': 'ua/1' },
      })
      c.ws.close(4321, 'bye')
      await c.closed
      await waitForLine(join(dir, 'a.log'), /client\.disconnected/)
      await server.close('maintenance')
      const by = new Map(parse(readLines(join(dir, 'a.log'))).map((e) => [e.event, e]))
      const connected = by.get('client.connected')!
      for (const k of ['client', 'ip', 'port', 'path', 'origin', 'ua'])
        assert.ok(k in connected, `client.connected has ${k}`)
      assert.equal(connected.path, '/room?x=1')
      const gone = by.get('client.disconnected')!
      assert.deepEqual(
        [gone.code, gone.reason, gone.initiator, gone.msgs_in, gone.bytes_out],
        [4321, 'bye', 'client', 0, 0],
      )
      assert.equal(typeof gone.duration_ms, 'number')
      assert.equal(by.get('server.listening')!.port, addr.port)
      assert.equal(by.get('server.closing')!.reason, 'maintenance')
      assert.equal(by.get('server.closing')!.clients, 0)
      assert.equal(by.get('server.closed')!.reason, 'maintenance')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('redacts credentials in logged paths, in every format, and in client.path', async () => {
    for (const format of ['text', 'json'] as const) {
      const t = await startServer({
        log: { format, redact: ['room_pin'] },
        allowedOrigins: ['http://ok.example'],
      })
      try {
        const c = await connect(
          `${t.url}/any?token=s3cr3t&access_token=a1&room_pin=1234&password=pw&user=bob`,
        )
        const client = [...t.server.clients][0]!
        assert.equal(
          client.path,
          '/any?token=[redacted]&access_token=[redacted]&room_pin=[redacted]&password=[redacted]&user=bob',
        )
        c.ws.close()
        await c.closed
        // A refused upgrade's path is redacted too.
        await connect(`${t.url}/x?secret=zzz`, { headers: { origin: 'http://evil' } }).catch(
          () => {},
        )
        await waitForLine(t.logPath, /client\.rejected/)
        await waitForLine(t.logPath, /client\.disconnected/)
        const text = t.lines().join('\n')
        for (const secret of ['s3cr3t', 'a1&', '1234', '=pw', 'zzz'])
          assert.ok(!text.includes(secret), `${format} log does not contain ${secret}`)
        assert.match(text, /user=bob/)
      } finally {
        await t.stop()
      }
    }
  })

  it('escapes client content in every format (plain included)', async () => {
    for (const format of ['text', 'json', 'plain'] as const) {
      const t = await startServer({ log: { format } })
      try {
        const c = await connect(t.url)
        c.ws.send('evil\nClient connected: 6.6.6.6\r\x1b[2J\u2028')
        await c.waitMessages(1)
        c.ws.close()
        await waitForLine(t.logPath, /disconnected/)
        const lines = t.lines()
        assert.equal(
          lines.filter((l) => l.includes('Client connected: 6.6.6.6')).length,
          1,
          `${format}: the forged sentence stays inside its own line`,
        )
        assert.ok(
          lines.every((l) => !/[\r\x1b\u2028]/.test(l)),
          `${format}: no raw control characters`,
        )
        const line = lines.find((l) => l.includes('evil'))!
        const sentence = format === 'json' ? (JSON.parse(line) as Entry).msg : line
        assert.ok(sentence.includes('evil\\nClient connected: 6.6.6.6\\r\\x1b[2J\\u2028'), line)
      } finally {
        await t.stop()
      }
    }
  })

  it('user lines are escaped, truncated, redacted and carry their source in every format', async () => {
    for (const format of ['text', 'json', 'plain'] as const) {
      const t = await startServer({ log: { format, preview: 64 } })
      try {
        const billing = t.server.log.child('billing')
        billing.warn('charged\nClient connected: 1.1.1.1', {
          amount: 12.5,
          card_token: 'tok_live_123',
          url: '/pay?token=abc&ok=1',
        })
        t.server.log.info('x'.repeat(100))
        await waitForLine(t.logPath, /xxxx/)
        const lines = t.lines()
        const joined = lines.join('\n')
        assert.ok(!joined.includes('tok_live_123') && !joined.includes('token=abc'), joined)
        const line = lines.find((l) => l.includes('charged'))!
        const sentence = format === 'json' ? (JSON.parse(line) as Entry).msg : line
        assert.ok(sentence.includes('[billing] charged\\nClient connected: 1.1.1.1'), line)
        const long = lines.find((l) => l.includes('xxxx'))!
        assert.ok(long.includes('… (100 chars)'), long)
        if (format === 'json') {
          const e = JSON.parse(line) as Entry
          assert.equal(e.event, 'billing:log')
          assert.equal(e.level, 40)
          assert.equal(e.amount, 12.5)
          assert.equal(e.card_token, '[redacted]')
          assert.equal(e.url, '/pay?token=[redacted]&ok=1')
        }
        if (format === 'text')
          assert.match(line, /WARN .* event=billing:log source=billing amount=12\.5/)
      } finally {
        await t.stop()
      }
    }
    const t = await startServer()
    try {
      assert.throws(() => t.server.log.child('ws'), TypeError)
    } finally {
      await t.stop()
    }
  })
})
