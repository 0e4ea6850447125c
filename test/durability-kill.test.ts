/**
 * `kill -9` under load. With `--log-sync` nothing a client saw echoed may be missing from the
 * log. With the default asynchronous writer the loss is bounded by the flush interval: this
 * measures it (see the diagnostics) and fails if anything older than a generous bound is lost.
 */
import { strict as assert } from 'node:assert'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { messageCounts, type ParsedLog, parseLog, startLoad, within } from './durability-helpers.js'
import { connect, readLines, startCli, tempDir, waitFor } from './helpers.js'

interface KillResult {
  killAt: number
  /** [content, Date.now() when its echo arrived] of every echoed message. */
  echoed: Array<[string, number]>
  /** Echoed messages without a line. */
  missing: Array<[string, number]>
  log: ParsedLog
  bytes: number
}

async function killUnderLoad(
  args: string[],
  clients: number,
  echoesBefore: number,
): Promise<KillResult> {
  const dir = tempDir('wirelog-dur-')
  const logPath = join(dir, 'activity.log')
  const child = await startCli([
    '--log-dir',
    dir,
    '--log-file',
    'activity.log',
    '--log-format',
    'json',
    ...args,
  ])
  try {
    const load = await startLoad(`ws://127.0.0.1:${child.port}`, { clients, window: 2, tag: 'K' })
    await load.waitEchoes(echoesBefore, 20_000)
    const killAt = Date.now()
    child.proc.kill('SIGKILL')
    assert.equal(await within(child.exited, 10_000, 'the CLI to die'), 'SIGKILL')
    load.stop()
    await within(Promise.all(load.clients.map((c) => c.closed)), 10_000, 'clients to notice')
    const log = parseLog([logPath])
    const counts = messageCounts(log.records)
    const echoed = load.clients.flatMap((c) => [...c.echoed])
    const missing = echoed.filter(([content]) => !counts.has(content))
    const bytes = readLines(logPath).reduce((n, l) => n + l.length + 1, 0)
    return { killAt, echoed, missing, log, bytes }
  } finally {
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Only the very last line may be cut short by a kill in the middle of a write. */
function assertOnlyLastLineTorn(log: ParsedLog): void {
  assert.ok(
    log.torn.length === 0 || (log.torn.length === 1 && log.unterminated.length === 1),
    `torn lines: ${log.torn.slice(0, 3).join(' | ')}`,
  )
}

describe('durability: kill -9', () => {
  it('with --log-sync, every message whose echo the client received has its line', async () => {
    const r = await killUnderLoad(['--log-sync'], 50, 3000)
    assertOnlyLastLineTorn(r.log)
    assert.deepEqual(
      r.missing.slice(0, 10).map(([c]) => c),
      [],
      `${r.missing.length} of ${r.echoed.length} echoed messages have no line`,
    )
  })

  it('asynchronous (default): what is lost is only the last moments before the kill (measured)', async (t: TestContext) => {
    const r = await killUnderLoad([], 100, 6000)
    assertOnlyLastLineTorn(r.log)
    const lines = r.log.records.length
    const avgLine = lines > 0 ? r.bytes / lines : 0
    const oldestMissing = r.missing.reduce((m, [, at]) => Math.min(m, at), Number.POSITIVE_INFINITY)
    const windowMs = r.missing.length > 0 ? r.killAt - oldestMissing : 0
    const firstEcho = r.echoed.reduce((m, [, at]) => Math.min(m, at), Number.POSITIVE_INFINITY)
    const rate = r.echoed.length / Math.max(1, (r.killAt - firstEcho) / 1000)
    t.diagnostic(
      `async kill -9: ${r.missing.length} of ${r.echoed.length} echoed messages had no line ` +
        `(~${Math.round(r.missing.length * avgLine)} bytes at ${Math.round(avgLine)} B/line); ` +
        `= ${Math.round((r.missing.length / rate) * 1000)} ms of traffic at ~${Math.round(rate)} msg/s; ` +
        `oldest lost echo arrived ${windowMs} ms before the kill`,
    )
    // Lines wait at most flushInterval (50 ms) or 64 KiB in memory, then one write: with a wide
    // margin for a loaded machine, nothing echoed a second before the kill may be lost, and
    // never more than 64 KiB of lines plus the chunk being written.
    assert.ok(r.missing.length * avgLine < 256 * 1024, `${r.missing.length} lines lost`)
    assert.ok(windowMs < 1000, `lost lines go back ${windowMs} ms before the kill`)
  })

  it('asynchronous: a lone line reaches the file within the flush interval, with no further traffic', async (t: TestContext) => {
    const dir = tempDir('wirelog-dur-')
    const logPath = join(dir, 'activity.log')
    const child = await startCli([
      '--log-dir',
      dir,
      '--log-file',
      'activity.log',
      '--log-format',
      'json',
      '--log-flush-interval',
      '50',
    ])
    try {
      const c = await connect(`ws://127.0.0.1:${child.port}`)
      c.ws.send('lone-message')
      await c.waitMessages(1)
      const echoedAt = Date.now()
      await waitFor(
        () => readLines(logPath).some((l) => l.includes('lone-message')),
        'the lone line on disk',
        3000,
      )
      const latency = Date.now() - echoedAt
      t.diagnostic(`lone line on disk ${latency} ms after its echo (flushInterval 50 ms)`)
      child.proc.kill('SIGKILL')
      await within(child.exited, 10_000, 'the CLI to die')
      assert.ok(readLines(logPath).some((l) => l.includes('"Message received: lone-message"')))
      c.ws.terminate()
    } finally {
      if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
