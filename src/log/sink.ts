/**
 * Where activity lines go: a file (or stdout), through a small writer of our own on Node's
 * `fs` API: an fd opened in append mode, asynchronous `fs.write`/`fs.writev` of Buffers and
 * `fs.writeSync` for sync mode and the fatal path. (It replaced sonic-boom, whose public API
 * cannot give a synchronous flush that stops at ENOSPC, a memory bound that counts what is
 * really retained, or drop accounting, without reading its private state.)
 *
 * Lines are encoded straight into one reusable Buffer as they come. Every `flushInterval` ms,
 * or sooner once 64 KiB (or a quarter of `maxBuffer`, if smaller) are pending, the pending
 * bytes are handed over: copied into an exactly sized buffer (merged with the previous one
 * that is not being written yet, up to 64 KiB), queued, and written in as few calls as
 * possible. So a busy server makes a few large writes, encodes each byte once, keeps no
 * long-lived strings, and retains no more memory than the bytes it holds. Every queued buffer
 * ends on a line boundary, which is what keeps rotation and dropping from tearing a line. In
 * `sync` mode every line is written before `write()` returns.
 *
 * Failure policy (files): a write error (disk full, EIO, …) is reported once, every failed
 * attempt is counted, and the queue is retried every second and on every flush. It holds up
 * to `maxBuffer` bytes; beyond that a hand-over is dropped whole and its lines are counted.
 * Once everything has been written again the sink reports how many lines were lost
 * (including any dropped while the backlog drained). A buffer written in part is completed
 * (on the fd it started on), never repeated, so recovery leaves no torn or duplicated line.
 * On stdout (or any fd) an error other than EAGAIN is final: the reader is gone (EPIPE), so
 * the sink reports it once, counts what it held as dropped and stops writing.
 *
 * The file is checked every few seconds: if it was deleted or moved away without a SIGHUP,
 * it is reopened (recreated, with its directory) at its path.
 *
 * With a `chain` (`--log-chain`), every line is chained here, where it is known which file it
 * lands in: each file starts with an anchor line, and a file rotated, reopened or closed ends
 * with a seal (when there is a key). What was handed over before a reopen is then kept for
 * the old file, as on rotation, so that the new file starts with its anchor.
 */
import {
  close as closeFd,
  existsSync,
  fstatSync,
  mkdir,
  mkdirSync,
  open,
  openSync,
  renameSync,
  statSync,
  write as writeFd,
  writeSync,
  writev,
} from 'node:fs'
import { basename, dirname } from 'node:path'
import { type Chain, chainEndOf } from './chain.js'

const EARLY_FLUSH_BYTES = 64 * 1024
/** Room for one flush's worth of lines plus one worst-case (3 bytes per UTF-16 unit) line. */
const CHUNK_BYTES = 96 * 1024
/** Hand-overs waiting behind a write are merged up to this size (few buffers, few writes). */
const MERGE_BYTES = 64 * 1024
/** Most bytes and buffers one write call takes. */
const MAX_WRITE_BYTES = 1024 * 1024
const MAX_WRITE_BUFFERS = 1024
const RETRY_MS = 1000
/** How long to wait before writing again into a full pipe (EAGAIN). */
const BUSY_RETRY_MS = 10
/** How often a file sink checks that its path still names the file it writes. */
export const DETACH_CHECK_MS = 2000
/** Longest a synchronous flush keeps retrying EAGAIN/EBUSY (a full pipe on stdout). */
const SYNC_BUSY_MS = 1000
/** Longest `close()` waits for a device that refuses every write (or a reader that never reads). */
const CLOSE_TIMEOUT_MS = 3000
const NEWLINE = 10
/** Characters a chained line may gain: its position and hash, and a seal after it. */
const CHAIN_ROOM = 1024

export interface SinkOptions {
  sync: boolean
  flushInterval: number
  maxBuffer: number
  /** Rotate at this many bytes (0 = off). Files only. */
  rotateSize?: number
  /** Rotated files kept. */
  rotateKeep?: number
  /**
   * First error after a healthy period (a file), or the error that stopped the sink (an fd:
   * stdout whose reader is gone).
   */
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
  /** Chain every line (see `chain.ts`); anchors name the file (or `stdout`). */
  chain?: Chain | undefined
}

