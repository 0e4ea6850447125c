/**
 * /healthz and /readyz on a real server: answers and bodies, HEAD, readiness going 503 while
 * draining and while the activity log cannot be written, and who may see what (the `health`
 * option, the admin token on a non-loopback bind).
 */
import { strict as assert } from 'node:assert'
import { after, describe, it } from 'node:test'
import { ActivityLog, createServer, resolveConfig, type WirelogOptions } from '../src/index.js'
import { rawConnect } from './frames.js'
import { connect, startServer, tempDir, withServer } from './helpers.js'
import { holdRequest, http } from './http-helpers.js'

const TOKEN = 'health-admin-token-0123456789'

describe('health endpoints', () => {
  it('/healthz and /readyz answer GET and HEAD with 200 and their checks', async () => {
    await withServer({}, async (t) => {
      const c = await connect(t.url)
      const live = await http(t.port, '/healthz')
      assert.equal(live.status, 200)
      assert.equal(live.headers['content-type'], 'application/json')
      assert.deepEqual(JSON.parse(live.body), {
        status: 'ok',
        checks: { process: 'ok' },
        // Loopback bind, no admin token: the caller is an admin and sees the counts.
        state: 'RUNNING',
        clients: 1,
      })
      const ready = await http(t.port, '/readyz')
      assert.equal(ready.status, 200)
      assert.deepEqual(JSON.parse(ready.body), {
        status: 'ok',
        checks: { listening: 'ok', accepting: 'ok', log: 'ok', broker: 'ok' },
        state: 'RUNNING',
        clients: 1,
      })
      for (const path of ['/healthz', '/readyz', '/readyz/']) {
        const head = await http(t.port, path, { method: 'HEAD' })
        assert.equal(head.status, 200, `HEAD ${path}`)
        assert.equal(head.body, '')
        assert.equal(head.headers['content-type'], 'application/json')
      }
      assert.equal((await http(t.port, '/readyz', { method: 'POST' })).status, 405)
      // The older endpoint is unchanged.
      assert.equal((await http(t.port, '/health')).status, 200)
      c.ws.close()
      await c.closed
    })
  })

  it('without an activity log there is no log check', async () => {
    await withServer({ log: { enabled: false } }, async (t) => {
      const r = await http(t.port, '/readyz')
      assert.equal(r.status, 200)
      assert.deepEqual(JSON.parse(r.body).checks, {
        listening: 'ok',
        accepting: 'ok',
        broker: 'ok',
      })
    })
  })

  it('/readyz goes 503 while draining; /healthz stays 200', async () => {
    const t = await startServer({ shutdownTimeout: 20_000 })
    try {
      // A client that never answers the close frame keeps the server draining.
      const stuck = await rawConnect(t.port, { endOnClose: false })
      const ready = await holdRequest(t.port, '/readyz')
      const live = await holdRequest(t.port, '/healthz')
      const headReady = await holdRequest(t.port, '/readyz')
      const closingSeen = new Promise<void>((resolve) =>
        t.server.events.once('ws', 'server.closing', () => resolve()),
      )
      const closed = t.server.close()
      await closingSeen
      assert.equal(t.server.state, 'CLOSING')
      const r = await ready.finish()
      assert.equal(r.status, 503)
      const body = JSON.parse(r.body) as { status: string; checks: Record<string, string> }
      assert.equal(body.status, 'unavailable')
      assert.equal(body.checks.accepting, 'fail')
      assert.equal(body.checks.listening, 'fail', 'the listener closes first')
      assert.equal(body.checks.log, 'ok')
      const l = await live.finish()
      assert.equal(l.status, 200)
      assert.equal(JSON.parse(l.body).status, 'ok')
      assert.equal((await headReady.finish()).status, 503)
      await stuck.waitClose(5000)
      stuck.destroy()
      await closed
    } finally {
      await t.stop()
    }
  })

  it('/readyz goes 503 when the activity log cannot be written (/dev/full)', async () => {
    const reports: string[] = []
    const options: WirelogOptions = {
      host: '127.0.0.1',
      port: 0,
      log: { dir: '/dev', file: 'full', maxBuffer: 64 * 1024, flushInterval: 5 },
    }
    // Its own report function keeps the expected ENOSPC message off the test output.
    const server = createServer(options, {
      activityLog: new ActivityLog(resolveConfig(options).log, (m) => reports.push(m)),
    })
    const port = (await server.listen()).port
    const t = { server, port, url: `ws://127.0.0.1:${port}`, stop: () => server.close() }
    try {
      const failed =
        t.server.activityLog!.stats.writable === false
          ? Promise.resolve()
          : new Promise<void>((resolve) => t.server.events.once('ws', 'log.error', () => resolve()))
      // Lines to write: the listening line may already have failed; a client adds more.
      const c = await connect(t.url)
      c.ws.send('to /dev/full')
      await failed
      const r = await http(t.port, '/readyz')
      assert.equal(r.status, 503)
      const body = JSON.parse(r.body) as { status: string; checks: Record<string, string> }
      assert.equal(body.status, 'unavailable')
      assert.deepEqual(body.checks, {
        listening: 'ok',
        accepting: 'ok',
        log: 'fail',
        broker: 'ok',
      })
      assert.equal((await http(t.port, '/readyz', { method: 'HEAD' })).status, 503)
      assert.equal((await http(t.port, '/healthz')).status, 200)
      c.ws.close()
      await c.closed
      assert.match(reports.join('\n'), /ENOSPC/)
    } finally {
      await t.stop()
    }
  })
})

