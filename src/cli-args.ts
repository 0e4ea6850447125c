/**
 * Command-line parsing for the `wirelog` command: argv + environment + config file →
 * a validated config, and the `--help` text. No server logic here.
 */

import {
  applyOption,
  type Candidate,
  CONFIG_ENV,
  type Config,
  ConfigError,
  coerce,
  defaults,
  didYouMean,
  fromEnv,
  fromFile,
  getPath,
  merge,
  OPTIONS,
  type OptionSpec,
  resolveConfig,
  suggest,
  unknownEnv,
  type ValueSource,
} from './config.js'
import { TOOLS } from './tools/index.js'

// --- --help ---

const MIN_WIDTH = 60

/** The width `--help` wraps to: the terminal's, else `COLUMNS`, else 80; never below 60. */
export function helpWidth(
  stream: { columns?: number } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): number {
  const cols = stream.columns || Number(env.COLUMNS) || 80
  return Math.max(MIN_WIDTH, Math.floor(cols))
}

/** Greedy word wrap; a token longer than `width` gets a line of its own, unbroken. */
export function wrap(tokens: readonly string[], width: number): string[] {
  const lines: string[] = []
  let cur = ''
  for (const t of tokens) {
    if (t === '') continue
    if (cur !== '' && cur.length + 1 + t.length > width) {
      lines.push(cur)
      cur = t
    } else cur = cur === '' ? t : `${cur} ${t}`
  }
  if (cur !== '') lines.push(cur)
  return lines
}

// Glue that keeps `0 = off` and `bigger → 1009` on one line; a space in the output.
const GLUE = '\u00a0'
const words = (text: string): string[] =>
  text.replace(/ ([=→]) /g, `${GLUE}$1${GLUE}`).split(/[ \t\n]+/)

const KiB = 1024
const MiB = 1024 * KiB

function showDefault(opt: OptionSpec, v: unknown): string {
  if (Array.isArray(v)) return v.length ? v.join(',') : '(empty)'
  if (typeof v === 'string') return JSON.stringify(v)
  if (opt.arg === '<bytes>' && typeof v === 'number' && v >= KiB && v % KiB === 0)
    return v % MiB === 0 ? `${v} (${v / MiB} MiB)` : `${v} (${v / KiB} KiB)`
  if (v === undefined) return 'none'
  return String(v)
}

/**
 * `--help`, wrapped to `width` columns at word boundaries: flags on the left, descriptions
 * in a column with a hanging indent (a flag too long for the column puts its description on
 * the next line).
 */
export function helpText(width = helpWidth()): string {
  width = Math.max(MIN_WIDTH, width)
  const d = defaults()
  const rows: Array<[string, string[]]> = OPTIONS.map((o) => [
    `  ${o.flag}${o.arg ? ` ${o.arg}` : ''}`,
    [
      ...words(o.help),
      // The default is one token: `"Echo: "` must not break at its space.
      '(default:',
      `${showDefault(o, getPath(d, o.path))};`,
      'env',
      `${o.env})`,
    ],
  ])
  rows.push(
    ['  --no-log', words('same as --log-enabled=false')],
    [
      '  --config <path>',
      words(`JSON file of options in the createServer() shape (env ${CONFIG_ENV})`),
    ],
    ['  -h, --help', words('show this help and exit')],
    ['  -v, --version', words('print the version and exit')],
  )
  const longest = Math.max(...rows.map(([left]) => left.length))
  const col = Math.min(longest, Math.floor(width * 0.4)) + 2
  const pad = ' '.repeat(col)
  const body: string[] = []
  for (const [left, tokens] of rows) {
    const lines = wrap(tokens, width - col)
    if (left.length + 2 > col) body.push(left)
    else body.push(left.padEnd(col) + lines.shift()!)
    for (const l of lines) body.push(pad + l)
  }
  const para = (text: string): string[] => wrap(words(text), width)
  return [
    Object.keys(TOOLS).length
      ? 'Usage: wirelog [options] | wirelog <command> [arguments]'
      : 'Usage: wirelog [options]',
    '',
    ...para(
      'A WebSocket server that echoes every message and logs every connection, message and disconnect to an activity log.',
    ),
    '',
    ...(Object.keys(TOOLS).length
      ? [
          ...para('Commands (each has its own --help):'),
          ...Object.entries(TOOLS).flatMap(([name, t]) => {
            const lines = wrap(words(t.summary), width - col)
            return [`  ${name}`.padEnd(col) + lines.shift()!, ...lines.map((l) => pad + l)]
          }),
          ...para('Each command takes --help (wirelog <command> --help).'),
          '',
        ]
      : []),
    'Options:',
    ...body,
    '',
    ...para(
      'Boolean flags take no value, or =true / =false; --no-<flag> (--no-log, --no-log-sync, …) sets one to false and takes no value.',
    ),
    ...para('Precedence: flags > environment > config file > defaults.'),
    ...para(
      'Signals: SIGINT/SIGTERM shut down gracefully (clients get 1001, the log is flushed; a second signal forces the exit); SIGHUP reopens the log file and reloads the TLS certificate and key.',
    ),
  ]
    .join('\n')
    .replaceAll(GLUE, ' ')
}

