/**
 * Extension points: HTTP routes, the admission pipeline, behaviours, trusted proxies, the
 * ws adapter and the public exports.
 */
import { strict as assert } from 'node:assert'
import { once } from 'node:events'
import { request } from 'node:http'
import { describe, it } from 'node:test'
import * as wsModule from 'ws'
import { WebSocket, WebSocketServer } from 'ws'
import {
  accept,
  type Behaviour,
  type Client,
  createServer,
  echo,
  reject,
  type WirelogOptions,
} from '../src/index.js'
import { recordedStatusCode, wsAdapterStatus } from '../src/ws-adapter.js'
import { frame, OP, rawHttp, upgradeRequest } from './frames.js'
import { connect, expectRejected, waitFor, waitForLine, withServer } from './helpers.js'

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function http(
  port: number,
  path: string,
  o: { method?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, rejectP) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.headers },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          body += d
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      },
    )
    req.on('error', rejectP)
    req.end()
  })
}

describe('HTTP routes', () => {
  it('route() answers a path once; plain requests elsewhere still get 426', async () => {
    // With metrics off, /metrics is free for a route of one's own.
    await withServer({ metrics: false }, async (t) => {
      t.server.route('/metrics', (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.end('up 1\n')
      })
      const m = await http(t.port, '/metrics')
      assert.equal(m.status, 200)
      assert.equal(m.body, 'up 1\n')
      const head = await http(t.port, '/metrics/', { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.body, '')
      assert.equal((await http(t.port, '/metrics', { method: 'POST' })).status, 405)
      assert.equal((await http(t.port, '/other')).status, 426)
      assert.throws(() => t.server.route('/metrics', () => {}), /already routed/)
    })
  })

  it("a user 'request' listener on httpServer answers unrouted requests without a crash", async () => {
    await withServer({}, async (t) => {
      t.server.httpServer.on('request', (req, res) => {
        if (res.headersSent) return
        res.writeHead(200)
        res.end(`mine ${req.url}`)
      })
      const r = await http(t.port, '/custom')
      assert.deepEqual([r.status, r.body], [200, 'mine /custom'])
      // The built-in route still answers its own path, once.
      assert.equal((await http(t.port, '/health')).status, 200)
      const c = await connect(t.url)
      c.ws.close()
    })
  })

  it('a route that throws answers 500 and is reported as handler.failed', async () => {
    await withServer({}, async (t) => {
      t.server.route('/boom', async () => {
        throw new Error('route boom')
      })
      const failed = new Promise<string>((resolve) =>
        t.server.events.once('ws', 'handler.failed', (f) => resolve(f.event)),
      )
      assert.equal((await http(t.port, '/boom')).status, 500)
      assert.equal(await failed, 'http:/boom')
      await waitForLine(t.logPath, /Handler failed: http:\/boom/)
    })
  })

  it('/health answers GET, HEAD and /health/; counts only for admins', async () => {
    await withServer({}, async (t) => {
      for (const [path, method] of [
        ['/health', 'GET'],
        ['/health/', 'GET'],
        ['/health', 'HEAD'],
      ] as const) {
        const r = await http(t.port, path, { method })
        assert.equal(r.status, 200, `${method} ${path}`)
        assert.equal(r.headers['content-type'], 'application/json')
        if (method === 'GET') {
          const body = JSON.parse(r.body) as Record<string, unknown>
          assert.equal(body.status, 'ok')
          // Bound to loopback without an admin token: the caller is an admin.
          assert.equal(body.clients, 0)
        } else assert.equal(r.body, '')
      }
    })
    const token = 'a-long-admin-token-0123456789'
    await withServer({ adminToken: token }, async (t) => {
      const open = JSON.parse((await http(t.port, '/health')).body) as Record<string, unknown>
      assert.equal(open.status, 'ok')
      assert.equal('clients' in open, false, 'no counts without the token')
      const mine = await http(t.port, '/health', { headers: { authorization: `Bearer ${token}` } })
      assert.equal((JSON.parse(mine.body) as Record<string, unknown>).clients, 0)
    })
    await withServer({ health: 'admin', adminToken: token }, async (t) => {
      const r = await http(t.port, '/health')
      assert.equal(r.status, 401)
      assert.match(String(r.headers['www-authenticate']), /^Bearer/)
      assert.equal((await http(t.port, `/health?token=${token}`)).status, 200)
    })
    await withServer({ health: 'off' }, async (t) => {
      assert.equal((await http(t.port, '/health')).status, 426)
    })
  })
})

describe('upgrade routes', () => {
  it('take upgrades on a path away from the client pipeline (not counted, not logged)', async () => {
    const token = 'a-long-admin-token-0123456789'
    await withServer({ adminToken: token }, async (t) => {
      const feed = new WebSocketServer({ noServer: true })
      t.server.upgradeRoute(
        '/admin/feed',
        (req, socket, head) =>
          feed.handleUpgrade(req, socket, head, (ws) => {
            ws.send(`feed for ${t.server.clients.size} clients`)
          }),
        { access: 'admin' },
      )
      assert.equal(await expectRejected(`${t.url}/admin/feed`), 401)
      const ws = new WebSocket(`${t.url}/admin/feed`, {
        headers: { authorization: `Bearer ${token}` },
      })
      const [first] = (await once(ws, 'message')) as [Buffer]
      assert.equal(first.toString(), 'feed for 0 clients')
      assert.equal(t.server.clients.size, 0)
      ws.close()
      await once(ws, 'close')
      feed.close()
      const c = await connect(t.url)
      c.ws.close()
      await waitForLine(t.logPath, /Client disconnected/)
      assert.equal(t.lines().filter((l) => / Client connected/.test(l)).length, 1)
      assert.equal(t.lines().filter((l) => / Client rejected.* status=401/.test(l)).length, 1)
    })
  })
})

describe('admission hooks', () => {
  it('accept with a context and a user that land on the client and in every log line', async () => {
    const seen: Array<{ path: string; q: string | null; proto: readonly string[] }> = []
    await withServer(
      {
        admit: async (req) => {
          seen.push({ path: req.path, q: req.query.get('room'), proto: req.protocols })
          await new Promise((r) => setImmediate(r))
          return accept({ room: req.query.get('room') }, { id: 'alice', claims: { role: 'op' } })
        },
      },
      async (t) => {
        const c = await connect(`${t.url}/chat?room=r1`, { headers: {} })
        const client = [...t.server.clients][0] as Client
        assert.deepEqual(client.context, { room: 'r1' })
        assert.equal(client.user?.id, 'alice')
        c.ws.send('hi')
        await c.waitMessages(1)
        c.ws.close()
        const [gone] = await waitForLine(t.logPath, /Client disconnected/)
        const [conn] = await waitForLine(t.logPath, /Client connected/)
        const [msg] = await waitForLine(t.logPath, /Message received/)
        for (const l of [conn!, msg!, gone!]) assert.match(l, / user=alice/)
        assert.deepEqual(seen, [{ path: '/chat', q: 'r1', proto: [] }])
      },
    )
  })

  it('reject with a status, reason and headers before any 101, logged once', async () => {
    await withServer(
      {
        admit: (req) =>
          req.headers.authorization === 'Bearer good'
            ? undefined
            : reject(401, 'missing or bad token', { 'WWW-Authenticate': 'Bearer' }),
      },
      async (t) => {
        const r = await rawHttp(t.port, upgradeRequest(t.port))
        assert.equal(r.status, 401)
        assert.match(r.head, /\r\nWWW-Authenticate: Bearer/)
        assert.match(r.body, /missing or bad token/)
        const [line] = await waitForLine(t.logPath, /Client rejected/)
        assert.match(line!, /status=401 reason="missing or bad token"/)
        const ok = await connect(t.url, { headers: { authorization: 'Bearer good' } })
        ok.ws.close()
      },
    )
  })

  it('a hook that throws refuses with 500 and reports handler.failed; others are unaffected', async () => {
    let n = 0
    await withServer(
      {
        admit: () => {
          if (n++ === 0) throw new Error('hook boom')
          return undefined
        },
      },
      async (t) => {
        assert.equal(await expectRejected(t.url), 500)
        await waitForLine(t.logPath, /Handler failed: ws:client\.rejected .*hook boom/)
        const ok = await connect(t.url)
        ok.ws.close()
      },
    )
  })

  it('slow admissions count against the caps', async () => {
    let release: () => void = () => {}
    const gate = new Promise<void>((r) => {
      release = r
    })
    let entered: () => void = () => {}
    const inHook = new Promise<void>((r) => {
      entered = r
    })
    const admit = async (): Promise<undefined> => {
      entered()
      await gate
      return undefined
    }
    await withServer({ limits: { maxConnections: 1 }, admit }, async (t) => {
      const first = new WebSocket(t.url)
      first.on('error', () => {})
      await inHook
      // The first upgrade holds the only slot while its hook runs.
      const second = await rawHttp(t.port, upgradeRequest(t.port))
      assert.equal(second.status, 503)
      release()
      await once(first, 'open')
      first.close()
    })
  })

  it('an upgrade whose socket is gone by the time admission decides is logged as 499', async () => {
    await withServer(
      {
        admit: async (req) => {
          // The peer vanished while a slow hook was deciding.
          req.request.socket.destroy()
          await new Promise((r) => setImmediate(r))
          return undefined
        },
      },
      async (t) => {
        await rawHttp(t.port, upgradeRequest(t.port)).catch(() => {})
        const [line] = await waitForLine(t.logPath, /Client rejected/)
        assert.match(line!, /status=499 reason="client closed the connection during admission"/)
        assert.equal(t.server.clients.size, 0)
      },
    )
  })

  it('reject() refuses statuses that are not errors', () => {
    assert.throws(() => reject(200, 'ok'), RangeError)
  })
})

describe('behaviours', () => {
  it('createServer({ behaviour: echo("> ") }) is typed and works', async () => {
    await withServer({ behaviour: echo('> ') }, async (t) => {
      const c = await connect(t.url)
      c.ws.send('hi')
      assert.deepEqual(await c.waitMessages(1), ['> hi'])
      c.ws.close()
    })
  })

  it('a user behaviour per subprotocol: open, message, close; others keep the default', async () => {
    const calls: string[] = []
    const shout: Behaviour = {
      name: 'shout',
      attach: (server) => {
        calls.push(`attach ${server.state}`)
      },
      open: (client) => {
        calls.push(`open ${client.protocol}`)
        client.send('welcome')
      },
      message: (client, data) => {
        client.send(data.toString('utf8').toUpperCase())
      },
      close: (_client, info) => {
        calls.push(`close ${info.code}`)
      },
    }
    await withServer({ protocols: { 'shout.v1': shout } }, async (t) => {
      const ws = new WebSocket(t.url, ['other', 'shout.v1'])
      const got: string[] = []
      ws.on('message', (d: Buffer) => got.push(d.toString()))
      await once(ws, 'open')
      assert.equal(ws.protocol, 'shout.v1')
      ws.send('hi')
      await waitFor(() => got.length === 2, 'two replies')
      assert.deepEqual(got, ['welcome', 'HI'])
      ws.close(1000)
      await once(ws, 'close')
      await waitFor(() => calls.includes('close 1000'), 'close call')
      const plain = await connect(t.url)
      plain.ws.send('hi')
      assert.deepEqual(await plain.waitMessages(1), ['Echo: hi'])
      plain.ws.close()
      assert.deepEqual(calls.slice(0, 2), ['attach NEW', 'open shout.v1'])
      const [line] = await waitForLine(t.logPath, /protocol=shout\.v1/)
      assert.match(line!, /Client connected/)
    })
  })

  it('a behaviour that throws is reported and the client keeps being served', async () => {
    let n = 0
    const flaky: Behaviour = {
      name: 'flaky',
      message: (client, data, binary) => {
        if (n++ === 0) throw new Error('flaky boom')
        client.send(data, binary)
      },
    }
    await withServer({ behaviour: flaky }, async (t) => {
      const c = await connect(t.url)
      c.ws.send('a')
      c.ws.send('b')
      assert.deepEqual(await c.waitMessages(1), ['b'])
      await waitForLine(t.logPath, /Handler failed: behaviour:flaky\.message/)
      c.ws.close()
    })
  })

  it('the types refuse a behaviour that is not one', () => {
    // @ts-expect-error: a behaviour needs a name and message()
    assert.throws(() => createServer({ behaviour: { message: 1 } }), TypeError)
  })
})

describe('trusted proxies', () => {
  const xff = (value: string) => ({ headers: { 'x-forwarded-for': value } })

  it('takes the right-most untrusted X-Forwarded-For entry, and logs the proxy', async () => {
    for (const trustProxy of [true, 1, ['loopback']] as const) {
      await withServer({ trustProxy: trustProxy as WirelogOptions['trustProxy'] }, async (t) => {
        // The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
        const c = await connect(t.url, xff('6.6.6.6, 203.0.113.7'))
        const client = [...t.server.clients][0]!
        assert.equal(client.ip, '203.0.113.7', `trustProxy ${JSON.stringify(trustProxy)}`)
        assert.equal(client.proxy, '127.0.0.1')
        c.ws.close()
        const [line] = await waitForLine(t.logPath, /Client connected/)
        assert.match(line!, /Client connected: 203\.0\.113\.7 .* proxy=127\.0\.0\.1/)
      })
    }
  })

  it('two trusted hops skip both proxies; untrusted peers are the client', async () => {
    await withServer({ trustProxy: 2 }, async (t) => {
      const c = await connect(t.url, xff('6.6.6.6, 198.51.100.1, 10.0.0.2'))
      assert.equal([...t.server.clients][0]!.ip, '198.51.100.1')
      c.ws.close()
    })
    await withServer({ trustProxy: ['10.0.0.0/8'] }, async (t) => {
      // The TCP peer (127.0.0.1) is not a trusted proxy: its header is ignored.
      const c = await connect(t.url, xff('6.6.6.6'))
      assert.equal([...t.server.clients][0]!.ip, '127.0.0.1')
      c.ws.close()
    })
    await withServer({}, async (t) => {
      const c = await connect(t.url, xff('6.6.6.6'))
      assert.equal([...t.server.clients][0]!.ip, '127.0.0.1')
      c.ws.close()
    })
  })

  it('the per-IP cap applies to the derived address', async () => {
    await withServer({ trustProxy: 1, limits: { maxConnectionsPerIp: 1 } }, async (t) => {
      const a = await connect(t.url, xff('203.0.113.7'))
      assert.equal(await expectRejected(t.url, xff('1.1.1.1, 203.0.113.7')), 503)
      const b = await connect(t.url, xff('203.0.113.8'))
      a.ws.close()
      b.ws.close()
    })
  })

  it('rejects a bad proxy address in the options, naming it', () => {
    assert.throws(
      () => createServer({ trustProxy: ['not-an-address'] }),
      (err: Error) => err instanceof TypeError && /trustProxy/.test(err.message),
    )
  })
})

describe('the ws adapter (the one place that uses ws internals)', () => {
  it('the pinned ws still has the receiver shape the UTF-8 fail-fast check needs', async () => {
    await withServer({}, async (t) => {
      const before = wsAdapterStatus()
      const c = await connect(t.url)
      c.ws.close()
      const after = wsAdapterStatus()
      assert.equal(after.utf8Patched, before.utf8Patched + 1, 'the check was installed')
      assert.equal(after.utf8Unsupported, 0, 'no socket went without it')
    })
  })

  it("ws still records the close code on its protocol errors (under the 'status-code' symbol)", async () => {
    // ws exports its Receiver, but its typings do not declare it.
    const { Receiver } = wsModule as unknown as {
      Receiver: new (o: { isServer: boolean }) => NodeJS.EventEmitter & { write(b: Buffer): void }
    }
    const r = new Receiver({ isServer: true })
    const err = new Promise<Error>((resolve) => r.on('error', resolve))
    // An unmasked client frame is a protocol error (1002).
    r.write(frame(OP.TEXT, 'x', { mask: false }))
    assert.equal(recordedStatusCode(await err), 1002)
  })

  it('says so, loudly, when a socket lacks that shape', async () => {
    const { failFastOnInvalidUtf8 } = await import('../src/ws-adapter.js')
    const warned = once(process, 'warning') as Promise<[Error]>
    failFastOnInvalidUtf8({} as never)
    const [w] = await warned
    assert.match(w.message, /no longer has the receiver shape/)
    assert.equal(wsAdapterStatus().utf8Unsupported, 1)
  })
})
