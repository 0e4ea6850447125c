/**
 * Disk full, unwritable and unopenable logs: the server keeps serving, reports once, counts
 * what it drops, keeps memory bounded by `log.maxBuffer`, resumes when space returns and
 * leaves no torn or duplicated line; an unopenable log is a clear start-up error.
 */
import { strict as assert } from 'node:assert'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  ActivityLog,
  createServer,
  resolveConfig,
  type WirelogOptions,
  type WirelogServer,
} from '../src/index.js'
import {
  checkExactlyOnce,
  type Load,
  messageCounts,
  mountTmpfs,
  parseLog,
  runSinkChild,
  startLoad,
  type Tmpfs,
  within,
} from './durability-helpers.js'
import { readLines, runCli, startCli, tempDir, waitFor } from './helpers.js'

const KiB = 1024

interface Reported {
  server: WirelogServer
  url: string
  /** What the activity log reported (stderr in the CLI). */
  reports: string[]
}

async function reportingServer(options: WirelogOptions): Promise<Reported> {
  const opts: WirelogOptions = { host: '127.0.0.1', port: 0, ...options }
  const reports: string[] = []
  const log = new ActivityLog(resolveConfig(opts).log, (m) => reports.push(m))
  const server = createServer(opts, { activityLog: log })
  const addr = await server.listen()
  return { server, url: `ws://127.0.0.1:${addr.port}`, reports }
}

const failed = (r: string[]): string[] => r.filter((m) => m.includes('write failed'))
const recovered = (r: string[]): string[] => r.filter((m) => m.includes('writable again'))

/** Let `load` run until `n` more echoes have arrived, then let it fall quiet. */
async function phase(load: Load, n: number): Promise<void> {
  const target = load.echoes() + n
  load.resume()
  await load.waitEchoes(target, 20_000)
  load.stop()
  await load.settle()
}

/** tmpfs tests need root (mount); without it they are skipped. */
function withTmpfs(size: number, t: { skip(msg?: string): void }): Tmpfs | undefined {
  const fs = mountTmpfs(size)
  if (!fs) t.skip('cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)')
  return fs
}