describe('health access', () => {
  const servers: Array<{ close(): Promise<void> }> = []
  after(async () => {
    for (const s of servers) await s.close()
  })

  /** A server bound to every interface (a non-loopback bind), reached on 127.0.0.1. */
  async function publicBind(options: WirelogOptions): Promise<number> {
    const s = createServer({
      host: '0.0.0.0',
      port: 0,
      log: { dir: tempDir(), enabled: false },
      ...options,
    })
    servers.push(s)
    return (await s.listen()).port
  }

  it('public on a non-loopback bind: status for anyone, counts only with the token', async () => {
    const port = await publicBind({ adminToken: TOKEN })
    for (const path of ['/healthz', '/readyz']) {
      const anon = await http(port, path)
      assert.equal(anon.status, 200)
      const body = JSON.parse(anon.body) as Record<string, unknown>
      assert.equal(body.status, 'ok')
      assert.equal('clients' in body, false, `${path}: no counts without the token`)
      assert.equal('state' in body, false)
      const admin = await http(port, path, { headers: { authorization: `Bearer ${TOKEN}` } })
      assert.equal(JSON.parse(admin.body).clients, 0)
    }
  })

  it('public on a non-loopback bind without a token: no counts', async () => {
    const port = await publicBind({})
    const body = JSON.parse((await http(port, '/readyz')).body) as Record<string, unknown>
    assert.equal(body.status, 'ok')
    assert.equal('clients' in body, false)
  })

  it('health: admin follows the router: 403 without a token, 401 / 200 with one', async () => {
    const noToken = await publicBind({ health: 'admin' })
    assert.equal((await http(noToken, '/readyz')).status, 403)
    assert.equal((await http(noToken, '/healthz')).status, 403)
    const withToken = await publicBind({ health: 'admin', adminToken: TOKEN })
    assert.equal((await http(withToken, '/readyz')).status, 401)
    assert.equal(
      (
        await http(withToken, '/readyz', {
          headers: { authorization: 'Bearer wrong-token-000000000' },
        })
      ).status,
      401,
    )
    const ok = await http(withToken, '/readyz', { headers: { authorization: `Bearer ${TOKEN}` } })
    assert.equal(ok.status, 200)
    assert.equal(JSON.parse(ok.body).clients, 0)
  })

  it('health: off routes none of them', async () => {
    const port = await publicBind({ health: 'off' })
    for (const path of ['/health', '/healthz', '/readyz'])
      assert.equal((await http(port, path)).status, 426, path)
  })
})
