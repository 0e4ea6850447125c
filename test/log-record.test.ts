/**
 * The log-line parser of `wirelog logs`, on lines written by the real ActivityLog (both
 * formats), hostile client content included.
 */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { defaults } from '../src/config.js'
import type { ClientInfo } from '../src/connection.js'
import { ActivityLog } from '../src/log/activity-log.js'
import {
  parseLine,
  parsePlainLine,
  parseTextLine,
  toJsonLine,
  toTextLine,
  unescapeText,
} from '../src/tools/log-record.js'
import { Summary, summaryText } from '../src/tools/log-summary.js'

const client = (over: Partial<ClientInfo> = {}): ClientInfo => ({
  id: 'c1',
  ip: '10.0.0.7',
  port: 5555,
  proxy: undefined,
  origin: undefined,
  userAgent: 'agent "x" 1.0',
  protocol: '',
  path: '/ws',
  user: undefined,
  connectedAt: Date.now(),
  messagesIn: 0,
  messagesOut: 0,
  bytesIn: 0,
  bytesOut: 0,
  ...over,
})

/** Lines the real activity log writes for `fn`'s events, in `format`. */
async function linesOf(
  format: 'text' | 'json' | 'plain',
  fn: (log: ActivityLog) => void,
): Promise<string[]> {
  const cfg = defaults()
  const lines: string[] = []
  const log = new ActivityLog({ ...cfg.log, enabled: false, format, level: 'debug' }, () => {}, {
    line: (l) => lines.push(l.replace(/\n$/, '')),
  })
  await log.open()
  fn(log)
  await log.close()
  return lines
}

const HOSTILE = 'hi event=forged client=evil ip=6.6.6.6 bytes=1\n"q" \\ \u2028 \x1b[31m é'

function events(log: ActivityLog): void {
  const alice = client({ user: { id: 'alice smith', claims: {} } })
  log.record('ws', 'client.connected', { client: alice })
  const raw = Buffer.from(HOSTILE)
  log.record('ws', 'message.received', {
    client: alice,
    data: HOSTILE,
    raw,
    binary: false,
    bytes: raw.length,
  })
  log.record('ws', 'message.received', {
    client: alice,
    data: Buffer.from([1, 2, 3]),
    raw: Buffer.from([1, 2, 3]),
    binary: true,
    bytes: 3,
  })
  log.record('ws', 'message.sent', { client: alice, bytes: 9, binary: false })
  log.record('ws', 'client.error', {
    client: alice,
    code: 'WS_ERR_INVALID_UTF8',
    message: 'Invalid "UTF-8" sequence',
    closeCode: 1007,
  })
  log.record('ws', 'client.disconnected', {
    client: alice,
    code: 4000,
    reason: 'slow consumer event=x',
    initiator: 'server',
    durationMs: 12,
    messagesIn: 2,
    messagesOut: 1,
    bytesIn: raw.length + 3,
    bytesOut: 9,
  })
  log.record('ws', 'client.rejected', {
    ip: '1.2.3.4',
    port: 1,
    status: 403,
    reason: 'origin not allowed',
    origin: 'https://evil.example',
    userAgent: undefined,
    path: '/ws',
    proxy: undefined,
  })
  log.logger('billing').warn('card declined', { amount: 12.5, note: 'two words' })
}

