/**
 * Command-line parsing for the `wirelog` command: argv + environment + config file →
 * a validated config, and the `--help` text. No server logic here.
 */
import { readFileSync } from 'node:fs'
import {
  applyOption,
  type Config,
  ConfigError,
  coerce,
  defaults,
  fromEnv,
  fromFile,
  getPath,
  merge,
  OPTIONS,
  type OptionSpec,
  resolveConfig,
} from './config.js'

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}

function showDefault(v: unknown): string {
  if (Array.isArray(v)) return v.length ? v.join(',') : '(any)'
  if (typeof v === 'string') return JSON.stringify(v)
  return String(v)
}

export function helpText(): string {
  const d = defaults()
  const rows = OPTIONS.map((o) => {
    const value =
      o.kind === 'bool'
        ? ''
        : o.kind === 'trust'
          ? ' [<hops|list>]'
          : o.kind === 'enum'
            ? ` <${o.values!.join('|')}>`
            : ' <value>'
    return [
      `  ${o.flag}${value}`,
      `${o.help} (default: ${showDefault(getPath(d, o.path))}; env ${o.env})`,
    ]
  })
  const width = Math.max(...rows.map((r) => r[0]!.length)) + 2
  return [
    'Usage: wirelog [options]',
    '',
    'A WebSocket server that echoes every message and logs every connection, message and',
    'disconnect to an activity log.',
    '',
    'Options:',
    ...rows.map(([a, b]) => a!.padEnd(width) + b),
    `${'  --no-log'.padEnd(width)}same as --log-enabled=false`,
    `${'  --config <file>'.padEnd(width)}JSON file with createServer() options (env WIRELOG_CONFIG)`,
    `${'  -h, --help'.padEnd(width)}show this help and exit`,
    `${'  -v, --version'.padEnd(width)}print the version and exit`,
    '',
    'Boolean flags take no value or =true/=false. Precedence: flags > environment > config file > defaults.',
    'Signals: SIGINT/SIGTERM shut down gracefully (clients get 1001, the log is flushed); SIGHUP reopens the log file.',
  ].join('\n')
}

interface Parsed {
  help: boolean
  version: boolean
  config: string | undefined
  values: Record<string, unknown>
}

const byFlag = new Map<string, OptionSpec>(OPTIONS.map((o) => [o.flag, o]))

/** Parse argv; throws ConfigError naming the flag for anything unknown or malformed. */
export function parseArgs(argv: readonly string[]): Parsed {
  const out: Parsed = { help: false, version: false, config: undefined, values: {} }
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
    if (!arg.startsWith('--'))
      throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (see --help)`)
    const eq = arg.indexOf('=')
    const flag = eq > 0 ? arg.slice(0, eq) : arg
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : undefined
    if (flag === '--no-log') {
      applyOption(out.values, byFlag.get('--log-enabled')!, false)
      continue
    }
    const takeValue = (): string => {
      if (value !== undefined) return value
      const next = argv[i + 1]
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new ConfigError(`${flag}: missing value`)
      }
      i++
      return next
    }
    if (flag === '--config') {
      out.config = takeValue()
      continue
    }
    const opt = byFlag.get(flag)
    if (!opt) throw new ConfigError(`unknown option ${flag} (see --help for the accepted options)`)
    if (opt.kind === 'bool' && value === undefined) value = 'true'
    if (opt.kind === 'trust' && value === undefined) {
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) value = 'true'
    }
    applyOption(out.values, opt, coerce(opt, takeValue(), flag))
  }
  return out
}

/** Combine defaults < config file < environment < flags into a validated config. */
export function configFrom(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { parsed: Parsed; config: Config } {
  const parsed = parseArgs(argv)
  const configFile = parsed.config ?? env.WIRELOG_CONFIG
  const file = configFile ? fromFile(configFile) : {}
  const envValues = fromEnv(env)
  const merged = merge(file, envValues, parsed.values)
  // Name the flag, variable or file the bad value came from.
  const label = (path: string, opt: OptionSpec | undefined): string | undefined => {
    if (opt && getPath(parsed.values, path) !== undefined) return opt.flag
    if (opt && getPath(envValues, path) !== undefined) return opt.env
    if (configFile && getPath(file, path) !== undefined) return `option "${path}" in ${configFile}`
    return undefined
  }
  return { parsed, config: resolveConfig(merged, label) }
}
