/**
 * `--log-payloads full` and `wirelog replay`: a session recorded by a wirelog server is
 * replayed by the CLI (a real child process) against a fresh wirelog, a raw `ws` echo server
 * and a server that answers differently; the new log must match the recorded one event for
 * event.
 */
import { strict as assert } from 'node:assert'
import { once } from 'node:events'
import { rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { WebSocketServer } from 'ws'
import { createServer, type WirelogOptions } from '../src/index.js'
import { payloadJson } from '../src/webhooks/payload.js'
import { connect, readLines, runCli, tempDir } from './helpers.js'
import { v1 } from './v1.js'

interface Recorder {
  url: string
  /** Close the server (flushing its log) and return the log's parsed lines. */
  finish(): Promise<Line[]>
}

type Line = Record<string, unknown> & { event: string; client?: string; time: number }

const FULL: WirelogOptions['log'] = { format: 'json', payloads: 'full', level: 'debug' }

const dirs: string[] = []
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

async function recorder(log: WirelogOptions['log'] = FULL): Promise<Recorder & { path: string }> {
  const dir = tempDir('wirelog-replay-')
  dirs.push(dir)
  const server = createServer({
    host: '127.0.0.1',
    port: 0,
    log: { dir, file: 'activity.log', flushInterval: 5, ...log },
  })
  const addr = await server.listen()
  const path = join(dir, 'activity.log')
  return {
    url: `ws://127.0.0.1:${addr.port}`,
    path,
    finish: async () => {
      await server.close()
      return readLines(path).map((l) => JSON.parse(l) as Line)
    },
  }
}

const GAP_MS = 600
const BIG_TEXT = `${'x'.repeat(2990)}-end-é`
const BIN = Buffer.from(Array.from({ length: 2000 }, (_, i) => (i * 7) % 256))

/** The session: three clients, text and binary, three ways of closing, one long gap. */
async function recordSession(url: string): Promise<void> {
  const a = await connect(`${url}/room/a?x=1`)
  const b = await connect(`${url}/room/b`)
  const c = await connect(url)
  a.ws.send('hello')
  b.ws.send('héllo\nworld "quoted"')
  b.ws.send(BIG_TEXT)
  c.ws.send(BIN)
  await Promise.all([a.waitMessages(1), b.waitMessages(2), c.waitMessages(1)])
  c.ws.terminate()
  b.ws.close(4001, 'done')
  await new Promise((r) => setTimeout(r, GAP_MS)) // the recorded gap the replay must keep
  a.ws.send(Buffer.from([0, 1, 2, 255]))
  await a.waitMessages(2)
  a.ws.close(1000, 'bye')
  await Promise.all([a.closed, b.closed, c.closed])
}

/** Per client, what happened to it: names, contents, sizes, binary flags, close codes. */
function sequences(lines: readonly Line[]): string[] {
  const per = new Map<string, string[]>()
  for (const l of lines) {
    if (typeof l.client !== 'string' || l.client === 'server') continue
    const s = per.get(l.client) ?? []
    per.set(l.client, s)
    s.push(
      JSON.stringify([
        l.event,
        l.path,
        l.data,
        l.bytes,
        l.binary,
        l.encoding,
        l.truncated,
        l.code,
        l.reason,
      ]),
    )
  }
  return [...per.values()].map((s) => s.join('\n')).sort()
}

/** Client a's messages (path /room/a): their times after `from`, in order. */
function offsets(lines: readonly Line[], from: number): number[] {
  const a = lines.find((l) => l.event === 'client.connected' && l.path === '/room/a?x=1')!
  return lines
    .filter((l) => l.event === 'message.received' && l.client === a.client)
    .map((l) => l.time - from)
}

async function replay(
  args: string[],
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const child = runCli(['replay', ...args])
  const code = await child.exited
  return { code, stdout: child.stdout(), stderr: child.stderr() }
}

function logFile(lines: readonly Line[]): string {
  const dir = tempDir('wirelog-replay-log-')
  dirs.push(dir)
  const path = join(dir, 'recorded.log')
  writeFileSync(path, lines.map((l) => `${JSON.stringify(l)}\n`).join(''))
  return path
}

/** A raw `ws` server: `answer` makes the reply of each message (echo-like by default). */
async function rawServer(
  answer: (data: Buffer, binary: boolean) => string | Buffer,
): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(wss, 'listening')
  wss.on('connection', (ws) => {
    ws.on('message', (data: Buffer, binary) => ws.send(answer(data, binary), { binary }))
    ws.on('error', () => {})
  })
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        for (const c of wss.clients) c.terminate()
        wss.close(() => resolve())
      }),
  }
}

