/**
 * `npm run docs:config`: write the README's generated parts from the options schema and the
 * OPTIONS table, so they cannot drift from the code: the `--help` text in "Command line" and
 * the table of every config key in "Configuration file". `test/cli-docs.test.ts` fails when
 * README.md differs from what this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { helpText } from '../src/cli-args.js'
import {
  alternatives,
  configPaths,
  KEY_DOCS,
  OPTIONS,
  type SchemaNode,
  schemaAt,
} from '../src/config.js'

const README = fileURLToPath(new URL('../../README.md', import.meta.url))

/** Columns of the `--help` copy in the README. */
export const README_HELP_WIDTH = 100

const KiB = 1024
const MiB = 1024 * KiB

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
const code = (s: string): string => `\`${s}\``

function typeOfOne(path: string, s: SchemaNode): string {
  switch (s.def.type) {
    case 'string':
      return s.minLength && s.minLength > 1 ? `string (≥ ${s.minLength} chars)` : 'string'
    case 'number': {
      const base = s.isInt ? 'integer' : 'number'
      const lo = unbounded(s.minValue) ? undefined : s.minValue!
      const hi = unbounded(s.maxValue) ? undefined : s.maxValue!
      if (lo !== undefined && hi !== undefined) return `${base} ${lo}–${hi}`
      if (lo !== undefined) return `${base} ≥ ${lo}`
      if (hi !== undefined) return `${base} ≤ ${hi}`
      return base
    }
    case 'boolean':
      return 'boolean'
    case 'enum':
      return Object.values(s.def.entries ?? {})
        .map((v) => JSON.stringify(v))
        .join(' | ')
    case 'literal':
      return (s.def.values ?? []).map((v) => JSON.stringify(v)).join(' | ')
    case 'array':
      return `${s.def.element ? typeOf(path, s.def.element) : 'unknown'}[]`
    case 'object':
    case 'record':
      return 'object'
    default:
      throw new Error(
        `config key "${path}": no way to describe a ${s.def.type}; give it a type in KEY_DOCS`,
      )
  }
}

const unbounded = (v: number | null | undefined): boolean =>
  v === null || v === undefined || !Number.isFinite(v) || Math.abs(v) >= Number.MAX_SAFE_INTEGER

function typeOf(path: string, s: SchemaNode): string {
  return alternatives(s)
    .map((a) => typeOfOne(path, a))
    .join(' | ')
}

function defaultOf(s: SchemaNode): string {
  // A refinement wraps the default it checks (`.default(false).superRefine(…)`).
  while (s.def.type === 'pipe' && s.def.in) s = s.def.in
  if (s.def.type !== 'default') return '—'
  const v = s.def.defaultValue
  const text = JSON.stringify(v)
  if (typeof v === 'number' && v >= KiB && v % KiB === 0)
    return `${code(text)} (${v % MiB === 0 ? `${v / MiB} MiB` : `${v / KiB} KiB`})`
  return code(text)
}

/** A key that holds other keys only (`log`, `limits`, `log.rotate`): not a row of its own. */
function isSection(s: SchemaNode): boolean {
  const alts = alternatives(s)
  return alts.length === 1 && alts[0]!.def.type === 'object'
}

/** The Markdown table of every config key. */
export function configTable(): string {
  const byPath = new Map(OPTIONS.map((o) => [o.path, o]))
  const rows = [
    '| Key | Type | Default | Flag | Environment | Description |',
    '|---|---|---|---|---|---|',
  ]
  for (const path of configPaths()) {
    const s = schemaAt(path)!
    if (isSection(s)) continue
    const opt = byPath.get(path)
    const doc = KEY_DOCS[path]
    const help = doc?.help ?? opt?.help
    if (help === undefined)
      throw new Error(
        `config key "${path}" has no description: add it to OPTIONS or KEY_DOCS in src/config.ts`,
      )
    const type = doc?.type ?? typeOf(path, s)
    const flag = doc?.library ? 'library only' : opt ? code(opt.flag) : '—'
    const env = doc?.library ? 'library only' : opt ? code(opt.env) : '—'
    rows.push(
      `| ${[code(path), code(type), defaultOf(s), flag, env, help].map(cell).join(' | ')} |`,
    )
  }
  return rows.join('\n')
}

const MARKS = {
  help: ['<!-- generated:help (npm run docs:config) -->', '<!-- /generated:help -->'],
  table: [
    '<!-- generated:config-table (npm run docs:config) -->',
    '<!-- /generated:config-table -->',
  ],
} as const

function replaceBetween(text: string, [start, end]: readonly [string, string], body: string) {
  const a = text.indexOf(start)
  const b = text.indexOf(end)
  if (a < 0 || b < a) throw new Error(`README.md: markers ${start} … ${end} not found`)
  return `${text.slice(0, a + start.length)}\n${body}\n${text.slice(b)}`
}

/** README text with its generated parts rewritten. */
export function updateReadme(readme: string): string {
  const help = ['```', helpText(README_HELP_WIDTH), '```'].join('\n')
  return replaceBetween(replaceBetween(readme, MARKS.help, help), MARKS.table, configTable())
}

export function readmePath(): string {
  return README
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const before = readFileSync(README, 'utf8')
  const after = updateReadme(before)
  if (after === before) console.log('README.md is up to date')
  else {
    writeFileSync(README, after)
    console.log('README.md: generated sections rewritten')
  }
}
