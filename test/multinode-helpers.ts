/**
 * Several real wirelog processes (the CLI, `dist/cli.js`) on different ports, one Redis.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Child, readLines, startCli, tempDir, waitFor } from './helpers.js'

export interface Node {
  readonly name: string
  readonly child: Child & { port: number }
  readonly url: string
  readonly logPath: string
  /** Parsed json log lines. */
  log(): Array<Record<string, unknown>>
  /** Wait for a json log line whose `event` is `event` (and that `pred` accepts). */
  waitLog(
    event: string,
    pred?: (l: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>
  /** SIGKILL, no cleanup of any kind. */
  kill(): Promise<void>
}

/** A tokens file giving users alice, bob, carol, dave full permissions (token = user name). */
export function tokensFile(dir: string): string {
  const all = { subscribe: ['>'], publish: ['>'], presence: ['>'], history: ['>'], send: true }
  const file = join(dir, 'tokens.json')
  writeFileSync(
    file,
    JSON.stringify({
      tokens: ['alice', 'bob', 'carol', 'dave'].map((u) => ({
        token: `tok-${u}`,
        user: u,
        permissions: all,
      })),
    }),
  )
  return file
}

export async function startNode(
  name: string,
  redisUrl: string,
  prefix: string,
  extra: string[] = [],
): Promise<Node> {
  const dir = tempDir(`wirelog-${name}-`)
  const child = await startCli([
    '--broker',
    'redis',
    '--redis-url',
    redisUrl,
    '--redis-prefix',
    prefix,
    '--behaviour',
    'pubsub',
    '--log-dir',
    dir,
    '--log-format',
    'json',
    '--log-flush-interval',
    '5',
    '--shutdown-timeout',
    '2000',
    ...extra,
  ])
  const logPath = join(dir, 'websocket_activity.log')
  const log = (): Array<Record<string, unknown>> =>
    readLines(logPath).map((l) => JSON.parse(l) as Record<string, unknown>)
  return {
    name,
    child,
    url: `ws://127.0.0.1:${child.port}`,
    logPath,
    log,
    waitLog: (event, pred = () => true, timeoutMs = 10_000) =>
      waitFor(
        () => log().find((l) => l.event === event && pred(l)),
        `${event} in ${name}'s log`,
        timeoutMs,
      ),
    stop: async () => {
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
      child.proc.kill('SIGTERM')
      await child.exited
    },
    kill: async () => {
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
      child.proc.kill('SIGKILL')
      await child.exited
    },
  }
}
