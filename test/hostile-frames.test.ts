/**
 * Hostile input, part 1: protocol violations and invalid UTF-8, sent as hand-built frames
 * over a raw TCP connection after a real handshake.
 *
 * Every case checks the exact close code the server sends, the one `client.disconnected`
 * line saying why, and that a bystander connected all along and a brand-new client are both
 * still served.
 */
import { strict as assert } from 'node:assert'
import { after, before, describe, it } from 'node:test'
import {
  clientId,
  closeFrame,
  disconnectOf,
  entriesOf,
  expectClose as expectCloseOn,
  frame,
  OP,
  rawConnect,
} from './frames.js'
import { connect, startServer, type TestClient, type TestServer, waitForLine } from './helpers.js'

let t: TestServer
let bystander: TestClient

before(async () => {
  t = await startServer({ log: { format: 'json' } })
  bystander = await connect(t.url)
})

after(async () => {
  bystander.ws.close()
  await t.stop()
})

interface Violation {
  name: string
  bytes: () => Buffer
  code: number
  reason: RegExp
}

/** The close frame is awaited for up to 3 s (see `expectClose` in frames.ts). */
function expectClose(bytes: Buffer, code: number, reason: RegExp): Promise<unknown> {
  return expectCloseOn(t, bystander, bytes, code, reason)
}

const text = (s: string | Buffer, o = {}): Buffer => frame(OP.TEXT, s, o)

describe('protocol violations → 1002', () => {
  const cases: Violation[] = [
    {
      name: 'unmasked client frame',
      bytes: () => text('hi', { mask: false }),
      code: 1002,
      reason: /MASK must be set/,
    },
    {
      name: 'RSV1 set without an extension',
      bytes: () => text('hi', { rsv: 0x40 }),
      code: 1002,
      reason: /RSV1 must be clear/,
    },
    {
      name: 'RSV2 set',
      bytes: () => text('hi', { rsv: 0x20 }),
      code: 1002,
      reason: /RSV2 and RSV3 must be clear/,
    },
    {
      name: 'RSV3 set',
      bytes: () => frame(OP.BINARY, 'hi', { rsv: 0x10 }),
      code: 1002,
      reason: /RSV2 and RSV3 must be clear/,
    },
    ...[0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op) => ({
      name: `reserved opcode 0x${op.toString(16)}`,
      bytes: () => frame(op, 'x'),
      code: 1002,
      reason: new RegExp(`invalid opcode ${op}`),
    })),
    {
      name: 'ping over 125 bytes',
      bytes: () => frame(OP.PING, Buffer.alloc(126, 1)),
      code: 1002,
      reason: /invalid payload length 126/,
    },
    {
      name: 'close frame over 125 bytes',
      bytes: () => frame(OP.CLOSE, Buffer.alloc(200, 0x41)),
      code: 1002,
      reason: /invalid payload length/,
    },
    {
      name: 'fragmented ping (FIN clear)',
      bytes: () => frame(OP.PING, 'a', { fin: false }),
      code: 1002,
      reason: /FIN must be set/,
    },
    {
      name: 'fragmented close (FIN clear)',
      bytes: () => frame(OP.CLOSE, Buffer.from([3, 232]), { fin: false }),
      code: 1002,
      reason: /FIN must be set/,
    },
    {
      name: 'continuation with nothing to continue',
      bytes: () => frame(OP.CONT, 'orphan'),
      code: 1002,
      reason: /invalid opcode 0/,
    },
    {
      name: 'new data frame inside an unfinished fragmented message',
      bytes: () => Buffer.concat([text('part 1', { fin: false }), frame(OP.BINARY, 'interloper')]),
      code: 1002,
      reason: /invalid opcode 2/,
    },
    {
      name: 'close with a 1-byte body',
      bytes: () => frame(OP.CLOSE, Buffer.from([0x03])),
      code: 1002,
      reason: /invalid payload length 1/,
    },
    ...[0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535].map((code) => ({
      name: `close with invalid code ${code}`,
      bytes: () => closeFrame(code, 'bye'),
      code: 1002,
      reason: new RegExp(`invalid status code ${code}`),
    })),
  ]
  for (const c of cases) {
    it(`${c.name} → ${c.code}`, async () => {
      await expectClose(c.bytes(), c.code, c.reason)
    })
  }

  it('a well-formed close (code 4999, UTF-8 reason) is answered with the same code, not an error', async () => {
    const c = await rawConnect(t.port)
    const id = await clientId(t, c.port)
    c.write(closeFrame(4999, 'tschüss'))
    const close = await c.waitClose()
    assert.equal(close.code, 4999)
    const d = await disconnectOf(t, id)
    assert.equal(d.code, 4999)
    assert.equal(d.reason, 'tschüss')
    assert.equal(d.initiator, 'client')
    assert.equal(entriesOf(t, id).filter((e) => e.event === 'client.error').length, 0)
  })
})

