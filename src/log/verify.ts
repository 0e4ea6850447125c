/**
 * Checking a chained activity log (see `chain.ts`): each file is read once, in a fixed
 * buffer, each line hashed as its bytes are (`crypto.createHash` per line, no JSON parsing
 * except for anchor and seal lines); then the files are put in order by their anchors'
 * links, whatever their names, and the gaps and forks between them are found.
 *
 * A line's position `n` and the hashes of the last few lines tell what happened at a break:
 * a line whose content no longer matches its hash was edited; a jump in `n` is lines
 * deleted; a position seen before is a line inserted (or copied); a position below one
 * already seen, whose content links to its true predecessor, is a line moved.
 */
import * as crypto from 'node:crypto'
import { open } from 'node:fs/promises'
import { CHAIN_MARK, CHAIN_TAIL, GENESIS } from './chain.js'
import type { SealKey } from './seal-key.js'

export type ProblemKind =
  | 'edited'
  | 'deleted'
  | 'inserted'
  | 'reordered'
  | 'unchained'
  | 'anchor'
  | 'seal'
  | 'missing-file'
  | 'fork'

export interface Problem {
  kind: ProblemKind
  file: string
  /** 1-based line number in `file` (0: the file as a whole). */
  line: number
  message: string
}

export interface SealInfo {
  file: string
  line: number
  reason: string
}

export interface FileResult {
  path: string
  lines: number
  bytes: number
  /** The first anchor: where this file's chain comes from. */
  startPrev: string | undefined
  startN: number | undefined
  /** The anchor's `file` (the live file's name when it was written). */
  name: string | undefined
  /** The last chained line's hash and position. */
  endHead: string | undefined
  endN: number | undefined
  problems: Problem[]
  problemCount: number
  seals: number
  lastSeal: SealInfo | undefined
  /** Chained lines after the last seal of this file (all of them when it has none). */
  afterSeal: number
}

export interface VerifyOptions {
  /** Check the seals' signatures with this key. */
  key?: SealKey | undefined
  /** Most problems kept per file (all are counted). */
  maxProblems?: number
}

const BUFFER = 1024 * 1024
const RING = 1024
const NEWLINE = 10
const EVENT_LOG = Buffer.from('"event":"log.')
const MARK = Buffer.from(CHAIN_MARK)
/** `crypto.hash` (Node ≥ 20.12): one call per line instead of a Hash object. */
const oneShot = (crypto as { hash?: (alg: string, data: Buffer, enc: 'hex') => string }).hash

/**
 * Hashes `prev` (64 hex) followed by `buf[s, e)`: with `crypto.hash`, the two are put side by
 * side in a scratch buffer first (a copy of a few hundred bytes costs less than a Hash object).
 */
