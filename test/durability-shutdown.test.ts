/**
 * Nothing lost on a graceful shutdown: SIGTERM/SIGINT to the real CLI while 200 clients are
 * mid-traffic.
 */
import { strict as assert } from 'node:assert'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  checkExactlyOnce,
  type LogRecord,
  messageCounts,
  parseLog,
  startLoad,
  within,
} from './durability-helpers.js'
import { startCli, tempDir } from './helpers.js'

async function shutdownUnderLoad(
  signal: NodeJS.Signals,
  clients: number,
  echoesBefore: number,
  toStdout = false,
): Promise<void> {
  const dir = tempDir('wirelog-dur-')
  const logPath = join(dir, 'activity.log')
  const child = await startCli(
    toStdout
      ? ['--no-log', '--log-stdout', '--log-format', 'json']
      : ['--log-dir', dir, '--log-file', 'activity.log', '--log-format', 'json'],
  )
  // A reader that lags: the pipe fills up and the server's writer has to wait for it, so
  // shutdown must wait until the backlog is written (it is resumed once all clients are gone).
  if (toStdout) child.proc.stdout!.pause()
  try {
    const load = await startLoad(`ws://127.0.0.1:${child.port}`, {
      clients,
      window: 2,
      tag: signal,
    })
    await load.waitEchoes(echoesBefore, 20_000)
    // Traffic is still flowing when the signal lands.
    child.proc.kill(signal)
    const closes = await within(
      Promise.all(load.clients.map((c) => c.closed)),
      15_000,
      'every client to be closed',
    )
    if (toStdout) child.proc.stdout!.resume()
    const exit = await within(child.exited, 15_000, 'the CLI to exit')
    assert.equal(exit, 0, `exit code (stderr: ${child.stderr()})`)

    const badCodes = closes
      .map(([code], i) => [i, code] as const)
      .filter(([, code]) => code !== 1001)
    assert.deepEqual(badCodes, [], 'every client receives 1001')

    // Lines on stdout (a pipe to this process): checked the same way, from a file.
    if (toStdout) writeFileSync(logPath, child.stdout())
    const log = parseLog([logPath])
    assert.deepEqual(log.torn, [], 'every line parses as JSON')
    assert.deepEqual(log.unterminated, [], 'the last line is whole')
    const last = log.records[log.records.length - 1]!
    assert.equal(last.event, 'server.closed', 'the last line is "Server closed"')

    // Every message that was echoed has exactly one line; nothing sent is logged twice.
    const counts = messageCounts(log.records)
    const echoed = load.clients.flatMap((c) => [...c.echoed.keys()])
    assert.ok(echoed.length >= echoesBefore)
    const e = checkExactlyOnce(echoed, counts)
    assert.deepEqual(e.missing.slice(0, 10), [], `${e.missing.length} echoed messages have no line`)
    assert.deepEqual(e.duplicated.slice(0, 10), [], 'no message line is duplicated')
    const sent = load.clients.flatMap((c) => c.sent)
    const s = checkExactlyOnce(sent, counts)
    assert.deepEqual(s.duplicated, [])
    // A message sent before the client saw the close frame still reached the server and was logged.
    assert.deepEqual(s.missing.slice(0, 10), [], `${s.missing.length} sent messages have no line`)
    assert.equal(counts.size, sent.length, 'no message line that no client sent')

    // Every client: one connect line (matched by its local port), exactly one disconnect line, 1001.
    const byPort = new Map<number, LogRecord>()
    const disconnects = new Map<string, LogRecord[]>()
    for (const r of log.records) {
      if (r.event === 'client.connected') byPort.set(r.port!, r)
      if (r.event === 'client.disconnected')
        disconnects.set(r.client!, [...(disconnects.get(r.client!) ?? []), r])
    }
    for (const c of load.clients) {
      const conn = byPort.get(c.localPort)
      assert.ok(conn, `client ${c.index} (port ${c.localPort}) has a connect line`)
      const d = disconnects.get(conn.client!) ?? []
      assert.equal(d.length, 1, `client ${c.index} has exactly one disconnect line`)
      assert.equal(d[0]!.code, 1001)
      assert.equal(d[0]!.initiator, 'server')
    }
    assert.equal(disconnects.size, clients)
    assert.equal(log.records.filter((r) => r.event === 'client.connected').length, clients)
  } finally {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('durability: graceful shutdown under load', () => {
  it('SIGTERM with 200 clients mid-traffic: 1001 for all, every echoed message and every disconnect logged once, exit 0', async () => {
    await shutdownUnderLoad('SIGTERM', 200, 4000)
  })

  it('SIGINT behaves the same (50 clients)', async () => {
    await shutdownUnderLoad('SIGINT', 50, 1000)
  })

  it('SIGTERM with the log on stdout (a pipe): every line reaches the reader before exit', async () => {
    await shutdownUnderLoad('SIGTERM', 50, 2000, true)
  })
})