describe('invalid UTF-8 → 1007', () => {
  const E2_82 = Buffer.from([0xe2, 0x82]) // the first two bytes of '€' (e2 82 ac)

  it('close reason that is not UTF-8 → 1007', async () => {
    await expectClose(
      closeFrame(1000, Buffer.from([0x62, 0x79, 0xff, 0xfe])),
      1007,
      /invalid UTF-8/,
    )
  })

  it('a whole text message with an invalid byte → 1007', async () => {
    await expectClose(text(Buffer.from([0x68, 0x69, 0xff])), 1007, /invalid UTF-8/)
  })

  it('an overlong encoding / a surrogate → 1007', async () => {
    await expectClose(text(Buffer.from([0xc0, 0xaf])), 1007, /invalid UTF-8/)
    await expectClose(text(Buffer.from([0xed, 0xa0, 0x80])), 1007, /invalid UTF-8/)
  })

  it('an invalid sequence split inside a code point across fragments → 1007', async () => {
    await expectClose(
      Buffer.concat([text(E2_82, { fin: false }), frame(OP.CONT, 'A')]),
      1007,
      /invalid UTF-8/,
    )
  })

  it('fails fast: an invalid first fragment closes at once, without waiting for the rest of the message', async () => {
    // No FIN ever comes in these three: a server that validates only whole messages would
    // wait for ever (and let the client stream up to maxPayload of garbage first).
    await expectClose(text(Buffer.from([0x61, 0xff, 0x62]), { fin: false }), 1007, /invalid UTF-8/)
  })

  it('fails fast across fragments: a code point broken by the next fragment closes at once', async () => {
    await expectClose(
      Buffer.concat([text(E2_82, { fin: false }), frame(OP.CONT, 'AB', { fin: false })]),
      1007,
      /invalid UTF-8/,
    )
  })

  it('fails fast in an unfinished code point that can never become valid (f4 90: above U+10FFFF)', async () => {
    await expectClose(text(Buffer.from([0x41, 0xf4, 0x90]), { fin: false }), 1007, /invalid UTF-8/)
  })

  it('a valid code point split across fragments is accepted and echoed whole', async () => {
    const c = await rawConnect(t.port)
    const euro = Buffer.from('€ and 😀', 'utf8')
    // One byte per fragment: every code point is split.
    const parts = [...euro].map((b, i) =>
      frame(i === 0 ? OP.TEXT : OP.CONT, Buffer.from([b]), { fin: i === euro.length - 1 }),
    )
    c.write(Buffer.concat(parts))
    const [echo] = await c.waitMessages(1)
    assert.equal(echo!.toString('utf8'), 'Echo: € and 😀')
    c.write(closeFrame(1000))
    assert.equal((await c.waitClose()).code, 1000)
  })
})

describe('the default text log says the same', () => {
  it('client.error and client.disconnected lines carry code= and reason=', async () => {
    const tt = await startServer()
    try {
      const c = await rawConnect(tt.port)
      c.write(text('hi', { mask: false }))
      assert.equal((await c.waitClose()).code, 1002)
      const [err] = await waitForLine(tt.logPath, /Client error: 127\.0\.0\.1 event=client\.error /)
      assert.match(
        err!,
        / code=WS_ERR_EXPECTED_MASK close_code=1002 error="Invalid WebSocket frame: MASK must be set"/,
      )
      const [line] = await waitForLine(tt.logPath, /Client disconnected: 127\.0\.0\.1 /)
      assert.match(
        line!,
        / code=1002 reason="Invalid WebSocket frame: MASK must be set" initiator=server /,
      )
    } finally {
      await tt.stop()
    }
  })
})
