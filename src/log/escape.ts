/**
 * Make client content safe to put in a log line: no byte of it can end a line, move the
 * cursor, recolour a terminal or otherwise pass for something the server wrote.
 */

// C0 controls, DEL, C1 controls (0x9b is a one-byte CSI), the backslash we escape with,
// and the two JavaScript line terminators.
const UNSAFE = /[\x00-\x1f\x7f-\x9f\\\u2028\u2029]/
const UNSAFE_G = /[\x00-\x1f\x7f-\x9f\\\u2028\u2029]/g

function escapeChar(c: string): string {
  switch (c) {
    case '\n':
      return '\\n'
    case '\r':
      return '\\r'
    case '\t':
      return '\\t'
    case '\\':
      return '\\\\'
    default: {
      const code = c.charCodeAt(0)
      return code > 0xff
        ? `\\u${code.toString(16).padStart(4, '0')}`
        : `\\x${code.toString(16).padStart(2, '0')}`
    }
  }
}

/** Escape control characters, ANSI escapes, U+2028/2029 and backslashes; returns `s` itself when clean. */
export function escapeText(s: string): string {
  return UNSAFE.test(s) ? s.replace(UNSAFE_G, escapeChar) : s
}

const NEEDS_QUOTE = /[\s"=]/

/** A key=value value: escaped, and quoted when it holds spaces, quotes or `=` (or is empty). */
export function textValue(s: string): string {
  const e = escapeText(s)
  if (e.length === 0) return '""'
  return NEEDS_QUOTE.test(e) ? `"${e.replace(/"/g, '\\"')}"` : e
}

const JSON_PLAIN = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/

/** A JSON string literal that also escapes U+2028/2029 and C1 controls. */
export function jsonString(s: string): string {
  if (JSON_PLAIN.test(s)) return `"${s}"`
  return JSON.stringify(s).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

/** Largest index ≤ `end` that does not split a UTF-8 sequence in `buf`. */
export function utf8Boundary(buf: Buffer, end: number): number {
  if (end >= buf.length) return buf.length
  let i = end
  // Step back over continuation bytes (10xxxxxx) to the start of the code point.
  while (i > 0 && (buf[i]! & 0xc0) === 0x80) i--
  return i
}

/** Hex preview of binary data: at most `max` bytes (capped at 32). */
export function hexPreview(buf: Buffer, max: number): string {
  const n = Math.min(buf.length, max, 32)
  return buf.toString('hex', 0, n)
}
