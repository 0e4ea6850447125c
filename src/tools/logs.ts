/**
 * `wirelog logs`: read the activity log (text or json, rotated files included).
 *
 *   wirelog logs [grep] [filters] [files…]   matching lines
 *   wirelog logs tail [-n N] [--follow] …    the last N matching lines, then new ones
 *   wirelog logs summary [filters] [files…]  connections, traffic, top talkers, codes
 *
 * Files are streamed through a fixed buffer, never loaded whole. Exit codes: 0 done, 1 a
 * file cannot be read, 2 bad usage.
 */
import { resolve } from 'node:path'
import { jsonValue } from '../log/escape.js'
import type { Tool } from './index.js'
import { defaultFiles, eachLine, FileError, follow, lastLines, resolveFiles } from './log-files.js'
import {
  buildFilter,
  emptyFilter,
  type FilterSpec,
  parseTime,
  TIME_ACCEPTS,
  UsageError,
} from './log-filter.js'
import { type Level, type LogRecord, parseLine, toJsonLine, toTextLine } from './log-record.js'

type Command = 'grep' | 'tail' | 'summary'
const COMMANDS: readonly Command[] = ['grep', 'tail', 'summary']

interface Options {
  command: Command
  files: string[]
  filter: FilterSpec
  output: 'text' | 'json'
  lines: number
  follow: boolean
  top: number
  config: string | undefined
  help: boolean
}

interface FlagSpec {
  names: readonly string[]
  arg?: string
  help: string
  /** Subcommands it applies to (all when absent). */
  only?: readonly Command[]
  set(o: Options, value: string, flag: string): void
}

const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error']

function list(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
}

function count(flag: string, v: string, min: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min)
    throw new UsageError(
      `${flag}: expected a whole number (at least ${min}), got ${JSON.stringify(v)}`,
    )
  return Number(v)
}

function nonEmpty(flag: string, v: string, what: string): string[] {
  const l = list(v)
  if (l.length === 0) throw new UsageError(`${flag}: expected ${what}, got an empty value`)
  return l
}

const FLAGS: readonly FlagSpec[] = [
  {
    names: ['--event', '-e'],
    arg: '<pattern>',
    help: 'events to keep: client.*, message.received, *.error, app:* (repeat or a,b)',
    set: (o, v, f) => o.filter.events.push(...nonEmpty(f, v, 'an event name or pattern')),
  },
  {
    names: ['--client', '-c'],
    arg: '<id>',
    help: 'connection ids (patterns allowed)',
    set: (o, v, f) => o.filter.clients.push(...nonEmpty(f, v, 'a client id')),
  },
  {
    names: ['--address', '--ip'],
    arg: '<ip>',
    help: 'client addresses (10.0.0.*)',
    set: (o, v, f) => o.filter.addresses.push(...nonEmpty(f, v, 'an address')),
  },
  {
    names: ['--user', '-u'],
    arg: '<user>',
    help: 'user ids of authenticated clients',
    set: (o, v, f) => o.filter.users.push(...nonEmpty(f, v, 'a user id')),
  },
  {
    names: ['--since'],
    arg: '<time>',
    help: `from this time on: ${TIME_ACCEPTS}`,
    set: (o, v, f) => {
      o.filter.since = parseTime(f, v)
    },
  },
  {
    names: ['--until'],
    arg: '<time>',
    help: 'before this time (same forms as --since)',
    set: (o, v, f) => {
      o.filter.until = parseTime(f, v)
    },
  },
  {
    names: ['--text', '-t'],
    arg: '<substring>',
    help: 'lines whose sentence or message content contains it (case-sensitive)',
    set: (o, v) => {
      o.filter.texts.push(v)
    },
  },
  {
    names: ['--level'],
    arg: '<level>',
    help: 'this level and above: debug, info, warn, error',
    set: (o, v, f) => {
      if (!LEVELS.includes(v as Level))
        throw new UsageError(
          `${f}: expected one of: ${LEVELS.join(', ')}, got ${JSON.stringify(v)}`,
        )
      o.filter.level = v as Level
    },
  },
  {
    names: ['--output', '-o'],
    arg: '<format>',
    help: 'text (lines as the server writes them, tables for summary) or json (one object per line)',
    set: (o, v, f) => {
      if (v !== 'text' && v !== 'json')
        throw new UsageError(`${f}: expected one of: text, json, got ${JSON.stringify(v)}`)
      o.output = v
    },
  },
  {
    names: ['--lines', '-n'],
    arg: '<n>',
    help: 'how many lines tail prints first (default 10)',
    only: ['tail'],
    set: (o, v, f) => {
      o.lines = count(f, v, 0)
    },
  },
  {
    names: ['--follow', '-f'],
    help: 'keep printing new lines, across rotation, until interrupted',
    only: ['tail'],
    set: (o) => {
      o.follow = true
    },
  },
  {
    names: ['--top'],
    arg: '<n>',
    help: 'how many top talkers summary lists (default 10)',
    only: ['summary'],
    set: (o, v, f) => {
      o.top = count(f, v, 1)
    },
  },
  {
    names: ['--config'],
    arg: '<file>',
    help: "the server's config file, to find its log file (default: WIRELOG_CONFIG, the environment, ./websocket_activity.log)",
    set: (o, v) => {
      o.config = v
    },
  },
  {
    names: ['--help', '-h'],
    help: 'this text',
    set: (o) => {
      o.help = true
    },
  },
]

