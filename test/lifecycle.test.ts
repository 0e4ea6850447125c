import { strict as assert } from 'node:assert'
import { writeFileSync } from 'node:fs'
import { createServer as createNetServer } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { createServer } from '../src/index.js'
import { connect, readLines, startCli, startServer, tempDir } from './helpers.js'

describe('lifecycle', () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal}: every client gets 1001, every disconnect is logged, the log is flushed, exit 0`, async () => {
      const dir = tempDir()
      const cli = await startCli(['--log-dir', dir, '--log-format', 'json'])
      const url = `ws://127.0.0.1:${cli.port}`
      const clients = await Promise.all(Array.from({ length: 10 }, () => connect(url)))
      for (const [i, c] of clients.entries()) c.ws.send(`before ${i}`)
      await Promise.all(clients.map((c) => c.waitMessages(1)))
      cli.proc.kill(signal)
      const codes = await Promise.all(clients.map((c) => c.closed))
      for (const [code, reason] of codes) {
        assert.equal(code, 1001)
        assert.equal(reason, 'server shutting down')
      }
      assert.equal(await cli.exited, 0)
      const objs = readLines(join(dir, 'websocket_activity.log')).map(
        (l) => JSON.parse(l) as Record<string, unknown>,
      )
      const events = objs.map((o) => o.event)
      assert.equal(events.filter((e) => e === 'message.received').length, 10)
      const disc = objs.filter((o) => o.event === 'client.disconnected')
      assert.equal(disc.length, 10)
      for (const d of disc) {
        assert.equal(d.code, 1001)
        assert.equal(d.initiator, 'server')
      }
      // closing → every disconnect → closed, and nothing after.
      const closing = events.indexOf('server.closing')
      assert.equal(objs[closing]!.msg, `Server closing: ${signal}`)
      assert.ok(events.slice(closing + 1, -1).every((e) => e === 'client.disconnected'))
      assert.equal(events.at(-1), 'server.closed')
    })
  }

  it('close() is idempotent, stops accepting, and resolves for every caller', async () => {
    const t = await startServer()
    const c = await connect(t.url)
    const p1 = t.server.close()
    const p2 = t.server.close()
    assert.equal(p1, p2)
    const [code] = await c.closed
    assert.equal(code, 1001)
    await Promise.all([p1, p2, t.server.close()])
    assert.equal(t.server.state, 'CLOSED')
    await assert.rejects(connect(t.url))
    await t.stop()
  })

  it('close() terminates clients that ignore the close handshake after shutdownTimeout', async () => {
    const t = await startServer({ shutdownTimeout: 200 })
    const c = await connect(t.url)
    // Stop reading: our close frame is never answered.
    ;(c.ws as unknown as { _socket: import('node:net').Socket })._socket.pause()
    const started = Date.now()
    await t.server.close()
    const took = Date.now() - started
    assert.ok(took >= 150 && took < 3000, `close took ${took} ms`)
    const disc = t.lines().filter((l) => l.includes('Client disconnected'))
    assert.equal(disc.length, 1)
    assert.match(disc[0]!, /code=1001 reason="server shutting down" initiator=server/)
    await t.stop()
  })

  it('close() before listen() resolves; listen() after close() rejects', async () => {
    const s = createServer({ port: 0, log: { enabled: false } })
    await s.close()
    await assert.rejects(s.listen(), /CLOSED/)
  })

  it('listen() rejects when the port is taken, naming the address', async () => {
    const blocker = createNetServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const port = (blocker.address() as { port: number }).port
    const s = createServer({ host: '127.0.0.1', port, log: { dir: tempDir() } })
    await assert.rejects(s.listen(), /EADDRINUSE/)
    await s.close()
    blocker.close()
  })

  it('listen() rejects with the path when the log cannot be opened', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'file'), '')
    const s = createServer({ host: '127.0.0.1', port: 0, log: { dir: join(dir, 'file') } })
    await assert.rejects(s.listen(), (err: Error) => {
      const path = join(dir, 'file', 'websocket_activity.log')
      assert.ok(err.message.startsWith(`cannot open activity log ${path}`), err.message)
      return true
    })
    assert.equal(s.address(), null)
  })

  it('rejects bad options with a TypeError naming the option', () => {
    assert.throws(() => createServer({ port: 99999 }), {
      name: 'TypeError',
      message: /option "port": expected an integer from 0 to 65535, got 99999/,
    })
    assert.throws(
      () => createServer({ log: { format: 'xml' as 'json' } }),
      /option "log.format": expected one of: text, json, plain/,
    )
    assert.throws(() => createServer({ bogus: 1 } as never), /unknown option "bogus"/)
  })

  it('serves /health and answers plain HTTP with 426', async () => {
    const t = await startServer()
    try {
      const h = await fetch(`http://127.0.0.1:${t.port}/health`)
      assert.equal(h.status, 200)
      assert.deepEqual(await h.json(), { status: 'ok', state: 'RUNNING', clients: 0 })
      const r = await fetch(`http://127.0.0.1:${t.port}/`)
      assert.equal(r.status, 426)
      assert.equal(r.headers.get('upgrade'), 'websocket')
    } finally {
      await t.stop()
    }
  })
})
