/**
 * Message content for the load generator: every message is different (a sequence number in
 * front of a per-connection pattern), and every echo is checked byte for byte against the
 * message it answers. Both servers echo in order per connection, so the expected sequence
 * number is just a counter: no per-message bookkeeping, no allocation.
 */
import { ECHO_PREFIX } from './protocol.js'

const PREFIX = Buffer.from(ECHO_PREFIX)
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_'

export class Payload {
  readonly size: number
  /** What the connection sends; its first `digits` bytes are rewritten per message. */
  readonly buffer: Buffer
  readonly #digits: number
  readonly #modulus: number

  /** `size` bytes of printable ASCII; `salt` varies the pattern between connections. */
  constructor(size: number, salt: number) {
    this.size = size
    this.buffer = Buffer.alloc(size)
    for (let i = 0; i < size; i++)
      this.buffer[i] = ALPHABET.charCodeAt((i + salt * 7) % ALPHABET.length)
    this.#digits = Math.min(10, size)
    this.#modulus = 10 ** this.#digits
  }

  /** Write `seq` (decimal, zero-padded, modulo 10^digits) into the buffer; returns the buffer. */
  next(seq: number): Buffer {
    let n = seq % this.#modulus
    for (let i = this.#digits - 1; i >= 0; i--) {
      this.buffer[i] = 48 + (n % 10)
      n = Math.floor(n / 10)
    }
    return this.buffer
  }

  /** Why `echo` is not `Echo: ` + message number `seq`; undefined when it is. */
  check(echo: Buffer, seq: number): string | undefined {
    if (echo.length !== PREFIX.length + this.size) {
      return `length ${echo.length}, expected ${PREFIX.length + this.size}`
    }
    if (echo.compare(PREFIX, 0, PREFIX.length, 0, PREFIX.length) !== 0) {
      return `prefix ${JSON.stringify(echo.toString('latin1', 0, PREFIX.length))}`
    }
    const d = this.#digits
    const at = PREFIX.length
    let got = 0
    for (let i = 0; i < d; i++) {
      const c = echo[at + i]! - 48
      if (c < 0 || c > 9)
        return `sequence digits ${JSON.stringify(echo.toString('latin1', at, at + d))}`
      got = got * 10 + c
    }
    if (got !== seq % this.#modulus)
      return `sequence ${got}, expected ${seq % this.#modulus} (out of order or lost)`
    if (this.buffer.compare(echo, at + d, at + this.size, d, this.size) !== 0)
      return 'payload bytes differ'
    return undefined
  }
}