// --- argv ---

export interface Parsed {
  help: boolean
  version: boolean
  /** `--config` as given. */
  config: string | undefined
  /** Option values from flags, in the createServer() shape. */
  values: Record<string, unknown>
  /** For each option path set by a flag: the flag as written and its raw value. */
  given: Map<string, { name: string; raw: string }>
}

const byFlag = new Map<string, OptionSpec>(OPTIONS.map((o) => [o.flag, o]))
/** Options a `--no-<flag>` form can turn off. */
const negatable = (o: OptionSpec | undefined): o is OptionSpec =>
  o !== undefined && (o.kind === 'bool' || o.kind === 'trust')

const lastKey = (path: string): string => path.slice(path.lastIndexOf('.') + 1)

const FLAG_CANDIDATES: readonly Candidate[] = [
  ...OPTIONS.map((o) => ({ name: o.flag, forms: [o.flag, o.path, lastKey(o.path)] })),
  ...OPTIONS.filter(negatable).map((o) => ({ name: `--no-${o.flag.slice(2)}`, forms: [] })),
  { name: '--no-log', forms: ['--no-log'] },
  { name: '--config', forms: ['--config'] },
  { name: '--help', forms: ['--help'] },
  { name: '--version', forms: ['--version'] },
].map((c) => (c.forms.length ? c : { name: c.name, forms: [c.name] }))

function unknownFlag(flag: string): string {
  const hint = didYouMean(suggest(flag, FLAG_CANDIDATES), false)
  return `unknown option ${flag}${hint || ' (see --help)'}`
}

/**
 * Parse argv. Throws one ConfigError listing every unknown or malformed flag (each named),
 * whatever else is on the line: `--help --bogus` is an error too.
 */
