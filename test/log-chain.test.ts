/**
 * The tamper-evident log (`--log-chain`, `--log-sign-key`) and `wirelog verify-log`: a real
 * server writes a chained, sealed log under load; the untouched log verifies, and every kind
 * of change to it (an edited byte, a deleted or swapped line, a cut tail, a rewritten chain,
 * a rotated file removed or spliced) is found at its line.
 */
import { strict as assert } from 'node:assert'
import { generateKeyPairSync } from 'node:crypto'
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setImmediate as turn } from 'node:timers/promises'
import { createServer } from '../src/index.js'
import { Chain } from '../src/log/chain.js'
import { Sink } from '../src/log/sink.js'
import { linkFiles, verifyFile } from '../src/log/verify.js'
import { logFiles, startLoad, within } from './durability-helpers.js'
import { readLines, runCli, startCli, tempDir, waitFor } from './helpers.js'

const FILE = 'activity.log'

async function verify(args: string[]): Promise<{ code: number | string; out: string }> {
  const c = runCli(['verify-log', ...args])
  const code = await within(c.exited, 20_000, 'verify-log to exit')
  return { code, out: c.stdout() + c.stderr() }
}

const linesOf = (path: string): string[] => {
  const l = readFileSync(path, 'utf8').split('\n')
  l.pop()
  return l
}
const writeLines = (path: string, lines: string[]): void =>
  writeFileSync(path, lines.map((l) => `${l}\n`).join(''))

/** A copy of `files` in a fresh directory (same names). */
const copies: string[] = []
process.on('exit', () => {
  for (const d of copies) rmSync(d, { recursive: true, force: true })
})
function copyOf(files: string[]): string {
  const dir = tempDir('wirelog-chain-copy-')
  copies.push(dir)
  for (const f of files) copyFileSync(f, join(dir, f.slice(f.lastIndexOf('/') + 1)))
  return dir
}

/** Run a chained, sealed server under load; resolves with its log files (oldest first). */
async function loggedRun(
  dir: string,
  keyFile: string,
  log: Record<string, unknown> = {},
): Promise<string[]> {
  const server = createServer({
    host: '127.0.0.1',
    port: 0,
    log: {
      dir,
      file: FILE,
      format: 'json',
      flushInterval: 5,
      chain: true,
      sign: { key: keyFile, every: 50, interval: 0 },
      ...log,
    },
  })
  const addr = await server.listen()
  const load = await startLoad(`ws://127.0.0.1:${addr.port}`, {
    clients: 4,
    window: 4,
    maxPerClient: 150,
  })
  await load.waitEchoes(600, 15_000)
  await load.closeAll()
  await server.close()
  return logFiles(dir, FILE)
}

