import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { escapeText, hexPreview, jsonString, textValue, utf8Boundary } from '../src/log/escape.js'
import { createBuilder, isoNow } from '../src/log/format.js'

describe('escaping', () => {
  it('leaves clean text alone (same string)', () => {
    const s = 'Hello Server, ünïcødé ✓ 😀'
    assert.equal(escapeText(s), s)
  })

  it('escapes CR, LF, tabs, ANSI escapes, C1 controls, U+2028/2029 and backslashes', () => {
    const hostile = 'a\r\nb\tc\x1b[31mred\x9b2J\u2028\u2029\\n\x00\x7f'
    const e = escapeText(hostile)
    assert.equal(e, 'a\\r\\nb\\tc\\x1b[31mred\\x9b2J\\u2028\\u2029\\\\n\\x00\\x7f')
    assert.doesNotMatch(e, /[\x00-\x1f\x7f-\x9f\u2028\u2029]/)
  })

  it('quotes key=value values that contain spaces, quotes or =', () => {
    assert.equal(textValue('simple'), 'simple')
    assert.equal(textValue('two words'), '"two words"')
    assert.equal(textValue('a="b"'), '"a=\\"b\\""')
    assert.equal(textValue(''), '""')
  })

  it('makes JSON strings that escape U+2028/2029 and C1 controls', () => {
    assert.equal(jsonString('plain'), '"plain"')
    const s = 'x\u2028y\u0085z"\n'
    const j = jsonString(s)
    assert.doesNotMatch(j, /[\u2028\u2029\u0085\n]/)
    assert.equal(JSON.parse(j), s)
  })

  it('cuts previews on a UTF-8 boundary and reports truncation', () => {
    const buf = Buffer.from('aé😀b') // 1 + 2 + 4 + 1 bytes
    assert.equal(utf8Boundary(buf, 2), 1)
    assert.equal(utf8Boundary(buf, 4), 3)
    assert.equal(utf8Boundary(buf, 5), 3)
    assert.equal(utf8Boundary(buf, 7), 7)
    assert.equal(utf8Boundary(buf, 100), buf.length)
  })

  it('shows binary as hex, at most 32 bytes', () => {
    assert.equal(hexPreview(Buffer.from([0, 1, 0xab]), 256), '0001ab')
    assert.equal(hexPreview(Buffer.alloc(100, 0xff), 256).length, 64)
  })
})

describe('line formats', () => {
  it('text: timestamp, level, sentence, then key=value extras', () => {
    const b = createBuilder('text')
    b.begin(30, 'client.connected', 'Client connected: 127.0.0.1')
    b.str('client', 'c1')
    b.num('port', 5)
    b.str('ua', 'curl 8')
    b.str('missing', undefined)
    const line = b.end()
    assert.match(
      line,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}Client connected: 127\.0\.0\.1 event=client\.connected client=c1 port=5 ua="curl 8"\n$/,
    )
  })

  it('json: one parseable object with pino field names', () => {
    const b = createBuilder('json')
    b.begin(40, 'client.rejected', 'Client rejected: 1.2.3.4')
    b.str('reason', 'origin "x"\nnot allowed')
    b.num('status', 403)
    b.bool('flag', true)
    b.json('data', '{"a":1}')
    const line = b.end()
    assert.equal(line.indexOf('\n'), line.length - 1)
    const o = JSON.parse(line) as Record<string, unknown>
    assert.equal(o.level, 40)
    assert.equal(typeof o.time, 'number')
    assert.equal(o.pid, process.pid)
    assert.equal(typeof o.hostname, 'string')
    assert.equal(o.event, 'client.rejected')
    assert.equal(o.msg, 'Client rejected: 1.2.3.4')
    assert.equal(o.reason, 'origin "x"\nnot allowed')
    assert.equal(o.status, 403)
    assert.equal(o.flag, true)
    assert.deepEqual(o.data, { a: 1 })
  })

  it('plain: exactly the sentence', () => {
    const b = createBuilder('plain')
    b.begin(30, 'message.received', 'Message received: Hello Server')
    b.str('client', 'c1')
    assert.equal(b.end(), 'Message received: Hello Server\n')
  })
})

describe('isoNow', () => {
  it('matches toISOString across milliseconds, seconds, days and years', () => {
    const base = Date.UTC(2026, 11, 31, 23, 59, 58, 990)
    const times = [0, 1, 999, 1000, -1, 5, 1e12, 1e12 + 999, 1e12 - 1, 253402300799999]
    for (let i = 0; i < 3000; i++) times.push(base + i * (i % 7 === 0 ? 333 : 1))
    for (const ms of times) assert.equal(isoNow(ms), new Date(ms).toISOString(), String(ms))
  })
})
