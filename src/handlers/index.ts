/**
 * Handler modules (`--handler ./file.js`, option `handlers`): a user's module whose setup
 * function gets the server before it binds, so a file can do whatever the library can —
 * `server.events.register('ws', 'message.received', …)`, `server.admit(…)`,
 * `server.route(…)`, `server.publish(…)`. Setup may return a cleanup function (or a
 * promise of one), run at shutdown after the last client is gone.
 *
 * Modules load one after another in the order given, each setup awaited before the next
 * module is imported. Any failure (missing file, syntax error, no setup function, a setup
 * that throws) is a `HandlerError` naming the file; the handlers already set up are cleaned
 * up and the server does not start. What handlers do later is isolated by the event bus
 * (a throwing event handler is `handler.failed`, the server serves on).
 *
 * TypeScript: Node strips types itself from 22.6 (`--experimental-strip-types`; by default
 * from 22.18 / 23.6). On older Node a `.ts` handler is transpiled with the `typescript`
 * package of the handler's own project (see `ts-hooks.ts`); without one, the error says
 * how to proceed.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import * as nodeModule from 'node:module'
import { createRequire } from 'node:module'
import { extname, resolve as resolvePath } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { WirelogServer } from '../server.js'

/** Run at shutdown, after every client has disconnected; may be async. */
export type HandlerCleanup = () => void | Promise<void>

/**
 * What a handler module exports, as `export default` or `export function setup`: called
 * once with the server before it listens.
 */
export type HandlerSetup = (
  server: WirelogServer,
  // An async setup without a return statement returns Promise<void>.
  // biome-ignore lint/suspicious/noConfusingVoidType: as above
) => void | HandlerCleanup | Promise<void | HandlerCleanup>

/** File name endings a handler module may have. */
export const HANDLER_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts'] as const

/** A handler module that could not be loaded or set up. */
export class HandlerError extends Error {
  readonly code = 'WIRELOG_ERR_HANDLER'
  /** The module as given (`./handlers/chat.js`). */
  readonly file: string
  constructor(file: string, message: string, cause?: unknown) {
    super(`handler ${file}: ${message}`, cause === undefined ? undefined : { cause })
    this.name = 'HandlerError'
    this.file = file
  }
}

/** A set-up handler: its file and the cleanup its setup returned. */
export interface LoadedHandler {
  readonly file: string
  readonly cleanup: HandlerCleanup | undefined
}

/**
 * Import and set up every module of `files`, in order. On a failure, cleans up the ones
 * already set up (in reverse order) and throws the `HandlerError`.
 */
export async function loadHandlers(
  files: readonly string[],
  server: WirelogServer,
): Promise<LoadedHandler[]> {
  const loaded: LoadedHandler[] = []
  for (const file of files) {
    try {
      loaded.push({ file, cleanup: await setUp(file, server) })
    } catch (err) {
      await cleanupHandlers(loaded, () => {})
      throw err
    }
  }
  return loaded
}

/** Run the cleanups in reverse order; one that throws is reported and the rest still run. */
export async function cleanupHandlers(
  loaded: readonly LoadedHandler[],
  failed: (file: string, error: unknown) => void,
): Promise<void> {
  for (const h of [...loaded].reverse()) {
    if (h.cleanup === undefined) continue
    try {
      await h.cleanup()
    } catch (error) {
      failed(h.file, error)
    }
  }
}

async function setUp(file: string, server: WirelogServer): Promise<HandlerCleanup | undefined> {
  const path = resolvePath(file)
  const ext = extname(path).toLowerCase()
  if (!(HANDLER_EXTENSIONS as readonly string[]).includes(ext))
    throw new HandlerError(file, `expected a ${HANDLER_EXTENSIONS.join(', ')} file`)
  if (!existsSync(path)) throw new HandlerError(file, `no such file (${path})`)
  if (!statSync(path).isFile()) throw new HandlerError(file, `not a file (${path})`)
  if (ext === '.ts' || ext === '.mts') enableTypeScript(file, path)

  let mod: Record<string, unknown>
  try {
    mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>
  } catch (err) {
    throw new HandlerError(file, `cannot load: ${loadProblem(err, path)}`, err)
  }
  const setup = setupOf(mod)
  if (setup === undefined) {
    const names = Object.keys(mod).filter((k) => k !== 'default' || mod.default !== undefined)
    throw new HandlerError(
      file,
      `exports no setup function (export default function (server) {…}, or export function setup(server) {…}); it exports ${names.length ? names.join(', ') : 'nothing'}`,
    )
  }
  let result: unknown
  try {
    result = await setup(server)
  } catch (err) {
    throw new HandlerError(file, `setup failed: ${describe(err)}${whereIn(err, path)}`, err)
  }
  return typeof result === 'function' ? (result as HandlerCleanup) : undefined
}