/** Bytes handed over and not yet written, in order. */
interface Queued {
  buf: Buffer
  /**
   * The fd this buffer must be written to, or -1 for whatever fd is current when its turn
   * comes. Set once part of it is written (the rest must follow in the same file) and on
   * rotation (what was handed over before belongs to the rotated file).
   */
  fd: number
}

/**
 * `OPEN`: accepting lines. `CLOSING`: `close()` was called, the queue is being written.
 * `CLOSED`: nothing is held any more (written, or counted as dropped). `STOPPED`: an fd sink
 * whose writes failed for good.
 */
type SinkState = 'OPEN' | 'CLOSING' | 'CLOSED' | 'STOPPED'

export class Sink {
  readonly path: string | undefined
  /** Lines dropped because the buffer was full while writes failed (or could not keep up). */
  dropped = 0
  /** Write errors seen (every failed attempt). */
  errors = 0
  /** Bytes handed to the current file (for size rotation). */
  bytes = 0

  #opts: SinkOptions
  #sync: boolean
  readonly #chain: Chain | undefined
  #state: SinkState = 'OPEN'
  #fd: number
  /** Earlier fds of this sink (rotation, reopen), closed once nothing is to be written to them. */
  #retired: number[] = []
  /** Lines not yet handed over: `#chunk[0, #off)`. */
  #chunk = Buffer.allocUnsafeSlow(CHUNK_BYTES)
  #off = 0
  #earlyFlush: number
  #queue: Queued[] = []
  /** Bytes in `#queue`. */
  #queued = 0
  /** The first `#inflight` entries of the queue are being written (to `#writeFd`). */
  #inflight = 0
  #writeFd = -1
  /**
   * Per fd of a regular file: the size it has once every write the sink made to it has
   * landed (its size when opened plus the bytes written since, by us alone).
   */
  #landed = new Map<number, number>()
  #timer: NodeJS.Timeout | undefined
  #busyTimer: NodeJS.Timeout | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #detachTimer: NodeJS.Timeout | undefined
  /** Writes fail: reported, retried, not yet recovered. */
  #failing = false
  /** Inside a rotation (its onRotate callback): no other rotation starts. */
  #rotating = false
  /** A reopen or rotation could not open or rename the file: reported, not yet resolved. */
  #fileError = false
  /** Lines dropped since the last onRecover report. */
  #droppedUnreported = 0
  #closing: Promise<void> | undefined
  #settle: (() => void) | undefined

  private constructor(fd: number, path: string | undefined, opts: SinkOptions) {
    this.#fd = fd
    this.path = path
    this.#opts = opts
    this.#sync = opts.sync
    this.#chain = opts.chain
    // A chunk bigger than maxBuffer would be dropped even by a healthy sink.
    this.#earlyFlush = Math.max(1, Math.min(EARLY_FLUSH_BYTES, Math.floor(opts.maxBuffer / 4)))
    if (path !== undefined) {
      this.#detachTimer = setInterval(() => this.#checkDetached(), DETACH_CHECK_MS)
      this.#detachTimer.unref()
    }
  }