describe('chained activity log', () => {
  let base: string
  let hmac: string
  let files: string[]
  let lines: string[]
  let path: string

  before(async () => {
    base = tempDir('wirelog-chain-')
    hmac = join(base, 'seal.key')
    writeFileSync(hmac, 'a-secret-of-more-than-sixteen-bytes\n')
    const dir = join(base, 'log')
    mkdirSync(dir)
    files = await loggedRun(dir, hmac)
    assert.equal(files.length, 1)
    path = files[0]!
    lines = linesOf(path)
  })
  after(() => rmSync(base, { recursive: true, force: true }))

  it('writes an anchor, a chain field on every line, seals, and a closing seal', () => {
    assert.ok(lines.length > 600, `${lines.length} lines`)
    const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.equal(recs[0]!.event, 'log.anchor')
    assert.equal(recs[0]!.prev, '0'.repeat(64))
    recs.forEach((r, i) => {
      assert.equal(r.n, i + 1)
      assert.match(String(r.chain), /^[0-9a-f]{64}$/)
    })
    const seals = recs.filter((r) => r.event === 'log.seal')
    assert.ok(seals.length >= 12, `${seals.length} seals`)
    assert.equal(recs.at(-1)!.event, 'log.seal')
    assert.equal(recs.at(-1)!.reason, 'close')
    // The message lines are still plain json with the content in its field.
    assert.ok(recs.some((r) => r.event === 'message.received' && r.data === 'L-c0-m0'))
  })

  it('the untouched log verifies (exit 0), with and without the key', async () => {
    const a = await verify([path])
    assert.equal(a.code, 0, a.out)
    assert.match(a.out, /OK: the chain is intact/)
    const b = await verify(['--key', hmac, '--require-seal', path])
    assert.equal(b.code, 0, b.out)
    assert.match(b.out, /seals: \d+ checked with hmac-sha256/)
  })

  it('one edited byte is found at its line', async () => {
    const k = lines.findIndex((l, i) => i > 300 && l.includes('"message.received"'))
    const copy = [...lines]
    copy[k] = copy[k]!.replace('"data":"L-c', '"data":"X-c')
    const dir = copyOf([])
    writeLines(join(dir, FILE), copy)
    const r = await verify([join(dir, FILE)])
    assert.equal(r.code, 1, r.out)
    assert.match(r.out, new RegExp(`TAMPERED: \\S+${FILE}:${k + 1}: line ${k + 1} was edited`))
  })

  it('a deleted line is found, and named as a deletion', async () => {
    const k = 200
    const copy = lines.filter((_, i) => i !== k)
    const dir = copyOf([])
    writeLines(join(dir, FILE), copy)
    const r = await verify([join(dir, FILE)])
    assert.equal(r.code, 1, r.out)
    assert.match(r.out, new RegExp(`${FILE}:${k + 1}: 1 line deleted before line ${k + 1}`))
  })

  it('two swapped lines are found, and named as out of order', async () => {
    const k = 250
    const copy = [...lines]
    ;[copy[k], copy[k + 1]] = [copy[k + 1]!, copy[k]!]
    const dir = copyOf([])
    writeLines(join(dir, FILE), copy)
    const r = await verify([join(dir, FILE)])
    assert.equal(r.code, 1, r.out)
    assert.match(r.out, new RegExp(`${FILE}:${k + 1}: lines ${k + 1} to ${k + 2} are out of order`))
  })

  it('an inserted copy of a line is found', async () => {
    const k = 120
    const copy = [...lines.slice(0, k), lines[k - 5]!, ...lines.slice(k)]
    const dir = copyOf([])
    writeLines(join(dir, FILE), copy)
    const r = await verify([join(dir, FILE)])
    assert.equal(r.code, 1, r.out)
    assert.match(r.out, new RegExp(`${FILE}:${k + 1}: line ${k + 1} repeats position`))
  })

  it('a cut tail is a warning, and an error with --require-seal; without seals it passes', async () => {
    const dir = copyOf([])
    writeLines(join(dir, FILE), lines.slice(0, -3))
    const plain = await verify([join(dir, FILE)])
    assert.equal(plain.code, 0, plain.out)
    const warned = await verify(['--key', hmac, join(dir, FILE)])
    assert.equal(warned.code, 0, warned.out)
    assert.match(warned.out, /warning: \d+ lines? after the last seal/)
    const strict = await verify(['--key', hmac, '--require-seal', join(dir, FILE)])
    assert.equal(strict.code, 1, strict.out)
    assert.match(strict.out, /after the last seal .* not sealed/)
  })

  it('a chain rewritten from scratch passes without the key but not with it', async () => {
    // A careful forger: new content, every hash redone, the seals' heads updated.
    const forged = new Chain()
    const copy = lines.map((l) => {
      const p = l
        .slice(0, l.lastIndexOf(',"n":'))
        .replace('"data":"L-c1-m7"', '"data":"forged"')
        .replace(/"head":"[0-9a-f]{64}"/, `"head":"${forged.head}"`)
      return forged.line(`${p}}\n`).slice(0, -1)
    })
    const dir = copyOf([])
    writeLines(join(dir, FILE), copy)
    const without = await verify([join(dir, FILE)])
    assert.equal(without.code, 0, without.out)
    const withKey = await verify(['--key', hmac, join(dir, FILE)])
    assert.equal(withKey.code, 1, withKey.out)
    assert.match(withKey.out, /bad seal: its signature is wrong/)
    // Nor can the seals simply be dropped.
    const unsealed = copy.filter((l) => !l.includes('"event":"log.seal"'))
    const f2 = new Chain()
    writeLines(
      join(dir, FILE),
      unsealed.map((l) => f2.line(`${l.slice(0, l.lastIndexOf(',"n":'))}}\n`).slice(0, -1)),
    )
    const dropped = await verify(['--key', hmac, join(dir, FILE)])
    assert.equal(dropped.code, 1, dropped.out)
    assert.match(dropped.out, /no valid seal/)
  })

  it('usage errors exit 2 naming the problem', async () => {
    const a = await verify([])
    assert.equal(a.code, 2)
    assert.match(a.out, /no file given/)
    const b = await verify(['--nope', path])
    assert.equal(b.code, 2)
    const short = join(base, 'short.key')
    writeFileSync(short, 'tiny')
    const c = await verify(['--key', short, path])
    assert.equal(c.code, 2)
    assert.match(c.out, /--key: .* at least 16 bytes/)
  })

  it('a chained text log is refused with a clear config error', async () => {
    const c = runCli(['--log-chain', '--port', '0'])
    assert.equal(await within(c.exited, 10_000, 'exit'), 2)
    assert.match(c.stderr(), /"log.format".*chained log .*needs json/)
  })
})

