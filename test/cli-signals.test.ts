/**
 * Shutdown on the terminal: SIGINT/SIGTERM say how many clients are being drained and when
 * the server has stopped; a second signal forces the exit and leaves a last line in the log.
 */
import { strict as assert } from 'node:assert'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { rawConnect } from './frames.js'
import { connect, readLines, startCli, tempDir, waitFor } from './helpers.js'

describe('cli shutdown', () => {
  it('SIGINT: "draining N clients", then "stopped", exit 0', async () => {
    const dir = tempDir()
    const c = await startCli(['--log-dir', dir, '--log-format', 'json'])
    const a = await connect(`ws://127.0.0.1:${c.port}`)
    const b = await connect(`ws://127.0.0.1:${c.port}`)
    try {
      await waitFor(
        () =>
          readLines(join(dir, 'websocket_activity.log')).filter((l) =>
            l.includes('"client.connected"'),
          ).length === 2,
        'both connections in the log',
      )
      c.proc.kill('SIGINT')
      assert.deepEqual(await a.closed, [1001, 'server shutting down'])
      await b.closed
      assert.equal(await c.exited, 0)
    } finally {
      if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
    }
    const lines = c.stderr().trimEnd().split('\n')
    assert.deepEqual(lines.slice(1), [
      'wirelog: draining 2 clients (Ctrl-C again to force)',
      'wirelog: stopped',
    ])
  })

  it('SIGTERM with no clients: says it is shutting down and has stopped', async () => {
    const c = await startCli(['--no-log'])
    c.proc.kill('SIGTERM')
    assert.equal(await c.exited, 0)
    assert.deepEqual(c.stderr().trimEnd().split('\n').slice(1), [
      'wirelog: shutting down (Ctrl-C again to force)',
      'wirelog: stopped',
    ])
  })

  it('a second signal forces the exit: a note on stderr and a last line in the log, exit 1', async () => {
    const dir = tempDir()
    const logPath = join(dir, 'websocket_activity.log')
    const c = await startCli([
      '--log-dir',
      dir,
      '--log-format',
      'json',
      '--shutdown-timeout',
      '60000',
    ])
    // A client that never answers the close frame keeps the drain waiting.
    const stuck = await rawConnect(c.port, { endOnClose: false })
    try {
      await waitFor(
        () => readLines(logPath).some((l) => l.includes('"client.connected"')),
        'the connection in the log',
      )
      c.proc.kill('SIGTERM')
      await waitFor(
        () => c.stderr().includes('wirelog: draining 1 client (Ctrl-C again to force)\n'),
        'the draining line',
      )
      // The close frame reached the client: the server is draining, not yet stopped.
      await stuck.waitClose()
      assert.equal(c.proc.exitCode, null)
      c.proc.kill('SIGTERM')
      assert.equal(await c.exited, 1)
    } finally {
      stuck.destroy()
      if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
    }
    assert.match(c.stderr(), /\nwirelog: forced exit, 1 client dropped\n$/)
    assert.doesNotMatch(c.stderr(), /stopped/)
    const last = JSON.parse(readLines(logPath).at(-1)!) as { level: number; msg: string }
    assert.match(last.msg, /forced exit: 1 client dropped$/)
    assert.equal(last.level, 40)
  })
})
