/**
 * Where activity lines go: a file (or stdout) through sonic-boom, pino's destination.
 *
 * Lines are coalesced in memory and handed to sonic-boom as one chunk per flush (every
 * `flushInterval` ms, or sooner once 64 KiB are pending), so a busy server makes a few large
 * writes instead of one per line. In `sync` mode every line is written before `write()`
 * returns. Chunks always end on a line boundary, which is what keeps rotation from tearing a
 * line.
 *
 * Failure policy: a write error (disk full, EIO, …) is reported once; sonic-boom keeps the
 * unwritten bytes and retries on the next flush, up to `maxBuffer` bytes, beyond which lines
 * are dropped and counted. When a write succeeds again the sink reports how many were lost.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import sonicBoom from 'sonic-boom'

// sonic-boom is CommonJS: its class hangs off module.exports.
const { SonicBoom } = sonicBoom
type SonicBoom = InstanceType<typeof SonicBoom>

const EARLY_FLUSH_CHARS = 64 * 1024
const RETRY_MS = 1000

export interface SinkOptions {
  sync: boolean
  flushInterval: number
  maxBuffer: number
  /** Rotate at this many bytes (0 = off). Files only. */
  rotateSize?: number
  /** Rotated files kept. */
  rotateKeep?: number
  /** First error after a healthy period. */
  onError?: (err: NodeJS.ErrnoException) => void
  /** Writes work again; `dropped` lines were lost meanwhile. */
  onRecover?: (dropped: number) => void
  /** A rotation happened. */
  onRotate?: (rotatedTo: string) => void
}

export class Sink {
  readonly path: string | undefined
  /** Lines dropped because the buffer was full while writes failed. */
  dropped = 0
  /** Write errors seen (every failed attempt). */
  errors = 0
  /** Bytes handed to the current file (for size rotation). */
  bytes = 0

  #boom: SonicBoom
  #opts: SinkOptions
  #pending = ''
  #timer: NodeJS.Timeout | undefined
  #failing = false
  #droppedSinceError = 0
  #retry: NodeJS.Timeout | undefined
  #closed = false