/** `export default fn`, `export function setup`, or CommonJS `module.exports = fn | { setup }`. */
function setupOf(mod: Record<string, unknown>): HandlerSetup | undefined {
  const d = mod.default
  if (typeof d === 'function') return d as HandlerSetup
  if (typeof mod.setup === 'function') return mod.setup as HandlerSetup
  if (d !== null && typeof d === 'object' && typeof (d as { setup?: unknown }).setup === 'function')
    return (d as { setup: HandlerSetup }).setup
  return undefined
}

function describe(err: unknown): string {
  if (err instanceof Error)
    return err.name === 'Error' ? err.message : `${err.name}: ${err.message}`
  return String(err)
}

/** ` (at /path/file.mjs:3:9)`: the first stack frame in the handler file, if any. */
function whereIn(err: unknown, path: string): string {
  const stack = err instanceof Error ? (err.stack ?? '') : ''
  const url = pathToFileURL(path).href
  for (const line of stack.split('\n')) {
    const m = /\((.*):(\d+):(\d+)\)$|at (.*):(\d+):(\d+)$/.exec(line.trim())
    if (!m) continue
    const where = m[1] ?? m[4]!
    if (where === url || where === path) return ` (at ${path}:${m[2] ?? m[5]}:${m[3] ?? m[6]})`
  }
  return ''
}

/**
 * Why an import failed, with the place of a syntax error. Node 20 gives an ES module's
 * SyntaxError no location; `node --check` prints it (this runs only on the failure path).
 */
function loadProblem(err: unknown, path: string): string {
  const text = describe(err)
  if (!(err instanceof SyntaxError)) return text
  const stack = err.stack ?? ''
  const first = stack.split('\n')[0] ?? ''
  if (/:\d+$/.test(first)) return `${text} (${first})`
  if (/\(\S+:\d+:\d+\)$/.test(err.message)) return text
  if (extname(path) === '.ts' || extname(path) === '.mts') return text
  const check = spawnSync(process.execPath, ['--check', path], {
    encoding: 'utf8',
    timeout: 10_000,
  })
  const at = check.stderr?.split('\n').find((l) => l.startsWith(`${path}:`))
  return at ? `${text} (${at})` : text
}

let typeScriptReady = false

/** Make `.ts` imports work on this Node, or throw a HandlerError saying what to do. */
function enableTypeScript(file: string, path: string): void {
  if (typeScriptReady || nativeTypeScript()) return
  const register = (nodeModule as { register?: typeof nodeModule.register }).register
  let typescript: string | undefined
  try {
    typescript = createRequire(path).resolve('typescript')
  } catch {}
  if (typescript === undefined || register === undefined) {
    throw new HandlerError(
      file,
      `Node ${process.version} cannot run TypeScript by itself: compile the handler to .js first (tsc), install the "typescript" package in the handler's project (it is then transpiled at start-up, types unchecked), or run on Node ≥ 22.6 with --experimental-strip-types (on by default from Node 22.18 and 23.6)`,
    )
  }
  register('./ts-hooks.js', import.meta.url, { data: { typescript } })
  typeScriptReady = true
}

/** Whether this Node strips TypeScript types itself. */
function nativeTypeScript(): boolean {
  if ((process.features as { typescript?: unknown }).typescript) return true
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  return flags.some(
    (f) => f === '--experimental-strip-types' || f === '--experimental-transform-types',
  )
}