describe('log payloads full', () => {
  test('records every message whole, received and sent, binary as base64', async () => {
    const r = await recorder()
    await recordSession(r.url)
    const lines = await r.finish()
    const got = lines.filter((l) => l.event === 'message.received')
    assert.equal(got.length, 5)
    const big = got.find((l) => l.bytes === Buffer.byteLength(BIG_TEXT))!
    assert.equal(big.data, BIG_TEXT)
    assert.equal(big.truncated, undefined)
    // The sentence stays a preview.
    assert.ok((big.msg as string).length < 400)
    const bin = got.find((l) => l.bytes === BIN.length)!
    assert.equal(bin.binary, true)
    assert.equal(bin.encoding, 'base64')
    assert.ok(Buffer.from(bin.data as string, 'base64').equals(BIN))
    const sent = lines.filter((l) => l.event === 'message.sent')
    assert.equal(sent.length, 5)
    assert.ok(sent.some((l) => l.data === `Echo: ${BIG_TEXT}`))
    assert.ok(sent.some((l) => l.data === 'Echo: héllo\nworld "quoted"'))
  })

  test('--log-payload-max cuts longer messages and marks them truncated', async () => {
    const r = await recorder({ ...FULL, payloadMax: 16 })
    const c = await connect(r.url)
    c.ws.send('é'.repeat(50))
    c.ws.send(Buffer.alloc(40, 7))
    c.ws.send('short')
    await c.waitMessages(3)
    c.ws.close()
    await c.closed
    const lines = await r.finish()
    const got = lines.filter((l) => l.event === 'message.received')
    assert.equal(got[0]!.truncated, true)
    assert.equal(got[0]!.bytes, 100)
    assert.equal(got[0]!.data, 'é'.repeat(8)) // 16 bytes, cut on a character boundary
    assert.equal(got[1]!.truncated, true)
    assert.equal(got[1]!.bytes, 40)
    assert.equal(Buffer.from(got[1]!.data as string, 'base64').length, 16)
    assert.equal(got[2]!.truncated, undefined)
    assert.equal(got[2]!.data, 'short')
    const sent = lines.filter((l) => l.event === 'message.sent')
    assert.equal(sent[0]!.truncated, true)
    assert.equal(sent[2]!.data, 'Echo: short')

    // Cut messages replay padded to their size, and their replies are checked by size.
    const fresh = await recorder()
    const res = await replay([logFile(lines), '--target', fresh.url, '--output', 'json'])
    await fresh.finish()
    assert.equal(res.code, 0, res.stdout + res.stderr)
    assert.equal(JSON.parse(res.stdout).differences.count, 0)
  })

  test('wirelog.v1: fan-out frames are recorded whole, resume tokens redacted', async () => {
    const r = await recorder()
    const c = await v1(r.url)
    await c.call({ op: 'subscribe', topic: 'chat.lobby' })
    await c.call({ op: 'publish', topic: 'chat.lobby', data: { text: 'hi' } })
    await c.next((f) => f.op === 'message', 'the published message')
    await c.close()
    const lines = await r.finish()
    const sent = lines.filter((l) => l.event === 'message.sent').map((l) => l.data as string)
    assert.equal(sent.length, 4)
    assert.ok(!sent[0]!.includes(String(c.welcome.resume)), 'the resume token is not in the log')
    assert.match(sent[0]!, /"resume":"\[redacted\]"/)
    const msg = sent.map((s) => JSON.parse(s)).find((f) => f.op === 'message')
    assert.deepEqual(msg.data, { text: 'hi' })
  })

  test("a sent message's content stays out of webhook bodies", () => {
    const body = JSON.parse(
      payloadJson('ws', 'message.sent', {
        client: { id: 'c1', ip: '127.0.0.1' },
        bytes: 6,
        binary: false,
        data: 'secret',
      }),
    )
    assert.deepEqual(body, {
      client: { id: 'c1', ip: '127.0.0.1', user: null },
      bytes: 6,
      binary: false,
    })
  })

  test('full needs the json format; a bad limit is a usage error', async () => {
    const text = runCli(['--port', '0', '--log-payloads', 'full', '--no-log'])
    assert.equal(await text.exited, 2)
    assert.match(text.stderr(), /--log-format json/)
    const bad = runCli(['--port', '0', '--log-format', 'json', '--log-payload-max', '0'])
    assert.equal(await bad.exited, 2)
    assert.match(bad.stderr(), /--log-payload-max/)
  })
})