describe('durability: disk full / unwritable log', () => {
  it('/dev/full: keeps serving, reports once, counts dropped lines, memory stays within maxBuffer', async () => {
    const maxBuffer = 64 * KiB
    const t = await reportingServer({
      log: { dir: '/dev', file: 'full', format: 'json', maxBuffer },
    })
    try {
      const load = await startLoad(t.url, {
        clients: 20,
        window: 2,
        maxPerClient: 150,
        pad: 200,
        tag: 'F',
      })
      let maxBuffered = 0
      for (let n = 500; n <= 3000; n += 500) {
        await load.waitEchoes(n, 20_000)
        maxBuffered = Math.max(maxBuffered, t.server.activityLog!.stats.buffered)
      }
      // Every client got every echo: the failing log never stopped the server.
      for (const c of load.clients) assert.equal(c.echoed.size, 150)
      const stats = t.server.activityLog!.stats
      assert.ok(stats.writeErrors >= 1, 'write errors are counted')
      assert.ok(stats.dropped > 0, 'lines beyond maxBuffer are dropped and counted')
      // sonic-boom's buffer is capped at maxBuffer; the sink holds at most one more chunk (maxBuffer/4).
      assert.ok(
        maxBuffered <= maxBuffer * 1.25 + 2 * KiB,
        `buffered ${maxBuffered} bytes with maxBuffer ${maxBuffer}`,
      )
      assert.equal(failed(t.reports).length, 1, `reported once: ${t.reports.join(' | ')}`)
      assert.match(failed(t.reports)[0]!, /\/dev\/full.*ENOSPC/)
      await load.closeAll()
      // Shutdown does not hang on a device that refuses every write.
      await within(t.server.close(), 5000, 'close() with an unwritable log')
      const after = t.server.activityLog!.stats
      assert.equal(after.buffered, 0)
      assert.equal(
        after.dropped,
        after.lines,
        'nothing was written, and every line is accounted as dropped',
      )
    } finally {
      await t.server.close()
    }
  })

  it('/dev/full, thousands of one-line flushes: retained memory (ArrayBuffers included) stays within maxBuffer', async () => {
    // In a child with --expose-gc: retained bytes after a full collection, not garbage.
    const { result: r } = await runSinkChild('memory-sink')
    const maxBuffer = r.maxBuffer as number
    assert.ok((r.errors as number) >= 1)
    assert.ok((r.dropped as number) > 0, 'the backlog outgrew maxBuffer and lines were dropped')
    assert.ok((r.maxBuffered as number) <= maxBuffer, `buffered ${r.maxBuffered}`)
    // The lines kept (maxBuffer) plus change: never a buffer retained per flush.
    assert.ok(
      (r.retained as number) <= maxBuffer + 128 * KiB,
      `ArrayBuffers grew by ${r.retained} bytes with maxBuffer ${maxBuffer}`,
    )
  })

  it('/dev/full under load, flushing every millisecond: retained memory of the server stays within maxBuffer', async () => {
    const { result: r } = await runSinkChild('memory-server')
    const maxBuffer = r.maxBuffer as number
    assert.ok((r.dropped as number) > 0)
    assert.ok((r.buffered as number) <= maxBuffer)
    assert.equal(r.reports, 1, 'the failure is reported once')
    assert.ok(
      (r.retained as number) <= maxBuffer + 256 * KiB,
      `ArrayBuffers grew by ${r.retained} bytes with maxBuffer ${maxBuffer}`,
    )
  })

  it('tmpfs fills up later: error reported once, serving continues, writing resumes with no line lost, torn or repeated', async (t) => {
    const fs = withTmpfs(2048 * KiB, t)
    if (!fs) return
    const s = await reportingServer({
      log: { dir: fs.dir, file: 'a.log', format: 'json', maxBuffer: 4096 * KiB },
    })
    const path = join(fs.dir, 'a.log')
    const stats = () => s.server.activityLog!.stats
    try {
      const load = await startLoad(s.url, { clients: 10, window: 1, maxPerClient: 2000, tag: 'P' })
      await phase(load, 200)
      await waitFor(() => readLines(path).length === stats().lines, 'every line on disk')
      fs.fill()
      await phase(load, 1000)
      await waitFor(() => failed(s.reports).length > 0, 'the write error to be reported')
      assert.ok(stats().buffered > 100 * KiB, 'the lines of the full-disk phase wait in memory')
      assert.ok(stats().writeErrors >= 1)
      assert.equal(failed(s.reports).length, 1, 'reported once, however many writes fail')
      assert.match(failed(s.reports)[0]!, /ENOSPC/)
      // Hand every pending line over now, so that only the sink's own retry can notice the
      // space coming back (no flush timer left to do it by chance).
      s.server.activityLog!.flushSync()
      fs.free()
      await waitFor(() => recovered(s.reports).length > 0, 'writing to resume', 5000)
      assert.match(recovered(s.reports)[0]!, / 0 lines dropped/)
      await phase(load, 300)
      await load.closeAll()
      await s.server.close()
      const log = parseLog([path])
      assert.deepEqual(log.torn, [], 'no torn line')
      assert.deepEqual(log.unterminated, [])
      const r = checkExactlyOnce(
        load.clients.flatMap((c) => c.sent),
        messageCounts(log.records),
      )
      assert.deepEqual(r.missing.slice(0, 5), [], `${r.missing.length} lines lost`)
      assert.deepEqual(r.duplicated.slice(0, 5), [], `${r.duplicated.length} lines repeated`)
      assert.equal(stats().dropped, 0)
      assert.equal(log.records.length, stats().lines, 'every line handed over is in the file')
    } finally {
      await s.server.close()
      fs.unmount()
    }
  })

  it('tmpfs full with a small maxBuffer: dropped lines are counted exactly, the rest is intact', async (t) => {
    const fs = withTmpfs(2048 * KiB, t)
    if (!fs) return
    // Small enough that the full-disk phase overflows it many times over, large enough that a
    // thread-pool write delayed by a busy machine cannot overflow it in the healthy phase.
    const maxBuffer = 64 * KiB
    const s = await reportingServer({
      log: { dir: fs.dir, file: 'a.log', format: 'json', maxBuffer },
    })
    const path = join(fs.dir, 'a.log')
    const stats = () => s.server.activityLog!.stats
    try {
      const load = await startLoad(s.url, { clients: 10, window: 1, maxPerClient: 2000, tag: 'D' })
      await phase(load, 100)
      await waitFor(() => readLines(path).length === stats().lines, 'every line on disk')
      fs.fill()
      await phase(load, 1000)
      await waitFor(() => failed(s.reports).length > 0, 'the write error to be reported')
      assert.ok(stats().dropped > 0)
      assert.ok(stats().buffered <= maxBuffer * 1.25 + 2 * KiB, `buffered ${stats().buffered}`)
      // Hand every pending line over now, so that only the sink's own retry can notice the
      // space coming back (no flush timer left to do it by chance).
      s.server.activityLog!.flushSync()
      fs.free()
      await waitFor(() => recovered(s.reports).length > 0, 'writing to resume', 5000)
      await phase(load, 100)
      await load.closeAll()
      await s.server.close()
      const log = parseLog([path])
      assert.deepEqual(log.torn, [], 'no torn line')
      assert.deepEqual(log.unterminated, [])
      const st = stats()
      assert.equal(log.records.length + st.dropped, st.lines, 'written + dropped = lines')
      const drop = log.records.filter((r) => r.event === 'log.dropped')
      assert.equal(drop.length, 1, 'one "Log lines dropped" line after recovery')
      assert.equal(
        drop[0]!.dropped,
        st.dropped,
        'the "Log lines dropped" line counts every dropped line',
      )
      assert.equal(recovered(s.reports).length, 1)
      assert.match(recovered(s.reports)[0]!, new RegExp(` ${st.dropped} lines dropped`))
      const counts = messageCounts(log.records)
      assert.ok(
        [...counts.values()].every((n) => n === 1),
        'no line repeated',
      )
      // Messages of the healthy phases are all there.
      for (const c of load.clients) assert.equal(counts.get(c.sent[0]!), 1)
      for (const c of load.clients) assert.equal(counts.get(c.sent[c.sent.length - 1]!), 1)
    } finally {
      await s.server.close()
      fs.unmount()
    }
  })

  it('CLI: a later write error is reported once on stderr, does not kill the server, recovery is reported', async (t) => {
    const fs = withTmpfs(1024 * KiB, t)
    if (!fs) return
    const child = await startCli([
      '--log-dir',
      fs.dir,
      '--log-file',
      'a.log',
      '--log-format',
      'json',
    ])
    try {
      const load = await startLoad(`ws://127.0.0.1:${child.port}`, {
        clients: 10,
        window: 1,
        maxPerClient: 2000,
        tag: 'C',
      })
      await phase(load, 100)
      fs.fill()
      await phase(load, 1000)
      await waitFor(() => child.stderr().includes('write failed'), 'the error on stderr', 5000)
      await phase(load, 500)
      assert.equal(child.stderr().match(/write failed/g)?.length, 1, child.stderr())
      assert.ok(
        child.stderr().includes(`activity log write failed (${join(fs.dir, 'a.log')}): ENOSPC`),
        child.stderr(),
      )
      fs.free()
      await waitFor(() => child.stderr().includes('writable again'), 'recovery on stderr', 5000)
      await phase(load, 100)
      await load.closeAll()
      child.proc.kill('SIGTERM')
      assert.equal(await within(child.exited, 10_000, 'the CLI to exit'), 0)
      const log = parseLog([join(fs.dir, 'a.log')])
      assert.deepEqual(log.torn, [])
      const r = checkExactlyOnce(
        load.clients.flatMap((c) => c.sent),
        messageCounts(log.records),
      )
      assert.deepEqual([r.missing.length, r.duplicated.length], [0, 0])
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL')
      fs.unmount()
    }
  })

  it('CLI: a second signal during a stuck shutdown exits promptly even when the log device refuses writes', async () => {
    const child = await startCli([
      '--log-dir',
      '/dev',
      '--log-file',
      'full',
      '--shutdown-timeout',
      '60000',
    ])
    // A client that completes the handshake and then never answers (never reads our close frame).
    const sock = netConnect(child.port, '127.0.0.1')
    try {
      sock.on('error', () => {})
      sock.write(
        'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      )
      let head = ''
      await within(
        new Promise<void>((resolve) => {
          sock.on('data', (d: Buffer) => {
            head += d.toString('latin1')
            if (head.includes('\r\n\r\n')) resolve()
          })
        }),
        5000,
        'the 101 answer',
      )
      assert.match(head, /^HTTP\/1\.1 101/)
      sock.pause()
      await waitFor(() => child.stderr().includes('write failed'), 'the write error', 5000)
      child.proc.kill('SIGTERM')
      // The first signal waits for the stuck client; the second must leave now, having tried a
      // synchronous flush that cannot succeed (sonic-boom's own flushSync would spin forever).
      await waitFor(() => child.proc.exitCode === null, 'still draining')
      await new Promise((r) => setTimeout(r, 200))
      child.proc.kill('SIGTERM')
      assert.equal(await within(child.exited, 5000, 'the CLI to exit after the second signal'), 1)
    } finally {
      sock.destroy()
      if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
    }
  })

  it('CLI: a log that cannot be opened at start is an error naming the path, exit 1', async () => {
    const dir = tempDir('wirelog-dur-')
    try {
      // The directory is a regular file.
      const notADir = join(dir, 'not-a-dir')
      writeFileSync(notADir, 'x')
      const a = runCli([
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--log-dir',
        join(notADir, 'sub'),
        '--log-file',
        'a.log',
      ])
      assert.equal(await within(a.exited, 10_000, 'the CLI to exit'), 1)
      assert.ok(a.stderr().includes(join(notADir, 'sub', 'a.log')), a.stderr())
      assert.match(a.stderr(), /cannot open activity log .*ENOTDIR/)
      assert.doesNotMatch(a.stderr(), /listening on/)

      // The file is a directory.
      mkdirSync(join(dir, 'taken'))
      const b = runCli([
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--log-dir',
        dir,
        '--log-file',
        'taken',
      ])
      assert.equal(await within(b.exited, 10_000, 'the CLI to exit'), 1)
      assert.ok(b.stderr().includes(join(dir, 'taken')), b.stderr())
      assert.match(b.stderr(), /cannot open activity log .*EISDIR/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