class Linker {
  #scratch = Buffer.allocUnsafe(64 * 1024)
  link(prev: string, buf: Buffer, s: number, e: number): string {
    if (oneShot === undefined)
      return crypto
        .createHash('sha256')
        .update(prev, 'latin1')
        .update(buf.subarray(s, e))
        .digest('hex')
    const need = 64 + e - s
    if (need > this.#scratch.length) this.#scratch = Buffer.allocUnsafe(need * 2)
    const x = this.#scratch
    x.write(prev, 0, 64, 'latin1')
    buf.copy(x, 64, s, e)
    return oneShot('sha256', x.subarray(0, need), 'hex')
  }
}

/** Check one file on its own (its links to other files are checked by `linkFiles`). */
export async function verifyFile(path: string, opts: VerifyOptions = {}): Promise<FileResult> {
  const max = opts.maxProblems ?? 20
  const key = opts.key
  const r: FileResult = {
    path,
    lines: 0,
    bytes: 0,
    startPrev: undefined,
    startN: undefined,
    name: undefined,
    endHead: undefined,
    endN: undefined,
    problems: [],
    problemCount: 0,
    seals: 0,
    lastSeal: undefined,
    afterSeal: 0,
  }
  const problem = (kind: ProblemKind, line: number, message: string): void => {
    r.problemCount++
    if (r.problems.length < max) r.problems.push({ kind, file: path, line, message })
  }
  // The hashes of the last RING positions seen, to find a moved line's true predecessor.
  const ringN = new Float64Array(RING).fill(-1)
  const ringH: string[] = new Array(RING)
  let head: string | undefined
  let nPrev = 0
  let maxN = 0
  let started = false
  const linker = new Linker()

  const known = (n: number): string | undefined =>
    ringN[n & (RING - 1)] === n ? ringH[n & (RING - 1)] : undefined

  const onLine = (buf: Buffer, s: number, e: number, lineNo: number, special: boolean): void => {
    const len = e - s
    if (
      len < CHAIN_TAIL + 2 ||
      buf[e - 1] !== 0x7d ||
      buf[e - 2] !== 0x22 ||
      buf.compare(MARK, 0, MARK.length, e - CHAIN_TAIL, e - CHAIN_TAIL + MARK.length) !== 0
    ) {
      problem('unchained', lineNo, `line ${lineNo} is not a chained line (added, cut or torn)`)
      return
    }
    const pEnd = e - CHAIN_TAIL
    const stored = buf.toString('latin1', e - 66, e - 2)
    // The position: the digits before the chain mark, after `,"n":`.
    let n = 0
    let mul = 1
    let i = pEnd - 1
    for (; i > s && buf[i]! >= 48 && buf[i]! <= 57; i--) {
      n += (buf[i]! - 48) * mul
      mul *= 10
    }
    if (i === pEnd - 1 || buf[i] !== 0x3a || buf[i - 1] !== 0x22 || buf[i - 2] !== 0x6e) {
      problem('unchained', lineNo, `line ${lineNo} has no chain position ("n")`)
      return
    }
    let rec: Record<string, unknown> | undefined
    if (special) {
      try {
        rec = JSON.parse(buf.toString('utf8', s, e)) as Record<string, unknown>
      } catch {}
    }
    const event = rec?.event
    if (!started) {
      started = true
      if (event === 'log.anchor' && typeof rec!.prev === 'string') {
        head = rec!.prev as string
        nPrev = n - 1
        maxN = nPrev
        r.startPrev = head
        r.startN = n
        r.name = typeof rec!.file === 'string' ? rec!.file : undefined
      } else {
        problem(
          'anchor',
          lineNo,
          `line ${lineNo} is not a log.anchor line: the beginning of the file is missing`,
        )
      }
    }
    if (head === undefined) {
      // Nothing to check this line against: take it as it is and check what follows.
      head = stored
    } else if (n === nPrev + 1 && nPrev === maxN) {
      // The common case: the next position, right after the previous line.
      if (linker.link(head, buf, s, pEnd) !== stored)
        problem(
          'edited',
          lineNo,
          `line ${lineNo} was edited: its content does not match its hash (position ${n})`,
        )
    } else if (known(n) !== undefined) {
      problem(
        'inserted',
        lineNo,
        `line ${lineNo} repeats position ${n}: a line was inserted (or copied) here or just before`,
      )
    } else if (n > maxN + 1) {
      const k = n - maxN - 1
      problem(
        'deleted',
        lineNo,
        `${k} line${k === 1 ? '' : 's'} deleted before line ${lineNo} (position ${maxN} is followed by ${n})`,
      )
    } else {
      const pred = known(n - 1)
      const ok = pred !== undefined && linker.link(pred, buf, s, pEnd) === stored
      if (n <= maxN)
        problem(
          'reordered',
          lineNo,
          ok
            ? `line ${lineNo} is out of order: position ${n} comes after ${maxN}`
            : `line ${lineNo} is out of order and does not match its hash (position ${n} after ${maxN})`,
        )
      else if (!ok)
        problem(
          'edited',
          lineNo,
          `line ${lineNo} was edited: its content does not match its hash (position ${n})`,
        )
    }
    if (event === 'log.anchor' && lineNo > 1 && rec!.prev !== head && r.problemCount === 0)
      problem(
        'anchor',
        lineNo,
        `line ${lineNo}: the anchor continues from ${String(rec!.prev).slice(0, 12)}…, the line before ends with ${head!.slice(0, 12)}…`,
      )
    if (event === 'log.seal') {
      r.seals++
      const sealHead = rec!.head
      const sig = rec!.sig
      let bad: string | undefined
      if (sealHead !== head) bad = 'it seals another head than the line before'
      else if (key !== undefined) {
        if (rec!.alg !== key.alg || rec!.key !== key.kid)
          bad = `it was made with ${String(rec!.alg)} key ${String(rec!.key)}, not with the given ${key.alg} key ${key.kid}`
        else if (typeof sig !== 'string' || !key.verify(head!, sig)) bad = 'its signature is wrong'
      }
      if (bad !== undefined) problem('seal', lineNo, `line ${lineNo}: bad seal: ${bad}`)
      else {
        r.lastSeal = { file: path, line: lineNo, reason: String(rec!.reason) }
        r.afterSeal = -1
      }
    }
    r.afterSeal++
    const slot = n & (RING - 1)
    ringN[slot] = n
    ringH[slot] = stored
    head = stored
    nPrev = n
    if (n > maxN) maxN = n
    r.endHead = stored
    r.endN = n
  }

  const fh = await open(path, 'r')
  try {
    let buf = Buffer.allocUnsafe(BUFFER)
    let have = 0
    let lineNo = 0
    for (;;) {
      if (have === buf.length) {
        // One line longer than the buffer: make room for it.
        const bigger = Buffer.allocUnsafe(buf.length * 2)
        buf.copy(bigger, 0, 0, have)
        buf = bigger
      }
      const { bytesRead } = await fh.read(buf, have, buf.length - have, null)
      r.bytes += bytesRead
      const end = have + bytesRead
      let s = 0
      let evt = buf.indexOf(EVENT_LOG, 0)
      if (evt >= end) evt = -1
      for (let nl = buf.indexOf(NEWLINE, 0); nl !== -1 && nl < end; nl = buf.indexOf(NEWLINE, s)) {
        lineNo++
        let special = false
        if (evt !== -1 && evt < nl) {
          special = true
          evt = buf.indexOf(EVENT_LOG, nl)
          if (evt >= end) evt = -1
        }
        onLine(buf, s, nl, lineNo, special)
        s = nl + 1
      }
      if (bytesRead === 0) {
        if (s < end) {
          lineNo++
          problem('unchained', lineNo, `line ${lineNo} is incomplete (no newline at the end)`)
        }
        break
      }
      buf.copy(buf, 0, s, end)
      have = end - s
    }
    r.lines = lineNo
  } finally {
    await fh.close()
  }
  if (r.lines === 0) problem('anchor', 0, 'the file is empty')
  return r
}

export interface ChainResult {
  /** The files of one chain, oldest first. */
  files: FileResult[]
  fromGenesis: boolean
  /** Chained lines after the last valid seal of the chain. */
  unsealed: number
  lastSeal: SealInfo | undefined
}

export interface LinkResult {
  chains: ChainResult[]
  problems: Problem[]
}

/**
 * Order files by their anchors: a file follows the one whose last hash its anchor holds.
 * Files of the same log (same anchor name) that do not link make a gap (a file missing);
 * two files continuing from the same hash make a fork (a copy or a replaced file).
 */
export function linkFiles(results: readonly FileResult[]): LinkResult {
  const problems: Problem[] = []
  const byEnd = new Map<string, FileResult>()
  for (const f of results) if (f.endHead !== undefined) byEnd.set(f.endHead, f)
  const next = new Map<FileResult, FileResult>()
  const hasPrev = new Set<FileResult>()
  for (const f of results) {
    if (f.startPrev === undefined || f.startPrev === GENESIS) continue
    const before = byEnd.get(f.startPrev)
    if (before === undefined || before === f) continue
    const taken = next.get(before)
    if (taken !== undefined) {
      problems.push({
        kind: 'fork',
        file: f.path,
        line: 1,
        message: `${f.path} and ${taken.path} both continue from the end of ${before.path} (a copy, or a file replaced)`,
      })
      continue
    }
    next.set(before, f)
    hasPrev.add(f)
  }
  const chains: ChainResult[] = []
  for (const f of results) {
    if (hasPrev.has(f)) continue
    const files: FileResult[] = []
    const seen = new Set<FileResult>()
    for (let c: FileResult | undefined = f; c !== undefined && !seen.has(c); c = next.get(c)) {
      seen.add(c)
      files.push(c)
    }
    let unsealed = 0
    let lastSeal: SealInfo | undefined
    for (const x of files) {
      if (x.lastSeal !== undefined) {
        lastSeal = x.lastSeal
        unsealed = x.afterSeal
      } else unsealed += x.afterSeal
    }
    chains.push({ files, fromGenesis: f.startPrev === GENESIS, unsealed, lastSeal })
  }
  // Chains of the same log that do not join: a file between them is missing.
  const byName = new Map<string, ChainResult[]>()
  for (const c of chains) {
    const name = c.files[0]!.name
    if (name === undefined) continue
    const list = byName.get(name) ?? []
    list.push(c)
    byName.set(name, list)
  }
  for (const list of byName.values()) {
    if (list.length < 2) continue
    list.sort((a, b) => (a.files[0]!.startN ?? 0) - (b.files[0]!.startN ?? 0))
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1]!.files.at(-1)!
      const b = list[i]!.files[0]!
      problems.push({
        kind: 'missing-file',
        file: b.path,
        line: 1,
        message: `a file is missing between ${a.path} (ends at position ${a.endN}) and ${b.path} (its anchor continues from position ${(b.startN ?? 1) - 1}, from a hash no given file ends with)`,
      })
    }
  }
  return { chains, problems }
}