describe('wirelog replay', () => {
  let recorded: Line[]
  let file: string

  before(async () => {
    const r = await recorder()
    await recordSession(r.url)
    recorded = await r.finish()
    file = r.path
  })

  test('against a fresh wirelog at speed 1: the new log matches event for event, timing kept', async () => {
    const fresh = await recorder()
    const spawned = Date.now()
    const res = await replay([file, '--target', fresh.url, '--output', 'json'])
    const lines = await fresh.finish()
    assert.equal(res.code, 0, res.stdout + res.stderr)
    const summary = JSON.parse(res.stdout)
    assert.equal(summary.clients.recorded, 3)
    assert.equal(summary.clients.opened, 3)
    assert.equal(summary.messages.sent, 5)
    assert.equal(summary.messages.received, 5)
    assert.equal(summary.differences.count, 0)
    assert.equal(summary.errors.count, 0)
    assert.ok(summary.latencyMs.count === 5 && summary.latencyMs.p99 >= summary.latencyMs.p50)
    assert.deepEqual(sequences(lines), sequences(recorded))

    // Not faster than recorded: every message is sent no earlier than its recorded offset
    // from the first event. The replay starts after `spawned`, so that is a lower bound.
    const first = recorded[0]!.time
    const recordedOffsets = offsets(recorded, first)
    const replayedOffsets = offsets(lines, spawned)
    assert.ok(recordedOffsets.at(-1)! >= GAP_MS, `${recordedOffsets}`)
    for (const [i, o] of recordedOffsets.entries())
      assert.ok(
        replayedOffsets[i]! >= o - 5,
        `message ${i}: replayed at +${replayedOffsets[i]} ms, recorded at +${o} ms`,
      )
    assert.ok(summary.durationMs >= summary.recordedMs - 50)
  })

  test('--speed max is faster than the recording', async () => {
    const fresh = await recorder()
    const res = await replay([file, '--target', fresh.url, '--speed', 'max', '--output', 'json'])
    const lines = await fresh.finish()
    assert.equal(res.code, 0, res.stdout + res.stderr)
    const summary = JSON.parse(res.stdout)
    assert.ok(summary.recordedMs >= GAP_MS)
    assert.ok(
      summary.durationMs < summary.recordedMs,
      `${summary.durationMs} ms vs ${summary.recordedMs}`,
    )
    assert.deepEqual(sequences(lines), sequences(recorded))
  })

  test('against a raw ws echo server: no differences; multiplied clients', async () => {
    const raw = await rawServer((data, binary) =>
      binary ? data : `Echo: ${data.toString('utf8')}`,
    )
    const res = await replay([file, '--target', raw.url, '--speed', 'max', '--multiply', '3'])
    assert.equal(res.code, 0, res.stdout + res.stderr)
    assert.match(res.stdout, /clients +3 × 3: 9 opened, 0 failed/)
    assert.match(res.stdout, /15 sent, 15 received \(15 recorded\)/)
    assert.match(res.stdout, /differences +0/)
    assert.doesNotMatch(res.stderr, /warning/)
    // A recording with gaps says so.
    const gappy = logFile([
      ...recorded,
      { event: 'log.dropped', dropped: 3, time: recorded.at(-1)!.time } as Line,
    ])
    const warned = await replay([gappy, '--target', raw.url, '--speed', 'max'])
    assert.equal(warned.code, 0, warned.stdout + warned.stderr)
    assert.match(warned.stderr, /dropped 3 log lines/)
    await raw.close()
  })

  test('against a server answering differently: differences reported with client and index, exit 1', async () => {
    const raw = await rawServer((data, binary) =>
      binary ? Buffer.concat([data, Buffer.from([9])]) : `Reply: ${data.toString('utf8')}`,
    )
    const res = await replay([file, '--target', raw.url, '--speed', 'max', '--output', 'json'])
    assert.equal(res.code, 1, res.stdout + res.stderr)
    const summary = JSON.parse(res.stdout)
    assert.equal(summary.differences.count, 5)
    const aId = (
      recorded.find((l) => l.event === 'client.connected' && l.path === '/room/a?x=1') as Line
    ).client
    const d = summary.differences.first.find(
      (x: { client: string; index: number }) => x.client === aId && x.index === 1,
    )
    assert.ok(d, JSON.stringify(summary.differences.first))
    assert.equal(d.kind, 'content')
    assert.match(d.expected, /binary 4 bytes 000102ff/)
    assert.match(d.actual, /binary 5 bytes 000102ff09/)
    // Replies that carry ids or times of their own can be checked by count and type only.
    const loose = await replay([file, '--target', raw.url, '--speed', 'max', '--compare', 'none'])
    assert.equal(loose.code, 0, loose.stdout + loose.stderr)
    await raw.close()
    const text = await replay([file, '--target', raw.url.replace(/\d+$/, '1')])
    assert.equal(text.code, 1)
    assert.match(text.stdout, /ECONNREFUSED/)
  })

  test('against a server that does not answer: missing replies after --reply-timeout', async () => {
    // A raw server that never answers: each recorded reply is missing.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await once(wss, 'listening')
    wss.on('connection', (ws) => ws.on('error', () => {}))
    const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`
    const res = await replay([file, '--target', url, '--speed', 'max', '--reply-timeout', '200'])
    for (const c of wss.clients) c.terminate()
    await new Promise((r) => wss.close(r))
    assert.equal(res.code, 1, res.stdout + res.stderr)
    assert.match(res.stdout, /differences +5/)
    assert.match(
      res.stdout,
      /reply #0 missing: expected text 11 bytes "Echo: hello", got nothing before the close/,
    )
  })

  test('--client and --since select what is replayed', async () => {
    const raw = await rawServer((data, binary) =>
      binary ? data : `Echo: ${data.toString('utf8')}`,
    )
    const b = recorded.find((l) => l.event === 'client.connected' && l.path === '/room/b')!
    const one = await replay([file, '--target', raw.url, '--client', b.client!, '--output', 'json'])
    assert.equal(one.code, 0, one.stdout + one.stderr)
    assert.equal(JSON.parse(one.stdout).clients.recorded, 1)
    assert.equal(JSON.parse(one.stdout).messages.sent, 2)
    // After the gap only client a's last message (and its close) remain.
    const lastMsg = recorded.filter((l) => l.event === 'message.received').at(-1)!
    const since = await replay([
      file,
      '--target',
      raw.url,
      '--since',
      new Date(lastMsg.time).toISOString(),
      '--output',
      'json',
    ])
    await raw.close()
    assert.equal(since.code, 0, since.stdout + since.stderr)
    const s = JSON.parse(since.stdout)
    assert.equal(s.clients.recorded, 1)
    assert.equal(s.messages.sent, 1)
    assert.ok(s.durationMs < GAP_MS, `${s.durationMs} ms`)
  })

  test('bad flags and unreadable logs exit 2 naming the flag', async () => {
    const target = 'ws://127.0.0.1:1'
    const textLog = join(tempDir('wirelog-replay-text-'), 'a.log')
    dirs.push(join(textLog, '..'))
    writeFileSync(textLog, '2026-01-01T00:00:00.000Z INFO  Client connected: 1.2.3.4\n')
    const cases: Array<[string[], RegExp]> = [
      [[file], /--target/],
      [[file, '--target', 'http://x'], /--target/],
      [['--target', target], /no log files/],
      [[file, '--target', target, '--speed', '0'], /--speed/],
      [[file, '--target', target, '--speed', 'fast'], /--speed/],
      [[file, '--target', target, '--multiply', '0'], /--multiply/],
      [[file, '--target', target, '--clients-multiplier', 'x'], /--clients-multiplier/],
      [[file, '--target', target, '--output', 'xml'], /--output/],
      [[file, '--target', target, '--compare', 'bytes'], /--compare/],
      [[file, '--target', target, '--since', 'yesterday'], /--since/],
      [[file, '--target', target, '--bogus'], /--bogus/],
      [[textLog, '--target', target], /--log-format json/],
      [[join(textLog, '..', 'missing.log'), '--target', target], /ENOENT/],
    ]
    const results = await Promise.all(cases.map(([args]) => replay(args)))
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 2, `${cases[i]![0].join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, cases[i]![1])
    }
    const help = await replay(['--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /--speed <n\|max>/)
  })
})
