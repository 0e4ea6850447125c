import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { connect, startServer, waitForLine } from './helpers.js'

describe('echo', () => {
  it('answers a text message to that client only, with the prefix', async () => {
    const t = await startServer()
    try {
      const a = await connect(t.url)
      const b = await connect(t.url)
      a.ws.send('Hello Server')
      assert.deepEqual(await a.waitMessages(1), ['Echo: Hello Server'])
      b.ws.send('ping')
      assert.deepEqual(await b.waitMessages(1), ['Echo: ping'])
      assert.deepEqual(a.received, ['Echo: Hello Server'])
      a.ws.close()
      b.ws.close()
      await Promise.all([a.closed, b.closed])
      await waitForLine(t.logPath, /Client disconnected: 127\.0\.0\.1/, 2)
    } finally {
      await t.stop()
    }
  })

  it('echoes binary unchanged and as binary', async () => {
    const t = await startServer()
    try {
      const c = await connect(t.url)
      const payload = Buffer.from([0, 1, 2, 255, 254])
      c.ws.send(payload)
      const [got] = await c.waitMessages(1)
      assert.ok(Buffer.isBuffer(got))
      assert.deepEqual(got, payload)
      c.ws.close()
      await c.closed
    } finally {
      await t.stop()
    }
  })

  it('is a pure echo server with an empty prefix', async () => {
    const t = await startServer({ echoPrefix: '' })
    try {
      const c = await connect(t.url)
      c.ws.send('héllo ✓')
      c.ws.send(Buffer.from('bin'))
      const got = await c.waitMessages(2)
      assert.equal(got[0], 'héllo ✓')
      assert.deepEqual(got[1], Buffer.from('bin'))
      c.ws.close()
      await c.closed
    } finally {
      await t.stop()
    }
  })
})
