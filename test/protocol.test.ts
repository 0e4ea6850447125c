import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { connect, startServer, waitForLine } from './helpers.js'

describe('heartbeat and timeouts', () => {
  it('terminates a client that misses pongs and says why; answering clients stay', async () => {
    // 0.25 s heartbeat, terminated after 2 unanswered pings (long enough that the healthy
    // client's pongs arrive in time on a loaded machine).
    const t = await startServer({ timeout: 0.25, heartbeatMissed: 2 })
    try {
      const silent = await connect(t.url, { autoPong: false })
      const healthy = await connect(t.url)
      let pings = 0
      silent.ws.on('ping', () => {
        pings++
      })
      const [code, reason] = await silent.closed
      assert.equal(code, 4002)
      assert.match(reason, /heartbeat timeout/)
      // The listener came after the handshake: the first ping may have gone by before it.
      assert.ok(pings >= 1, `got ${pings} pings`)
      const [line] = await waitForLine(t.logPath, /Client disconnected: .* code=4002 /)
      assert.match(line!, /reason="heartbeat timeout: 2 pings unanswered" initiator=server/)
      // The healthy client answered every ping and is still served.
      healthy.ws.send('still here')
      assert.deepEqual(await healthy.waitMessages(1), ['Echo: still here'])
      assert.equal(t.server.state, 'RUNNING')
      healthy.ws.close()
      await healthy.closed
    } finally {
      await t.stop()
    }
  })

  it('closes idle clients with 4001 when idleTimeout is set', async () => {
    const t = await startServer({ idleTimeout: 0.2 })
    try {
      const c = await connect(t.url)
      const started = Date.now()
      const [code] = await c.closed
      assert.equal(code, 4001)
      assert.ok(Date.now() - started >= 150)
      await waitForLine(t.logPath, /code=4001 reason="idle timeout/)
    } finally {
      await t.stop()
    }
  })
})

describe('message size limits', () => {
  it('closes a client sending more than maxPayload with 1009 and logs it', async () => {
    const t = await startServer({ limits: { maxPayload: 1024 } })
    try {
      const c = await connect(t.url)
      const other = await connect(t.url)
      c.ws.send('x'.repeat(1024))
      await c.waitMessages(1)
      c.ws.send('x'.repeat(1025))
      const [code] = await c.closed
      assert.equal(code, 1009)
      const [line] = await waitForLine(t.logPath, /Client disconnected: .* code=1009 /)
      assert.match(line!, /initiator=server/)
      await waitForLine(
        t.logPath,
        /Client error: .* code=WS_ERR_UNSUPPORTED_MESSAGE_LENGTH close_code=1009/,
      )
      other.ws.send('fine')
      assert.deepEqual(await other.waitMessages(1), ['Echo: fine'])
      other.ws.close()
      await other.closed
    } finally {
      await t.stop()
    }
  })

  it('accepts a max-size message however finely fragmented (64-byte fragments)', async () => {
    const max = 64 * 1024
    const t = await startServer({ limits: { maxPayload: max }, echoPrefix: '' })
    try {
      const c = await connect(t.url)
      const whole = Buffer.alloc(max)
      for (let i = 0; i < max; i++) whole[i] = 97 + (i % 26)
      for (let off = 0; off < max; off += 64) {
        c.ws.send(whole.subarray(off, off + 64), { fin: off + 64 >= max, binary: false })
      }
      const [echo] = await c.waitMessages(1)
      assert.equal(echo, whole.toString())
      c.ws.close()
      await c.closed
    } finally {
      await t.stop()
    }
  })

  it('the default maximum message size is 1 MiB', async () => {
    const t = await startServer({ echoPrefix: '' })
    try {
      const c = await connect(t.url, { maxPayload: 4 * 1024 * 1024 })
      c.ws.send(Buffer.alloc(1024 * 1024, 1))
      const [echo] = await c.waitMessages(1)
      assert.equal((echo as Buffer).length, 1024 * 1024)
      c.ws.send(Buffer.alloc(1024 * 1024 + 1, 1))
      assert.equal((await c.closed)[0], 1009)
    } finally {
      await t.stop()
    }
  })
})
