/**
 * `wirelog replay <log files…> --target ws://host:port`: play a recorded json activity log
 * against a WebSocket server (any server, not only wirelog) and check that it answers as it
 * did in the recording. See docs/replay.md.
 */
import { parseArgs } from 'node:util'
import type { Tool } from './index.js'
import { LogFormatError, type Recording, readRecording } from './replay-log.js'
import { type CompareMode, Replay, type ReplaySummary } from './replay-run.js'

const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2

const USAGE = `Usage: wirelog replay <log files…> --target ws://host:port [options]

Re-opens one connection per client recorded in a json activity log (--log-format json;
--log-payloads full records every message whole) and sends each recorded message at its
recorded time. Replies are checked against the recorded message.sent lines (written at
--log-level debug): content where recorded whole, else size.

Options:
  --target <url>              server to replay against (ws:// or wss://), required
  --speed <n|max>             times faster than recorded (default 1; max = no waiting)
  --client <id>               only this recorded client (repeatable)
  --since <time>              only events at or after this time (ISO 8601 or ms since epoch)
  --until <time>              only events at or before this time
  --clients-multiplier <n>    open n connections per recorded client (alias --multiply)
  --reply-timeout <ms>        how long to wait for missing replies at the end (default 2000)
  --compare <mode>            content (default: content where recorded whole, else size),
                              size (size and text/binary only), none (count and type only)
  --output <text|json>        summary format on stdout (default text)
  -h, --help                  this help

Exit status: 0 no differences, 1 differences or errors, 2 bad usage.`

class UsageError extends Error {}

interface Args {
  files: string[]
  target: string
  speed: number
  clients: string[]
  since: number | undefined
  until: number | undefined
  multiplier: number
  replyTimeout: number
  compare: CompareMode
  output: 'text' | 'json'
}

