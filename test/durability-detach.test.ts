/**
 * The log file deleted or moved from under a running server (no SIGHUP): the sink notices
 * within a few seconds and reopens (recreates) the file at its path.
 */
import { strict as assert } from 'node:assert'
import { existsSync, renameSync, rmSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ActivityLog, createServer, resolveConfig, type WirelogOptions } from '../src/index.js'
import { DETACH_CHECK_MS } from '../src/log/sink.js'
import { checkExactlyOnce, messageCounts, parseLog, startLoad } from './durability-helpers.js'
import { connect, readLines, tempDir, waitFor } from './helpers.js'

async function server(dir: string) {
  const opts: WirelogOptions = {
    host: '127.0.0.1',
    port: 0,
    log: { dir, file: 'a.log', format: 'json' },
  }
  const reports: string[] = []
  const log = new ActivityLog(resolveConfig(opts).log, (m) => reports.push(m))
  const s = createServer(opts, { activityLog: log })
  const addr = await s.listen()
  return { server: s, url: `ws://127.0.0.1:${addr.port}`, reports }
}

describe('durability: log file removed from under the server', () => {
  it('deleted: the file is recreated at its path and new lines go there', async () => {
    const dir = tempDir('wirelog-dur-')
    const path = join(dir, 'a.log')
    const t = await server(dir)
    try {
      const c = await connect(t.url)
      c.ws.send('before')
      await c.waitMessages(1)
      await waitFor(
        () => readLines(path).some((l) => l.includes('Message received: before')),
        'the first line',
      )
      unlinkSync(path)
      await waitFor(() => existsSync(path), 'the file to be recreated', DETACH_CHECK_MS * 3)
      assert.match(t.reports.join('\n'), /activity log file was deleted .*reopened/)
      c.ws.send('after')
      await c.waitMessages(2)
      await waitFor(
        () => readLines(path).some((l) => l.includes('Message received: after')),
        'the new line in the new file',
      )
      c.ws.close()
      await c.closed
      await t.server.close()
      assert.equal(t.server.activityLog!.stats.writeErrors, 0)
      const last = parseLog([path]).records.at(-1)!
      assert.equal(last.event, 'server.closed')
    } finally {
      await t.server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('moved away under load: lines continue in the moved file until the reopen, then in a new one; none lost or repeated', async () => {
    const dir = tempDir('wirelog-dur-')
    const path = join(dir, 'a.log')
    const t = await server(dir)
    try {
      const load = await startLoad(t.url, {
        clients: 20,
        window: 1,
        maxPerClient: 100_000,
        tag: 'M',
      })
      await load.waitEchoes(500)
      renameSync(path, `${path}.moved`)
      await waitFor(
        () => existsSync(path) && readLines(path).some((l) => l.includes('"message.received"')),
        'message lines in a new file',
        DETACH_CHECK_MS * 3,
      )
      assert.match(t.reports.join('\n'), /activity log file was moved .*reopened/)
      await load.closeAll()
      await t.server.close()
      const log = parseLog([`${path}.moved`, path])
      assert.deepEqual(log.torn, [])
      assert.deepEqual(log.unterminated, [])
      const r = checkExactlyOnce(
        load.clients.flatMap((c) => c.sent),
        messageCounts(log.records),
      )
      assert.deepEqual(r.missing.slice(0, 5), [], `${r.missing.length} lines missing`)
      assert.deepEqual(r.duplicated.slice(0, 5), [])
    } finally {
      await t.server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
