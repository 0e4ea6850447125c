/**
 * Where activity lines go: a file (or stdout) through sonic-boom, pino's destination.
 *
 * Lines are encoded straight into a Buffer as they come and handed to sonic-boom (in buffer
 * mode) as one chunk per flush (every `flushInterval` ms, or sooner once 64 KiB — or a
 * quarter of `maxBuffer`, if smaller — are pending), so a busy server makes a few large
 * writes instead of one per line, encodes each byte once, and keeps no long-lived strings on
 * the JS heap. In `sync` mode
 * every line is written before `write()` returns. Chunks always end on a line boundary, which
 * is what keeps rotation and dropping from tearing a line.
 *
 * Failure policy: a write error (disk full, EIO, …) is reported once; sonic-boom keeps the
 * unwritten bytes and the sink retries every second (and on every flush), up to `maxBuffer`
 * bytes, beyond which whole chunks are dropped and their lines counted. Once the backlog has
 * been written again the sink reports how many lines were lost (including any dropped while
 * the backlog drained). A partly written chunk is completed, never repeated, so recovery
 * leaves no torn or duplicated line.
 *
 * The file is checked every few seconds: if it was deleted or moved away without a SIGHUP,
 * it is reopened (recreated) at its path.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs'
import { dirname } from 'node:path'
import sonicBoom from 'sonic-boom'

// sonic-boom is CommonJS: its class hangs off module.exports.
const { SonicBoom } = sonicBoom
type SonicBoom = InstanceType<typeof SonicBoom>

/**
 * The parts of sonic-boom's state (4.x) the sink reads: its typings declare none of them.
 * Used to know whether a reopen is still pending and to flush synchronously without
 * sonic-boom's own `flushSync()`, which retries a failing write (ENOSPC, EIO) forever.
 */
interface BoomState {
  fd: number
  destroyed: boolean
  /** Buffer mode: groups of Buffers, each group written as one (`_lens` has their sizes). */
  _bufs: Buffer[][]
  _lens: number[]
  _writingBuf: Buffer
  _writing: boolean
  _opening: boolean
  _reopening: boolean
  _len: number
}

