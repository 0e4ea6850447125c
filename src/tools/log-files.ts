/**
 * The files of an activity log and reading them: which files an argument means (globs,
 * directories, rotated siblings in time order), streaming lines through one fixed buffer,
 * the last lines of a file read backwards, and following a file across rotation.
 *
 * Lines are split here rather than with `readline`: one `toString` per chunk up to its last
 * newline, then `indexOf('\n')` in that string, is about twice as fast (see docs/logs-tool.md).
 * A newline byte never occurs inside a UTF-8 sequence, so cutting chunks at one is safe.
 */
import { type FileHandle, open, readdir, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/** Read size of the streaming reader (a line longer than this grows it for that line). */
export const CHUNK = 1 << 20

/** A file that cannot be read: the tool reports it and exits 1. */
export class FileError extends Error {}

function fileError(path: string, err: unknown): FileError {
  const code = (err as NodeJS.ErrnoException).code
  const why =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EACCES'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'is a directory'
          : String((err as Error).message ?? err)
  return new FileError(`cannot read ${path}: ${why}`)
}

const GLOB = /[*?[]/

function globRegex(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2)
      if (end < 0) re += '\\['
      else {
        const body = glob.slice(i + 1, end)
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`
        i = end
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/** `name.3` → [name, 3]; `name` → [name, 0]. */
function rotationKey(path: string): [string, number] {
  const m = /^(.*)\.(\d+)$/.exec(path)
  return m ? [m[1]!, Number(m[2])] : [path, 0]
}

/**
 * Rotated siblings in time order: `f.3 f.2 f.1 f` (wirelog rotates `f` to `f.1`, shifting
 * older ones up). Files of different logs keep the order they were given in.
 */
export function timeOrder(paths: readonly string[]): string[] {
  const groups = new Map<string, Array<[string, number]>>()
  for (const p of new Set(paths)) {
    const [stem, n] = rotationKey(p)
    let g = groups.get(stem)
    if (g === undefined) {
      g = []
      groups.set(stem, g)
    }
    g.push([p, n])
  }
  return [...groups.values()].flatMap((g) => g.sort((a, b) => b[1] - a[1]).map(([p]) => p))
}

async function expandGlob(pattern: string): Promise<string[]> {
  const dir = dirname(pattern)
  if (GLOB.test(dir))
    throw new FileError(`${pattern}: a pattern may only use * ? [ ] in the file name`)
  const re = globRegex(basename(pattern))
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    throw fileError(dir, err)
  }
  const hits = names.filter((n) => re.test(n)).map((n) => (dir === '.' ? n : join(dir, n)))
  if (hits.length === 0) throw new FileError(`no file matches ${pattern}`)
  return hits
}

/** The log file `name` in `dir` and its rotated siblings (`name.1` …), oldest first. */
async function siblings(dir: string, names: readonly string[], name: string): Promise<string[]> {
  const re = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\.\\d+)?$`)
  return timeOrder(names.filter((n) => re.test(n)).map((n) => join(dir, n)))
}

async function expandDir(dir: string, logName: string): Promise<string[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    throw fileError(dir, err)
  }
  if (names.includes(logName)) return siblings(dir, names, logName)
  // Not the configured name: every `*.log` there, each with its rotated siblings.
  const logs = names.filter((n) => n.endsWith('.log')).sort()
  const out: string[] = []
  for (const n of logs) out.push(...(await siblings(dir, names, n)))
  if (out.length === 0) throw new FileError(`no log files in ${dir} (no ${logName}, no *.log)`)
  return out
}

/**
 * The files the arguments name, in reading order: a file as is, a pattern expanded (its
 * matches in rotation/time order), a directory as its log file and rotated siblings. Every
 * file must exist (FileError otherwise).
 */
export async function resolveFiles(args: readonly string[], logName: string): Promise<string[]> {
  const out: string[] = []
  for (const a of args) {
    let st: Awaited<ReturnType<typeof stat>> | undefined
    try {
      st = await stat(a)
    } catch (err) {
      if (!GLOB.test(a)) throw fileError(a, err)
    }
    if (st === undefined) out.push(...timeOrder(await expandGlob(a)))
    else if (st.isDirectory()) out.push(...(await expandDir(a, logName)))
    else out.push(a)
  }
  // Shell-expanded `file*` arrives as `file file.1 file.2`: put it in time order.
  return timeOrder(out)
}

