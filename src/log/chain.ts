/**
 * The hash chain of a tamper-evident activity log (`--log-chain`, json format).
 *
 * Every line ends with its position and its link: `{…fields,"n":<position>,"chain":"<hex>"}`
 * where `hex = SHA-256(previous line's hex ‖ the line's bytes up to, not including,
 * ,"chain":")` — the previous hash as its 64 ASCII hex characters, the line as UTF-8. So a
 * verifier hashes each line's bytes as they are on disk, with no parsing and no
 * re-serialising, and an edited, inserted, deleted or reordered line breaks the link at
 * that line. `n` counts lines since the chain's genesis (1 = the first anchor), which tells
 * a deleted line from an edited or an inserted one.
 *
 * Every file starts with a `log.anchor` line holding `prev`, the hash the chain continues
 * from: the last line of the previous file (rotation, reopen, restart) or 64 zeros (genesis).
 * With a seal key, `log.seal` lines sign the chain head (the hash of the line before) every
 * `every` lines, every `interval`, and as the last line of a file being rotated or closed.
 *
 * One Chain per destination (the file, stdout): the sink calls it where it knows which file
 * a line lands in. The unchained path never reaches this module.
 */
import * as crypto from 'node:crypto'
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { hostname } from 'node:os'
import { jsonString } from './escape.js'
import type { SealKey } from './seal-key.js'

/** The `prev` of a chain's very first anchor. */
export const GENESIS = '0'.repeat(64)
/** What precedes a line's hash: the line's hashed bytes end right before it. */
export const CHAIN_MARK = ',"chain":"'
/** `,"chain":"` + 64 hex + `"}`: the bytes after the hashed part of a line (newline excluded). */
export const CHAIN_TAIL = CHAIN_MARK.length + 64 + 2

/** `crypto.hash` (Node ≥ 20.12): one call, no Hash object; about half the cost per line. */
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash

/** The hash of a line's hashed part `p` following `prev` (64 hex characters). */
export const link: (prev: string, p: string) => string =
  oneShot !== undefined
    ? (prev, p) => oneShot('sha256', prev + p, 'hex')
    : (prev, p) => crypto.createHash('sha256').update(prev, 'latin1').update(p).digest('hex')

export interface ChainOptions {
  /** Seals: the key, and how often (lines; 0 = only by time and at rotation/close). */
  key?: SealKey | undefined
  every?: number
}

/** Where an existing file's chain ends. */
export interface ChainEnd {
  head: string
  n: number
  /** The file's last line is whole and chained: new lines can follow it in the same file. */
  clean: boolean
}

export class Chain {
  #head = GENESIS
  #n = 0
  #sinceSeal = 0
  readonly #key: SealKey | undefined
  readonly #every: number
  readonly #prefix: string

  constructor(opts: ChainOptions = {}) {
    this.#key = opts.key
    this.#every = opts.every ?? 0
    this.#prefix = `,"pid":${process.pid},"hostname":${jsonString(hostname())},"event":`
  }

  /** The hash of the last line chained. */
  get head(): string {
    return this.#head
  }

  /** Lines chained since the last seal. */
  get unsealed(): number {
    return this.#sinceSeal
  }

  /** Continue from where an existing file's chain ended. */
  resume(end: ChainEnd): void {
    this.#head = end.head
    this.#n = end.n
  }

  /** Chain one json line (ending in `}\n`). */
  line(line: string): string {
    const p = `${line.slice(0, line.length - 2)},"n":${++this.#n}`
    const h = link(this.#head, p)
    this.#head = h
    this.#sinceSeal++
    return `${p},"chain":"${h}"}\n`
  }

  /** A seal is due after the line just chained (`every` lines). */
  get sealDue(): boolean {
    return this.#key !== undefined && this.#every > 0 && this.#sinceSeal >= this.#every
  }

  /** The first line of a file: where the chain comes from. `reason`: start, rotate, reopen. */
  anchor(file: string, reason: string): string {
    return this.line(
      `{"level":30,"time":${Date.now()}${this.#prefix}"log.anchor","file":${jsonString(file)},"prev":"${this.#head}","reason":"${reason}","msg":"Log anchor"}\n`,
    )
  }

  /**
   * A seal of the current head (undefined without a key, or when the last line is a seal).
   * `reason`: lines, interval, rotate, close.
   */
  seal(reason: string): string | undefined {
    const key = this.#key
    if (key?.sign === undefined || this.#sinceSeal === 0) return undefined
    const head = this.#head
    const lines = this.#sinceSeal
    const out = this.line(
      `{"level":30,"time":${Date.now()}${this.#prefix}"log.seal","head":"${head}","lines":${lines},"alg":"${key.alg}","key":"${key.kid}","sig":"${key.sign(head)}","reason":"${reason}","msg":"Log seal"}\n`,
    )
    this.#sinceSeal = 0
    return out
  }
}

/** Bytes read from the end of an existing file to find its last chained line. */
const TAIL_READ = 1024 * 1024
const HEX64 = /^[0-9a-f]{64}$/

/**
 * Where the chain of the file open at `fd` ends: the last whole line's hash and position.
 * Undefined when the file is empty or its last whole line is not chained.
 */
export function chainEnd(fd: number): ChainEnd | undefined {
  const size = fstatSync(fd).size
  if (size === 0) return undefined
  const len = Math.min(size, TAIL_READ)
  const buf = Buffer.allocUnsafe(len)
  let got = 0
  while (got < len) {
    const n = readSync(fd, buf, got, len - got, size - len + got)
    if (n === 0) break
    got += n
  }
  const data = buf.subarray(0, got)
  const clean = data[data.length - 1] === 10
  // The last complete line: between the last two newlines (a torn tail is skipped).
  const end = clean ? data.length - 1 : data.lastIndexOf(10)
  if (end <= 0) return undefined
  const start = data.lastIndexOf(10, end - 1) + 1
  const line = data.toString('utf8', start, end)
  const hex = line.slice(line.length - 66, line.length - 2)
  if (!line.endsWith('"}') || line.slice(line.length - CHAIN_TAIL, line.length - 66) !== CHAIN_MARK)
    return undefined
  if (!HEX64.test(hex)) return undefined
  const m = /,"n":(\d+)$/.exec(line.slice(0, line.length - CHAIN_TAIL))
  if (!m) return undefined
  return { head: hex, n: Number(m[1]), clean }
}

/** `chainEnd` of the file at `path` (undefined if it does not exist). */
export function chainEndOf(path: string): ChainEnd | undefined {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch {
    return undefined
  }
  try {
    return chainEnd(fd)
  } finally {
    closeSync(fd)
  }
}
