/**
 * Rotation under load: by size, by time, retention, and reopen on SIGHUP after an external
 * rename (logrotate). Across all files the lines equal the events triggered: none missing,
 * none duplicated, none torn.
 */
import { strict as assert } from 'node:assert'
import { existsSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { createServer, type WirelogOptions, type WirelogServer } from '../src/index.js'
import { Sink } from '../src/log/sink.js'
import {
  checkExactlyOnce,
  type Load,
  logFiles,
  messageCounts,
  parseLog,
  startLoad,
  within,
} from './durability-helpers.js'
import { readLines, startCli, tempDir, waitFor } from './helpers.js'

const FILE = 'activity.log'

interface Counted {
  server: WirelogServer
  url: string
  dir: string
  /** Events triggered, by name, that the activity log writes at level info. */
  triggered: Map<string, number>
}

/** A server whose every triggered event is counted (subscribed before the log attaches). */
async function countedServer(log: NonNullable<WirelogOptions['log']>): Promise<Counted> {
  const dir = tempDir('wirelog-dur-')
  const server = createServer({
    host: '127.0.0.1',
    port: 0,
    log: { dir, file: FILE, format: 'json', ...log },
  })
  const triggered = new Map<string, number>()
  server.events.on('*', '*', (_payload: unknown, name: string) => {
    // Not logged at level info: sent messages (debug) and write errors (stderr only).
    if (name === 'message.sent' || name === 'log.error') return
    triggered.set(name, (triggered.get(name) ?? 0) + 1)
  })
  const addr = await server.listen()
  return { server, url: `ws://127.0.0.1:${addr.port}`, dir, triggered }
}

/** All lines across `files`: parse, no tears, per-event counts equal `triggered`, every message once. */
function assertExactLog(files: string[], triggered: Map<string, number>, load: Load): void {
  const log = parseLog(files)
  assert.deepEqual(log.torn, [], 'every line parses as JSON')
  assert.deepEqual(log.unterminated, [], 'every file ends with a whole line')
  const byEvent = new Map<string, number>()
  for (const r of log.records) byEvent.set(r.event, (byEvent.get(r.event) ?? 0) + 1)
  assert.deepEqual(
    Object.fromEntries([...byEvent].sort()),
    Object.fromEntries([...triggered].sort()),
    'lines per event = events triggered',
  )
  const counts = messageCounts(log.records)
  const sent = load.clients.flatMap((c) => c.sent)
  const r = checkExactlyOnce(sent, counts)
  assert.deepEqual(r.missing.slice(0, 10), [], `${r.missing.length} messages have no line`)
  assert.deepEqual(r.duplicated.slice(0, 10), [], `${r.duplicated.length} messages logged twice`)
  assert.equal(counts.size, sent.length)
}

describe('durability: rotation', () => {
  it('by size under load: every line in exactly one file, none torn', async () => {
    const t = await countedServer({ flushInterval: 10, rotate: { size: 32 * 1024, keep: 1000 } })
    try {
      const load = await startLoad(t.url, { clients: 50, window: 2, maxPerClient: 60, tag: 'S' })
      await load.waitEchoes(50 * 60, 20_000)
      await load.closeAll()
      await t.server.close()
      const files = logFiles(t.dir, FILE)
      assert.ok(files.length >= 6, `expected many rotations, got ${files.length - 1}`)
      assert.equal(
        t.triggered.get('log.rotated'),
        files.length - 1,
        'one log.rotated event per rotated file',
      )
      for (let i = 1; i < files.length - 1; i++) assert.ok(existsSync(files[i]!))
      assertExactLog(files, t.triggered, load)
      assert.equal(t.server.activityLog!.stats.dropped, 0)
    } finally {
      await t.server.close()
      rmSync(t.dir, { recursive: true, force: true })
    }
  })

  it('keeps only rotate.keep files, holding the newest lines', async () => {
    // Short flush interval: rotation happens between flushed chunks, so small chunks rotate often.
    const t = await countedServer({ flushInterval: 1, rotate: { size: 4096, keep: 3 } })
    try {
      const load = await startLoad(t.url, { clients: 1, window: 1, maxPerClient: 300, tag: 'R' })
      await load.waitEchoes(300, 20_000)
      await load.closeAll()
      await t.server.close()
      const rotations = t.triggered.get('log.rotated') ?? 0
      assert.ok(rotations > 5, `rotated more often than files are kept (${rotations})`)
      const files = logFiles(t.dir, FILE)
      assert.deepEqual(
        files.map((f) => f.slice(t.dir.length + 1)),
        [`${FILE}.3`, `${FILE}.2`, `${FILE}.1`, FILE],
      )
      // The kept lines are the newest ones: a gapless run of messages ending with the last.
      const log = parseLog(files)
      assert.deepEqual(log.torn, [])
      const seq = log.records
        .filter((r) => r.event === 'message.received')
        .map((r) => Number(/-m(\d+)$/.exec(r.msg)![1]))
      assert.ok(seq.length > 0)
      assert.equal(seq[seq.length - 1], 299)
      for (let i = 1; i < seq.length; i++)
        assert.equal(seq[i], seq[i - 1]! + 1, 'kept lines are contiguous and in order')
      assert.equal(log.records[log.records.length - 1]!.event, 'server.closed')
    } finally {
      await t.server.close()
      rmSync(t.dir, { recursive: true, force: true })
    }
  })

  it('by time under load (interval 1 s), and an idle log is not rotated again', async () => {
    const t = await countedServer({ rotate: { interval: 1, keep: 100 } })
    try {
      const load = await startLoad(t.url, {
        clients: 20,
        window: 1,
        maxPerClient: 100_000,
        tag: 'T',
      })
      await waitFor(() => (t.triggered.get('log.rotated') ?? 0) >= 2, 'two timed rotations', 5000)
      await load.closeAll()
      // After the traffic: one more rotation takes the last lines; then the idle log stays put.
      const settled = (t.triggered.get('log.rotated') ?? 0) + 1
      await waitFor(
        () => (t.triggered.get('log.rotated') ?? 0) >= settled,
        'the rotation after the traffic',
        3000,
      )
      // At least one more timer tick (1 s) passes with nothing new to rotate.
      await new Promise((r) => setTimeout(r, 1300))
      assert.equal(
        t.triggered.get('log.rotated'),
        settled,
        'an idle log (only its "Log rotated" line) is not rotated',
      )
      await t.server.close()
      const files = logFiles(t.dir, FILE)
      assert.equal(files.length - 1, settled)
      assertExactLog(files, t.triggered, load)
    } finally {
      await t.server.close()
      rmSync(t.dir, { recursive: true, force: true })
    }
  })

  it('close() right after a rotation whose write is still in flight settles promptly, losing nothing', async () => {
    const dir = tempDir('wirelog-dur-')
    const path = join(dir, FILE)
    try {
      const sink = await Sink.openFile(path, {
        sync: false,
        flushInterval: 50,
        maxBuffer: 1024 * 1024,
      })
      sink.write('{"n":1}\n')
      sink.flush() // its write is now in flight
      assert.equal(sink.rotate(), true)
      // A second rotation before the new file is open would rename the wrong file: refused.
      assert.equal(sink.rotate(), false)
      sink.write('{"n":2}\n')
      // sonic-boom forgets a pending reopen once end() is called, and never closes.
      await within(sink.close(), 2000, 'close() during a rotation')
      assert.deepEqual(readLines(`${path}.1`), ['{"n":1}'])
      assert.deepEqual(readLines(path), ['{"n":2}'])
      assert.equal(existsSync(`${path}.2`), false)
      assert.equal(sink.dropped, 0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('rotate() whose own hand-over crosses rotate.size rotates once, not re-entered', async () => {
    const dir = tempDir('wirelog-dur-')
    const path = join(dir, FILE)
    try {
      const rotated: string[] = []
      const sink = await Sink.openFile(path, {
        sync: false,
        flushInterval: 60_000,
        maxBuffer: 1024 * 1024,
        rotateSize: 100,
        rotateKeep: 5,
        onRotate: (to) => rotated.push(to),
      })
      const one = `{"n":1,"pad":"${'x'.repeat(50)}"}`
      const two = `{"n":2,"pad":"${'y'.repeat(50)}"}`
      sink.write(`${one}\n`)
      sink.flush()
      await waitFor(() => readLines(path).length === 1, 'the first line on disk')
      // Still pending: handing it over (part of the rotation) takes the file past 100 bytes.
      sink.write(`${two}\n`)
      assert.equal(sink.rotate(), true)
      await within(sink.close(), 5000, 'close() after the rotation')
      assert.deepEqual(rotated, [`${path}.1`], 'one rotation, reported once')
      assert.deepEqual(readLines(`${path}.1`), [one, two], 'the rotated file holds both lines')
      assert.deepEqual(readLines(path), [], 'a fresh file at the path')
      assert.equal(existsSync(`${path}.2`), false, 'no file shifted twice')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('reopens on SIGHUP after an external rename (logrotate), under load', async () => {
    const dir = tempDir('wirelog-dur-')
    const path = join(dir, FILE)
    const child = await startCli(['--log-dir', dir, '--log-file', FILE, '--log-format', 'json'])
    try {
      const load = await startLoad(`ws://127.0.0.1:${child.port}`, {
        clients: 50,
        window: 2,
        tag: 'H',
      })
      const moved: string[] = []
      for (let round = 1; round <= 2; round++) {
        await load.waitEchoes(round * 1500, 20_000)
        const to = `${path}-rotated-${round}`
        renameSync(path, to)
        moved.push(to)
        child.proc.kill('SIGHUP')
        // New lines go to a new file at the original path.
        await waitFor(
          () => existsSync(path) && readLines(path).some((l) => l.includes('"message.received"')),
          'message lines in the new file',
          5000,
        )
      }
      await load.closeAll()
      child.proc.kill('SIGTERM')
      assert.equal(await within(child.exited, 10_000, 'the CLI to exit'), 0)

      const log = parseLog([...moved, path])
      assert.deepEqual(log.torn, [])
      assert.deepEqual(log.unterminated, [])
      for (const f of moved) assert.ok(readLines(f).length > 0, `${f} kept its lines`)
      const counts = messageCounts(log.records)
      const sent = load.clients.flatMap((c) => c.sent)
      const r = checkExactlyOnce(sent, counts)
      assert.deepEqual(r.missing.slice(0, 10), [], `${r.missing.length} messages have no line`)
      assert.deepEqual(r.duplicated.slice(0, 10), [])
      const one = (event: string): number => log.records.filter((x) => x.event === event).length
      assert.equal(one('client.connected'), 50)
      assert.equal(one('client.disconnected'), 50)
      assert.equal(one('server.listening'), 1)
      assert.equal(one('server.closed'), 1)
    } finally {
      if (child.proc.exitCode === null) child.proc.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
