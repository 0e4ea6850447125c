/**
 * Module hooks that let Node 20 import a TypeScript handler module (`--handler ./x.ts`):
 * `.ts` / `.mts` files are transpiled to JavaScript with the `typescript` package of the
 * project the handler is in (types erased, nothing type-checked), then run as ES modules.
 * Registered with `module.register()` only when a TypeScript handler is loaded and Node
 * cannot strip types itself (it can from 22.6 with `--experimental-strip-types`, by default
 * from 22.18 / 23.6); the hooks run on Node's loader thread.
 */
import { readFile } from 'node:fs/promises'
import type { InitializeHook, LoadHook, ResolveHook } from 'node:module'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/** The parts of the `typescript` package used here (its documented `transpileModule`). */
interface TypeScript {
  transpileModule(
    input: string,
    options: {
      fileName?: string
      reportDiagnostics?: boolean
      compilerOptions?: Record<string, unknown>
    },
  ): {
    outputText: string
    diagnostics?: Array<{
      start?: number
      messageText: string | { messageText: string }
      file?: { getLineAndCharacterOfPosition(p: number): { line: number; character: number } }
    }>
  }
  ModuleKind: { ESNext: number }
  ScriptTarget: { ES2022: number }
}

export interface HookData {
  /** Absolute path of the `typescript` package's entry, resolved from the handler. */
  readonly typescript: string
}

let ts: TypeScript | undefined

export const initialize: InitializeHook<HookData> = (data) => {
  ts = createRequire(import.meta.url)(data.typescript) as TypeScript
}

const TS_FILE = /\.m?ts$/

function isTypeScriptUrl(url: string): boolean {
  return url.startsWith('file:') && TS_FILE.test(new URL(url).pathname)
}

/**
 * A TypeScript project written for NodeNext imports `./util.js` meaning `./util.ts`: when a
 * relative `.js` import of a TypeScript module is not found, try the `.ts` beside it.
 */
export const resolve: ResolveHook = async (specifier, context, next) => {
  try {
    return await next(specifier, context)
  } catch (err) {
    const parent = context.parentURL
    if (
      parent !== undefined &&
      isTypeScriptUrl(parent) &&
      /^\.\.?\//.test(specifier) &&
      /\.m?js$/.test(specifier) &&
      (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND'
    ) {
      return next(specifier.replace(/js$/, 'ts'), context)
    }
    throw err
  }
}

export const load: LoadHook = async (url, context, next) => {
  if (!isTypeScriptUrl(url) || ts === undefined) return next(url, context)
  const file = fileURLToPath(url)
  const source = await readFile(file, 'utf8')
  const out = ts.transpileModule(source, {
    fileName: file,
    reportDiagnostics: true,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      // Imports used only as types are dropped, as `tsc` would.
      verbatimModuleSyntax: false,
      isolatedModules: true,
      sourceMap: false,
    },
  })
  const problem = out.diagnostics?.[0]
  if (problem !== undefined) {
    const text =
      typeof problem.messageText === 'string'
        ? problem.messageText
        : problem.messageText.messageText
    const at =
      problem.file && problem.start !== undefined
        ? problem.file.getLineAndCharacterOfPosition(problem.start)
        : undefined
    const where = at ? `${file}:${at.line + 1}:${at.character + 1}` : file
    throw new SyntaxError(`${text} (${where})`)
  }
  return { format: 'module', source: out.outputText, shortCircuit: true }
}