const BY_NAME = new Map<string, FlagSpec>(FLAGS.flatMap((f) => f.names.map((n) => [n, f])))

export function helpText(): string {
  const rows = FLAGS.map((f) => {
    const left = `  ${f.names.join(', ')}${f.arg ? ` ${f.arg}` : ''}`
    const only = f.only ? ` [${f.only.join(', ')}]` : ''
    return [left, `${f.help}${only}`] as const
  })
  const w = Math.max(...rows.map(([l]) => l.length)) + 2
  return [
    'Usage: wirelog logs [grep] [options] [files…]',
    '       wirelog logs tail [-n N] [--follow] [options] [file…]',
    '       wirelog logs summary [options] [files…]',
    '',
    'Read the activity log, text or json format. Without files: the configured log file',
    '(default ./websocket_activity.log) and, but for tail, its rotated files. A file may be a',
    'pattern (activity.log.*), a directory (its log file and rotated siblings); rotated files',
    'are read oldest first (file.3 file.2 file.1 file).',
    '',
    'Commands:',
    '  grep     the lines that match the filters (the default)',
    '  tail     the last lines, then (--follow) new ones as they are written',
    '  summary  connections, messages and bytes in/out, top talkers, close codes,',
    '           rejections and errors; "who sent most in the last hour": summary --since 1h',
    '',
    'Options:',
    ...rows.map(([l, h]) => (l.length + 2 > w ? `${l}\n${' '.repeat(w)}${h}` : l.padEnd(w) + h)),
    '',
    'Exit codes: 0 done, 1 a file cannot be read, 2 bad usage.',
  ].join('\n')
}

async function unknownFlag(flag: string): Promise<UsageError> {
  const { didYouMean, suggest } = await import('../config.js')
  const hint = didYouMean(
    suggest(
      flag,
      [...BY_NAME.keys()].filter((n) => n.startsWith('--')).map((n) => ({ name: n, forms: [n] })),
    ),
    false,
  )
  return new UsageError(`unknown option ${flag}${hint || ' (see wirelog logs --help)'}`)
}

