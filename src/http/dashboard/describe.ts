/**
 * One bus event → one row of the dashboard's live tail: who (client, address, user) and a
 * short text. Built only while a dashboard is watching, and bounded: client content is cut
 * to a preview, so a 1 MiB message costs the feed no more than a short one.
 *
 * The rows go to a browser that shows them with `textContent`, so nothing is escaped here;
 * credentials are redacted as in the activity log (wirelog.v1 `token` fields, credential-named
 * fields of user events).
 */
import type { Client } from '../../connection.js'
import type { MessageReceived } from '../../events.js'
import { PROTOCOL } from '../../pubsub/protocol.js'
import { REDACTED, type Redactor, redactJsonSecrets } from '../../redact.js'

/** Characters of a message shown in the tail. */
export const PREVIEW_CHARS = 160
/** Longest text of a row. */
const MAX_TEXT = 300
/** Bytes of a binary message shown as hex. */
const HEX_BYTES = 16

export interface TailRow {
  /** Epoch ms. */
  readonly time: number
  /** `client.connected`, … for built-in events; `ns:name` for others. */
  readonly event: string
  readonly client?: string
  readonly ip?: string
  readonly user?: string
  readonly text: string
}

/** The row of `ns:name`; `redact` names the credential fields of user events. */
export function describe(
  ns: string,
  name: string,
  payload: unknown,
  redact: Pick<Redactor, 'isSecret'>,
): TailRow {
  const p = (payload ?? {}) as Record<string, unknown>
  const client = isClient(p.client) ? p.client : undefined
  const ip = client?.ip ?? (typeof p.ip === 'string' ? p.ip : undefined)
  let text: string
  if (ns !== 'ws') text = userText(p, redact)
  else if (name === 'message.received') text = messageText(p as unknown as MessageReceived)
  else if (name === 'client.connected' && client) text = connectedText(client)
  else text = fieldsText(p)
  return {
    time: Date.now(),
    event: ns === 'ws' ? name : `${ns}:${name}`,
    ...(client ? { client: client.id } : {}),
    ...(ip !== undefined ? { ip } : {}),
    ...(client?.user ? { user: client.user.id } : {}),
    text: cut(text, MAX_TEXT),
  }
}

function isClient(v: unknown): v is Client {
  return typeof v === 'object' && v !== null && typeof (v as Client).id === 'string'
}

function messageText(m: MessageReceived): string {
  const raw = m.raw
  if (m.binary) {
    const hex = raw.subarray(0, HEX_BYTES).toString('hex')
    return `[binary ${m.bytes} bytes] ${hex}${raw.length > HEX_BYTES ? '…' : ''}`
  }
  // Decode only what is shown (4 bytes per character at most).
  let text = raw.toString('utf8', 0, Math.min(raw.length, PREVIEW_CHARS * 4))
  if (m.client.protocol === PROTOCOL && text.includes('"token"')) text = redactJsonSecrets(text)
  return text.length > PREVIEW_CHARS || raw.length > PREVIEW_CHARS * 4
    ? `${text.slice(0, PREVIEW_CHARS)}… (${m.bytes} bytes)`
    : text
}

function connectedText(c: Client): string {
  const parts = [`path=${c.path}`]
  if (c.protocol) parts.push(`protocol=${c.protocol}`)
  if (c.origin) parts.push(`origin=${c.origin}`)
  if (c.userAgent) parts.push(`ua=${c.userAgent}`)
  if (c.proxy) parts.push(`proxy=${c.proxy}`)
  return parts.join(' ')
}

/** Payload fields under the names the activity log gives them. */
const FIELD: Readonly<Record<string, string>> = {
  durationMs: 'duration_ms',
  messagesIn: 'msgs_in',
  messagesOut: 'msgs_out',
  bytesIn: 'bytes_in',
  bytesOut: 'bytes_out',
  closeCode: 'close_code',
  userAgent: 'ua',
  rotatedTo: 'previous',
  message: 'error',
  downMs: 'down_ms',
  expiresAt: 'expires',
}

/** `key=value` of a built-in payload's plain fields (the client is in its own columns). */
function fieldsText(p: Record<string, unknown>): string {
  const parts: string[] = []
  for (const k of Object.keys(p)) {
    if (k === 'client' || k === 'ip') continue
    const v = p[k]
    if (v === undefined || v === null || v === '') continue
    const key = FIELD[k] ?? k
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
      parts.push(`${key}=${cut(String(v), PREVIEW_CHARS)}`)
    else if (v instanceof Error) parts.push(`${key}=${cut(v.message, PREVIEW_CHARS)}`)
  }
  return parts.join(' ')
}

/** A user event's payload as JSON, credential-named fields redacted. */
function userText(p: Record<string, unknown>, redact: Pick<Redactor, 'isSecret'>): string {
  let json: string | undefined
  try {
    json = JSON.stringify(p, (k, v) => {
      if (k !== '' && redact.isSecret(k) && typeof v !== 'object') return REDACTED
      if (isClient(v)) return v.id
      return v
    })
  } catch {
    json = undefined
  }
  return json === undefined ? '[unserialisable payload]' : json
}

function cut(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s
}