function parse(argv: readonly string[]): Args | 'help' {
  const parsed = (() => {
    try {
      return parseArgs({ args: [...argv], options: SPEC, allowPositionals: true, strict: true })
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
  })()
  const v = parsed.values
  if (v.help) return 'help'
  const files = parsed.positionals
  if (files.length === 0) throw new UsageError('no log files given (wirelog replay <log files…>)')
  if (v.target === undefined) throw new UsageError('--target: required (ws://host:port)')
  let target: URL
  try {
    target = new URL(v.target)
  } catch {
    throw new UsageError(
      `--target: expected a ws:// or wss:// URL, got ${JSON.stringify(v.target)}`,
    )
  }
  if (target.protocol !== 'ws:' && target.protocol !== 'wss:')
    throw new UsageError(
      `--target: expected a ws:// or wss:// URL, got ${JSON.stringify(v.target)}`,
    )
  if (v['clients-multiplier'] !== undefined && v.multiply !== undefined)
    throw new UsageError('--clients-multiplier and --multiply are the same option: give one')
  const output = v.output ?? 'text'
  if (output !== 'text' && output !== 'json')
    throw new UsageError(`--output: expected one of: text, json, got ${JSON.stringify(output)}`)
  const compare = v.compare ?? 'content'
  if (compare !== 'content' && compare !== 'size' && compare !== 'none')
    throw new UsageError(
      `--compare: expected one of: content, size, none, got ${JSON.stringify(compare)}`,
    )
  return {
    files,
    target: target.href,
    speed: speedOf(v.speed),
    clients: v.client ?? [],
    since: timeOf('--since', v.since),
    until: timeOf('--until', v.until),
    multiplier: intOf(
      v['clients-multiplier'] !== undefined ? '--clients-multiplier' : '--multiply',
      v['clients-multiplier'] ?? v.multiply,
      1,
      1,
      100_000,
    ),
    replyTimeout: intOf('--reply-timeout', v['reply-timeout'], 2000, 0, 3_600_000),
    compare,
    output,
  }
}

const SPEC = {
  target: { type: 'string' },
  speed: { type: 'string' },
  client: { type: 'string', multiple: true },
  since: { type: 'string' },
  until: { type: 'string' },
  'clients-multiplier': { type: 'string' },
  multiply: { type: 'string' },
  'reply-timeout': { type: 'string' },
  compare: { type: 'string' },
  output: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

function speedOf(s: string | undefined): number {
  if (s === undefined) return 1
  if (s === 'max') return Infinity
  const n = Number(s)
  if (s.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new UsageError(`--speed: expected a number above 0 or max, got ${JSON.stringify(s)}`)
  return n
}

function intOf(
  flag: string,
  s: string | undefined,
  dflt: number,
  min: number,
  max: number,
): number {
  if (s === undefined) return dflt
  const n = Number(s)
  if (!/^\d+$/.test(s) || n < min || n > max)
    throw new UsageError(
      `${flag}: expected an integer from ${min} to ${max}, got ${JSON.stringify(s)}`,
    )
  return n
}

function timeOf(flag: string, s: string | undefined): number | undefined {
  if (s === undefined) return undefined
  const t = /^\d+$/.test(s) ? Number(s) : /^\d{4}-\d\d-\d\d/.test(s) ? Date.parse(s) : Number.NaN
  if (!Number.isFinite(t))
    throw new UsageError(
      `${flag}: expected an ISO 8601 time (2026-01-02T03:04:05Z) or milliseconds since the epoch, got ${JSON.stringify(s)}`,
    )
  return t
}

async function run(argv: readonly string[]): Promise<number> {
  let args: Args | 'help'
  try {
    args = parse(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`wirelog replay: ${err.message}\nTry: wirelog replay --help\n`)
    return EXIT_USAGE
  }
  if (args === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return EXIT_OK
  }
  let rec: Recording
  try {
    rec = await readRecording(args.files, {
      clients: args.clients,
      since: args.since,
      until: args.until,
    })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    process.stderr.write(
      `wirelog replay: ${e instanceof LogFormatError || e.code ? e.message : e}\n`,
    )
    return EXIT_USAGE
  }
  if (rec.clients.length === 0) {
    process.stderr.write(
      'wirelog replay: no client in these files (and filters) to replay: no client.connected line\n',
    )
    return EXIT_USAGE
  }
  if (rec.dropped > 0)
    process.stderr.write(
      `wirelog replay: warning: the recording server dropped ${rec.dropped} log lines (log.dropped): expect differences where they were\n`,
    )
  if (!rec.hasSentLines)
    process.stderr.write(
      'wirelog replay: warning: no message.sent lines recorded (record with --log-level debug): replies are counted, not checked\n',
    )
  const replay = new Replay(rec, {
    target: args.target,
    speed: args.speed,
    multiplier: args.multiplier,
    replyTimeout: args.replyTimeout,
    compare: args.compare,
  })
  const progress = process.stderr.isTTY ? startProgress(replay) : undefined
  const summary = await replay.run()
  progress?.()
  process.stdout.write(
    args.output === 'json' ? `${JSON.stringify(summary)}\n` : textSummary(summary, args.files),
  )
  return summary.errors.count > 0 || summary.differences.count > 0 ? EXIT_FAILED : EXIT_OK
}

/** A progress line on stderr, rewritten in place; returns the function that clears it. */
function startProgress(replay: Replay): () => void {
  const start = Date.now()
  const draw = () => {
    const c = replay.counters
    const s = ((Date.now() - start) / 1000).toFixed(1)
    process.stderr.write(
      `\r\x1b[Kreplay ${s}s: ${c.open} open / ${c.clients} clients, ${c.sent} sent, ${c.received}/${c.expected} received, ${c.differences} differences, ${c.errors} errors`,
    )
  }
  const timer = setInterval(draw, 250)
  return () => {
    clearInterval(timer)
    process.stderr.write('\r\x1b[K')
  }
}

function textSummary(s: ReplaySummary, files: readonly string[]): string {
  const out: string[] = []
  const copies = s.multiplier > 1 ? ` × ${s.multiplier}` : ''
  out.push(
    `replay of ${files.length === 1 ? files[0] : `${files.length} files`} against ${s.target} (speed ${s.speed})`,
    `  clients      ${s.clients.recorded}${copies}: ${s.clients.opened} opened, ${s.clients.failed} failed`,
    `  messages     ${s.messages.sent} sent, ${s.messages.received} received${s.repliesChecked ? ` (${s.messages.expected} recorded)` : ' (replies not checked: no message.sent lines recorded)'}`,
    `  errors       ${s.errors.count}`,
    `  latency      ${s.latencyMs ? `p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms (reply after send, ${s.latencyMs.count} replies)` : 'n/a'}`,
    `  differences  ${s.differences.count}`,
    `  time         ${s.durationMs} ms (recorded ${s.recordedMs} ms)`,
  )
  for (const e of s.errors.first) out.push(`error: ${e}`)
  for (const d of s.differences.first)
    out.push(
      `difference: client ${d.client} ${d.index >= 0 ? `reply #${d.index}` : 'close'} ${d.kind}: expected ${d.expected}, got ${d.actual}`,
    )
  const more = s.differences.count - s.differences.first.length
  if (more > 0) out.push(`… and ${more} more differences`)
  return `${out.join('\n')}\n`
}

export const tool: Tool = {
  summary: 'replay a recorded json activity log against a WebSocket server and check its replies',
  run,
}