export function parseArgs(argv: readonly string[]): Parsed {
  const out: Parsed = {
    help: false,
    version: false,
    config: undefined,
    values: {},
    given: new Map(),
  }
  const problems: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '-h' || arg === '--help') {
      out.help = true
      continue
    }
    if (arg === '-v' || arg === '--version') {
      out.version = true
      continue
    }
    if (/^-[^-]/.test(arg)) {
      problems.push(unknownFlag(arg.replace(/=.*/, '')))
      continue
    }
    if (!arg.startsWith('--') || arg === '--') {
      problems.push(`unexpected argument ${JSON.stringify(arg)} (see --help)`)
      continue
    }
    const eq = arg.indexOf('=')
    const flag = eq > 0 ? arg.slice(0, eq) : arg
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : undefined

    // `--no-<flag>` (and `--no-log`) turn a boolean off and take no value: `--no-log=false`
    // is an error rather than a double negative that silently disables the log.
    if (flag.startsWith('--no-')) {
      const target =
        flag === '--no-log' ? byFlag.get('--log-enabled') : byFlag.get(`--${flag.slice(5)}`)
      if (negatable(target)) {
        if (value !== undefined) {
          problems.push(
            `${flag}: takes no value, got ${JSON.stringify(value)} (use ${target.flag}=true or ${target.flag}=false)`,
          )
        } else {
          applyOption(out.values, target, false)
          out.given.set(target.path, { name: flag, raw: 'false' })
        }
        continue
      }
    }

    const takeValue = (): string | undefined => {
      if (value !== undefined) return value
      const next = argv[i + 1]
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        problems.push(`${flag}: missing value`)
        return undefined
      }
      i++
      return next
    }
    if (flag === '--config') {
      const v = takeValue()
      if (v !== undefined) out.config = v
      continue
    }
    const opt = byFlag.get(flag)
    if (!opt) {
      problems.push(unknownFlag(flag))
      // Its value, if it had one, is not a stray argument of its own.
      if (value === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('-')) i++
      continue
    }
    if (opt.kind === 'bool' && value === undefined) value = 'true'
    if (opt.kind === 'trust' && value === undefined) {
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) value = 'true'
    }
    const raw = takeValue()
    if (raw === undefined) continue
    try {
      let value = coerce(opt, raw, flag)
      const before = out.given.has(opt.path) ? getPath(out.values, opt.path) : undefined
      if (
        (opt.repeatable || opt.kind === 'webhook') &&
        Array.isArray(before) &&
        Array.isArray(value)
      )
        value = [...before, ...value]
      applyOption(out.values, opt, value)
      out.given.set(opt.path, { name: flag, raw })
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      problems.push(...err.problems)
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return out
}

// --- argv + environment + file ---

/** Warnings that do not stop the start: unknown `WIRELOG_*` variables, with suggestions. */
export const envWarnings = unknownEnv

/**
 * Combine defaults < config file < environment < flags into a validated config. Every
 * mistake is reported at once (one ConfigError), each naming the flag, variable or file and
 * option path it is in.
 */
export function loadConfig(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Config {
  const fileName = parsed.config ?? env[CONFIG_ENV]
  const problems: string[] = []
  const attempt = <T>(fn: () => T, fallback: T): T => {
    try {
      return fn()
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      problems.push(...err.problems)
      return fallback
    }
  }
  const file = fileName
    ? attempt(
        () => fromFile(fileName, parsed.config !== undefined ? '--config' : CONFIG_ENV),
        undefined,
      )
    : {}
  const envValues = attempt(() => fromEnv(env), {})
  // A file that cannot be read: its values are unknown, validating the rest would mislead.
  if (file === undefined) throw new ConfigError(problems)
  const merged = merge(file, envValues, parsed.values)
  // Name the flag, variable or file the bad value came from.
  const envOpts = new Map(OPTIONS.map((o) => [o.path, o]))
  const sourceOf = (path: string): ValueSource | undefined => {
    // An element of a list (`handlers.1`) came from the list's flag or variable.
    const list = path.replace(/(\.\d+)+$/, '')
    const flag = parsed.given.get(list)
    if (flag) return list === path ? flag : { name: flag.name }
    const opt = envOpts.get(list)
    if (opt && getPath(envValues, list) !== undefined) {
      const raw = env[opt.env]
      return raw === undefined || list !== path ? { name: opt.env } : { name: opt.env, raw }
    }
    if (fileName && hasPath(file, path)) return { file: fileName }
    return undefined
  }
  const config = attempt(() => resolveConfig(merged, sourceOf), undefined)
  if (problems.length > 0 || config === undefined) throw new ConfigError(problems)
  return config
}

/** Whether `path` (or the section holding it) is written in `obj`. */
function hasPath(obj: Record<string, unknown>, path: string): boolean {
  for (let p = path; p !== ''; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '')
    if (getPath(obj, p) !== undefined) return true
  return false
}

/** `parseArgs` then `loadConfig`. */
export function configFrom(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { parsed: Parsed; config: Config } {
  const parsed = parseArgs(argv)
  return { parsed, config: loadConfig(parsed, env) }
}
