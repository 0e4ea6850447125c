/**
 * Hostile input, part 4: peers that vanish or misbehave at the TCP level, and user handlers
 * that fail. Half-open peers are found by heartbeats; a reset mid-frame is one 1006; a
 * handler that throws or rejects never takes the process down, is reported as
 * `handler.failed`, and cannot flood the log.
 */
import { strict as assert } from 'node:assert'
import { after, before, describe, it } from 'node:test'
import {
  assertServing,
  clientId,
  connectWithId,
  disconnectOf,
  entries,
  entriesOf,
  frame,
  OP,
  rawConnect,
  waitEntries,
  within,
} from './frames.js'
import { connect, startServer, type TestClient, type TestServer, waitFor } from './helpers.js'

describe('half-open peers', () => {
  const timeout = 0.2
  const heartbeatMissed = 2
  let t: TestServer
  let bystander: TestClient
  before(async () => {
    t = await startServer({ log: { format: 'json' }, timeout, heartbeatMissed })
    bystander = await connect(t.url) // ws answers pings: it must survive every sweep
  })
  after(async () => {
    bystander.ws.close()
    await t.stop()
  })

  it(`a peer that never answers pings is terminated after ${heartbeatMissed} missed heartbeats → 4002`, async (ctx) => {
    // Reads everything, answers nothing: not pings, not even the close frame.
    const c = await rawConnect(t.port, { endOnClose: false })
    const id = await clientId(t, c.port)
    const t0 = Date.now()
    await within(c.ended, 3000, 'the silent peer to be terminated')
    const ms = Date.now() - t0
    const pings = c.frames.filter((f) => f.opcode === OP.PING).length
    ctx.diagnostic(`terminated after ${ms} ms, ${pings} pings unanswered`)
    assert.equal(pings, heartbeatMissed, 'one ping per interval, up to the allowed misses')
    const d = await disconnectOf(t, id)
    assert.equal(d.code, 4002)
    assert.match(String(d.reason), /heartbeat timeout: 2 pings unanswered/)
    assert.equal(d.initiator, 'server')
    // Detected on the sweep after the last miss; a silent peer is then dropped within ~1 s.
    const detect = (heartbeatMissed + 1) * timeout * 1000
    assert.ok(ms >= detect - 50 && ms < detect + timeout * 1000 + 1500, `terminated after ${ms} ms`)
    await assertServing(t, bystander)
    assert.equal(entriesOf(t, id).filter((e) => e.event === 'client.disconnected').length, 1)
  })

  it('a peer that answers pings stays connected across many heartbeats', async () => {
    const c = await rawConnect(t.port)
    const id = await clientId(t, c.port)
    // Answer every ping with a pong carrying the same payload, as RFC 6455 asks.
    let answered = 0
    c.socket.on('data', () => {
      for (const f of c.frames.splice(0)) {
        if (f.opcode === OP.PING) {
          c.write(frame(OP.PONG, f.payload))
          answered++
        }
      }
    })
    await waitFor(
      () => answered >= heartbeatMissed + 3,
      `${heartbeatMissed + 3} pings answered`,
      3000,
    )
    assert.equal(c.socket.destroyed, false)
    assert.equal(entriesOf(t, id).filter((e) => e.event === 'client.disconnected').length, 0)
    c.destroy()
    await disconnectOf(t, id)
  })

  it('a TCP reset in the middle of a frame is logged once, as 1006', async () => {
    const c = await rawConnect(t.port)
    const id = await clientId(t, c.port)
    // Half a frame: the header announces 100 bytes, 10 arrive.
    const whole = frame(OP.TEXT, 'x'.repeat(100))
    await c.trickle(whole.subarray(0, 16))
    c.socket.resetAndDestroy()
    const d = await disconnectOf(t, id)
    assert.equal(d.code, 1006)
    assert.equal(d.initiator, 'client')
    await assertServing(t, bystander)
    const mine = entriesOf(t, id)
    assert.equal(
      mine.filter((e) => e.event === 'client.disconnected').length,
      1,
      'exactly one disconnect line',
    )
    assert.equal(
      mine.filter((e) => e.event === 'client.error').length,
      0,
      'a reset is a disconnect, not a protocol error',
    )
    assert.equal(mine.filter((e) => e.event === 'message.received').length, 0)
  })
})

