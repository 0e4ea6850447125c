/**
 * The one escaping module: make client content safe to put in a log line, so that no byte
 * of it can end a line, move the cursor, recolour a terminal or otherwise pass for
 * something the server wrote, and JSON that stays valid and faithful.
 */

// C0 controls, DEL, C1 controls (0x9b is a one-byte CSI), the backslash we escape with,
// and the two JavaScript line terminators.
const TEXT_UNSAFE = /[\x00-\x1f\x7f-\x9f\\\u2028\u2029]/
const TEXT_UNSAFE_G = /[\x00-\x1f\x7f-\x9f\\\u2028\u2029]/g

/** What a JSON string must escape (C0, `"`, `\`) plus what we also escape (DEL, C1, U+2028/9). */
const JSON_UNSAFE = /[\x00-\x1f\x7f-\x9f"\\\u2028\u2029]/
/** What JSON.stringify leaves raw but we escape: DEL, C1 controls, U+2028/2029. */
const JSON_EXTRA = /[\u007f-\u009f\u2028\u2029]/
const JSON_EXTRA_G = /[\u007f-\u009f\u2028\u2029]/g

function hex2(code: number): string {
  return code.toString(16).padStart(2, '0')
}

function textEscapeChar(c: string): string {
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
      return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${hex2(code)}`
    }
  }
}

function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
}

/**
 * Escape control characters, ANSI escapes, U+2028/2029 and backslashes (`\n`, `\x1b`,
 * `\u2028`, `\\`); returns `s` itself when clean (one regex test on the clean path).
 */
export function escapeText(s: string): string {
  return TEXT_UNSAFE.test(s) ? s.replace(TEXT_UNSAFE_G, textEscapeChar) : s
}

const NEEDS_QUOTE = /[\s"=]/

/** A key=value value: escaped, and quoted when it holds spaces, quotes or `=` (or is empty). */
export function textValue(s: string): string {
  const e = escapeText(s)
  if (e.length === 0) return '""'
  return NEEDS_QUOTE.test(e) ? `"${e.replace(/"/g, '\\"')}"` : e
}

/** The inside of a JSON string literal for `s` (no quotes), escaped once. */
export function jsonInner(s: string): string {
  if (!JSON_UNSAFE.test(s)) return s
  return JSON.stringify(s).slice(1, -1).replace(JSON_EXTRA_G, unicodeEscape)
}

/** A JSON string literal that also escapes DEL, C1 controls and U+2028/2029. */
export function jsonString(s: string): string {
  return `"${jsonInner(s)}"`
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Error) return { name: value.name, message: value.message }
  if (Buffer.isBuffer(value)) return { type: 'Buffer', base64: value.toString('base64') }
  return value
}

/** Any value as JSON text (BigInt as a string, Errors as name+message), safe in one line. */
export function jsonValue(v: unknown): string {
  if (v === undefined) return 'null'
  let json: string
  try {
    json = JSON.stringify(v, replacer) ?? 'null'
  } catch {
    return '"[unserializable]"'
  }
  // Valid JSON may still hold raw U+2028/2029 and C1 controls inside strings.
  return JSON_EXTRA.test(json) ? json.replace(JSON_EXTRA_G, unicodeEscape) : json
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

/** `s` cut to at most `max` characters, marked with the original length. */
export function cutText(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}… (${s.length} chars)` : s
}