  private constructor(boom: SonicBoom, path: string | undefined, opts: SinkOptions) {
    this.#boom = boom
    this.path = path
    this.#opts = opts
    boom.on('error', (err: NodeJS.ErrnoException) => this.#onError(err))
    boom.on('drop', (data: string | Buffer) => this.#onDrop(data))
    boom.on('write', () => this.#onWrite())
  }

  /**
   * Open (creating directories) a file for appending. Throws a clear error naming the path
   * when it cannot be opened.
   */
  static async openFile(path: string, opts: SinkOptions): Promise<Sink> {
    try {
      mkdirSync(dirname(path), { recursive: true })
      closeSync(openSync(path, 'a'))
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      const out = new Error(`cannot open activity log ${path}: ${e.code ?? ''} ${e.message}`.trim())
      ;(out as NodeJS.ErrnoException).code = e.code
      throw out
    }
    const boom = new SonicBoom({
      dest: path,
      append: true,
      sync: opts.sync,
      maxLength: opts.maxBuffer,
      maxWrite: 8 * 1024 * 1024,
    })
    await new Promise<void>((resolve, reject) => {
      boom.once('ready', resolve)
      boom.once('error', reject)
    })
    const sink = new Sink(boom, path, opts)
    try {
      sink.bytes = statSync(path).size
    } catch {}
    return sink
  }

  static fd(fd: number, opts: SinkOptions): Sink {
    const boom = new SonicBoom({ fd, sync: opts.sync, maxLength: opts.maxBuffer, maxWrite: 1024 * 1024 })
    return new Sink(boom, undefined, opts)
  }

  write(line: string): void {
    if (this.#closed) return
    if (this.#opts.sync) {
      this.#hand(line)
      return
    }
    this.#pending += line
    if (this.#pending.length >= EARLY_FLUSH_CHARS) this.flush()
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(flushTimer, this.#opts.flushInterval, this)
    }
  }

  /** Hand everything pending to the file writer (asynchronous write). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    if (this.#pending.length === 0) return
    const chunk = this.#pending
    this.#pending = ''
    this.#hand(chunk)
  }

  #hand(chunk: string): void {
    this.#boom.write(chunk)
    const size = this.#opts.rotateSize ?? 0
    if (size > 0 && this.path !== undefined) {
      this.bytes += Buffer.byteLength(chunk)
      if (this.bytes >= size) this.rotate()
    }
  }

  /** Write everything now, synchronously (fatal errors, exit). Best effort. */
  flushSync(): void {
    if (this.#closed) return
    this.flush()
    try {
      this.#boom.flushSync()
    } catch {
      // Not open yet or the device refuses: nothing more can be done synchronously.
    }
  }

  /**
   * Move the current file to `file.1` (shifting older ones up to `keep`) and continue in a
   * fresh file. Lines already handed over finish in the renamed file (same inode).
   */
  rotate(): void {
    if (this.path === undefined || this.#closed) return
    this.flush()
    const keep = this.#opts.rotateKeep ?? 5
    for (let i = keep - 1; i >= 1; i--) {
      const from = `${this.path}.${i}`
      if (existsSync(from)) {
        try {
          renameSync(from, `${this.path}.${i + 1}`)
        } catch {}
      }
    }
    try {
      renameSync(this.path, `${this.path}.1`)
    } catch (err) {
      this.#onError(err as NodeJS.ErrnoException)
      return
    }
    this.bytes = 0
    this.#boom.reopen()
    this.#opts.onRotate?.(`${this.path}.1`)
  }

  /** Reopen the same path (after an external logrotate moved the file: SIGHUP). */
  reopen(): void {
    if (this.path === undefined || this.#closed) return
    this.flush()
    this.bytes = 0
    this.#boom.reopen()
  }

  /** True when the file at `path` is no longer the one being written (deleted or moved). */
  isDetached(): boolean {
    // sonic-boom keeps its descriptor in `fd`, which its typings do not declare.
    const fd = (this.#boom as unknown as { fd: number }).fd
    if (this.path === undefined || fd < 0) return false
    try {
      const a = statSync(this.path)
      const b = fstatSync(fd)
      return a.ino !== b.ino || a.dev !== b.dev
    } catch {
      return true
    }
  }

  /** Flush and close; resolves when everything handed over is on disk (or failed). */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    this.flush()
    this.#closed = true
    if (this.#retry) clearInterval(this.#retry)
    const boom = this.#boom
    if (this.path === undefined) {
      // Never close stdout; just wait for pending data to drain.
      return new Promise((resolve) => {
        try {
          boom.flush((_err?: Error) => resolve())
        } catch {
          resolve()
        }
        setTimeout(resolve, 2000).unref()
      })
    }
    return new Promise((resolve) => {
      const done = (): void => resolve()
      boom.once('close', done)
      boom.once('error', done)
      // A device that refuses every write never finishes; do not hang shutdown on it.
      setTimeout(() => {
        try {
          boom.destroy()
        } catch {}
        resolve()
      }, 3000).unref()
      try {
        boom.end()
      } catch {
        resolve()
      }
    })
  }

  #onError(err: NodeJS.ErrnoException): void {
    this.errors++
    if (!this.#failing) {
      this.#failing = true
      this.#droppedSinceError = 0
      this.#opts.onError?.(err)
      // Retry even when no new lines arrive, so a recovered disk is noticed.
      this.#retry = setInterval(() => {
        if (!this.#closed) this.#boom.write('')
      }, RETRY_MS)
      this.#retry.unref()
    }
  }

  #onDrop(data: string | Buffer): void {
    let n = 0
    const s = typeof data === 'string' ? data : data.toString('latin1')
    for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) n++
    this.dropped += n
    this.#droppedSinceError += n
  }

  #onWrite(): void {
    if (!this.#failing) return
    this.#failing = false
    if (this.#retry) {
      clearInterval(this.#retry)
      this.#retry = undefined
    }
    this.#opts.onRecover?.(this.#droppedSinceError)
  }
}

function flushTimer(sink: Sink): void {
  sink.flush()
}