describe('log-record: both formats from the real writer', () => {
  for (const format of ['text', 'json'] as const) {
    it(`${format}: fields, event, escaped content`, async () => {
      const lines = await linesOf(format, events)
      const recs = lines.map((l) => parseLine(l))
      assert.ok(
        recs.every((r) => r !== undefined),
        'every line parses',
      )
      const [conn, msg, bin, sent, err, disc, rej, user] = recs as NonNullable<
        (typeof recs)[number]
      >[]
      assert.equal(conn!.event, 'client.connected')
      assert.equal(conn!.client, 'c1')
      assert.equal(conn!.address, '10.0.0.7')
      assert.equal(conn!.user, 'alice smith')
      assert.equal(conn!.fields.ua, 'agent "x" 1.0')
      assert.ok(Math.abs(conn!.time - Date.now()) < 60_000)
      assert.equal(conn!.level, 'info')

      // The forged pairs in the content are not the line's fields.
      assert.equal(msg!.event, 'message.received')
      assert.equal(msg!.client, 'c1')
      assert.equal(msg!.address, '10.0.0.7')
      assert.equal(msg!.bytes, Buffer.byteLength(HOSTILE))
      assert.equal(msg!.text, `Message received: ${HOSTILE}`)
      if (format === 'json') assert.equal(msg!.data, HOSTILE)

      assert.equal(bin!.bytes, 3)
      assert.equal(bin!.fields.binary, true)
      assert.equal(sent!.level, 'debug')
      assert.equal(sent!.event, 'message.sent')

      assert.equal(err!.level, 'warn')
      assert.equal(err!.code, 'WS_ERR_INVALID_UTF8')
      assert.equal(err!.fields.close_code, 1007)
      assert.equal(err!.fields.error, 'Invalid "UTF-8" sequence')

      assert.equal(disc!.code, 4000)
      assert.equal(disc!.reason, 'slow consumer event=x')
      assert.equal(disc!.fields.bytes_out, 9)

      assert.equal(rej!.event, 'client.rejected')
      assert.equal(rej!.address, '1.2.3.4')
      assert.equal(rej!.reason, 'origin not allowed')
      assert.equal(rej!.fields.status, 403)

      assert.equal(user!.event, 'billing:log')
      assert.equal(user!.level, 'warn')
      assert.equal(user!.fields.amount, 12.5)
      assert.equal(user!.fields.note, 'two words')
    })
  }

  it('text rendering of a json record parses back to the same fields', async () => {
    const lines = await linesOf('json', events)
    for (const l of lines) {
      const r = parseLine(l)!
      const back = parseTextLine(toTextLine(r))
      assert.ok(back, `re-parses: ${toTextLine(r)}`)
      assert.equal(back.event, r.event)
      assert.equal(back.text, r.text)
      assert.equal(back.client, r.client)
      assert.equal(back.time, r.time)
      const j = JSON.parse(toJsonLine(r))
      assert.equal(j.event, r.event)
      assert.equal(j.time, new Date(r.time).toISOString())
    }
  })

  it('plain lines: the event and address from the sentence', async () => {
    const lines = await linesOf('plain', events)
    const conn = parseLine(lines[0]!)!
    assert.equal(conn.event, 'client.connected')
    assert.equal(conn.address, '10.0.0.7')
    assert.ok(Number.isNaN(conn.time))
    assert.equal(parsePlainLine('something else').event, 'unknown')
  })

  it('foreign and broken lines are not records', () => {
    assert.equal(parseLine(''), undefined)
    assert.equal(parseLine('hello world'), undefined)
    assert.equal(parseLine('{"not":"ours"}'), undefined)
    assert.equal(parseLine('{"level":30,"time":1,"event":"x"'), undefined)
    assert.equal(parseLine('2026-01-02T03:04:05.678Z INFO  no fields here'), undefined)
    // A torn line whose quote never closes.
    assert.equal(parseLine('2026-01-02T03:04:05.678Z INFO  x event=a reason="cut'), undefined)
  })

  it('unescapes what escapeText writes', () => {
    assert.equal(unescapeText('a\\nb\\r\\t\\\\\\x1b\\u2028\\"'), 'a\nb\r\t\\\x1b\u2028"')
    assert.equal(unescapeText('trailing\\'), 'trailing\\')
    assert.equal(unescapeText('\\xzz'), '\\xzz')
  })
})

describe('log-summary', () => {
  it('ranks talkers by bytes sent to the server, with address and user', async () => {
    const lines = await linesOf('text', (log) => {
      const mk = (id: string, ip: string, user?: string): ClientInfo =>
        client({ id, ip, user: user ? { id: user, claims: {} } : undefined })
      const a = mk('a1', '10.0.0.1', 'alice')
      const b = mk('b1', '10.0.0.2')
      for (const [c, n, size] of [
        [a, 2, 500],
        [b, 20, 10],
      ] as const) {
        log.record('ws', 'client.connected', { client: c })
        for (let i = 0; i < n; i++) {
          const raw = Buffer.alloc(size, 120)
          log.record('ws', 'message.received', {
            client: c,
            data: raw.toString(),
            raw,
            binary: false,
            bytes: size,
          })
        }
      }
    })
    const s = new Summary()
    for (const l of lines) s.add(parseLine(l)!)
    const r = s.report(['x'], 10)
    assert.equal(r.messagesIn, 22)
    assert.equal(r.bytesIn, 1200)
    assert.deepEqual(
      r.topTalkers.map((t) => [t.client, t.address, t.user, t.messages, t.bytes]),
      [
        ['a1', '10.0.0.1', 'alice', 2, 1000],
        ['b1', '10.0.0.2', undefined, 20, 200],
      ],
    )
    assert.match(summaryText(r), / 1 {2}a1 +10\.0\.0\.1 +alice +2 +1\.0 kB\n/)
  })
})
