/**
 * `--workers N`: real processes sharing one port (node:cluster). Topics, presence and direct
 * messages cross workers (in-host broker over IPC, or Redis), each worker writes its own
 * log, SIGTERM to the primary drains every worker, a crashed worker is logged and
 * restarted, and its clients resume on another worker with nothing lost.
 */
import { strict as assert } from 'node:assert'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { connect, type Gap } from '../src/client/index.js'
import { type Child, readLines, startCli, tempDir, waitFor } from './helpers.js'
import { http } from './http-helpers.js'
import { promlint, sampleValue } from './promlint.js'
import { deletePrefix, sharedRedis, uniquePrefix } from './redis-helpers.js'
import { type V1, v1 } from './v1.js'

type Cli = Child & { port: number }

const running: Cli[] = []
after(() => {
  for (const c of running) if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
})

async function startWorkers(
  extra: string[] = [],
): Promise<{ cli: Cli; dir: string; url: string; log(file?: string): Record<string, unknown>[] }> {
  const dir = tempDir('wirelog-workers-')
  const cli = await startCli([
    '--workers',
    '2',
    '--behaviour',
    'pubsub',
    '--log-dir',
    dir,
    '--log-format',
    'json',
    '--log-flush-interval',
    '5',
    '--shutdown-timeout',
    '2000',
    ...extra,
  ])
  running.push(cli)
  return {
    cli,
    dir,
    url: `ws://127.0.0.1:${cli.port}`,
    log: (file = 'websocket_activity.log') =>
      readLines(join(dir, file)).map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

/** Connect until there is a client on each of two workers (ids are prefixed per process). */
async function onTwoWorkers(url: string): Promise<[V1, V1, V1[]]> {
  const all: V1[] = []
  for (let i = 0; i < 10; i++) {
    all.push(await v1(url))
    const prefixes = new Map(all.map((c) => [String(c.welcome.client).split('-')[0], c]))
    if (prefixes.size === 2) {
      const [a, b] = [...prefixes.values()] as [V1, V1]
      return [a, b, all.filter((c) => c !== a && c !== b)]
    }
  }
  throw new Error('connections did not reach two workers')
}

describe('--workers', () => {
  for (const broker of ['memory', 'redis'] as const) {
    it(`topics, presence and direct messages cross workers (${broker === 'memory' ? 'in-host broker over IPC' : 'Redis'})`, async () => {
      const prefix = uniquePrefix('workers')
      const extra =
        broker === 'redis'
          ? ['--broker', 'redis', '--redis-url', await sharedRedis(), '--redis-prefix', prefix]
          : []
      const w = await startWorkers(extra)
      try {
        const [a, b, rest] = await onTwoWorkers(w.url)
        for (const c of rest) await c.close()
        await b.call({ op: 'subscribe', topic: 'wk', presence: true })
        await a.call({ op: 'subscribe', topic: 'wk' })
        await b.next((f) => f.op === 'join' && f.client === a.welcome.client, 'join across')
        const N = 200
        for (let i = 1; i <= N; i++) a.send({ op: 'publish', topic: 'wk', data: i })
        await waitFor(() => b.messages('wk').length >= N, 'messages on the other worker')
        assert.deepEqual(
          b.messages('wk').map((m) => [m.seq, m.data]),
          Array.from({ length: N }, (_, i) => [i + 1, i + 1]),
        )
        const p = await b.call({ op: 'presence', topic: 'wk' })
        assert.equal((p.clients as unknown[]).length, 2, 'presence lists both workers’ clients')
        await b.call({ op: 'send', to: { client: a.welcome.client }, data: 'across' })
        await a.next((f) => f.op === 'direct' && f.data === 'across', 'direct across workers')
        await a.close()
        await b.close()
        // Each worker logs its own clients; the primary logs the workers.
        await waitFor(
          () =>
            w.log('websocket_activity.1.log').some((l) => l.event === 'client.connected') &&
            w.log('websocket_activity.2.log').some((l) => l.event === 'client.connected'),
          'each worker’s log has its clients',
        )
        assert.equal(w.log().filter((l) => l.event === 'worker.started').length, 2)
      } finally {
        w.cli.proc.kill('SIGTERM')
        await w.cli.exited
        if (broker === 'redis') await deletePrefix(await sharedRedis(), prefix)
      }
    })
  }

  it('/metrics on any worker is the sum over all workers', async () => {
    const w = await startWorkers()
    try {
      const [a, b, rest] = await onTwoWorkers(w.url)
      for (const c of rest) await c.close()
      for (let i = 0; i < 3; i++) await a.call({ op: 'ping' })
      for (let i = 0; i < 5; i++) await b.call({ op: 'ping' })
      // The closed extra connections leave the server asynchronously: wait until they have.
      await waitFor(async () => {
        const r = await http(w.cli.port, '/metrics')
        return sampleValue(promlint(r.body).samples, 'wirelog_connections_open') === 2
      }, 'the extra connections to be gone')
      // Each scrape is a new connection, answered by whichever worker gets it.
      for (let i = 0; i < 4; i++) {
        const r = await http(w.cli.port, '/metrics')
        assert.equal(r.status, 200, r.body)
        const { problems, samples } = promlint(r.body)
        assert.deepEqual(problems, [])
        assert.equal(sampleValue(samples, 'wirelog_connections_open'), 2, 'both workers’ clients')
        assert.equal(sampleValue(samples, 'wirelog_messages_received_total'), 8)
        assert.equal(sampleValue(samples, 'wirelog_ready'), 1, 'a state is the lowest, not a sum')
        assert.equal(sampleValue(samples, 'wirelog_log_writable'), 1)
      }
      await a.close()
      await b.close()
    } finally {
      w.cli.proc.kill('SIGTERM')
      await w.cli.exited
    }
  })

  it('SIGTERM to the primary drains every worker: clients get 1001, logs are flushed, exit 0', async () => {
    const w = await startWorkers()
    const [a, b] = await onTwoWorkers(w.url)
    const closes = [a, b].map(
      (c) => new Promise<number>((r) => c.ws.once('close', (code: number) => r(code))),
    )
    w.cli.proc.kill('SIGTERM')
    assert.deepEqual(await Promise.all(closes), [1001, 1001])
    assert.equal(await w.cli.exited, 0)
    for (const f of ['websocket_activity.1.log', 'websocket_activity.2.log']) {
      const events = w.log(f).map((l) => l.event)
      assert.equal(events.at(-1), 'server.closed', `${f} ends with the close`)
      assert.ok(events.includes('client.disconnected'))
    }
    const exits = w.log().filter((l) => l.event === 'worker.exited')
    assert.deepEqual(
      exits.map((l) => [l.crashed, l.code]),
      [
        [false, 0],
        [false, 0],
      ],
    )
  })

  it('a crashed worker is logged and restarted; its clients resume on a worker with nothing lost', async () => {
    const w = await startWorkers(['--history-size', '5000'])
    const seqs: number[] = []
    const gaps: Gap[] = []
    const opens: boolean[] = []
    const sub = connect(w.url, {
      reconnect: { initialDelay: 20, maxDelay: 100 },
      connectTimeout: 1000,
    })
    sub.on('gap', (g) => gaps.push(g))
    sub.on('open', (o) => opens.push(o.resumed))
    const pub = connect(w.url, {
      reconnect: { initialDelay: 20, maxDelay: 100 },
      connectTimeout: 1000,
    })
    try {
      await sub.subscribe('crash', (m) => seqs.push(m.seq)).ready
      await pub.ready
      // The subscriber's worker: the one whose log has its client id.
      const slot = await waitFor(
        () =>
          [1, 2].find((n) =>
            w
              .log(`websocket_activity.${n}.log`)
              .some((l) => l.event === 'client.connected' && l.client === sub.clientId),
          ),
        'the subscriber’s worker',
      )
      const started = w.log().find((l) => l.event === 'worker.started' && l.worker === slot)!
      const N = 600
      for (let i = 1; i <= N; i++) {
        await pub.publish('crash', i)
        if (i === 200) process.kill(Number(started.worker_pid), 'SIGKILL')
      }
      await waitFor(() => seqs.length >= N, `${N} messages`, 15_000)
      assert.deepEqual(
        seqs,
        Array.from({ length: N }, (_, i) => i + 1),
        'exactly once, in order',
      )
      assert.deepEqual(gaps, [])
      assert.deepEqual(opens, [false, true], 'resumed after the crash')
      const crash = await waitFor(() =>
        w.log().find((l) => l.event === 'worker.exited' && l.crashed === true),
      )
      assert.deepEqual([crash.worker, crash.signal, crash.level], [slot, 'SIGKILL', 50])
      const restarted = await waitFor(() =>
        w.log().find((l) => l.event === 'worker.started' && l.restarts === 1),
      )
      assert.equal(restarted.worker, slot)
      assert.doesNotMatch(w.cli.stderr(), /unknown environment variable|Unhandled|Error/)
      // The restarted worker serves (its slot's log file goes on).
      await waitFor(async () => {
        const c = await v1(w.url)
        await c.close()
        return w
          .log(`websocket_activity.${slot}.log`)
          .some((l) => l.event === 'server.listening' && l.pid === restarted.worker_pid)
      }, 'the restarted worker to listen')
    } finally {
      sub.close()
      pub.close()
      w.cli.proc.kill('SIGTERM')
      await w.cli.exited
    }
  })
})