  /**
   * Open (creating directories) a file for appending. Throws a clear error naming the path
   * when it cannot be opened.
   */
  static async openFile(path: string, opts: SinkOptions): Promise<Sink> {
    let fd: number
    // Where an existing file's chain ends, read before it is opened for appending.
    const end = opts.chain ? chainEndOf(path) : undefined
    try {
      await new Promise<void>((resolve, reject) =>
        mkdir(dirname(path), { recursive: true }, (err) => (err ? reject(err) : resolve())),
      )
      fd = await new Promise<number>((resolve, reject) =>
        open(path, 'a', (err, fd) => (err ? reject(err) : resolve(fd))),
      )
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      const out = new Error(
        `cannot open activity log ${path}: ${e.code ? `${e.message.replace(`${e.code}: `, '').replace(/, \w+ '[^']*'$/, '')} (${e.code})` : e.message}`,
      )
      ;(out as NodeJS.ErrnoException).code = e.code
      throw out
    }
    const sink = new Sink(fd, path, opts)
    sink.#opened(fd)
    if (opts.chain) {
      if (end) opts.chain.resume(end)
      // A file whose last line is not chained (an older log, a torn write) is moved aside, so
      // that the chained file starts with its anchor and verifies whole.
      if (!(sink.bytes > 0 && !end?.clean && sink.#rotateAs('start'))) sink.#anchor('start')
      sink.#startWriting()
    }
    return sink
  }

  /** Write to an fd the sink does not own (stdout): never closed, never reopened. */
  static fd(fd: number, opts: SinkOptions): Sink {
    const sink = new Sink(fd, undefined, opts)
    if (opts.chain) {
      sink.#anchor('start')
      sink.#startWriting()
    }
    return sink
  }

  /** Bytes held in memory and not yet written (pending lines plus the queue). */
  get buffered(): number {
    return this.#off + this.#queued
  }

  write(line: string): void {
    if (this.#state !== 'OPEN') return
    if (this.#chain !== undefined) {
      if (!this.#roomFor(line.length)) return
      line = this.#chain.line(line)
      if (this.#chain.sealDue) line += this.#chain.seal('lines')
    }
    this.#put(line)
  }

  /** Seal the chain head now, if anything was chained since the last seal (the seal timer). */
  seal(): void {
    if (this.#state !== 'OPEN' || this.#chain === undefined || this.#chain.unsealed === 0) return
    if (!this.#roomFor(0)) return
    const s = this.#chain.seal('interval')
    if (s !== undefined) this.#put(s)
  }

  /**
   * Chained: make room for a line of `length` characters before it is chained. A flush may
   * rotate, and the line must be chained after the new file's anchor, not before it. False
   * when the sink stopped meanwhile.
   */
  #roomFor(length: number): boolean {
    if ((length + CHAIN_ROOM) * 3 > CHUNK_BYTES - this.#off) {
      this.flush()
      return this.#state === 'OPEN'
    }
    return true
  }

  #put(line: string): void {
    if (line.length * 3 > CHUNK_BYTES - this.#off) {
      // Might not fit (Buffer#write would cut it short): hand over what is pending.
      this.flush()
      if (this.#state !== 'OPEN') return
      // Still no room (too long for any chunk, or onRotate wrote a line meanwhile): the line
      // goes as a buffer of its own, after what is pending.
      if (line.length * 3 > CHUNK_BYTES - this.#off) {
        this.#handOver()
        const buf = Buffer.from(line)
        this.#enqueue(buf, buf.length)
        this.#startWriting()
        return
      }
    }
    this.#off += this.#chunk.write(line, this.#off)
    if (this.#sync || this.#off >= this.#earlyFlush) this.flush()
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(flushTimer, this.#opts.flushInterval, this)
    }
  }

  /** Hand everything pending over and write it (asynchronously; in sync mode, now). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    if (this.#off > 0) {
      this.#handOver()
      // The hand-over that takes the file to rotateSize ends it. This is the one place a size
      // rotation starts, and rotate() itself never flushes, so a rotation cannot run inside
      // another (lines written from onRotate, such as "Log rotated", wait for the next flush).
      const size = this.#opts.rotateSize ?? 0
      if (size > 0 && this.bytes >= size) this.rotate()
    }
    // Also with nothing new: what a rotation queued for the old file must still go out.
    this.#startWriting()
  }

  /**
   * Write everything now, synchronously (fatal errors, exit). Best effort: gives up on the
   * first hard error, waits a bounded time on EAGAIN, never loops. What could not be written
   * stays queued for the asynchronous path. A buffer whose asynchronous write is in flight is
   * left to that write (the rest may then reach the file before it).
   */
  flushSync(): void {
    // Also while close() is still writing: a second signal must not lose its backlog.
    if (this.#state !== 'OPEN' && this.#state !== 'CLOSING') return
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    // The process is going down: seal what it wrote last.
    const seal = this.#chain?.seal('close')
    if (seal !== undefined) this.#append(seal)
    this.#handOver()
    this.#awaitInflight()
    this.#writeQueueSync()
  }

  /**
   * Move the current file to `file.1` (shifting older ones up to `keep`) and continue in a
   * fresh file. Lines already handed over finish in the renamed file. Returns false (and does
   * nothing) while writes fail, when nothing has been written to the file since it was opened
   * (an empty file is not rotated), and when the file cannot be renamed.
   */
  rotate(): boolean {
    const rotated = this.#rotateAs('rotate')
    // What was handed over for the rotated file is written now, not at the next flush.
    this.#startWriting()
    return rotated
  }

  #rotateAs(reason: string): boolean {
    if (this.path === undefined || this.#state !== 'OPEN') return false
    if (this.#failing || this.#rotating) return false
    this.#rotating = true
    let rotated: boolean
    try {
      rotated = this.#rotate(reason)
    } finally {
      this.#rotating = false
    }
    return rotated
  }

  /** Reopen the same path (after an external logrotate moved the file: SIGHUP). */
  reopen(): void {
    if (this.path === undefined || this.#state !== 'OPEN') return
    const fd = this.#openPath()
    if (fd < 0) return
    if (this.#chain !== undefined) this.#endFile('reopen')
    this.#replaceFd(fd)
    // Reopening the same file (not moved) continues its size.
    this.#opened(fd)
    if (this.#chain !== undefined) {
      this.#anchor('reopen')
      this.#startWriting()
    }
  }

  /** True when the file at `path` is no longer the one being written (deleted or moved). */
  isDetached(): boolean {
    if (this.path === undefined || this.#state !== 'OPEN') return false
    try {
      const a = statSync(this.path)
      const b = fstatSync(this.#fd)
      return a.ino !== b.ino || a.dev !== b.dev
    } catch {
      return true
    }
  }

  /** Flush and close; resolves when everything handed over is written (or given up). Idempotent. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing
    if (this.#state === 'STOPPED') {
      this.#state = 'CLOSED'
      this.#closing = Promise.resolve()
      return this.#closing
    }
    // No rotation on the way out (hence CLOSING before the flush): its "Log rotated" line
    // would have nowhere to go.
    this.#state = 'CLOSING'
    const seal = this.#chain?.seal('close')
    if (seal !== undefined) this.#append(seal)
    this.flush()
    if (this.#detachTimer) clearInterval(this.#detachTimer)
    this.#closing = new Promise<void>((resolve) => {
      // A device that refuses every write never finishes; do not hang shutdown on it. (Not
      // unref'd: it keeps the process alive until the log is settled one way or the other.)
      const timer = setTimeout(() => finish(true), CLOSE_TIMEOUT_MS)
      const finish = (gaveUp: boolean): void => {
        if (this.#state === 'CLOSED') return
        clearTimeout(timer)
        // What could not be written by now never will be: count it with the dropped lines.
        if (gaveUp) this.#dropQueue()
        this.#state = 'CLOSED'
        this.#settle = undefined
        this.#clearTimers()
        if (this.path !== undefined) {
          this.#retired.push(this.#fd)
          this.#fd = -1
        }
        this.#closeRetired(resolve)
      }
      this.#settle = () => finish(false)
    })
    this.#drained()
    return this.#closing
  }

  /** `fd` is the new current file: start counting its bytes from its size. */
  #opened(fd: number): void {
    try {
      const st = fstatSync(fd)
      this.bytes = st.size
      if (st.isFile()) this.#landed.set(fd, st.size)
    } catch {
      this.bytes = 0
    }
  }

  #wrote(fd: number, n: number): void {
    const landed = this.#landed.get(fd)
    if (landed !== undefined) this.#landed.set(fd, landed + n)
  }

  /**
   * Before a synchronous flush writes what follows an asynchronous write in flight, wait (a
   * bounded time) until that write has landed, so that it cannot end up after lines handed
   * over later. Only a regular file shows it, by its size; on a pipe (or after the bound, or
   * if someone else writes to the file) the lines that follow may reach it first.
   */
  #awaitInflight(): void {
    const fd = this.#writeFd
    const landed = this.#landed.get(fd)
    if (this.#inflight === 0 || landed === undefined) return
    let expected = landed
    for (let i = 0; i < this.#inflight; i++) expected += this.#queue[i]!.buf.length
    const until = Date.now() + SYNC_BUSY_MS
    const pause = new Int32Array(new SharedArrayBuffer(4))
    try {
      while (fstatSync(fd).size < expected && Date.now() < until) {
        Atomics.wait(pause, 0, 0, 1)
      }
    } catch {}
  }

  #handOver(): void {
    const n = this.#off
    if (n === 0) return
    this.#off = 0
    this.#enqueue(this.#chunk, n)
  }

  /** Queue a copy of `src[0, n)` (whole lines), or drop it when the queue is full. */
  #enqueue(src: Buffer, n: number): void {
    if (this.#queued + n > this.#opts.maxBuffer) {
      this.#countLines(src.subarray(0, n))
      return
    }
    this.#queued += n
    this.bytes += n
    const q = this.#queue
    const last = q.length > this.#inflight ? q[q.length - 1]! : undefined
    // Copies, never views of `#chunk`: a queued buffer retains exactly its bytes.
    if (last !== undefined && last.fd === -1 && last.buf.length + n <= MERGE_BYTES) {
      const merged = Buffer.allocUnsafeSlow(last.buf.length + n)
      last.buf.copy(merged, 0)
      src.copy(merged, last.buf.length, 0, n)
      last.buf = merged
    } else {
      const buf = Buffer.allocUnsafeSlow(n)
      src.copy(buf, 0, 0, n)
      q.push({ buf, fd: -1 })
    }
  }

  #startWriting(): void {
    if (!this.#sync) this.#writeNext()
    // A full pipe already cost one bounded wait: queue behind it until the back-off ends
    // rather than stall the server again for every line.
    else if (this.#busyTimer === undefined) this.#writeQueueSync()
  }

  /** Start an asynchronous write of the head of the queue, unless one is in flight. */
  #writeNext(): void {
    if (this.#inflight > 0 || this.#busyTimer !== undefined) return
    if (this.#state !== 'OPEN' && this.#state !== 'CLOSING') return
    const q = this.#queue
    if (q.length === 0) return
    const fd = q[0]!.fd >= 0 ? q[0]!.fd : this.#fd
    if (fd < 0) return
    let count = 1
    let total = q[0]!.buf.length
    while (
      count < q.length &&
      count < MAX_WRITE_BUFFERS &&
      total + q[count]!.buf.length <= MAX_WRITE_BYTES &&
      (q[count]!.fd >= 0 ? q[count]!.fd : this.#fd) === fd
    ) {
      total += q[count]!.buf.length
      count++
    }
    this.#inflight = count
    this.#writeFd = fd
    if (count === 1) writeFd(fd, q[0]!.buf, 0, total, null, this.#onWritten)
    else
      writev(
        fd,
        q.slice(0, count).map((e) => e.buf),
        null,
        this.#onWritten,
      )
  }

  #onWritten = (err: NodeJS.ErrnoException | null, n: number): void => {
    this.#inflight = 0
    if (this.#state === 'CLOSED' || this.#state === 'STOPPED') {
      // close() gave up on the queue while this write was out: only its fd is left to close.
      this.#closeRetired()
      return
    }
    if (err) {
      this.#writeFailed(err)
      return
    }
    this.#wrote(this.#writeFd, n)
    this.#advance(n, this.#writeFd)
    if (n === 0) {
      // Nothing taken and no error: back off as for a full pipe rather than spin.
      this.#backOff()
      return
    }
    this.#closeRetired()
    if (this.#queue.length > 0) this.#writeNext()
    else this.#drained()
  }

  /** `n` bytes of the queue, from `index` on, reached `fd`. */
  #advance(n: number, fd: number, index = 0): void {
    this.#queued -= n
    const q = this.#queue
    while (n > 0) {
      const e = q[index]!
      if (n >= e.buf.length) {
        n -= e.buf.length
        q.splice(index, 1)
      } else {
        // The rest of a buffer written in part must follow in the same file.
        e.buf = e.buf.subarray(n)
        e.fd = fd
        n = 0
      }
    }
  }

  /**
   * Write the queue synchronously (sync mode, flushSync). Stops at the first hard error and
   * after SYNC_BUSY_MS of EAGAIN; entries of an asynchronous write in flight are skipped.
   */
  #writeQueueSync(): void {
    let busySince = 0
    const q = this.#queue
    while (q.length > this.#inflight && (this.#state === 'OPEN' || this.#state === 'CLOSING')) {
      const e = q[this.#inflight]!
      const fd = e.fd >= 0 ? e.fd : this.#fd
      if (fd < 0) return
      let n = 0
      try {
        n = writeSync(fd, e.buf)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code !== 'EAGAIN' && code !== 'EBUSY') {
          this.#writeFailed(err as NodeJS.ErrnoException)
          return
        }
      }
      if (n === 0) {
        // A full pipe (EAGAIN), or nothing taken: wait a little, for a bounded time.
        const now = Date.now()
        if (busySince === 0) busySince = now
        if (now - busySince >= SYNC_BUSY_MS) {
          this.#backOff()
          return
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, BUSY_RETRY_MS)
        continue
      }
      this.#wrote(fd, n)
      this.#advance(n, fd, this.#inflight)
    }
    if (q.length === 0) {
      this.#closeRetired()
      this.#drained()
    }
  }

  /** A full pipe: try again shortly (not an error). */
  #backOff(): void {
    if (this.#busyTimer !== undefined) return
    this.#busyTimer = setTimeout(() => {
      this.#busyTimer = undefined
      this.#startWriting()
    }, BUSY_RETRY_MS)
  }

  #writeFailed(err: NodeJS.ErrnoException): void {
    const code = err.code
    if (code === 'EAGAIN' || code === 'EBUSY') {
      this.#backOff()
      return
    }
    this.errors++
    if (this.path === undefined) {
      // stdout (or another fd we were given): EPIPE means the reader is gone for good, and
      // retrying any other error there would only repeat it. Stop; the server keeps serving.
      this.#stop(err)
      return
    }
    if (!this.#failing) {
      this.#failing = true
      this.#opts.onError?.(err)
    }
    // Retry even when no new lines arrive, so a recovered disk is noticed.
    if (this.#retryTimer === undefined) {
      this.#retryTimer = setInterval(() => this.#startWriting(), RETRY_MS)
      this.#retryTimer.unref()
    }
  }

  #stop(err: NodeJS.ErrnoException): void {
    this.#dropQueue()
    this.#state = 'STOPPED'
    this.#clearTimers()
    this.#opts.onError?.(err)
    // A close() already waiting has nothing left to wait for.
    this.#settle?.()
  }

  /** The queue is empty: a failure (or a drop spell) is over; a waiting close() can finish. */
  #drained(): void {
    if (this.#queue.length > 0 || this.#inflight > 0) return
    if (this.#failing || this.#droppedUnreported > 0) {
      const failed = this.#failing
      const dropped = this.#droppedUnreported
      this.#failing = false
      this.#droppedUnreported = 0
      if (this.#retryTimer) {
        clearInterval(this.#retryTimer)
        this.#retryTimer = undefined
      }
      this.#opts.onRecover?.(dropped, failed)
    }
    if (this.#state === 'CLOSING' && this.#off === 0) this.#settle?.()
  }

  #rotate(reason: string): boolean {
    const path = this.path!
    this.#handOver()
    if (this.bytes === 0) return false
    if (this.#chain !== undefined) this.#endFile(reason)
    const keep = this.#opts.rotateKeep ?? 5
    for (let i = keep - 1; i >= 1; i--) {
      const from = `${path}.${i}`
      if (existsSync(from)) {
        try {
          renameSync(from, `${path}.${i + 1}`)
        } catch {}
      }
    }
    try {
      renameSync(path, `${path}.1`)
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      // The file is already gone (deleted from under us): nothing to rotate, start afresh.
      if (e.code === 'ENOENT') this.reopen()
      else this.#fileFailed(e)
      return false
    }
    const fd = this.#openPath()
    if (fd < 0) return false
    // What was handed over before the rotation belongs to the rotated file.
    for (const e of this.#queue) if (e.fd === -1) e.fd = this.#fd
    this.#replaceFd(fd)
    this.#opened(fd)
    if (this.#chain !== undefined) this.#anchor(reason)
    this.#opts.onRotate?.(`${path}.1`)
    return true
  }

  /**
   * Chained: the current file ends here. Its seal is its last line, and everything handed
   * over so far is kept for it (the next file must start with its anchor).
   */
  #endFile(reason: string): void {
    const seal = this.#chain!.seal(reason)
    if (seal !== undefined) this.#append(seal)
    this.#handOver()
    for (const e of this.#queue) if (e.fd === -1) e.fd = this.#fd
  }

  /** Chained: the first line of a file (or of a stream), handed over at once. */
  #anchor(reason: string): void {
    const name = this.path !== undefined ? basename(this.path) : 'stdout'
    this.#append(this.#chain!.anchor(name, reason))
    this.#handOver()
  }

  /** Put a line after what is pending, without flushing or rotating (inside those). */
  #append(line: string): void {
    if (line.length * 3 > CHUNK_BYTES - this.#off) {
      this.#handOver()
      if (line.length * 3 > CHUNK_BYTES) {
        const buf = Buffer.from(line)
        this.#enqueue(buf, buf.length)
        return
      }
    }
    this.#off += this.#chunk.write(line, this.#off)
  }

  /** Open `path` for appending (recreating its directory); -1 (reported) if it cannot be. */
  #openPath(): number {
    const path = this.path!
    try {
      mkdirSync(dirname(path), { recursive: true })
      const fd = openSync(path, 'a')
      this.#fileError = false
      return fd
    } catch (err) {
      this.#fileFailed(err as NodeJS.ErrnoException)
      return -1
    }
  }

  /** Renaming or opening the file failed: reported once per spell; lines go to the old fd. */
  #fileFailed(err: NodeJS.ErrnoException): void {
    this.errors++
    if (this.#fileError) return
    this.#fileError = true
    this.#opts.onError?.(err)
  }

  #replaceFd(fd: number): void {
    this.#retired.push(this.#fd)
    this.#fd = fd
    this.#closeRetired()
  }

  /** Close earlier fds that no write in flight and no queued buffer needs any more. */
  #closeRetired(done?: () => void): void {
    if (this.#retired.length === 0) {
      done?.()
      return
    }
    let waiting = 1
    const one = (): void => {
      if (--waiting === 0) done?.()
    }
    this.#retired = this.#retired.filter((fd) => {
      if (this.#inflight > 0 && this.#writeFd === fd) return true
      if (this.#queue.some((e) => e.fd === fd)) return true
      waiting++
      this.#landed.delete(fd)
      closeFd(fd, one)
      return false
    })
    one()
  }

  #checkDetached(): void {
    if (this.#state !== 'OPEN' || !this.isDetached()) return
    let reason = 'deleted'
    try {
      // Still linked somewhere: renamed or replaced, not deleted.
      if (fstatSync(this.#fd).nlink > 0) reason = 'moved'
    } catch {}
    const before = this.#fd
    this.reopen()
    if (this.#fd !== before) this.#opts.onReopen?.(reason)
  }

  /** Give up on everything held, counting its lines as dropped. */
  #dropQueue(): void {
    for (const e of this.#queue) this.#countLines(e.buf)
    this.#countLines(this.#chunk.subarray(0, this.#off))
    this.#queue = []
    this.#queued = 0
    this.#off = 0
  }

  #countLines(data: Buffer): void {
    let n = 0
    for (let i = data.indexOf(NEWLINE); i !== -1; i = data.indexOf(NEWLINE, i + 1)) n++
    this.dropped += n
    this.#droppedUnreported += n
  }

  #clearTimers(): void {
    for (const t of [this.#timer, this.#busyTimer, this.#retryTimer, this.#detachTimer]) {
      if (t !== undefined) clearTimeout(t)
    }
    this.#timer = undefined
    this.#busyTimer = undefined
    this.#retryTimer = undefined
    this.#detachTimer = undefined
  }
}

function flushTimer(sink: Sink): void {
  sink.flush()
}
