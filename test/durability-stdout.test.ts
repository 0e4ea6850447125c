/**
 * The log on stdout when the reader goes away (`wirelog --log-stdout | head -1`): the EPIPE
 * is reported once, stdout logging stops without a retry loop or an unhandled error, and the
 * server keeps serving and exits cleanly.
 */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { runSinkChild, within } from './durability-helpers.js'
import { connect, startCli, waitFor } from './helpers.js'

const reported = (stderr: string): string[] =>
  stderr.split('\n').filter((l) => l.includes('activity log on stdout failed'))

describe('durability: stdout closed by its reader', () => {
  it('CLI: EPIPE is reported once, the server keeps serving and exits 0', async () => {
    const child = await startCli(['--no-log', '--log-stdout', '--log-format', 'plain'])
    try {
      // What `| head -1` does: read a little, then close the pipe.
      await waitFor(() => child.stdout().length > 0, 'the first line on stdout')
      child.proc.stdout!.destroy()
      const c = await connect(`ws://127.0.0.1:${child.port}`)
      c.ws.send('after the reader left')
      await c.waitMessages(1)
      await waitFor(() => reported(child.stderr()).length > 0, 'the stdout error on stderr', 5000)
      assert.match(reported(child.stderr())[0]!, /EPIPE/)
      // Still serving, with more lines to (not) write.
      for (let i = 0; i < 200; i++) c.ws.send(`m${i}`)
      await c.waitMessages(201)
      c.ws.close()
      await c.closed
      child.proc.kill('SIGTERM')
      assert.equal(await within(child.exited, 10_000, 'the CLI to exit'), 0)
      assert.equal(reported(child.stderr()).length, 1, child.stderr())
      assert.doesNotMatch(child.stderr(), /fatal|Unhandled|EPIPE.*\n.*EPIPE/s)
    } finally {
      if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
    }
  })

  it('Sink on a closed pipe: one error, no retries on later flushes or timers, nothing left buffered', async () => {
    const { result: r, stderr, exit } = await runSinkChild('epipe', { closeStdout: true })
    assert.equal(exit, 0, stderr)
    assert.deepEqual(r.codes, ['EPIPE'], 'onError once, with EPIPE')
    // The child went on logging and flushing for 2.5 s (two retry intervals) after the error.
    assert.equal(r.errors, 1, 'a single failed attempt: no retry loop')
    assert.equal(r.uncaught, 0)
    assert.equal(r.buffered, 0, 'nothing held in memory for a reader that is gone')
    assert.ok((r.closeMs as number) < 500, `close() took ${r.closeMs} ms`)
  })
})
