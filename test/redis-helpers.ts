/**
 * Redis for tests. `sharedRedis()` is the machine's Redis on 127.0.0.1:6379 when one
 * answers (tests use a unique key prefix and delete their keys), else a private server
 * started for this test file. `privateRedis()` starts a server of its own on a free port,
 * for tests that stop, pause or restart it; the machine's Redis is never touched.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import { after } from 'node:test'
import { createClient, type RedisClientType } from '@redis/client'
import { waitFor } from './helpers.js'

/** A free TCP port on 127.0.0.1 (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as { port: number }).port
  await new Promise((r) => srv.close(r))
  return port
}

/** Send one inline command over a raw socket; resolves with the first reply line (or ''). */
export function rawCommand(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port })
    let buf = ''
    const done = (v: string): void => {
      clearTimeout(t)
      s.destroy()
      resolve(v)
    }
    const t = setTimeout(() => done(''), timeoutMs)
    s.on('error', () => done(''))
    s.on('connect', () => s.write(`${command}\r\n`))
    s.on('data', (d) => {
      buf += d.toString()
      const nl = buf.indexOf('\r\n')
      if (nl >= 0) done(buf.slice(0, nl))
    })
  })
}

export interface PrivateRedis {
  readonly port: number
  readonly url: string
  /** A command client (connected lazily). */
  client(): Promise<RedisClientType>
  /** Stop the server (SIGKILL: nothing is saved anyway). */
  stop(): Promise<void>
  /** Start it again on the same port, empty. */
  start(): Promise<void>
  /** Stop for good and close the client. */
  close(): Promise<void>
  readonly running: boolean
}

/** Start a redis-server of our own on a free port (keeps nothing on disk). */
export async function privateRedis(): Promise<PrivateRedis> {
  const port = await freePort()
  let proc: ChildProcess | undefined
  let client: RedisClientType | undefined
  const start = async (): Promise<void> => {
    proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
      ],
      { stdio: 'ignore' },
    )
    const p = proc
    let exited = false
    p.once('exit', () => {
      exited = true
    })
    await waitFor(
      async () => {
        if (exited) throw new Error(`redis-server on port ${port} exited`)
        return (await rawCommand(port, 'PING', 200)) === '+PONG'
      },
      `redis-server on port ${port}`,
      10_000,
    )
  }
  const stop = async (): Promise<void> => {
    const p = proc
    proc = undefined
    if (p === undefined || p.exitCode !== null) return
    const gone = once(p, 'exit')
    p.kill('SIGKILL')
    await gone
  }
  await start()
  const r: PrivateRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async client() {
      if (client === undefined) {
        client = createClient({ url: r.url }) as RedisClientType
        client.on('error', () => {})
        await client.connect()
      }
      return client
    },
    stop,
    start,
    async close() {
      const c = client
      client = undefined
      c?.destroy()
      await stop()
    },
    get running() {
      return proc !== undefined
    },
  }
  return r
}

let shared: Promise<string> | undefined

/**
 * The URL of a Redis that tests may use with their own key prefix: the machine's on 6379
 * when it answers, else one started for this test process (stopped when its tests end).
 */
export function sharedRedis(): Promise<string> {
  shared ??= (async () => {
    if ((await rawCommand(6379, 'PING', 500)) === '+PONG') return 'redis://127.0.0.1:6379'
    const r = await privateRedis()
    after(() => r.close())
    return r.url
  })()
  return shared
}

/** A key prefix no other test run uses. */
export function uniquePrefix(what = 'test'): string {
  return `wirelog-${what}:${process.pid}:${randomBytes(4).toString('hex')}:`
}

/** Delete every key under `prefix`. */
export async function deletePrefix(url: string, prefix: string): Promise<void> {
  const c = createClient({ url }) as RedisClientType
  c.on('error', () => {})
  await c.connect()
  try {
    let cursor = '0'
    do {
      const r = (await c.sendCommand([
        'SCAN',
        cursor,
        'MATCH',
        `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`,
        'COUNT',
        '1000',
      ])) as [string, string[]]
      cursor = r[0]
      if (r[1].length > 0) await c.sendCommand(['DEL', ...r[1]])
    } while (cursor !== '0')
  } finally {
    c.destroy()
  }
}
