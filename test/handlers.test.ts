/**
 * Handler modules through the CLI (`--handler`), as real child processes: the example
 * handlers do what their docs say, modules that cannot be loaded stop the start with a line
 * naming the file (exit 1), a handler that throws at run time is `handler.failed` while the
 * server serves on, and modules are set up in the order given and cleaned up in reverse.
 */
import { strict as assert } from 'node:assert'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  type Child,
  connect,
  ROOT,
  readLines,
  runCli,
  startCli,
  tempDir,
  waitFor,
} from './helpers.js'

const EXAMPLES = 'examples/handlers'

interface Line {
  event: string
  msg: string
  level: number
  source?: string
  [k: string]: unknown
}

interface Running extends Child {
  port: number
  url: string
  /** The json activity log, parsed. */
  lines(): Line[]
  /** SIGTERM and the exit code. */
  stop(): Promise<number | string>
}

async function start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Running> {
  const dir = tempDir()
  const file = join(dir, 'websocket_activity.log')
  const c = await startCli(
    ['--log-dir', dir, '--log-format', 'json', '--log-flush-interval', '5', ...args],
    { env },
  )
  return {
    ...c,
    url: `ws://127.0.0.1:${c.port}`,
    lines: () => readLines(file).map((l) => JSON.parse(l) as Line),
    stop: async () => {
      if (c.proc.exitCode === null) c.proc.kill('SIGTERM')
      return c.exited
    },
  }
}

function waitLine(r: Running, pred: (l: Line) => boolean, what: string): Promise<Line> {
  return waitFor(() => r.lines().find(pred), what, 10_000)
}

/** A handler module in a fresh directory outside the repository. */
function moduleFile(name: string, source: string, dir = tempDir('wirelog-handler-')): string {
  const file = join(dir, name)
  writeFileSync(file, source)
  return file
}

