/**
 * `wirelog verify-log [--key FILE] [--require-seal] <file|directory>…`: check the hash chain of
 * activity logs written with `--log-chain` (and their seals, with `--key`), across rotated
 * files put in order by their anchors. Exit 0 intact, 1 tampered (or unreadable), 2 usage.
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadSealKey, type SealKey } from '../log/seal-key.js'
import { type FileResult, linkFiles, type Problem, verifyFile } from '../log/verify.js'
import type { Tool } from './index.js'

const USAGE = `Usage: wirelog verify-log [options] <file|directory>…

Checks activity logs written with --log-chain: every line's hash, the order of lines, and
the links between rotated files (ordered by their anchors, not by their names). A directory
means every file in it.

Options:
  --key <file>       check the seals with this key: the HMAC secret, or the Ed25519 public
                     (or private) PEM key
  --require-seal     lines after the last seal are an error, not a warning
  --quiet            print only problems
  -h, --help         this help

Exit codes: 0 intact, 1 tampered (or a file could not be read), 2 usage error.`

const num = (n: number): string => n.toLocaleString('en-US')

function expand(args: readonly string[]): string[] {
  const out: string[] = []
  for (const a of args) {
    const st = statSync(a)
    if (st.isDirectory()) {
      for (const name of readdirSync(a).sort()) {
        if (name.startsWith('.')) continue
        const p = join(a, name)
        // In a directory, only json logs: not the key, not a text log next to them.
        if (statSync(p).isFile() && startsWithBrace(p)) out.push(p)
      }
    } else out.push(a)
  }
  return [...new Set(out)]
}

function startsWithBrace(path: string): boolean {
  const fd = openSync(path, 'r')
  try {
    const b = Buffer.alloc(1)
    return readSync(fd, b, 0, 1, 0) === 1 && b[0] === 0x7b
  } finally {
    closeSync(fd)
  }
}

function where(p: Problem): string {
  return p.line > 0 ? `${p.file}:${p.line}` : p.file
}

async function run(argv: readonly string[]): Promise<number> {
  const err = (msg: string): number => {
    process.stderr.write(`wirelog verify-log: ${msg}\n`)
    return 2
  }
  let values: { key?: string; 'require-seal'?: boolean; quiet?: boolean; help?: boolean }
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        key: { type: 'string' },
        'require-seal': { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }))
  } catch (e) {
    return err(`${(e as Error).message}\n\n${USAGE}`)
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  if (positionals.length === 0) return err(`no file given\n\n${USAGE}`)
  let key: SealKey | undefined
  if (values.key !== undefined) {
    try {
      key = loadSealKey(values.key, '--key', false)
    } catch (e) {
      return err((e as Error).message)
    }
  }
  let files: string[]
  try {
    files = expand(positionals)
  } catch (e) {
    const x = e as NodeJS.ErrnoException
    return err(`cannot read ${x.path ?? ''} (${x.code ?? x.message})`)
  }
  if (files.length === 0) return err('no files found')
  const say = (line: string): void => {
    if (!values.quiet) process.stdout.write(`${line}\n`)
  }
  const t0 = process.hrtime.bigint()
  const results: FileResult[] = []
  for (const f of files) {
    try {
      results.push(await verifyFile(f, { key }))
    } catch (e) {
      const x = e as NodeJS.ErrnoException
      process.stderr.write(`wirelog verify-log: cannot read ${f} (${x.code ?? x.message})\n`)
      return 1
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const links = linkFiles(results)
  const lines = results.reduce((a, r) => a + r.lines, 0)
  const bytes = results.reduce((a, r) => a + r.bytes, 0)
  const seals = results.reduce((a, r) => a + r.seals, 0)
  const mb = bytes / 1e6
  say(
    `${num(files.length)} file${files.length === 1 ? '' : 's'}, ${num(lines)} lines, ${mb.toFixed(1)} MB in ${seconds.toFixed(2)} s (${num(Math.round(lines / Math.max(seconds, 1e-9)))} lines/s, ${(mb / Math.max(seconds, 1e-9)).toFixed(0)} MB/s)`,
  )
  const problems: Problem[] = []
  let more = 0
  for (const r of results) {
    problems.push(...r.problems)
    more += r.problemCount - r.problems.length
  }
  problems.push(...links.problems)
  const warnings: string[] = []
  for (const c of links.chains) {
    const first = c.files[0]!
    const last = c.files.at(-1)!
    say(
      `chain: ${c.files.map((f) => f.path).join(' → ')} (positions ${first.startN ?? '?'} … ${last.endN ?? '?'}, ${c.fromGenesis ? 'from its genesis' : 'continuing from an earlier file not given'})`,
    )
    if (key !== undefined) {
      const sealed = c.files.reduce((a, f) => a + f.seals, 0)
      if (sealed === 0 || c.lastSeal === undefined) {
        problems.push({
          kind: 'seal',
          file: last.path,
          line: 0,
          message: `${last.path}: no valid seal in this chain: it may have been rewritten (or was written without this key)`,
        })
        continue
      }
      const tail =
        c.unsealed > 0
          ? `${num(c.unsealed)} line${c.unsealed === 1 ? '' : 's'} after the last seal (${c.lastSeal.file}:${c.lastSeal.line}) are not sealed: they could have been cut or changed`
          : undefined
      if (tail !== undefined) {
        if (values['require-seal'])
          problems.push({ kind: 'seal', file: last.path, line: 0, message: tail })
        else warnings.push(tail)
      } else if (c.lastSeal.reason !== 'close' && c.lastSeal.reason !== 'rotate')
        warnings.push(
          `the last seal (${c.lastSeal.file}:${c.lastSeal.line}, ${c.lastSeal.reason}) is not a closing one: the server may still be running, or lines after it were cut`,
        )
      say(
        `seals: ${num(sealed)} checked with ${key.alg} key ${key.kid}, last at ${c.lastSeal.file}:${c.lastSeal.line} (${c.lastSeal.reason})`,
      )
    }
  }
  if (key === undefined && seals > 0)
    say(`seals: ${num(seals)} found, signatures not checked (no --key)`)
  for (const w of warnings) process.stdout.write(`warning: ${w}\n`)
  if (problems.length === 0) {
    say('OK: the chain is intact')
    return 0
  }
  const [firstProblem, ...rest] = combine(problems)
  process.stdout.write(`TAMPERED: ${where(firstProblem!)}: ${firstProblem!.message}\n`)
  for (const p of rest.slice(0, 9)) process.stdout.write(`  also: ${where(p)}: ${p.message}\n`)
  const hidden = rest.length - Math.min(rest.length, 9) + more
  if (hidden > 0) process.stdout.write(`  (${num(hidden)} more problems)\n`)
  return 1
}

/**
 * Two lines swapped first show as a gap (the later line comes early), then as a line out of
 * order: report them as one move.
 */
function combine(problems: Problem[]): Problem[] {
  const a = problems[0]
  const b = problems[1]
  if (
    a?.kind === 'deleted' &&
    b?.kind === 'reordered' &&
    a.file === b.file &&
    b.line > a.line &&
    b.line - a.line <= 64
  ) {
    return [
      {
        kind: 'reordered',
        file: a.file,
        line: a.line,
        message: `lines ${a.line} to ${b.line} are out of order (line ${b.line} belongs before line ${a.line})`,
      },
      ...problems.slice(2),
    ]
  }
  return problems
}

const tool: Tool = {
  summary: 'check the hash chain (and seals) of an activity log written with --log-chain',
  run,
}
export default tool
export { run }
