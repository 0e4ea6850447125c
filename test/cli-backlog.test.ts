/**
 * `--backlog` reaches `listen()`. With the server stopped (SIGSTOP) nothing is accepted, so
 * the kernel's accept queue of the listening socket fills up to backlog + 1 connections and
 * refuses the rest (their SYNs go unanswered; the `ListenOverflows` counter counts each).
 * The queue length of a listening socket is its `rx_queue` in /proc/net/tcp: read there, it
 * is an exact observation, no timing involved.
 */
import { strict as assert } from 'node:assert'
import { existsSync, readFileSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { startCli, waitFor } from './helpers.js'

const ATTEMPTS = 20

/** Length of the accept queue of the socket listening on 127.0.0.1:`port`. */
function acceptQueue(port: number): number | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f[1] === local && f[3] === '0A') return Number.parseInt(f[4]!.split(':')[1]!, 16)
  }
  return undefined
}

/** Connections refused because an accept queue was full (this network namespace). */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n')
  const names = lines.find((l) => l.startsWith('TcpExt:'))!.split(/\s+/)
  const values = lines.filter((l) => l.startsWith('TcpExt:'))[1]!.split(/\s+/)
  return Number(values[names.indexOf('ListenOverflows')])
}

const procReadable = existsSync('/proc/net/tcp') && existsSync('/proc/net/netstat')

async function fillQueue(backlog: number): Promise<{ queue: number; connected: number }> {
  const c = await startCli(['--no-log', '--backlog', String(backlog)])
  const sockets: Socket[] = []
  let connected = 0
  try {
    assert.equal(acceptQueue(c.port), 0, 'the listening socket is in /proc/net/tcp')
    c.proc.kill('SIGSTOP')
    const overflowsBefore = listenOverflows()
    for (let i = 0; i < ATTEMPTS; i++) {
      const s = netConnect({ host: '127.0.0.1', port: c.port })
      s.on('error', () => {})
      s.on('connect', () => connected++)
      // Bound the attempt: a SYN the kernel does not answer is retried for minutes otherwise.
      s.setTimeout(15_000, () => s.destroy())
      sockets.push(s)
    }
    const expected = Math.min(backlog + 1, ATTEMPTS)
    const refused = ATTEMPTS - expected
    // Every attempt is either queued or counted as refused (each refusal at least once).
    await waitFor(
      () =>
        connected >= expected &&
        acceptQueue(c.port) === expected &&
        listenOverflows() - overflowsBefore >= refused,
      `${expected} queued connections and ${refused} refused`,
      10_000,
    )
    const queue = acceptQueue(c.port)!
    return { queue, connected }
  } finally {
    for (const s of sockets) s.destroy()
    c.proc.kill('SIGCONT')
    c.proc.kill('SIGTERM')
    assert.equal(await c.exited, 0)
  }
}

describe('cli --backlog', { skip: !procReadable && 'needs /proc/net/tcp' }, () => {
  it('--backlog 5: the kernel queues 6 connections and refuses the rest', async () => {
    const r = await fillQueue(5)
    assert.equal(r.queue, 6)
    assert.ok(r.connected >= 6 && r.connected < ATTEMPTS, `${r.connected} connected`)
  })

  it('--backlog 64: all 20 are queued', async () => {
    const r = await fillQueue(64)
    assert.equal(r.queue, ATTEMPTS)
  })
})
