/**
 * What a default `wirelog` start loads: optional subsystems (JWT through jose, the Redis
 * client, NATS, proxy-addr, node:cluster's worker code) load only when configured, so the
 * server is listening sooner. A module hook in the CLI's own process records every module it
 * loads (ESM through a load hook, CommonJS through `require.cache` at exit).
 */
import { strict as assert } from 'node:assert'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { connect, runCli, tempDir, waitFor } from './helpers.js'
import { v1 } from './v1.js'

/** Optional: none of these may load unless configured. */
const OPTIONAL =
  /\/node_modules\/(jose|@redis\/client|nats|proxy-addr)\/|\/dist\/(auth\/jwt|cluster)\.js$/

function hooks(dir: string): string {
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs'
export async function load(url, context, next) {
  appendFileSync(process.env.WIRELOG_TEST_MODULES, url + '\\n')
  return next(url, context)
}
`,
  )
  writeFileSync(
    join(dir, 'register.mjs'),
    `import { appendFileSync } from 'node:fs'
import { createRequire, register } from 'node:module'
register('./hooks.mjs', import.meta.url)
const cache = createRequire(import.meta.url).cache
process.on('exit', () => {
  appendFileSync(process.env.WIRELOG_TEST_MODULES, Object.keys(cache).join('\\n') + '\\n')
})
`,
  )
  return join(dir, 'register.mjs')
}

/**
 * Start the CLI with `args`, echo one message (or run `exercise` with the port), stop it;
 * every module it loaded.
 */
async function modulesOfStart(
  args: string[],
  send: boolean | ((port: number) => Promise<void>) = true,
): Promise<string[]> {
  const dir = tempDir('wirelog-startup-')
  const list = join(dir, 'modules.txt')
  writeFileSync(list, '')
  const c = runCli(['--host', '127.0.0.1', '--port', '0', '--log-dir', dir, ...args], {
    env: { NODE_OPTIONS: `--import ${hooks(dir)}`, WIRELOG_TEST_MODULES: list },
  })
  try {
    const m = await waitFor(
      () => /listening on ws:\/\/[^:]+:(\d+)/.exec(c.stderr()),
      'the listening line',
      10_000,
    )
    if (typeof send === 'function') await send(Number(m[1]))
    else if (send) {
      // The first connection and message run paths the banner does not.
      const client = await connect(`ws://127.0.0.1:${m[1]}`)
      client.ws.send('hi')
      assert.deepEqual(await client.waitMessages(1), ['Echo: hi'])
      client.ws.close()
      await client.closed
    }
  } finally {
    c.proc.kill('SIGTERM')
  }
  assert.equal(await c.exited, 0, c.stderr())
  const { readFileSync } = await import('node:fs')
  return readFileSync(list, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^file:\/\//, ''))
}

describe('start-up loads only what is configured', () => {
  it('a default start loads neither jose, @redis/client, nats, proxy-addr nor cluster code', async () => {
    const modules = await modulesOfStart([])
    assert.ok(
      modules.some((m) => m.endsWith('/dist/server.js')),
      'the hook sees the server',
    )
    assert.ok(
      modules.some((m) => /\/node_modules\/ws\//.test(m)),
      'the hook sees CommonJS packages',
    )
    assert.deepEqual(
      modules.filter((m) => OPTIONAL.test(m)),
      [],
    )
    // The slow paths of two dependencies it does use: zod's v4 API (with all its locales,
    // ~45 ms; the schemas use zod/v3) and ws's ES-module wrapper (an export scan, ~14 ms).
    assert.ok(
      modules.some((m) => /\/node_modules\/zod\/v3\//.test(m)),
      'zod/v3 is loaded',
    )
    assert.deepEqual(
      modules.filter((m) => /\/node_modules\/zod\/v4\/|\/node_modules\/ws\/wrapper\.mjs$/.test(m)),
      [],
    )
  })

  it('the first wirelog.v1 frames load the frame schema and are answered in order', async () => {
    const modules = await modulesOfStart([], async (port) => {
      const c = await v1(`ws://127.0.0.1:${port}`)
      // Sent together, before the schema can have loaded: each waits for it, in order.
      c.send({ op: 'subscribe', topic: 'first', id: 'a' })
      c.send({ op: 'publish', topic: 'first', data: 1, id: 'b' })
      c.send({ op: 'publish', topic: 5, id: 'c' })
      c.send({ op: 'ping', id: 'd' })
      await c.next((f) => f.id === 'd', 'the answer to the last frame')
      const answers = c.frames.filter((f) => typeof f.id === 'string').map((f) => [f.id, f.op])
      assert.deepEqual(answers, [
        ['a', 'ack'],
        ['b', 'ack'],
        ['c', 'error'],
        ['d', 'pong'],
      ])
      assert.match(String(c.frames.find((f) => f.id === 'c')?.message), /topic/)
      assert.ok(c.frames.some((f) => f.op === 'message' && f.topic === 'first'))
      c.ws.close()
    })
    assert.ok(
      modules.some((m) => /\/node_modules\/zod\/v4\//.test(m)),
      'the schema (zod v4) is loaded',
    )
  })

  it('JWT authentication loads jose (the hook sees a lazy load)', async () => {
    const dir = tempDir('wirelog-startup-key-')
    const key = join(dir, 'hs256.key')
    writeFileSync(key, 'a-secret-that-is-at-least-32-characters-long')
    const modules = await modulesOfStart(['--auth', 'jwt', '--jwt-key', key], false)
    assert.ok(
      modules.some((m) => /\/node_modules\/jose\//.test(m)),
      'jose is loaded',
    )
    assert.deepEqual(
      modules.filter((m) => /\/node_modules\/(@redis\/client|nats)\//.test(m)),
      [],
    )
  })
})
