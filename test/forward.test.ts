/**
 * Events for other services: activity events forwarded as json lines to a Redis Stream and
 * a NATS subject, filtered by pattern, buffered within bounds while a destination is down
 * (what does not fit is counted), and never in the way of the sockets.
 */
import { strict as assert } from 'node:assert'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { after, describe, it } from 'node:test'
import { createClient } from '@redis/client'
import { connect as natsConnect } from 'nats'
import { connect, startCli, startServer, tempDir, waitFor } from './helpers.js'
import { freePort, privateRedis, rawCommand, sharedRedis, uniquePrefix } from './redis-helpers.js'

const procs: ChildProcess[] = []
after(() => {
  for (const p of procs) p.kill('SIGKILL')
})

/** The machine's NATS on 4222 when it answers, else a private nats-server. */
async function natsUrl(): Promise<string> {
  if ((await rawCommand(4222, 'PING', 500)).startsWith('INFO')) return 'nats://127.0.0.1:4222'
  const port = await freePort()
  const p = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', tempDir()], {
    stdio: 'ignore',
  })
  procs.push(p)
  await waitFor(async () => (await rawCommand(port, 'PING', 200)).startsWith('INFO'), 'nats-server')
  return `nats://127.0.0.1:${port}`
}

async function streamLines(url: string, key: string): Promise<Array<Record<string, unknown>>> {
  const c = createClient({ url })
  c.on('error', () => {})
  await c.connect()
  try {
    const r = (await c.sendCommand(['XRANGE', key, '-', '+'])) as Array<[string, string[]]>
    return r.map(([, kv]) => {
      const f = Object.fromEntries(kv.flatMap((v, i) => (i % 2 ? [] : [[v, kv[i + 1]]])))
      const line = JSON.parse(f.line!) as Record<string, unknown>
      assert.equal(line.event, f.event, 'the event field names the line’s event')
      return line
    })
  } finally {
    c.destroy()
  }
}

async function del(url: string, key: string): Promise<void> {
  const c = createClient({ url })
  c.on('error', () => {})
  await c.connect()
  await c.del(key)
  c.destroy()
}

describe('event forwarding', () => {
  it('to a Redis Stream: the json lines of the events that match the patterns', async () => {
    const url = await sharedRedis()
    const key = `${uniquePrefix('forward')}events`
    const t = await startServer({
      forward: { events: ['client.*', 'app:*'], redis: { stream: key, url } },
    })
    try {
      const c = await connect(t.url)
      c.ws.send('hello')
      await c.waitMessages(1)
      t.server.events.trigger('app', 'order.created', { id: 7 })
      c.ws.close()
      await c.closed
      const lines = await waitFor(async () => {
        const l = await streamLines(url, key)
        return l.length >= 3 ? l : undefined
      }, 'three forwarded lines')
      assert.deepEqual(
        lines.map((l) => l.event),
        ['client.connected', 'app:order.created', 'client.disconnected'],
        'message.received is not among the patterns',
      )
      assert.equal(lines[0]!.ip, '127.0.0.1')
      assert.deepEqual(lines[1]!.data, { id: 7 })
      assert.equal(t.server.forwarding[0]!.forwarded, 3)
    } finally {
      await t.stop()
      await del(url, key)
    }
  })

  it('to a NATS subject: every event, the message content in its field', async () => {
    const servers = await natsUrl()
    const nc = await natsConnect({ servers })
    const subject = `wirelog.test.${process.pid}.${Date.now()}`
    const got: Array<Record<string, unknown>> = []
    const sub = nc.subscribe(subject)
    void (async () => {
      for await (const m of sub) got.push(JSON.parse(new TextDecoder().decode(m.data)))
    })()
    await nc.flush()
    const t = await startServer({
      forward: {
        nats: {
          subject,
          url: nc.getServer().startsWith('nats') ? nc.getServer() : `nats://${nc.getServer()}`,
        },
      },
    })
    try {
      const c = await connect(t.url)
      c.ws.send('over nats')
      await c.waitMessages(1)
      c.ws.close()
      await c.closed
      await waitFor(() => got.some((l) => l.event === 'client.disconnected'), 'lines on NATS')
      const received = got.find((l) => l.event === 'message.received')!
      assert.equal(received.data, 'over nats')
      assert.ok(
        got.some((l) => l.event === 'server.listening'),
        'events before the connection too',
      )
    } finally {
      await t.stop()
      await nc.close()
    }
  })

  it('a destination that is down: bounded buffer, drops counted, the sockets never wait; flushed when it is back', async () => {
    const redis = await privateRedis()
    const key = 'events'
    const t = await startServer({
      forward: {
        events: ['message.received'],
        backlog: 50,
        redis: { stream: key, url: redis.url },
      },
    })
    try {
      await waitFor(() => t.server.forwarding[0]!.connected, 'the forwarder connects')
      await redis.stop()
      await waitFor(() => !t.server.forwarding[0]!.connected, 'the forwarder sees the outage')
      const c = await connect(t.url)
      const t0 = Date.now()
      for (let i = 0; i < 200; i++) c.ws.send(`m${i}`)
      await c.waitMessages(200)
      assert.ok(Date.now() - t0 < 3000, 'echoes went on while the destination was down')
      const s = t.server.forwarding[0]!
      assert.equal(s.buffered, 50, 'the buffer holds at most 50 lines')
      assert.equal(s.dropped, 150, 'the rest is counted')
      await redis.start()
      await waitFor(() => t.server.forwarding[0]!.buffered === 0, 'the buffer flushed', 10_000)
      const lines = await streamLines(redis.url, key)
      assert.deepEqual(
        lines.map((l) => l.data),
        Array.from({ length: 50 }, (_, i) => `m${i}`),
        'what was buffered arrives, in order',
      )
      c.ws.close()
    } finally {
      await t.stop()
      await redis.close()
    }
  })

  it('from the command line: --forward-redis-stream, --forward-events', async () => {
    const url = await sharedRedis()
    const key = `${uniquePrefix('forward-cli')}events`
    const cli = await startCli([
      '--log-dir',
      tempDir(),
      '--forward-redis-stream',
      key,
      '--forward-redis-url',
      url,
      '--forward-events',
      'client.connected,client.disconnected',
    ])
    try {
      const c = await connect(`ws://127.0.0.1:${cli.port}`)
      c.ws.close()
      await c.closed
      const lines = await waitFor(async () => {
        const l = await streamLines(url, key)
        return l.length >= 2 ? l : undefined
      }, 'forwarded lines')
      assert.deepEqual(
        lines.map((l) => l.event),
        ['client.connected', 'client.disconnected'],
      )
    } finally {
      cli.proc.kill('SIGTERM')
      await once(cli.proc, 'exit')
      await del(url, key)
    }
  })
})
