import { strict as assert } from 'node:assert'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { OPTIONS } from '../src/config.js'
import { connect, ROOT, readLines, runCli, startCli, tempDir, waitForLine } from './helpers.js'

describe('cli', () => {
  it('--help lists every option with its default and environment variable', async () => {
    const c = runCli(['--help'])
    assert.equal(await c.exited, 0)
    const help = c.stdout()
    for (const o of OPTIONS) {
      const line = help
        .split('\n')
        .find((l) => l.trimStart().startsWith(`${o.flag} `) || l.trim() === o.flag)
      assert.ok(line, `--help mentions ${o.flag}`)
      assert.match(line!, /\(default: [^;]+; env WIRELOG_[A-Z_]+\)/, line)
    }
    assert.match(help, /--port <value> +TCP port .*\(default: 8080; env WIRELOG_PORT\)/)
    assert.match(help, /--host <value> +.*\(default: "0\.0\.0\.0"/)
    assert.match(help, /--log-file <value> +.*\(default: "websocket_activity\.log"/)
  })

  it('--version prints the package version', async () => {
    const c = runCli(['--version'])
    assert.equal(await c.exited, 0)
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    assert.equal(c.stdout().trim(), pkg.version)
  })

  const bad: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['--port', '99999'], {}, /--port: expected an integer from 0 to 65535, got 99999/],
    [['--port', 'abc'], {}, /--port: expected an integer from 0 to 65535, got "abc"/],
    [['--log-format', 'xml'], {}, /--log-format: expected one of: text, json, plain, got "xml"/],
    [['--bogus'], {}, /unknown option --bogus/],
    [['--log-sync=maybe'], {}, /--log-sync: expected true or false, got "maybe"/],
    [['--port'], {}, /--port: missing value/],
    [[], { WIRELOG_PORT: '70000' }, /WIRELOG_PORT: expected an integer from 0 to 65535, got 70000/],
    [
      [],
      { WIRELOG_LOG_FORMAT: 'yaml' },
      /WIRELOG_LOG_FORMAT: expected one of: text, json, plain, got "yaml"/,
    ],
  ]
  for (const [args, env, message] of bad) {
    it(`exits 2 naming the problem: ${[...args, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ')}`, async () => {
      const c = runCli(args, { env })
      assert.equal(await c.exited, 2)
      assert.match(c.stderr(), message)
      assert.equal(c.stdout(), '')
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
        /listening on ws:\/\/127\.0\.0\.1:\d+, logging to .*websocket_activity\.log/,
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