/** The configured log file and, with `rotated`, its siblings (only those that exist). */
export async function defaultFiles(path: string, rotated: boolean): Promise<string[]> {
  try {
    await stat(path)
  } catch (err) {
    throw fileError(path, err)
  }
  if (!rotated) return [path]
  const dir = dirname(path)
  return siblings(dir, await readdir(dir), basename(path))
}

/**
 * Call `onLine` for every line of `path` from byte `start`, reading `CHUNK` bytes at a time
 * into one buffer; `onRead(bytes)` after each chunk's lines (awaited). A last line without
 * its newline is passed too. Resolves to the bytes read.
 */
export async function eachLine(
  path: string,
  onLine: (line: string) => void,
  onRead?: (bytes: number) => void | Promise<void>,
  start = 0,
): Promise<number> {
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (err) {
    throw fileError(path, err)
  }
  let buf = Buffer.allocUnsafe(CHUNK)
  let filled = 0
  let pos = start
  try {
    for (;;) {
      if (filled === buf.length) {
        // One line longer than the buffer: grow for it.
        const bigger = Buffer.allocUnsafe(buf.length * 2)
        buf.copy(bigger, 0, 0, filled)
        buf = bigger
      }
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, pos)
      if (bytesRead === 0) break
      pos += bytesRead
      filled += bytesRead
      const last = buf.lastIndexOf(10, filled - 1)
      if (last < 0) continue
      const text = buf.toString('utf8', 0, last)
      let i = 0
      for (;;) {
        const j = text.indexOf('\n', i)
        if (j < 0) {
          onLine(text.slice(i))
          break
        }
        onLine(text.slice(i, j))
        i = j + 1
      }
      buf.copy(buf, 0, last + 1, filled)
      filled -= last + 1
      // After the chunk's lines: a slow consumer (a pipe) holds the next read back.
      await onRead?.(bytesRead)
    }
    if (filled > 0) onLine(buf.toString('utf8', 0, filled))
  } finally {
    await fh.close()
  }
  return pos - start
}

/**
 * The last lines of `path` for which `keep(line)` holds, at most `n`, oldest first, read
 * backwards in chunks. `end` is the offset after the last newline (where following starts);
 * `partial` is an unterminated last line, if any (not counted in the n).
 */
export async function lastLines(
  path: string,
  n: number,
  keep: (line: string) => boolean,
): Promise<{ lines: string[]; end: number; partial: string }> {
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (err) {
    throw fileError(path, err)
  }
  try {
    const size = (await fh.stat()).size
    const readAt = async (from: number, len: number): Promise<Buffer> => {
      const b = Buffer.allocUnsafe(len)
      const { bytesRead } = await fh.read(b, 0, len, from)
      return b.subarray(0, bytesRead)
    }
    // Where the last whole line ends.
    let end = 0
    for (let p = size; p > 0; ) {
      const len = Math.min(CHUNK, p)
      p -= len
      const nl = (await readAt(p, len)).lastIndexOf(10)
      if (nl >= 0) {
        end = p + nl + 1
        break
      }
    }
    const partial = end < size ? (await readAt(end, size - end)).toString('utf8') : ''
    const found: string[] = []
    // `rest`: the bytes from `pos` up to the lines already looked at; it ends with a newline
    // and may begin in the middle of a line that starts before `pos`.
    let pos = end
    let rest = Buffer.alloc(0)
    while (pos > 0 && found.length < n) {
      const len = Math.min(CHUNK, pos)
      pos -= len
      const chunk = await readAt(pos, len)
      const data = rest.length > 0 ? Buffer.concat([chunk, rest]) : chunk
      // Before the first newline: a line that may start in an earlier chunk.
      const k = pos > 0 ? data.indexOf(10) : -1
      rest = pos > 0 ? Buffer.from(data.subarray(0, k + 1)) : Buffer.alloc(0)
      const from = k + 1
      if (from >= data.length) continue
      const lines = data.toString('utf8', from, data.length - 1).split('\n')
      for (let i = lines.length - 1; i >= 0 && found.length < n; i--)
        if (keep(lines[i]!)) found.push(lines[i]!)
    }
    return { lines: found.reverse(), end, partial }
  } finally {
    await fh.close()
  }
}

