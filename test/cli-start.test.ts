/**
 * Starting the CLI: the banner names the address really bound (IPv6 in brackets), start-up
 * failures are one clear line each, and `--version` / `--help` do not load the server.
 */
import { strict as assert } from 'node:assert'
import { existsSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer, type Server } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { connect, runCli, tempDir, waitFor } from './helpers.js'

const LISTENING =
  /^wirelog \S+ listening on (ws:\/\/(\S+):(\d+))(?: \((\S+)\))?(?:, logging to (.+))?$/m

async function startOn(host: string, extra: string[] = []) {
  const c = runCli(['--host', host, '--port', '0', '--no-log', ...extra])
  const m = await waitFor(() => LISTENING.exec(c.stderr()), 'the listening line', 10_000)
  return { ...c, url: m[1]!, host: m[2]!, port: Number(m[3]), named: m[4] }
}

const count = (text: string, word: string): number => text.split(word).length - 1

describe('cli start-up', () => {
  it('shows an IPv6 address in brackets', async () => {
    const c = await startOn('::1')
    try {
      assert.equal(c.host, '[::1]')
      assert.equal(c.named, undefined)
      const client = await connect(c.url)
      client.ws.send('six')
      assert.deepEqual(await client.waitMessages(1), ['Echo: six'])
      client.ws.close()
      await client.closed
    } finally {
      c.proc.kill('SIGTERM')
      assert.equal(await c.exited, 0)
    }
  })

  it('shows the address a host name was bound to, and the name', async () => {
    const c = await startOn('localhost')
    try {
      assert.match(c.host, /^(127\.0\.0\.1|\[::1\])$/)
      assert.equal(c.named, 'localhost')
      const client = await connect(c.url)
      client.ws.close()
      await client.closed
    } finally {
      c.proc.kill('SIGTERM')
      assert.equal(await c.exited, 0)
    }
  })

  it('a port in use: one line, the code once, exit 1', async () => {
    const blocker: Server = createNetServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const port = (blocker.address() as { port: number }).port
    try {
      const c = runCli(['--host', '127.0.0.1', '--port', String(port), '--no-log'])
      assert.equal(await c.exited, 1)
      assert.equal(
        c.stderr(),
        `wirelog: cannot start: cannot listen on 127.0.0.1:${port}: address already in use (EADDRINUSE)\n`,
      )
    } finally {
      blocker.close()
    }
  })

  it('a log directory that cannot be created: one line, the code once, exit 1', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'file'), '')
    const logDir = join(dir, 'file', 'sub')
    const c = runCli(['--host', '127.0.0.1', '--port', '0', '--log-dir', logDir])
    assert.equal(await c.exited, 1)
    assert.equal(
      c.stderr(),
      `wirelog: cannot start: cannot open activity log ${join(logDir, 'websocket_activity.log')}: not a directory (ENOTDIR)\n`,
    )
    assert.equal(count(c.stderr(), 'ENOTDIR'), 1)
  })

  it('--no-log writes no file', async () => {
    const dir = tempDir()
    const c = runCli(['--host', '127.0.0.1', '--port', '0', '--no-log'], { cwd: dir })
    await waitFor(() => LISTENING.test(c.stderr()), 'the listening line', 10_000)
    assert.doesNotMatch(c.stderr(), /logging to/)
    c.proc.kill('SIGTERM')
    assert.equal(await c.exited, 0)
    assert.equal(existsSync(join(dir, 'websocket_activity.log')), false)
  })
})

/** Run the CLI under a loader hook that prints every module Node loads, one per stderr line. */
async function loadedModules(
  args: string[],
): Promise<{ code: number | string; modules: string[]; stdout: string }> {
  const dir = tempDir()
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { writeSync } from 'node:fs'
export async function load(url, context, next) {
  writeSync(2, 'LOADED ' + url + '\\n')
  return next(url, context)
}
`,
  )
  writeFileSync(
    join(dir, 'register.mjs'),
    `import { register } from 'node:module'
register('./hooks.mjs', import.meta.url)
`,
  )
  const c = runCli(args, { env: { NODE_OPTIONS: `--import ${join(dir, 'register.mjs')}` } })
  const code = await c.exited
  const modules = c
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('LOADED '))
    .map((l) => l.slice(7))
  return { code, modules, stdout: c.stdout() }
}

describe('cli start-up cost', () => {
  it('--version loads neither the server nor zod, ws or the options table', async () => {
    const r = await loadedModules(['--version'])
    assert.equal(r.code, 0)
    assert.match(r.stdout, /^\d+\.\d+\.\d+/)
    assert.ok(
      r.modules.some((m) => m.endsWith('/dist/cli.js')),
      'the hook sees the CLI',
    )
    const heavy = r.modules.filter((m) =>
      /\/dist\/(server|config|cli-args)\.js$|\/node_modules\/(ws|zod|sonic-boom)\//.test(m),
    )
    assert.deepEqual(heavy, [])
  })

  it('--help loads the options table but not the server or ws', async () => {
    const r = await loadedModules(['--help'])
    assert.equal(r.code, 0)
    assert.ok(r.modules.some((m) => m.endsWith('/dist/config.js')))
    const heavy = r.modules.filter((m) =>
      /\/dist\/(server|connection-registry|log\/.*)\.js$|\/node_modules\/(ws|sonic-boom)\//.test(m),
    )
    assert.deepEqual(heavy, [])
  })
})
