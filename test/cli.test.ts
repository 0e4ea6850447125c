import { strict as assert } from 'node:assert'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { OPTIONS } from '../src/config.js'
import { helpBlocks } from './cli-helpers.js'
import { connect, ROOT, readLines, runCli, startCli, tempDir, waitForLine } from './helpers.js'

describe('cli', () => {
  it('--help lists every option with its placeholder, default and environment variable', async () => {
    const c = runCli(['--help'], { env: { COLUMNS: '80' } })
    assert.equal(await c.exited, 0)
    const blocks = helpBlocks(c.stdout())
    for (const o of OPTIONS) {
      const block = blocks.get(o.flag)
      assert.ok(block, `--help mentions ${o.flag}`)
      assert.equal(block.arg, o.arg, `${o.flag} placeholder`)
      assert.match(block.text, /\(default: [^;]+; env WIRELOG_[A-Z_]+\)$/, block.text)
      assert.ok(block.text.includes(`env ${o.env})`), block.text)
    }
    assert.match(blocks.get('--port')!.text, /^TCP port .*\(default: 8080; env WIRELOG_PORT\)$/)
    assert.match(blocks.get('--host')!.text, /\(default: "0\.0\.0\.0"/)
    assert.match(blocks.get('--log-file')!.text, /\(default: "websocket_activity\.log"/)
    assert.match(blocks.get('--echo-prefix')!.text, /\(default: "Echo: "; env/)
    assert.doesNotMatch(c.stdout(), /<value>/)
  })

  it('--version prints the package version', async () => {
    const c = runCli(['--version'])
    assert.equal(await c.exited, 0)
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    assert.equal(c.stdout().trim(), pkg.version)
  })

  const bad: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['--port', '99999'], {}, /--port: expected an integer from 0 to 65535, got "99999"/],
    [['--port', 'abc'], {}, /--port: expected an integer from 0 to 65535, got "abc"/],
    [['--log-format', 'xml'], {}, /--log-format: expected one of: text, json, plain, got "xml"/],
    [['--bogus'], {}, /unknown option --bogus/],
    [['--log-sync=maybe'], {}, /--log-sync: expected true or false, got "maybe"/],
    [['--port'], {}, /--port: missing value/],
    [
      [],
      { WIRELOG_PORT: '70000' },
      /WIRELOG_PORT: expected an integer from 0 to 65535, got "70000"/,
    ],
    [
      [],
      { WIRELOG_LOG_FORMAT: 'yaml' },
      /WIRELOG_LOG_FORMAT: expected one of: text, json, plain, got "yaml"/,
    ],
    // Numbers state the range the schema accepts.
    [
      ['--max-payload', '0'],
      {},
      /--max-payload: expected a whole number of bytes \(at least 1\), got "0"/,
    ],
    [
      ['--shutdown-timeout', '-1'],
      {},
      /--shutdown-timeout: expected a whole number of milliseconds from 0 to 600000, got "-1"/,
    ],
    [
      [],
      { WIRELOG_TIMEOUT: 'soon' },
      /WIRELOG_TIMEOUT: expected a number of seconds from 0 to 86400, got "soon"/,
    ],
    // `--no-*` takes no value: `--no-log=false` must not turn the log off.
    [
      ['--no-log=false'],
      {},
      /--no-log: takes no value, got "false" \(use --log-enabled=true or --log-enabled=false\)/,
    ],
    [['--no-log-sync=true'], {}, /--no-log-sync: takes no value/],
    [['--no-bogus'], {}, /unknown option --no-bogus/],
    // An unknown flag is an error even next to --help, with the nearest flag.
    [['--help', '--bogus'], {}, /^wirelog: unknown option --bogus \(see --help\)$/m],
    [
      ['--help', '--max-paylod', '5'],
      {},
      /unknown option --max-paylod \(did you mean --max-payload\?\)/,
    ],
    [
      ['--version', '--log-fromat=json'],
      {},
      /unknown option --log-fromat \(did you mean --log-format\?\)/,
    ],
    [['--format', 'json'], {}, /unknown option --format \(did you mean --log-format\?\)/],
  ]
  for (const [args, env, message] of bad) {
    it(`exits 2 naming the problem: ${[...args, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ')}`, async () => {
      // On loopback port 0, so a line that wrongly starts the server collides with nothing; it
      // is then killed instead of hanging the test.
      const c = runCli(args, {
        env: { WIRELOG_HOST: '127.0.0.1', WIRELOG_PORT: '0', ...env },
        cwd: tempDir(),
      })
      c.proc.stderr!.on('data', () => {
        if (c.stderr().includes('listening on')) c.proc.kill('SIGKILL')
      })
      const code = await c.exited
      assert.equal(code, 2, c.stderr())
      assert.match(c.stderr(), message)
      assert.equal(c.stdout(), '', 'no help or version on stdout')
    })
  }

  it('exits 1 with the path when the log file cannot be opened', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'not-a-dir'), '')
    const c = runCli([
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--log-dir',
      join(dir, 'not-a-dir', 'sub'),
    ])
    assert.equal(await c.exited, 1)
    assert.match(
      c.stderr(),
      new RegExp(
        `cannot open activity log ${join(dir, 'not-a-dir', 'sub', 'websocket_activity.log').replace(/[/.]/g, '\\$&')}`,
      ),
    )
  })

  it('takes settings from WIRELOG_* environment variables and a config file; flags win', async () => {
    const dir = tempDir()
    const cfgFile = join(dir, 'wirelog.json')
    writeFileSync(cfgFile, JSON.stringify({ echoPrefix: 'FILE: ', log: { format: 'json' } }))
    const c = await startCli(['--config', cfgFile, '--log-format', 'plain'], {
      env: { WIRELOG_LOG_DIR: dir, WIRELOG_LOG_FILE: 'env.log', WIRELOG_ECHO_PREFIX: 'ENV: ' },
    })
    try {
      const client = await connect(`ws://127.0.0.1:${c.port}`)
      client.ws.send('hi')
      assert.deepEqual(await client.waitMessages(1), ['ENV: hi'])
      client.ws.close()
      await waitForLine(join(dir, 'env.log'), /^Client disconnected: 127\.0\.0\.1$/)
    } finally {
      c.proc.kill('SIGTERM')
      assert.equal(await c.exited, 0)
    }
  })

  it('starts with defaults in the working directory and writes websocket_activity.log', async () => {
    const dir = tempDir()
    const c = await startCli([], { cwd: dir })
    try {
      assert.match(
        c.stderr(),
        /^wirelog \S+ listening on ws:\/\/127\.0\.0\.1:\d+, logging to .*websocket_activity\.log$/m,
      )
      const client = await connect(`ws://127.0.0.1:${c.port}`)
      client.ws.send('Hello Server')
      assert.deepEqual(await client.waitMessages(1), ['Echo: Hello Server'])
      client.ws.close()
      await client.closed
    } finally {
      c.proc.kill('SIGINT')
      assert.equal(await c.exited, 0)
    }
    const lines = readLines(join(dir, 'websocket_activity.log'))
    for (const s of [
      'Client connected: 127.0.0.1',
      'Message received: Hello Server',
      'Client disconnected: 127.0.0.1',
    ]) {
      assert.ok(
        lines.some((l) => l.includes(` ${s} `)),
        `log has "${s}"`,
      )
    }
  })

  it('--log-stdout writes activity lines to stdout', async () => {
    const c = await startCli(['--no-log', '--log-stdout', '--log-format', 'plain'])
    try {
      const client = await connect(`ws://127.0.0.1:${c.port}`)
      client.ws.send('to stdout')
      await client.waitMessages(1)
      client.ws.close()
      await client.closed
    } finally {
      c.proc.kill('SIGTERM')
      assert.equal(await c.exited, 0)
    }
    const out = c.stdout().split('\n')
    assert.ok(out.includes('Message received: to stdout'), c.stdout())
    assert.ok(out.includes('Client disconnected: 127.0.0.1'), c.stdout())
  })
})
