/**
 * uWebSockets.js as a peer in the comparison: the `uwebsockets` package (a repackage of
 * uWebSockets.js whose prebuilt binaries load on this glibc), installed on demand into a cache
 * directory with the ordinary npm client, never a dependency of wirelog. Whatever goes wrong
 * (no registry, no binary for this platform or Node version), the bench says why and runs
 * without it.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

export const UWS_PACKAGE = 'uwebsockets'
export const UWS_VERSION = '3.0.6'
const INSTALL_TIMEOUT_MS = 180_000

export interface UwsStatus {
  /** Loads and is ready to run. */
  available: boolean
  /** The npm prefix it lives in (server.ts loads `<dir>/node_modules/uwebsockets`). */
  dir: string
  /** Installed by this run. */
  installed: boolean
  /** Why it is not available (or how it was found). */
  note: string
}

/** `$XDG_CACHE_HOME/wirelog-bench/uws`, or `~/.cache/wirelog-bench/uws`. */
export function uwsDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache')
  return join(base, 'wirelog-bench', 'uws')
}

function installedVersion(dir: string): string | undefined {
  const pkg = join(dir, 'node_modules', UWS_PACKAGE, 'package.json')
  if (!existsSync(pkg)) return undefined
  try {
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version
  } catch {
    return undefined
  }
}

/** The npm that runs this script (`npm run bench`), else the one on PATH. */
function npmCommand(): [string, string[]] {
  const cli = process.env.npm_execpath
  return cli && /npm-cli\.js$/.test(cli) ? [process.execPath, [cli]] : ['npm', []]
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: Buffer | string; message?: string; code?: string; signal?: string }
  const text = `${e.stderr?.toString() ?? ''}`.trim() || e.message || String(err)
  const line =
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => /err|error|fail|not|cannot/i.test(l)) ?? text.split('\n')[0]
  return `${e.signal === 'SIGTERM' ? 'timed out; ' : ''}${line?.slice(0, 300) ?? '?'}`
}

/**
 * Find uwebsockets in the cache, install it there if missing and `install` allows, and check
 * that it loads (in a child process: a binary that does not fit must not take the bench down).
 */
export function prepareUws(install: boolean, progress: (line: string) => void): UwsStatus {
  const dir = uwsDir()
  let installed = false
  if (installedVersion(dir) !== UWS_VERSION) {
    if (!install) {
      return {
        available: false,
        dir,
        installed,
        note: `${UWS_PACKAGE}@${UWS_VERSION} is not in ${dir} (and --no-uws-install)`,
      }
    }
    progress(`installing ${UWS_PACKAGE}@${UWS_VERSION} into ${dir} (once; not a dependency)`)
    try {
      mkdirSync(dir, { recursive: true })
      const [cmd, pre] = npmCommand()
      execFileSync(
        cmd,
        [
          ...pre,
          'install',
          '--prefix',
          dir,
          `${UWS_PACKAGE}@${UWS_VERSION}`,
          '--no-audit',
          '--no-fund',
          '--loglevel=error',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: INSTALL_TIMEOUT_MS },
      )
      installed = true
    } catch (err) {
      return {
        available: false,
        dir,
        installed,
        note: `npm install ${UWS_PACKAGE}@${UWS_VERSION} failed: ${firstLine(err)}`,
      }
    }
    if (installedVersion(dir) !== UWS_VERSION) {
      return {
        available: false,
        dir,
        installed,
        note: `npm install ran but ${UWS_PACKAGE}@${UWS_VERSION} is not in ${dir}`,
      }
    }
  }
  try {
    const pkg = join(dir, 'node_modules', UWS_PACKAGE)
    execFileSync(
      process.execPath,
      [
        '-e',
        `const u = require(${JSON.stringify(pkg)}); if (typeof u.App !== 'function') throw new Error('no App()')`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 },
    )
  } catch (err) {
    return {
      available: false,
      dir,
      installed,
      note: `${UWS_PACKAGE}@${UWS_VERSION} does not load here (node ${process.version}, ${process.platform}-${process.arch}): ${firstLine(err)}`,
    }
  }
  return {
    available: true,
    dir,
    installed,
    note: `${UWS_PACKAGE}@${UWS_VERSION} from ${dir}${installed ? ' (installed now)' : ''}`,
  }
}