export async function parseLogsArgs(argv: readonly string[]): Promise<Options> {
  const o: Options = {
    command: 'grep',
    files: [],
    filter: emptyFilter(),
    output: 'text',
    lines: 10,
    follow: false,
    top: 10,
    config: undefined,
    help: false,
  }
  let i = 0
  if (COMMANDS.includes(argv[0] as Command)) {
    o.command = argv[0] as Command
    i = 1
  }
  const seen: FlagSpec[] = []
  for (; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') {
      o.files.push(...argv.slice(i + 1))
      break
    }
    if (!a.startsWith('-') || a === '-') {
      o.files.push(a)
      continue
    }
    const eq = a.startsWith('--') ? a.indexOf('=') : -1
    const name = eq > 0 ? a.slice(0, eq) : a
    const spec = BY_NAME.get(name)
    if (spec === undefined) throw await unknownFlag(name)
    let value = ''
    if (spec.arg !== undefined) {
      if (eq > 0) value = a.slice(eq + 1)
      else {
        const next = argv[i + 1]
        if (next === undefined || (next.startsWith('-') && next.length > 1 && !/^-\d/.test(next)))
          throw new UsageError(`${name}: needs a value ${spec.arg}`)
        value = next
        i++
      }
    } else if (eq > 0) throw new UsageError(`${name}: takes no value`)
    spec.set(o, value, name)
    seen.push(spec)
  }
  if (!o.help)
    for (const s of seen)
      if (s.only && !s.only.includes(o.command))
        throw new UsageError(
          `${s.names[0]}: only for ${s.only.map((c) => `wirelog logs ${c}`).join(', ')}`,
        )
  return o
}

/** The configured log file: `--config`, then WIRELOG_* variables, then the default. */
async function configuredLog(config: string | undefined): Promise<string> {
  const { configFrom } = await import('../cli-args.js')
  const { config: c } = configFrom(config === undefined ? [] : ['--config', config])
  return resolve(c.log.dir, c.log.file)
}

