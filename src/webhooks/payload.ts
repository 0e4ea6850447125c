/**
 * An event's payload made JSON-safe for a webhook body: what a receiver in any language can
 * parse, and nothing the server must keep private.
 *
 * - a client becomes `{ id, ip, user }` (`user` is the authenticated user's id, or null):
 *   never its context, claims or socket;
 * - `message.received` carries `data` as text, or as base64 with `binary: true`; the raw
 *   bytes are not repeated; the credentials of `wirelog.v1` frames (`"token"` of resume and
 *   refresh) are redacted, as in the activity log;
 * - any other Buffer / typed array becomes `{ base64: "…" }`; an Error `{ name, message,
 *   code? }`; a Date its ISO string; a bigint its decimal string; functions and symbols are
 *   left out; a cycle becomes `"[Circular]"` and nesting deeper than 8 `"[Object]"`.
 *
 * It runs when the event is recorded, so the body is a snapshot: a user payload changed
 * afterwards is delivered as it was.
 */
import { Connection } from '../connection.js'
import type { MessageReceived, MessageSent } from '../events.js'
import { PROTOCOL } from '../pubsub/protocol.js'
import { redactJsonSecrets } from '../redact.js'

const MAX_DEPTH = 8

export interface WebhookClient {
  readonly id: string
  readonly ip: string
  readonly user: string | null
}

function client(c: Connection): WebhookClient {
  return { id: c.id, ip: c.ip, user: c.user?.id ?? null }
}

/** The JSON text of `payload` of event `ns:name`. */
export function payloadJson(ns: string, name: string, payload: unknown): string {
  if (ns === 'ws' && name === 'message.received') {
    const m = payload as MessageReceived
    let data = m.binary ? m.raw.toString('base64') : (m.data as string)
    // The protocol's own credentials (resume, refresh) leave the server nowhere, as in the log.
    if (!m.binary && m.client.protocol === PROTOCOL && data.includes('"token"'))
      data = redactJsonSecrets(data)
    return JSON.stringify({
      client: client(m.client as Connection),
      data,
      binary: m.binary,
      bytes: m.bytes,
    })
  }
  if (ns === 'ws' && name === 'message.sent') {
    const m = payload as MessageSent
    // What the server sent (m.data) stays out of webhooks: only the activity log records
    // it, and only when asked to (log.payloads: full), with its redaction.
    return JSON.stringify({
      client: client(m.client as Connection),
      bytes: m.bytes,
      binary: m.binary,
    })
  }
  return JSON.stringify(jsonSafe(payload, 0, new Set())) ?? 'null'
}

/** A JSON-safe copy of `v` (see the module comment). */
export function jsonSafe(v: unknown, depth = 0, seen = new Set<object>()): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v
    case 'number':
      return Number.isFinite(v) ? v : null
    case 'bigint':
      return v.toString()
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined
  }
  if (v === null) return null
  const o = v as object
  if (o instanceof Connection) return client(o)
  if (Buffer.isBuffer(o)) return { base64: o.toString('base64') }
  if (ArrayBuffer.isView(o))
    return { base64: Buffer.from(o.buffer, o.byteOffset, o.byteLength).toString('base64') }
  if (o instanceof Date) return Number.isNaN(o.getTime()) ? null : o.toISOString()
  if (o instanceof Error) {
    const code = (o as NodeJS.ErrnoException).code
    return code === undefined
      ? { name: o.name, message: o.message }
      : { name: o.name, message: o.message, code: String(code) }
  }
  if (seen.has(o)) return '[Circular]'
  if (depth >= MAX_DEPTH) return '[Object]'
  seen.add(o)
  try {
    if (Array.isArray(o)) return o.map((x) => jsonSafe(x, depth + 1, seen) ?? null)
    if (o instanceof Map) {
      const out: Record<string, unknown> = {}
      for (const [k, x] of o) out[String(k)] = jsonSafe(x, depth + 1, seen)
      return out
    }
    if (o instanceof Set) return [...o].map((x) => jsonSafe(x, depth + 1, seen) ?? null)
    const toJSON = (o as { toJSON?: unknown }).toJSON
    if (typeof toJSON === 'function') return jsonSafe(toJSON.call(o), depth + 1, seen)
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(o)) {
      const x = jsonSafe((o as Record<string, unknown>)[k], depth + 1, seen)
      if (x !== undefined) out[k] = x
    }
    return out
  } finally {
    seen.delete(o)
  }
}
