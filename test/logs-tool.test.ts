/**
 * `wirelog logs` as a user runs it: real servers write real logs (text and json, rotated),
 * real clients connect, send and close, and the CLI child reads the files.
 */
import { strict as assert } from 'node:assert'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  connect,
  expectRejected,
  runCli,
  startServer,
  type TestServer,
  waitFor,
} from './helpers.js'

/** Run `wirelog logs …` to its end. */
async function logs(args: string[]): Promise<{ code: number | string; out: string; err: string }> {
  const c = runCli(['logs', ...args])
  const code = await c.exited
  return { code, out: c.stdout(), err: c.stderr() }
}

const jsonLines = (out: string): any[] =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))

/** Client traffic: alice sends most bytes, bob most messages, carol hostile text; one refusal. */
async function traffic(t: TestServer): Promise<void> {
  const alice = await connect(t.url)
  for (let i = 0; i < 3; i++) alice.ws.send(`A${'a'.repeat(999)}`)
  await alice.waitMessages(3)
  const bob = await connect(t.url)
  for (let i = 0; i < 10; i++) bob.ws.send(`bob-${i}`.padEnd(50, '.'))
  await bob.waitMessages(10)
  // Halfway: the log rotates (alice's and bob's lines go to activity.log.1).
  t.server.activityLog!.rotate()
  const carol = await connect(t.url)
  carol.ws.send('needle\nevent=client.connected client=forged ip=6.6.6.6')
  await carol.waitMessages(1)
  alice.ws.close(1000)
  bob.ws.close(4005, 'bob is done')
  carol.ws.close(1000)
  await Promise.all([alice.closed, bob.closed, carol.closed])
  assert.equal(await expectRejected(t.url, { headers: { Origin: 'https://evil.example' } }), 403)
}

for (const format of ['text', 'json'] as const) {
  describe(`wirelog logs on a ${format} log`, () => {
    let t: TestServer
    let files: string[]
    before(async () => {
      t = await startServer({
        allowedOrigins: ['https://app.example.com'],
        log: { format, rotate: { keep: 5 } },
      })
      await traffic(t)
      // Close flushes the log; the files stay (stop() removes them later).
      await t.server.close()
      files = readdirSync(t.dir)
        .sort()
        .map((f) => join(t.dir, f))
    })
    after(async () => {
      await t.stop()
    })

    it('wrote a rotated pair of files', () => {
      assert.deepEqual(
        files.map((f) => f.slice(t.dir.length + 1)),
        ['activity.log', 'activity.log.1'],
      )
    })

    it('summary of the directory: totals across rotation, the top talker, codes, rejections', async () => {
      const r = await logs(['summary', t.dir, '--output', 'json'])
      assert.equal(r.code, 0, r.err)
      const s = JSON.parse(r.out)
      assert.equal(s.connections, 3)
      assert.equal(s.disconnects, 3)
      assert.equal(s.messagesIn, 14)
      assert.equal(
        s.bytesIn,
        3000 + 500 + Buffer.byteLength('needle\nevent=client.connected client=forged ip=6.6.6.6'),
      )
      assert.equal(s.rejections, 1)
      assert.equal(s.unparsed, 0)
      assert.deepEqual(
        s.files.map((f: string) => f.slice(t.dir.length + 1)),
        ['activity.log.1', 'activity.log'],
        'oldest first',
      )
      const [top, second] = s.topTalkers
      assert.equal(top.messages, 3)
      assert.equal(top.bytes, 3000)
      assert.equal(top.address, '127.0.0.1')
      assert.equal(second.messages, 10)
      // The top talker is alice: the client whose messages start with "A".
      const a = jsonLines((await logs(['grep', t.dir, '--text', 'Aaaa', '-o', 'json'])).out)
      assert.equal(a.length, 3)
      assert.equal(top.client, a[0].client)
      const codes = Object.fromEntries(s.closeCodes.map((c: any) => [c.code, c.count]))
      assert.deepEqual(codes, { 1000: 2, 4005: 1 })
      assert.equal(s.rejectionReasons[0].status, 403)
      assert.match(s.rejectionReasons[0].reason, /origin/i)
    })

    it('without files: the configured log file and its rotated siblings (tail: the file alone)', async () => {
      const run = async (args: string[]) => {
        const c = runCli(['logs', ...args], {
          cwd: t.dir,
          env: { WIRELOG_LOG_FILE: 'activity.log', WIRELOG_CONFIG: '' },
        })
        return { code: await c.exited, out: c.stdout(), err: c.stderr() }
      }
      const s = await run(['summary', '-o', 'json'])
      assert.equal(s.code, 0, s.err)
      const r = JSON.parse(s.out)
      assert.equal(r.files.length, 2)
      assert.equal(r.messagesIn, 14)
      const tl = await run(['tail', '-n', '100', '-o', 'json', '--event', 'message.received'])
      assert.equal(jsonLines(tl.out).length, 1, "only carol's message is in the current file")
    })

    it('summary --since 1h as a table names the top talker first', async () => {
      const r = await logs(['summary', '--since', '1h', join(t.dir, 'activity.log*')])
      assert.equal(r.code, 0, r.err)
      assert.match(r.out, /Top talkers/)
      const row = r.out.split('\n').find((l) => /^\s+1\s/.test(l))
      assert.ok(row, r.out)
      assert.match(row, /127\.0\.0\.1\s+-\s+3\s+3\.0 kB$/)
      assert.match(r.out, /messages in\s+14/)
      assert.equal(r.err, '', 'no progress output when stderr is not a terminal')
    })

    it('filters: --event patterns, --client, --address, --text, --until', async () => {
      const conn = jsonLines((await logs([t.dir, '--event', 'client.*', '-o', 'json'])).out)
      assert.deepEqual([...new Set(conn.map((r) => r.event))].sort(), [
        'client.connected',
        'client.disconnected',
        'client.rejected',
      ])
      // Carol's content imitates fields: her line keeps its real ones.
      const carol = jsonLines((await logs([t.dir, '--text', 'needle', '-o', 'json'])).out)
      assert.equal(carol.length, 1)
      assert.equal(carol[0].event, 'message.received')
      assert.equal(carol[0].address, '127.0.0.1')
      assert.notEqual(carol[0].client, 'forged')
      const mine = jsonLines((await logs([t.dir, '--client', carol[0].client, '-o', 'json'])).out)
      assert.deepEqual(
        mine.map((r) => r.event),
        ['client.connected', 'message.received', 'client.disconnected'],
      )
      const none = await logs([t.dir, '--address', '10.9.9.9'])
      assert.equal(none.code, 0)
      assert.equal(none.out, '')
      assert.equal((await logs([t.dir, '--until', '2001-01-01'])).out, '')
      const sinceFuture = await logs([t.dir, '--since', '2999-01-01T00:00:00Z'])
      assert.equal(sinceFuture.out, '')
      // Text output of a text log is the lines as written.
      const text = (await logs(['grep', t.dir, '--event', 'message.received', '--text', 'bob-3']))
        .out
      assert.match(
        text,
        /^\S+Z INFO {2}Message received: bob-3\.+ event=message\.received client=\S+ ip=127\.0\.0\.1 bytes=50\n$/,
      )
    })

    it('tail -n: the last lines across the given files', async () => {
      const r = await logs(['tail', '-n', '3', ...files, '-o', 'json'])
      assert.equal(r.code, 0, r.err)
      const recs = jsonLines(r.out)
      assert.deepEqual(
        recs.map((x) => x.event),
        ['client.rejected', 'server.closing', 'server.closed'],
      )
      // With a filter: the last 2 messages, the first from the rotated file.
      const m = jsonLines(
        (await logs(['tail', '-n', '2', '--event', 'message.received', ...files, '-o', 'json']))
          .out,
      )
      assert.equal(m.length, 2)
      assert.match(m[0].text, /bob-9/)
      assert.match(m[1].text, /needle/)
    })
  })
}