describe('example handlers', () => {
  it('case-study.ts logs every message it receives, after the server line', async () => {
    const r = await start(['--handler', `${EXAMPLES}/case-study.ts`])
    try {
      const c = await connect(r.url)
      c.ws.send('Hello Server')
      assert.deepEqual(await c.waitMessages(1), ['Echo: Hello Server'])
      const mine = await waitLine(
        r,
        (l) => l.source === 'case-study',
        'the handler line in the log',
      )
      assert.equal(mine.msg, '[case-study] Message received: Hello Server')
      // The server's own line comes first: its handlers see an event once it is recorded.
      const order = r
        .lines()
        .filter((l) => l.event === 'message.received' || l.source === 'case-study')
        .map((l) => l.event)
      assert.deepEqual(order, ['message.received', 'case-study:log'])
      c.ws.close()
      await c.closed
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('chat-relay.ts sends each message to every other client, not back to the sender', async () => {
    const r = await start(['--behaviour', 'silent', '--handler', `${EXAMPLES}/chat-relay.ts`])
    try {
      const [a, b, c] = await Promise.all([connect(r.url), connect(r.url), connect(r.url)])
      await waitFor(
        () => r.lines().filter((l) => l.event === 'client.connected').length === 3,
        'three clients connected',
      )
      a.ws.send('hi from a')
      assert.deepEqual(await b.waitMessages(1), ['hi from a'])
      assert.deepEqual(await c.waitMessages(1), ['hi from a'])
      b.ws.send(Buffer.from([1, 2, 3]))
      const got = await a.waitMessages(1)
      assert.deepEqual(got, [Buffer.from([1, 2, 3])])
      assert.deepEqual((await c.waitMessages(2))[1], Buffer.from([1, 2, 3]))
      // The sender got nothing of its own: a's only message is b's.
      assert.equal(a.received.length, 1)
      assert.equal(b.received.length, 1)
      for (const x of [a, b, c]) x.ws.close()
      await Promise.all([a.closed, b.closed, c.closed])
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('moderation.ts closes a client using a listed word with 1008, logged; others carry on', async () => {
    const r = await start(['--handler', `${EXAMPLES}/moderation.ts`], {
      MODERATION_WORDS: 'spam, scam',
    })
    try {
      const good = await connect(r.url)
      const bad = await connect(r.url)
      bad.ws.send('buy cheap SPAM!')
      assert.deepEqual(await bad.closed, [1008, 'abusive language'])
      const warn = await waitLine(r, (l) => l.source === 'moderation', 'the moderation line')
      assert.equal(warn.level, 40)
      assert.equal(warn.word, 'spam')
      const gone = await waitLine(
        r,
        (l) => l.event === 'client.disconnected' && l.code === 1008,
        'the disconnect with 1008',
      )
      assert.equal(gone.client, warn.client)
      assert.equal(gone.initiator, 'server')
      // A word inside another word is not the word.
      good.ws.send('a spammer is not spamming')
      assert.deepEqual(await good.waitMessages(1), ['Echo: a spammer is not spamming'])
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('moderation before the relay: the abusive message is not relayed (flag order is handler order)', async () => {
    const r = await start([
      '--behaviour',
      'silent',
      '--handler',
      `${EXAMPLES}/moderation.ts`,
      '--handler',
      `${EXAMPLES}/chat-relay.ts`,
    ])
    try {
      const a = await connect(r.url)
      const b = await connect(r.url)
      a.ws.send('you idiot')
      assert.equal((await a.closed)[0], 1008)
      const c = await connect(r.url)
      c.ws.send('hello')
      assert.deepEqual(await b.waitMessages(1), ['hello'])
      b.ws.close()
      c.ws.close()
      await Promise.all([b.closed, c.closed])
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('the compiled .js of an example works the same (plain JavaScript handler)', async () => {
    const r = await start(['--handler', '.build/examples/handlers/case-study.js'])
    try {
      const c = await connect(r.url)
      c.ws.send('plain')
      await waitLine(
        r,
        (l) => l.msg === '[case-study] Message received: plain',
        'the handler line in the log',
      )
      c.ws.close()
      await c.closed
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })
})

describe('handler modules that cannot be loaded stop the start (exit 1)', () => {
  const fails = async (file: string, expected: RegExp): Promise<void> => {
    const c = runCli(['--host', '127.0.0.1', '--port', '0', '--no-log', '--handler', file])
    assert.equal(await c.exited, 1, c.stderr())
    assert.match(c.stderr(), expected)
    assert.doesNotMatch(c.stderr(), /listening on/)
    assert.equal(c.stderr().trimEnd().split('\n').length, 1, c.stderr())
  }

  it('a missing file', async () => {
    await fails(
      './no/such/handler.js',
      /^wirelog: cannot start: handler \.\/no\/such\/handler\.js: no such file \(\/.*\/no\/such\/handler\.js\)\n$/,
    )
  })

  it('a syntax error, with its line', async () => {
    const f = moduleFile('broken.mjs', 'export default function (server) {\n  const x = ;\n}\n')
    await fails(
      f,
      new RegExp(
        `^wirelog: cannot start: handler ${f}: cannot load: SyntaxError: Unexpected token ';' \\(${f}:2\\)\\n$`,
      ),
    )
  })

  it('a syntax error in TypeScript, with its line and column', async () => {
    // Inside the repository, so the typescript package is found from the handler.
    const dir = mkdtempSync(join(ROOT, '.build', 'handler-'))
    const f = moduleFile('broken.ts', 'const n: number =\nexport default () => {}\n', dir)
    try {
      await fails(f, new RegExp(`handler ${f}: cannot load: SyntaxError: .*\\(${f}:2:1\\)\\n$`))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('no setup function', async () => {
    const f = moduleFile('nothing.mjs', 'export const answer = 42\n')
    await fails(
      f,
      new RegExp(`handler ${f}: exports no setup function \\(.*\\); it exports answer\\n$`),
    )
  })

  it('a setup that throws (or rejects), with where', async () => {
    const f = moduleFile(
      'throws.mjs',
      'export async function setup(server) {\n  throw new Error("no database")\n}\n',
    )
    await fails(f, new RegExp(`handler ${f}: setup failed: no database \\(at ${f}:2:9\\)\\n$`))
  })

  it('a module whose import fails', async () => {
    const f = moduleFile('deps.mjs', "import 'no-such-package-here'\nexport default () => {}\n")
    await fails(
      f,
      new RegExp(`handler ${f}: cannot load: Cannot find package 'no-such-package-here'`),
    )
  })

  it('TypeScript on Node 20 without the typescript package: says how to proceed', async (t) => {
    if ((process.features as { typescript?: unknown }).typescript) {
      t.skip('this Node strips types itself')
      return
    }
    const f = moduleFile('typed.ts', 'export default (server: unknown): void => {}\n')
    await fails(
      f,
      /cannot run TypeScript by itself: compile the handler to \.js first \(tsc\), install the "typescript" package .*--experimental-strip-types/,
    )
  })

  it('a later module failing cleans up the ones already set up', async () => {
    const dir = tempDir('wirelog-handler-')
    const marker = join(dir, 'cleaned')
    const first = moduleFile(
      'first.mjs',
      `import { writeFileSync } from 'node:fs'\nexport default () => () => writeFileSync(${JSON.stringify(marker)}, 'yes')\n`,
      dir,
    )
    const c = runCli([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--no-log',
      '--handler',
      first,
      '--handler',
      join(dir, 'missing.mjs'),
    ])
    assert.equal(await c.exited, 1)
    assert.match(c.stderr(), /handler .*missing\.mjs: no such file/)
    assert.ok(existsSync(marker), 'the first handler was cleaned up')
  })

  it('a file of another kind is a usage error (exit 2) naming the flag', async () => {
    const c = runCli(['--no-log', '--handler', 'handler.txt'])
    assert.equal(await c.exited, 2)
    assert.equal(
      c.stderr(),
      'wirelog: --handler: expected a .js, .mjs, .cjs, .ts or .mts file, got "handler.txt"\n',
    )
  })
})

describe('handlers at run time', () => {
  it('a throwing handler is handler.failed in the log and the server serves on', async () => {
    const f = moduleFile(
      'throwing.mjs',
      `export default (server) => {
  server.events.register('ws', 'message.received', (e) => {
    if (e.data === 'boom') throw new Error('handler exploded')
  })
  server.events.register('ws', 'message.received', async (e) => {
    if (e.data === 'later') throw new Error('async handler exploded')
  })
}
`,
    )
    const r = await start(['--handler', f])
    try {
      const c = await connect(r.url)
      c.ws.send('boom')
      c.ws.send('later')
      c.ws.send('fine')
      assert.deepEqual(await c.waitMessages(3), ['Echo: boom', 'Echo: later', 'Echo: fine'])
      const failed = await waitFor(
        () => {
          const l = r.lines().filter((x) => x.event === 'handler.failed')
          return l.length === 2 ? l : undefined
        },
        'two handler.failed lines',
        10_000,
      )
      assert.deepEqual(
        failed.map((l) => [l.level, l.handler_event, l.error]),
        [
          [50, 'ws:message.received', 'Error: handler exploded'],
          [50, 'ws:message.received', 'Error: async handler exploded'],
        ],
      )
      // Still serving: a new client too.
      const d = await connect(r.url)
      d.ws.send('again')
      assert.deepEqual(await d.waitMessages(1), ['Echo: again'])
      c.ws.close()
      d.ws.close()
      await Promise.all([c.closed, d.closed])
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('modules are set up in flag order (.mjs, .cjs, .js), run in that order, cleaned up in reverse', async () => {
    const dir = tempDir('wirelog-handler-')
    const body = (name: string): string => `
  const log = server.log.child('order')
  log.info('setup ${name}')
  server.events.register('ws', 'message.received', () => log.info('message ${name}'))
  return async () => { await new Promise((r) => setTimeout(r, 5)); log.info('cleanup ${name}') }`
    const a = moduleFile('a.mjs', `export default function (server) {${body('a')}\n}\n`, dir)
    const b = moduleFile('b.cjs', `module.exports = { setup(server) {${body('b')}\n} }\n`, dir)
    const c = moduleFile('c.js', `exports.setup = function (server) {${body('c')}\n}\n`, dir)
    const r = await start(['--handler', b, '--handler', c, '--handler', a])
    const order = (): string[] =>
      r
        .lines()
        .filter((l) => l.source === 'order' || l.event === 'server.closed')
        .map((l) => (l.event === 'server.closed' ? 'closed' : l.msg.replace('[order] ', '')))
    try {
      const client = await connect(r.url)
      client.ws.send('x')
      await waitFor(() => order().length === 6, 'three setup and three message lines')
      client.ws.close()
      await client.closed
    } finally {
      assert.equal(await r.stop(), 0)
    }
    assert.deepEqual(order(), [
      'setup b',
      'setup c',
      'setup a',
      'message b',
      'message c',
      'message a',
      'cleanup a',
      'cleanup c',
      'cleanup b',
      'closed',
    ])
  })

  it('handlers in the config file, and setup sees the server before it listens', async () => {
    const dir = tempDir('wirelog-handler-')
    const f = moduleFile(
      'listen.mjs',
      `export default (server) => {
  const state = server.state
  server.events.register('ws', 'server.listening', (e) => server.log.info('saw listening', { state, port: e.port }))
}
`,
      dir,
    )
    const config = join(dir, 'wirelog.json')
    writeFileSync(config, JSON.stringify({ handlers: [f] }))
    const r = await start(['--config', config])
    try {
      const l = await waitLine(r, (x) => x.msg === '[app] saw listening', 'the handler line')
      assert.equal(l.state, 'NEW')
      assert.equal(l.port, r.port)
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })
})