/** Splits a byte stream into lines, keeping an unterminated end for the next push. */
class LineSplitter {
  #carry = ''
  constructor(readonly onLine: (line: string) => void) {}
  push(chunk: Buffer): void {
    const last = chunk.lastIndexOf(10)
    if (last < 0) {
      this.#carry += chunk.toString('utf8')
      return
    }
    const lines = (this.#carry + chunk.toString('utf8', 0, last)).split('\n')
    this.#carry = chunk.toString('utf8', last + 1)
    for (const l of lines) this.onLine(l)
  }
  /** A torn last line, when its file is left. */
  flush(): void {
    if (this.#carry.length > 0) this.onLine(this.#carry)
    this.#carry = ''
  }
}

interface Followed {
  fh: FileHandle
  ino: number
  pos: number
  split: LineSplitter
  /** Polls with nothing new since the file was rotated away. */
  quiet: number
}

/** How often a followed file is checked. */
const POLL_MS = 100
/** How long a rotated-away file is still read (the writer finishes its hand-over there). */
const DRAIN_POLLS = 20

export interface FollowHandle {
  /** Resolves when following stopped (after `stop()`), rejects on a read error. */
  readonly done: Promise<void>
  stop(): void
}

/**
 * Print new lines of `path` from byte `pos` as they arrive. Rotation (the path now names
 * another file) is seen by the inode: the old file is read to its end first, and for a
 * moment after, since the writer may still finish a hand-over into it; then the new file
 * from its start. A file that shrinks (truncated in place) is read again from the start.
 */
export function follow(
  path: string,
  pos: number,
  onLine: (line: string) => void,
  onNotice: (msg: string) => void,
): FollowHandle {
  let stopped = false
  let wake: (() => void) | undefined
  const stop = (): void => {
    stopped = true
    wake?.()
  }
  const readNew = async (f: Followed): Promise<boolean> => {
    const size = (await f.fh.stat()).size
    if (size < f.pos) {
      onNotice(`${path} was truncated; reading it from the start`)
      f.pos = 0
    }
    let any = false
    const buf = Buffer.allocUnsafe(64 * 1024)
    for (;;) {
      const { bytesRead } = await f.fh.read(buf, 0, buf.length, f.pos)
      if (bytesRead === 0) break
      any = true
      f.pos += bytesRead
      f.split.push(buf.subarray(0, bytesRead))
    }
    return any
  }
  const openAt = async (p: number): Promise<Followed> => {
    const fh = await open(path, 'r')
    const st = await fh.stat()
    return { fh, ino: st.ino, pos: p, split: new LineSplitter(onLine), quiet: 0 }
  }
  const done = (async () => {
    let cur = await openAt(pos)
    const old: Followed[] = []
    try {
      while (!stopped) {
        for (const o of [...old]) {
          if (await readNew(o)) o.quiet = 0
          else if (++o.quiet >= DRAIN_POLLS) {
            o.split.flush()
            await o.fh.close()
            old.splice(old.indexOf(o), 1)
          }
        }
        await readNew(cur)
        let ino: number | undefined
        try {
          ino = (await stat(path)).ino
        } catch {
          // Between the rename and the new file: keep reading the old one.
        }
        if (ino !== undefined && ino !== cur.ino) {
          await readNew(cur)
          old.push(cur)
          onNotice(`${path} was rotated; following the new file`)
          cur = await openAt(0)
          await readNew(cur)
        }
        if (stopped) break
        await new Promise<void>((resolve) => {
          wake = resolve
          setTimeout(resolve, POLL_MS)
        })
        wake = undefined
      }
    } finally {
      for (const o of old) await o.fh.close().catch(() => {})
      await cur.fh.close().catch(() => {})
    }
  })()
  return { done, stop }
}