describe('failing user handlers', () => {
  /** Fail the test if anything escapes as an unhandled rejection or uncaught exception. */
  function watchProcess(): () => void {
    const escaped: unknown[] = []
    const onRejection = (err: unknown): void => {
      escaped.push(err)
    }
    process.on('unhandledRejection', onRejection)
    process.on('uncaughtException', onRejection)
    return () => {
      process.off('unhandledRejection', onRejection)
      process.off('uncaughtException', onRejection)
      assert.deepEqual(escaped, [], 'nothing escaped to the process')
    }
  }

  const failed = (t: TestServer) => entries(t).filter((e) => e.event === 'handler.failed')

  it('a handler that throws synchronously: the message is still echoed, one handler.failed line', async () => {
    const done = watchProcess()
    const t = await startServer({ log: { format: 'json' } })
    try {
      t.server.events.register('ws', 'message.received', (e) => {
        if (e.data === 'boom') throw new TypeError('sync handler exploded')
      })
      const bystander = await connect(t.url)
      const c = await connect(t.url)
      c.ws.send('boom')
      assert.deepEqual(await c.waitMessages(1), ['Echo: boom'])
      const [line] = await waitEntries(t, (e) => e.event === 'handler.failed', 'handler.failed')
      assert.equal(line!.handler_event, 'ws:message.received')
      assert.equal(line!.error, 'TypeError: sync handler exploded')
      await assertServing(t, bystander)
      assert.equal(failed(t).length, 1)
      c.ws.close()
      bystander.ws.close()
    } finally {
      await t.stop()
      done()
    }
  })

  it('a handler that rejects: reported as handler.failed, no unhandled rejection', async () => {
    const done = watchProcess()
    const t = await startServer({ log: { format: 'json' } })
    try {
      t.server.events.register('ws', 'client.connected', async () => {
        await new Promise((r) => setImmediate(r))
        throw new Error('async handler rejected')
      })
      const c = await connectWithId(t)
      const [line] = await waitEntries(t, (e) => e.event === 'handler.failed', 'handler.failed')
      assert.equal(line!.handler_event, 'ws:client.connected')
      assert.equal(line!.error, 'Error: async handler rejected')
      c.ws.send('still here')
      assert.deepEqual(await c.waitMessages(1), ['Echo: still here'])
      await assertServing(t, c)
      c.ws.close()
    } finally {
      await t.stop()
      done()
    }
  })

  it('a handler that throws on every message under load: all echoed, ≤ 5 lines per second, then one summary', async (ctx) => {
    const done = watchProcess()
    const t = await startServer({ log: { format: 'json' } })
    try {
      let reported = 0
      t.server.events.on('ws', 'handler.failed', () => {
        reported++
      })
      t.server.events.register('ws', 'message.received', (e) => {
        if (String(e.data).startsWith('load')) throw new Error(`cannot handle ${String(e.data)}`)
      })
      const bystander = await connect(t.url)
      const c = await connect(t.url)
      const n = 2000
      const t0 = Date.now()
      for (let i = 0; i < n; i++) c.ws.send(`load ${i}`)
      await c.waitMessages(n, 5000)
      const elapsed = Date.now() - t0
      assert.equal(reported, n, 'every failure reaches handler.failed subscribers')
      const [summary] = await waitEntries(
        t,
        (e) => e.event === 'handler.failed' && /more failures suppressed/.test(e.msg),
        'the suppression summary',
        1,
        3000,
      )
      await assertServing(t, bystander)
      const lines = failed(t)
      const single = lines.filter((e) => e.suppressed === undefined)
      const summaries = lines.filter((e) => e.suppressed !== undefined)
      const suppressed = summaries.reduce((s, e) => s + (e.suppressed as number), 0)
      ctx.diagnostic(
        `${n} failures in ${elapsed} ms → ${single.length} lines + ${summaries.length} summary line(s) of ${suppressed}`,
      )
      assert.match(summary!.msg, /\(\d+ more failures suppressed\)/)
      assert.equal(
        single.length + suppressed,
        n,
        'every failure is either a line or counted in a summary',
      )
      const windows = Math.ceil(elapsed / 1000) + 1
      assert.ok(
        single.length <= 5 * windows,
        `${single.length} lines for ${windows} one-second window(s)`,
      )
      assert.ok(lines.length < 20, `${lines.length} handler.failed lines in all, not ${n}`)
      c.ws.close()
      bystander.ws.close()
    } finally {
      await t.stop()
      done()
    }
  })
})