describe('chain across rotated files', () => {
  let base: string
  let files: string[]
  let edKey: string
  let edPub: string

  before(async () => {
    base = tempDir('wirelog-chain-rot-')
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    edKey = join(base, 'ed.pem')
    edPub = join(base, 'ed.pub.pem')
    writeFileSync(edKey, privateKey.export({ type: 'pkcs8', format: 'pem' }))
    writeFileSync(edPub, publicKey.export({ type: 'spki', format: 'pem' }))
    const dir = join(base, 'log')
    mkdirSync(dir)
    // Size rotation while four clients keep sending.
    files = await loggedRun(dir, edKey, { rotate: { size: 24 * 1024, keep: 50 } })
  })
  after(() => rmSync(base, { recursive: true, force: true }))

  it('rotated files each start with an anchor, end with a seal, and verify as one chain', async () => {
    assert.ok(files.length >= 4, `${files.length} files`)
    for (const f of files) {
      const l = linesOf(f)
      assert.match(l[0]!, /"event":"log\.anchor"/, f)
      assert.match(l.at(-1)!, /"event":"log\.seal"/, f)
    }
    const r = await verify(['--key', edPub, '--require-seal', join(base, 'log')])
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, /seals: \d+ checked with ed25519/)
    assert.match(r.out, /from its genesis/)
  })

  it('orders files by their anchors, not their names', async () => {
    const dir = tempDir('wirelog-chain-names-')
    const names = files.map((_, i) => `zz-${(i * 7919) % 97}.log`)
    for (const [i, f] of files.entries()) copyFileSync(f, join(dir, names[i]!))
    const results = await Promise.all(readdirSync(dir).map((n) => verifyFile(join(dir, n))))
    const { chains, problems } = linkFiles(results)
    assert.deepEqual(problems, [])
    assert.equal(chains.length, 1)
    assert.deepEqual(
      chains[0]!.files.map((f) => f.path),
      names.map((n) => join(dir, n)),
    )
    const r = await verify([dir])
    assert.equal(r.code, 0, r.out)
    rmSync(dir, { recursive: true, force: true })
  })

  it('a rotated file removed from the middle is found', async () => {
    const dir = copyOf(files.filter((_, i) => i !== 1))
    const r = await verify([dir])
    assert.equal(r.code, 1, r.out)
    assert.match(r.out, /a file is missing between/)
    rmSync(dir, { recursive: true, force: true })
  })

  it('two files spliced together (one left out between them) are found at the seam', async () => {
    const dir = tempDir('wirelog-chain-splice-')
    const a = linesOf(files[0]!)
    const c = linesOf(files[2]!)
    writeLines(join(dir, 'spliced.log'), [...a, ...c])
    const r = await verify([join(dir, 'spliced.log')])
    assert.equal(r.code, 1, r.out)
    assert.match(r.out, new RegExp(`spliced\\.log:${a.length + 1}: \\d+ lines deleted before`))
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('chain through the CLI: SIGHUP reopen under load, restart', () => {
  it('logrotate-style rename + SIGHUP while clients send, then a restart on the same file', async () => {
    const dir = tempDir('wirelog-chain-cli-')
    const key = join(dir, '..', `${dir.slice(dir.lastIndexOf('/') + 1)}.key`)
    writeFileSync(key, 'another-secret-of-enough-bytes')
    const args = [
      '--log-dir',
      dir,
      '--log-file',
      FILE,
      '--log-format',
      'json',
      '--log-sign-key',
      key,
      '--log-sign-interval',
      '0.2s',
    ]
    const cli = await startCli(args)
    try {
      const load = await startLoad(`ws://127.0.0.1:${cli.port}`, {
        clients: 3,
        window: 4,
        maxPerClient: 5000,
      })
      await load.waitEchoes(300, 15_000)
      renameSync(join(dir, FILE), join(dir, `${FILE}.1`))
      cli.proc.kill('SIGHUP')
      // The new file appears with its anchor (until then, there is no file at the path).
      await waitFor(
        () => readLines(join(dir, FILE))[0]?.includes('"reason":"reopen"'),
        'the reopened file',
        10_000,
      )
      await load.waitEchoes(load.echoes() + 300, 15_000)
      load.stop()
      await load.settle()
      await load.closeAll()
      cli.proc.kill('SIGTERM')
      assert.equal(await within(cli.exited, 10_000, 'exit'), 0)
    } finally {
      cli.proc.kill('SIGKILL')
    }
    // A second run appends to the same file: its anchor continues the chain.
    const again = await startCli(args)
    again.proc.kill('SIGTERM')
    assert.equal(await within(again.exited, 10_000, 'exit'), 0)
    const cur = linesOf(join(dir, FILE))
    assert.equal(cur.filter((l) => l.includes('"event":"log.anchor"')).length, 2)
    const r = await verify(['--key', key, '--require-seal', dir])
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, new RegExp(`${FILE}\\.1 → \\S+${FILE} `))
    rmSync(dir, { recursive: true, force: true })
    rmSync(key, { force: true })
  })

  it('an existing unchained file is moved aside, so the chained file starts clean', async () => {
    const dir = tempDir('wirelog-chain-old-')
    writeFileSync(join(dir, FILE), 'an old text line\n')
    const server = createServer({
      host: '127.0.0.1',
      port: 0,
      log: { dir, file: FILE, format: 'json', chain: true },
    })
    await server.listen()
    await server.close()
    assert.equal(readFileSync(join(dir, `${FILE}.1`), 'utf8'), 'an old text line\n')
    const r = await verify([join(dir, FILE)])
    assert.equal(r.code, 0, r.out)
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('chain on stdout and per worker', () => {
  it('stdout carries its own chain, which verifies once captured', async () => {
    const dir = tempDir('wirelog-chain-stdout-')
    const cli = await startCli(['--no-log', '--log-stdout', '--log-format', 'json', '--log-chain'])
    const c = await startLoad(`ws://127.0.0.1:${cli.port}`, { clients: 2, maxPerClient: 50 })
    await c.waitEchoes(100, 15_000)
    await c.closeAll()
    cli.proc.kill('SIGTERM')
    assert.equal(await within(cli.exited, 10_000, 'exit'), 0)
    writeFileSync(join(dir, 'stdout.log'), cli.stdout())
    assert.match(cli.stdout(), /^\{[^\n]*"event":"log\.anchor","file":"stdout"/)
    const r = await verify([join(dir, 'stdout.log')])
    assert.equal(r.code, 0, r.out)
    rmSync(dir, { recursive: true, force: true })
  })

  it('with --workers, each worker file (and the primary one) is a chain of its own', async () => {
    const dir = tempDir('wirelog-chain-workers-')
    const cli = await startCli([
      '--workers',
      '2',
      '--log-dir',
      dir,
      '--log-format',
      'json',
      '--log-chain',
    ])
    const c = await startLoad(`ws://127.0.0.1:${cli.port}`, { clients: 4, maxPerClient: 50 })
    await c.waitEchoes(200, 15_000)
    await c.closeAll()
    cli.proc.kill('SIGTERM')
    assert.equal(await within(cli.exited, 15_000, 'exit'), 0)
    const r = await verify([dir])
    assert.equal(r.code, 0, r.out)
    assert.equal(r.out.match(/^chain: /gm)?.length, 3, r.out)
    rmSync(dir, { recursive: true, force: true })
  })
})

describe('a million lines', () => {
  it('written through the chained sink, verify intact', async () => {
    const dir = tempDir('wirelog-chain-big-')
    const path = join(dir, FILE)
    const sink = await Sink.openFile(path, {
      sync: false,
      flushInterval: 50,
      maxBuffer: 64 * 1024 * 1024,
      chain: new Chain(),
    })
    const N = 1_000_000
    const t0 = Date.now()
    for (let i = 0; i < N; ) {
      for (const end = Math.min(N, i + 2000); i < end; i++)
        sink.write(
          `{"level":30,"time":${1764000000000 + i},"pid":1,"hostname":"h","event":"message.received","client":"c${i % 50}","ip":"127.0.0.1","bytes":12,"data":"m-${i}","msg":"Message received: m-${i}"}\n`,
        )
      await turn()
    }
    await sink.close()
    assert.equal(sink.dropped, 0)
    const t1 = Date.now()
    const r = await verifyFile(path)
    const t2 = Date.now()
    assert.deepEqual(r.problems, [])
    assert.equal(r.lines, N + 1)
    assert.equal(r.endN, N + 1)
    process.stdout.write(
      `# ${N + 1} lines: written in ${t1 - t0} ms, verified in ${t2 - t1} ms (${Math.round(r.bytes / 1e6)} MB)\n`,
    )
    rmSync(dir, { recursive: true, force: true })
  })
})
