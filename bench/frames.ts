/**
 * RFC 6455 by hand, for the frames generator: the upgrade request and its accept check,
 * client frames built and masked once up front (a ring of them, written as slices), and an
 * incremental reader of server frames (unmasked; 7-, 16- and 64-bit lengths; a frame may be
 * split across any number of reads).
 */
import { createHash } from 'node:crypto'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

export const OP_CONTINUATION = 0x0
export const OP_TEXT = 0x1
export const OP_BINARY = 0x2
export const OP_CLOSE = 0x8
export const OP_PING = 0x9
export const OP_PONG = 0xa

/** The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455 §4.2.2). */
export function acceptFor(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64')
}

export function upgradeRequest(host: string, port: number, key: string): string {
  return (
    'GET / HTTP/1.1\r\n' +
    `Host: ${host}:${port}\r\n` +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\n` +
    'Sec-WebSocket-Version: 13\r\n' +
    '\r\n'
  )
}

/**
 * Why `head` (the response up to and excluding the blank line) is not a valid 101 for `key`;
 * undefined when it is.
 */
export function checkUpgradeResponse(head: string, key: string): string | undefined {
  const lines = head.split('\r\n')
  const status = lines[0] ?? ''
  if (!/^HTTP\/1\.1 101 /.test(status)) return `upgrade answered ${JSON.stringify(status)}`
  const accept = lines
    .slice(1)
    .map((l) => /^sec-websocket-accept:\s*(\S+)\s*$/i.exec(l)?.[1])
    .find((v) => v !== undefined)
  if (accept !== acceptFor(key)) return `bad Sec-WebSocket-Accept ${JSON.stringify(accept)}`
  return undefined
}

/** Bytes a client (masked) frame with `len` bytes of payload takes. */
export function clientFrameLength(len: number): number {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + 4 + len
}

/** Write one final, masked frame into `out` at `at`; returns the offset after it. */
export function writeMaskedFrame(
  out: Buffer,
  at: number,
  opcode: number,
  payload: Uint8Array,
  mask: number,
): number {
  const len = payload.length
  let p = at
  out[p++] = 0x80 | opcode
  if (len < 126) out[p++] = 0x80 | len
  else if (len < 65536) {
    out[p++] = 0x80 | 126
    out.writeUInt16BE(len, p)
    p += 2
  } else {
    out[p++] = 0x80 | 127
    out.writeUInt32BE(Math.floor(len / 2 ** 32), p)
    out.writeUInt32BE(len >>> 0, p + 4)
    p += 8
  }
  // A zero mask would leave the payload in clear, which is legal but proves nothing.
  const m = mask >>> 0 || 0x5a5a5a5a
  out.writeUInt32BE(m, p)
  const mk = [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255]
  p += 4
  for (let i = 0; i < len; i++) out[p + i] = payload[i]! ^ mk[i & 3]!
  return p + len
}

export function maskedFrame(opcode: number, payload: Uint8Array, mask: number): Buffer {
  const out = Buffer.allocUnsafe(clientFrameLength(payload.length))
  writeMaskedFrame(out, 0, opcode, payload, mask)
  return out
}

/** A masked close frame with `code` (and no reason). */
export function closeFrame(code: number, mask: number): Buffer {
  const body = Buffer.alloc(2)
  body.writeUInt16BE(code, 0)
  return maskedFrame(OP_CLOSE, body, mask)
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_'
/** Most bytes one ring of frames (and its expected echoes) may take. */
const RING_BYTES = 4 * 1024 * 1024

/**
 * `count` different text messages of `size` bytes, each masked with its own mask into one
 * contiguous buffer of frames, and the echo expected for each (`prefix` + message) in another.
 * A connection sends frame after frame round the ring and expects the echoes in the same
 * order, so a lost, repeated or reordered message shows up as a mismatch. The frames are
 * never written to again, so slices of them can be queued on a socket without a copy.
 */
export class FrameRing {
  readonly count: number
  readonly size: number
  /** Bytes of one client frame (all frames of a ring have the same length). */
  readonly frameLength: number
  readonly frames: Buffer
  /** Bytes of one expected echo payload. */
  readonly echoLength: number
  readonly echoes: Buffer

  /** At least `minCount` messages (and at least 64), as many as fit in a few MB. */
  constructor(size: number, prefix: Buffer, salt: number, minCount: number) {
    this.size = size
    this.frameLength = clientFrameLength(size)
    this.echoLength = prefix.length + size
    const fit = Math.floor(RING_BYTES / (this.frameLength + this.echoLength))
    this.count = Math.max(64, minCount, Math.min(4096, fit))
    this.frames = Buffer.allocUnsafe(this.count * this.frameLength)
    this.echoes = Buffer.allocUnsafe(this.count * this.echoLength)
    const message = Buffer.alloc(size)
    let rng = (0x9e3779b9 ^ (salt * 0x85ebca6b)) | 1
    const digits = Math.min(8, size)
    for (let k = 0; k < this.count; k++) {
      // The message number in front (so a reordering is visible in a dump), a pattern after it.
      let n = k
      for (let i = digits - 1; i >= 0; i--) {
        message[i] = 48 + (n % 10)
        n = Math.floor(n / 10)
      }
      for (let i = digits; i < size; i++)
        message[i] = ALPHABET.charCodeAt((i * 7 + k * 13 + salt) % ALPHABET.length)
      rng ^= rng << 13
      rng ^= rng >>> 17
      rng ^= rng << 5
      writeMaskedFrame(this.frames, k * this.frameLength, OP_TEXT, message, rng)
      prefix.copy(this.echoes, k * this.echoLength)
      message.copy(this.echoes, k * this.echoLength + prefix.length)
    }
  }

  /** Frames `from`, `from + 1`, … (`n` of them, n ≤ count) as one slice, or two where the ring wraps. */
  slices(from: number, n: number): [Buffer] | [Buffer, Buffer] {
    const fl = this.frameLength
    const end = from + n
    if (end <= this.count) return [this.frames.subarray(from * fl, end * fl)]
    return [this.frames.subarray(from * fl), this.frames.subarray(0, (end - this.count) * fl)]
  }

  /** Why `buf[start, end)` is not the echo of message `k`; undefined when it is. */
  check(k: number, buf: Buffer, start: number, end: number): string | undefined {
    const el = this.echoLength
    if (end - start !== el) return `length ${end - start}, expected ${el}`
    const at = k * el
    if (this.echoes.compare(buf, start, end, at, at + el) === 0) return undefined
    let i = 0
    while (i < el && buf[start + i] === this.echoes[at + i]) i++
    const got = buf.toString('latin1', start + Math.max(0, i - 8), Math.min(end, start + i + 24))
    const want = this.echoes.toString('latin1', at + Math.max(0, i - 8), at + Math.min(el, i + 24))
    return `byte ${i} differs: got …${JSON.stringify(got)}…, expected …${JSON.stringify(want)}…`
  }
}

/** What a FrameReader hands over: a whole frame's payload is `buf[start, end)`, valid during the call. */
export type FrameHandler = (
  opcode: number,
  fin: boolean,
  buf: Buffer,
  start: number,
  end: number,
) => void

/** Largest server frame accepted (the servers under test cap messages at 1 MiB). */
const MAX_FRAME = 64 * 1024 * 1024

/**
 * Incremental parser of server-to-client frames. A frame wholly inside one read is handed over
 * in place (no copy); one split across reads is gathered into its own buffer. The caller may
 * reuse the buffers it pushes as soon as `push` returns.
 */
export class FrameReader {
  readonly #onFrame: FrameHandler
  readonly #onError: (message: string) => void
  readonly #head = Buffer.alloc(14)
  #headFill = 0
  #body: Buffer | undefined
  #bodyFill = 0
  #opcode = 0
  #fin = true
  #failed = false

  constructor(onFrame: FrameHandler, onError: (message: string) => void) {
    this.#onFrame = onFrame
    this.#onError = onError
  }

  push(buf: Buffer, start: number, end: number): void {
    let p = start
    while (p < end && !this.#failed) {
      if (this.#body !== undefined) {
        const body = this.#body
        const n = Math.min(body.length - this.#bodyFill, end - p)
        buf.copy(body, this.#bodyFill, p, p + n)
        this.#bodyFill += n
        p += n
        if (this.#bodyFill === body.length) {
          this.#body = undefined
          this.#onFrame(this.#opcode, this.#fin, body, 0, body.length)
        }
        continue
      }
      if (this.#headFill === 0 && end - p >= 2) {
        // Fast path: the header is in this read.
        const need = headLength(buf[p + 1]!)
        if (end - p >= need) {
          const len = this.#parseHead(buf, p)
          if (len < 0) return
          p += need
          if (end - p >= len) {
            this.#onFrame(this.#opcode, this.#fin, buf, p, p + len)
            p += len
          } else this.#body = Buffer.allocUnsafe(len)
          this.#bodyFill = 0
          continue
        }
      }
      // Slow path: gather the header byte by byte (it is split across reads).
      this.#head[this.#headFill++] = buf[p++]!
      if (this.#headFill >= 2 && this.#headFill === headLength(this.#head[1]!)) {
        this.#headFill = 0
        const len = this.#parseHead(this.#head, 0)
        if (len < 0) return
        this.#bodyFill = 0
        if (len === 0) this.#onFrame(this.#opcode, this.#fin, this.#head, 0, 0)
        else this.#body = Buffer.allocUnsafe(len)
      }
    }
  }

  /** Read the header at `h[at]`: sets opcode and fin, returns the payload length (−1: failed). */
  #parseHead(h: Buffer, at: number): number {
    const b0 = h[at]!
    const b1 = h[at + 1]!
    if (b1 & 0x80) return this.#fail('the server sent a masked frame')
    if (b0 & 0x70) return this.#fail(`reserved bits set (first byte 0x${b0.toString(16)})`)
    this.#fin = (b0 & 0x80) !== 0
    this.#opcode = b0 & 0x0f
    const len7 = b1 & 0x7f
    if (len7 < 126) return len7
    if (len7 === 126) return h.readUInt16BE(at + 2)
    const hi = h.readUInt32BE(at + 2)
    const len = hi * 2 ** 32 + h.readUInt32BE(at + 6)
    if (len > MAX_FRAME) return this.#fail(`frame of ${len} bytes`)
    return len
  }

  #fail(message: string): -1 {
    this.#failed = true
    this.#onError(message)
    return -1
  }
}

/** Header bytes of a server frame, from its second byte. */
function headLength(b1: number): number {
  const len7 = b1 & 0x7f
  return (len7 < 126 ? 2 : len7 === 126 ? 4 : 10) + (b1 & 0x80 ? 4 : 0)
}