const EARLY_FLUSH_BYTES = 64 * 1024
/** Room for one flush's worth of lines plus one worst-case (3 bytes per UTF-16 unit) line. */
const CHUNK_BYTES = 96 * 1024
const EMPTY = Buffer.alloc(0)
const RETRY_MS = 1000
/** How often a file sink checks that its path still names the file it writes. */
export const DETACH_CHECK_MS = 2000
/** Longest a synchronous flush keeps retrying EAGAIN/EBUSY (a full pipe on stdout). */
const SYNC_BUSY_MS = 1000

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
  /**
   * Everything buffered has been written again after a failure (`failed`) or after lines were
   * dropped because the writer could not keep up: `dropped` lines were lost since the last report.
   */
  onRecover?: (dropped: number, failed: boolean) => void
  /** A rotation happened. */
  onRotate?: (rotatedTo: string) => void
  /** The file was deleted or moved away and has been reopened at its path. */
  onReopen?: (reason: string) => void
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
  /** Lines not yet handed to sonic-boom: `#chunk[0, #off)`. */
  #chunk = Buffer.allocUnsafe(CHUNK_BYTES)
  #off = 0
  #earlyFlush: number
  #timer: NodeJS.Timeout | undefined
  #failing = false
  /** Lines dropped since the last onRecover report. */
  #droppedUnreported = 0
  #retry: NodeJS.Timeout | undefined
  #detachCheck: NodeJS.Timeout | undefined
  #closed = false
  /** close() has settled: nothing is buffered any more (written, or counted as dropped). */
  #finished = false

  private constructor(boom: SonicBoom, path: string | undefined, opts: SinkOptions) {
    this.#boom = boom
    this.path = path
    this.#opts = opts
    // A chunk bigger than maxBuffer would be dropped even by a healthy sink.
    this.#earlyFlush = Math.max(1, Math.min(EARLY_FLUSH_BYTES, Math.floor(opts.maxBuffer / 4)))
    boom.on('error', (err: NodeJS.ErrnoException) => this.#onError(err))
    boom.on('drop', (data: Buffer) => this.#onDrop(data))
    boom.on('drain', () => this.#onDrain())
    if (path !== undefined) {
      this.#detachCheck = setInterval(() => this.#checkDetached(), DETACH_CHECK_MS)
      this.#detachCheck.unref()
    }
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
      const out = new Error(
        `cannot open activity log ${path}: ${e.code ? `${e.message.replace(`${e.code}: `, '').replace(/, \w+ '[^']*'$/, '')} (${e.code})` : e.message}`,
      )
      ;(out as NodeJS.ErrnoException).code = e.code
      throw out
    }
    const boom = new SonicBoom({
      dest: path,
      append: true,
      // A reopen (rotation, SIGHUP, deleted file) recreates a removed directory.
      mkdir: true,
      sync: opts.sync,
      maxLength: opts.maxBuffer,
      maxWrite: 8 * 1024 * 1024,
      contentMode: 'buffer',
    })
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err)
      boom.once('error', onError)
      boom.once('ready', () => {
        boom.off('error', onError)
        resolve()
      })
    })
    const sink = new Sink(boom, path, opts)
    try {
      sink.bytes = statSync(path).size
    } catch {}
    return sink
  }

  static fd(fd: number, opts: SinkOptions): Sink {
    const boom = new SonicBoom({
      fd,
      sync: opts.sync,
      maxLength: opts.maxBuffer,
      maxWrite: 1024 * 1024,
      contentMode: 'buffer',
    })
    return new Sink(boom, undefined, opts)
  }

  /** Bytes held in memory and not yet written (pending lines plus sonic-boom's buffer). */
  get buffered(): number {
    return this.#finished ? 0 : this.#off + this.#state()._len
  }

  write(line: string): void {
    if (this.#closed) return
    if (this.#opts.sync) {
      this.#hand(Buffer.from(line))
      return
    }
    if (this.#off + line.length * 3 > CHUNK_BYTES) {
      // Might not fit: write out what is pending; a line too long for any chunk goes alone.
      this.flush()
      if (line.length * 3 > CHUNK_BYTES) {
        this.#hand(Buffer.from(line))
        return
      }
    }
    this.#off += this.#chunk.write(line, this.#off)
    if (this.#off >= this.#earlyFlush) this.flush()
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
    if (this.#off === 0) return
    // sonic-boom keeps the chunk until it is written: hand it over and start a fresh one.
    const chunk = this.#chunk.subarray(0, this.#off)
    this.#chunk = Buffer.allocUnsafe(CHUNK_BYTES)
    this.#off = 0
    this.#hand(chunk)
  }

  #hand(chunk: Buffer): void {
    boomWrite(this.#boom, chunk)
    const size = this.#opts.rotateSize ?? 0
    if (size > 0 && this.path !== undefined) {
      this.bytes += chunk.length
      if (this.bytes >= size && !this.#closed) this.rotate()
    }
  }

  /**
   * Write everything now, synchronously (fatal errors, exit). Best effort: gives up on the
   * first hard error (the device refuses), never loops. A chunk whose asynchronous write is
   * in flight is left to that write.
   */
  flushSync(): void {
    // Also while close() is still writing: a second signal must not lose its backlog.
    if (this.#finished) return
    this.flush()
    const b = this.#state()
    if (b.fd < 0 || b.destroyed || !Array.isArray(b._bufs) || !Array.isArray(b._lens)) return
    if (!b._writing && b._writingBuf.length > 0) {
      b._bufs.unshift([b._writingBuf])
      b._lens.unshift(b._writingBuf.length)
      b._writingBuf = EMPTY
    }
    const busyUntil = Date.now() + SYNC_BUSY_MS
    while (b._bufs.length > 0) {
      const group = b._bufs[0]!
      const buf = group.length === 1 ? group[0]! : Buffer.concat(group)
      if (buf.length === 0) {
        b._bufs.shift()
        b._lens.shift()
        continue
      }
      try {
        const n = writeSync(b.fd, buf)
        b._len = Math.max(b._len - n, 0)
        if (n >= buf.length) {
          b._bufs.shift()
          b._lens.shift()
        } else {
          b._bufs[0] = [buf.subarray(n)]
          b._lens[0] = buf.length - n
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException
        if ((e.code === 'EAGAIN' || e.code === 'EBUSY') && Date.now() < busyUntil) {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10)
          continue
        }
        // Keep what could not be written where an asynchronous retry finds it (as the chunk
        // being written, unless a write is already in flight), so that a partly written head
        // is completed, never repeated.
        if (!b._writing) {
          b._writingBuf = buf
          b._bufs.shift()
          b._lens.shift()
        } else {
          b._bufs[0] = [buf]
        }
        this.#onError(e)
        return
      }
    }
  }

  /**
   * Move the current file to `file.1` (shifting older ones up to `keep`) and continue in a
   * fresh file. Lines already handed over finish in the renamed file (same inode). Returns
   * false (and does nothing) while the file of the previous rotation is not open yet (renaming
   * again would rotate the wrong file) and while writes fail (the unwritten rest of a partly
   * written line would start the new file: a torn line).
   */
  rotate(): boolean {
    if (this.path === undefined || this.#closed) return false
    if (this.#reopenPending() || this.#failing) return false
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
      const e = err as NodeJS.ErrnoException
      // The file is already gone (deleted from under us): nothing to rotate, start afresh.
      if (e.code === 'ENOENT') this.reopen()
      else this.#onError(e)
      return false
    }
    this.bytes = 0
    this.#boom.reopen()
    this.#opts.onRotate?.(`${this.path}.1`)
    return true
  }

  /** Reopen the same path (after an external logrotate moved the file: SIGHUP). */
  reopen(): void {
    if (this.path === undefined || this.#closed) return
    this.flush()
    try {
      // Reopening the same file (no rename) continues its size.
      this.bytes = statSync(this.path).size
    } catch {
      this.bytes = 0
    }
    this.#boom.reopen()
  }

  /** True when the file at `path` is no longer the one being written (deleted or moved). */
  isDetached(): boolean {
    const fd = this.#state().fd
    if (this.path === undefined || fd < 0) return false
    try {
      const a = statSync(this.path)
      const b = fstatSync(fd)
      return a.ino !== b.ino || a.dev !== b.dev
    } catch {
      return true
    }
  }

  #checkDetached(): void {
    if (this.#closed || this.#reopenPending() || !this.isDetached()) return
    let reason = 'deleted'
    try {
      // Still linked somewhere: renamed or replaced, not deleted.
      if (fstatSync(this.#state().fd).nlink > 0) reason = 'moved'
    } catch {}
    this.reopen()
    this.#opts.onReopen?.(reason)
  }

  /** A rotation or reopen has been asked of sonic-boom and the new file is not open yet. */
  #reopenPending(): boolean {
    const b = this.#state()
    return b._reopening === true || b._opening === true
  }

  #state(): BoomState {
    return this.#boom as unknown as BoomState
  }

  /** Flush and close; resolves when everything handed over is on disk (or failed). */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    // No rotation on the way out: its "Log rotated" line would have nowhere to go.
    this.#closed = true
    this.flush()
    if (this.#retry) clearInterval(this.#retry)
    if (this.#detachCheck) clearInterval(this.#detachCheck)
    const boom = this.#boom
    if (this.path === undefined) {
      // Never close stdout; wait until sonic-boom has written everything (its flush(cb)
      // calls back at once, without waiting), at most 2 s for a reader that does not read.
      return new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          this.#finished = true
          resolve()
        }
        const timer = setTimeout(done, 2000)
        const b = this.#state()
        if (!b._writing && b._len === 0) return done()
        boom.once('drain', done)
        boom.once('error', done)
      })
    }
    return new Promise((resolve) => {
      // A device that refuses every write never finishes; do not hang shutdown on it. (Not
      // unref'd: it keeps the process alive until the log is settled one way or the other.)
      const timer = setTimeout(() => {
        settle(true)
        try {
          boom.destroy()
        } catch {}
      }, 3000)
      const settle = (lost: boolean): void => {
        if (this.#finished) return
        clearTimeout(timer)
        // What could not be written by now never will be: count it with the dropped lines.
        if (lost) this.#countUnwritten()
        this.#finished = true
        resolve()
      }
      boom.once('close', () => settle(false))
      boom.once('error', () => settle(true))
      const end = (): void => {
        try {
          boom.end()
        } catch {
          settle(true)
        }
      }
      // sonic-boom drops a reopen asked for before end() (a rotation whose write is still in
      // flight) and then never closes: let the new file open first.
      if (this.#reopenPending()) boom.once('ready', end)
      else end()
    })
  }

  #countUnwritten(): void {
    const b = this.#state()
    if (!Array.isArray(b._bufs)) return
    this.#onDrop(b._writingBuf)
    for (const group of b._bufs) for (const chunk of group) this.#onDrop(chunk)
  }

  #onError(err: NodeJS.ErrnoException): void {
    this.errors++
    if (!this.#failing) {
      this.#failing = true
      this.#opts.onError?.(err)
    }
    // Retry even when no new lines arrive, so a recovered disk is noticed. (sonic-boom keeps
    // the unwritten chunk; an empty write makes it try that chunk again.)
    if (this.#retry === undefined && !this.#closed) {
      this.#retry = setInterval(() => {
        if (!this.#closed) boomWrite(this.#boom, EMPTY)
      }, RETRY_MS)
      this.#retry.unref()
    }
  }

  #onDrop(data: Buffer): void {
    let n = 0
    for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) n++
    this.dropped += n
    this.#droppedUnreported += n
  }

  /** sonic-boom has written everything it held: a failure (or a drop spell) is over. */
  #onDrain(): void {
    if (!this.#failing && this.#droppedUnreported === 0) return
    const failed = this.#failing
    const dropped = this.#droppedUnreported
    this.#failing = false
    this.#droppedUnreported = 0
    if (this.#retry) {
      clearInterval(this.#retry)
      this.#retry = undefined
    }
    this.#opts.onRecover?.(dropped, failed)
  }
}

/** sonic-boom's typings only know its string mode; in buffer mode `write` takes Buffers. */
function boomWrite(boom: SonicBoom, data: Buffer): void {
  ;(boom.write as unknown as (data: Buffer) => boolean).call(boom, data)
}

function flushTimer(sink: Sink): void {
  sink.flush()
}