describe('wirelog logs tail --follow', () => {
  it('prints new lines as they are written, also after a rotation', async () => {
    const t = await startServer({ log: { format: 'text' } })
    const c = await connect(t.url)
    c.ws.send('first')
    await c.waitMessages(1)
    await waitFor(() => t.lines().some((l) => l.includes('first')), 'first line on disk')
    const child = runCli([
      'logs',
      'tail',
      '-n',
      '1',
      '--follow',
      '--event',
      'message.received',
      t.logPath,
    ])
    try {
      await waitFor(
        () => child.stdout().includes('Message received: first'),
        'the last line',
        10_000,
      )
      c.ws.send('second')
      await waitFor(() => child.stdout().includes('Message received: second'), 'a new line', 10_000)
      // A line handed over just before the rotation lands in the rotated file: still printed.
      c.ws.send('before-rotation')
      await c.waitMessages(3)
      t.server.activityLog!.rotate()
      c.ws.send('after-rotation')
      await c.waitMessages(4)
      await waitFor(
        () =>
          child.stdout().includes('after-rotation') && child.stdout().includes('before-rotation'),
        'lines from both sides of the rotation',
        10_000,
      )
      const out = child.stdout()
      assert.ok(out.indexOf('before-rotation') < out.indexOf('after-rotation'), out)
      assert.equal(out.split('\n').filter((l) => l.includes('Message received: first')).length, 1)
      assert.match(child.stderr(), /rotated/)
    } finally {
      child.proc.kill('SIGTERM')
      assert.equal(await child.exited, 0)
      c.ws.close()
      await c.closed
      await t.stop()
    }
  })
})

describe('wirelog logs usage', () => {
  it('bad flags exit 2 naming the flag and what it accepts', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--output', 'xml'], /--output: expected one of: text, json, got "xml"/],
      [['tail', '-n', 'ten'], /-n: expected a whole number \(at least 0\), got "ten"/],
      [
        ['--since', 'yesterday'],
        /--since: expected an ISO time .* or a duration ago .*"yesterday"/,
      ],
      [['--level', 'loud'], /--level: expected one of: debug, info, warn, error/],
      [['--folow'], /unknown option --folow \(did you mean --follow\?\)/],
      [['summary', '--follow'], /--follow: only for wirelog logs tail/],
      [['--event'], /--event: needs a value/],
    ]
    for (const [args, re] of cases) {
      const r = await logs(args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`)
      assert.match(r.err, re)
    }
  })

  it('a missing file exits 1 naming it; --help exits 0', async () => {
    const r = await logs(['summary', '/nonexistent/activity.log'])
    assert.equal(r.code, 1)
    assert.match(r.err, /cannot read \/nonexistent\/activity\.log: no such file/)
    const g = await logs(['/nonexistent/dir/*.log'])
    assert.equal(g.code, 1)
    const h = await logs(['tail', '--help'])
    assert.equal(h.code, 0)
    assert.match(h.out, /Usage: wirelog logs/)
    assert.match(h.out, /--follow/)
  })
})