/** Buffered stdout that waits when the reader is slower, and stops quietly on EPIPE. */
class Out {
  #buf = ''
  closed = false
  constructor() {
    process.stdout.on('error', () => {
      this.closed = true
    })
  }
  line(s: string): void {
    this.#buf += `${s}\n`
  }
  async flush(force = false): Promise<void> {
    if (this.closed) {
      this.#buf = ''
      return
    }
    if (!force && this.#buf.length < 64 * 1024) return
    const s = this.#buf
    this.#buf = ''
    if (!process.stdout.write(s))
      await new Promise<void>((r) => {
        process.stdout.once('drain', r)
        process.stdout.once('error', () => r())
      })
  }
}

function render(o: Options): (r: LogRecord, raw: string) => string {
  if (o.output === 'json') return (r) => toJsonLine(r)
  // A text line is printed as written; a json line as the text line it would have been.
  return (r, raw) => (r.format === 'text' ? raw : toTextLine(r))
}

async function grep(o: Options, files: string[]): Promise<void> {
  const keep = buildFilter(o.filter)
  const show = render(o)
  const out = new Out()
  for (const f of files) {
    if (out.closed) break
    await eachLine(
      f,
      (line) => {
        const r = parseLine(line)
        if (r === undefined || (keep && !keep(r))) return
        out.line(show(r, line))
      },
      () => out.flush(),
    )
    await out.flush(true)
  }
  await out.flush(true)
}

async function tail(o: Options, files: string[]): Promise<void> {
  const keep = buildFilter(o.filter)
  const show = render(o)
  const out = new Out()
  const match = (line: string): LogRecord | undefined => {
    const r = parseLine(line)
    return r === undefined || (keep && !keep(r)) ? undefined : r
  }
  // The last N across the files, newest file first.
  const chunks: string[][] = []
  let need = o.lines
  let followFrom = 0
  let partial = ''
  for (let i = files.length - 1; i >= 0 && (need > 0 || i === files.length - 1); i--) {
    const got = await lastLines(files[i]!, need, (l) => match(l) !== undefined)
    if (i === files.length - 1) {
      followFrom = got.end
      partial = got.partial
    }
    chunks.unshift(got.lines)
    need -= got.lines.length
  }
  for (const l of chunks.flat()) out.line(show(match(l)!, l))
  if (!o.follow) {
    // Not following: a last line still being written is shown as it is now.
    if (partial && match(partial)) out.line(show(match(partial)!, partial))
    await out.flush(true)
    return
  }
  await out.flush(true)
  const path = files[files.length - 1]!
  const h = follow(
    path,
    followFrom,
    (line) => {
      const r = match(line)
      if (r !== undefined) out.line(show(r, line))
      void out.flush(true)
    },
    (msg) => process.stderr.write(`wirelog logs: ${msg}\n`),
  )
  const stop = (): void => h.stop()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  process.stdout.once('error', stop)
  await h.done
  await out.flush(true)
}

async function summary(o: Options, files: string[]): Promise<void> {
  const { Summary, summaryText } = await import('./log-summary.js')
  const { Progress, duration } = await import('./progress.js')
  const { stat } = await import('node:fs/promises')
  const keep = buildFilter(o.filter)
  const s = new Summary()
  // A file last written before --since holds no line in range (a line is written after
  // the time it carries): skip it unread.
  const todo: Array<{ path: string; size: number }> = []
  for (const f of files) {
    const st = await stat(f)
    if (o.filter.since !== undefined && st.mtimeMs < o.filter.since) continue
    todo.push({ path: f, size: st.size })
  }
  const total = todo.reduce((a, f) => a + f.size, 0)
  const progress = new Progress(process.stderr)
  const t0 = Date.now()
  let done = 0
  if (total >= 32 * 1024 * 1024)
    progress.status(() => {
      const secs = (Date.now() - t0) / 1000
      const rate = secs > 0 ? done / secs : 0
      const eta = rate > 0 ? duration((total - done) / rate) : '?'
      const mb = (n: number): string => (n / 1e6).toFixed(0)
      return `wirelog logs summary: ${mb(done)} / ${mb(total)} MB (${Math.floor((100 * done) / total)}%), ${mb(rate)} MB/s, ETA ${eta}`
    })
  try {
    for (const f of todo)
      await eachLine(
        f.path,
        (line) => {
          s.lines++
          const r = parseLine(line)
          if (r === undefined) {
            if (line.length > 0) s.unparsed++
            return
          }
          if (keep && !keep(r)) return
          s.add(r)
        },
        (n) => {
          done += n
        },
      )
  } finally {
    progress.done()
  }
  const report = s.report(files, o.top)
  process.stdout.write(o.output === 'json' ? `${jsonValue(report)}\n` : summaryText(report))
}

async function main(argv: readonly string[]): Promise<number> {
  let o: Options
  try {
    o = await parseLogsArgs(argv)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`wirelog logs: ${err.message}\n`)
      return 2
    }
    throw err
  }
  if (o.help) {
    process.stdout.write(`${helpText()}\n`)
    return 0
  }
  try {
    let files: string[]
    if (o.files.length > 0) {
      const name = (await configuredLog(o.config).catch(() => 'websocket_activity.log')).replace(
        /^.*[\\/]/,
        '',
      )
      files = await resolveFiles(o.files, name)
    } else {
      let path: string
      try {
        path = await configuredLog(o.config)
      } catch (err) {
        const { ConfigError } = await import('../config.js')
        if (err instanceof ConfigError) {
          for (const p of err.problems) process.stderr.write(`wirelog logs: ${p}\n`)
          return 2
        }
        throw err
      }
      files = await defaultFiles(path, o.command !== 'tail')
    }
    if (o.command === 'tail') await tail(o, files)
    else if (o.command === 'summary') await summary(o, files)
    else await grep(o, files)
    return 0
  } catch (err) {
    if (err instanceof FileError) {
      process.stderr.write(`wirelog logs: ${err.message}\n`)
      return 1
    }
    throw err
  }
}

const tool: Tool = {
  summary: 'read the activity log: grep with filters, tail --follow, summary (top talkers)',
  run: main,
}
export default tool
