import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { connect, ROOT, readLines, tempDir, waitFor } from './helpers.js'

describe('examples/case-study', () => {
  it('runs the case-study flow: many clients echoed, three events logged and handled', async () => {
    const dir = tempDir()
    const proc = spawn(process.execPath, [join(ROOT, '.build', 'examples', 'case-study.js')], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString()
    })
    proc.stderr.on('data', (d: Buffer) => {
      out += d.toString()
    })
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)))
    const m = await waitFor(
      () => /listening on ws:\/\/[^:]+:(\d+)/.exec(out),
      'example to listen',
      10_000,
    )
    const url = `ws://127.0.0.1:${m[1]}`
    const clients = await Promise.all(Array.from({ length: 5 }, () => connect(url)))
    for (const c of clients) c.ws.send('Hello Server')
    for (const c of clients) assert.deepEqual(await c.waitMessages(1), ['Echo: Hello Server'])
    for (const c of clients) c.ws.close()
    await Promise.all(clients.map((c) => c.closed))
    const log = join(dir, 'websocket_activity.log')
    await waitFor(
      () => readLines(log).filter((l) => l.includes('[events] Client disconnected:')).length === 5,
      'five disconnect handlers',
    )
    proc.kill('SIGINT')
    assert.equal(await exited, 0)
    assert.match(out, /\[app\] stopped/)
    const lines = readLines(log)
    const count = (s: string) => lines.filter((l) => l.includes(s)).length
    // The server's own lines…
    assert.equal(count(' Client connected: 127.0.0.1 event=client.connected'), 5)
    assert.equal(count(' Message received: Hello Server event=message.received'), 5)
    assert.equal(count(' Client disconnected: 127.0.0.1 event=client.disconnected'), 5)
    // …and the handlers' lines, each right after the line of its event, never mistaken for it.
    assert.equal(count(' [events] Message received: Hello Server event=events:log'), 5)
    for (const [i, l] of lines.entries()) {
      if (l.includes('event=message.received'))
        assert.match(lines[i + 1]!, /\[events\] Message received: Hello Server/)
    }
  })
})
