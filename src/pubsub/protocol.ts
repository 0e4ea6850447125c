/**
 * `wirelog.v1`: the frames of the pubsub protocol (specified in docs/protocol.md). Client
 * frames are JSON text validated by one zod schema per op; unknown fields are ignored (so
 * a newer client can talk to an older server). Server frames are built here too. The zod
 * schema itself is in schema.ts, loaded apart (see there).
 */
import { jsonInner } from '../log/escape.js'

export const PROTOCOL = 'wirelog.v1'
export const PROTOCOL_VERSION = 1

/** Stable error codes of `error` frames. */
export const ErrorCode = {
  /** The frame is not JSON, or not a JSON object. */
  BAD_JSON: 'BAD_JSON',
  /** Binary frames are not part of the protocol. */
  BINARY_NOT_SUPPORTED: 'BINARY_NOT_SUPPORTED',
  /** `op` is missing or unknown. */
  UNKNOWN_OP: 'UNKNOWN_OP',
  /** A field is missing or has the wrong type. */
  BAD_FRAME: 'BAD_FRAME',
  /** A topic or pattern breaks the grammar, or a pattern is given where a topic is needed. */
  BAD_TOPIC: 'BAD_TOPIC',
  /** `data` is larger than `pubsub.maxDataBytes`. */
  TOO_BIG: 'TOO_BIG',
  /** More subscriptions than `pubsub.maxSubscriptions`. */
  TOO_MANY_SUBSCRIPTIONS: 'TOO_MANY_SUBSCRIPTIONS',
  /** Unsubscribe from something not subscribed. */
  NOT_SUBSCRIBED: 'NOT_SUBSCRIBED',
  /** Not allowed (authorization). */
  FORBIDDEN: 'FORBIDDEN',
  /** A `send` to a client or user that is not connected. */
  UNKNOWN_TARGET: 'UNKNOWN_TARGET',
  /** `resume` with a token whose session expired or never existed. */
  SESSION_EXPIRED: 'SESSION_EXPIRED',
  /** `resume` with a malformed token, another user's session, or after other ops. */
  SESSION_INVALID: 'SESSION_INVALID',
  /** `refresh` with a token that does not verify, or for another user. */
  TOKEN_INVALID: 'TOKEN_INVALID',
  /** Authentication is not configured: `refresh` is meaningless. */
  AUTH_DISABLED: 'AUTH_DISABLED',
  /** The broker is unreachable; the op could not be completed. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** An unexpected server error. */
  INTERNAL: 'INTERNAL',
} as const
export type ErrorCodeName = keyof typeof ErrorCode

import type { ClientFrame } from './schema.js'

export type { ClientFrame }

type Schema = typeof import('./schema.js')
let schema: Schema | undefined
let loading: Promise<Schema> | undefined

/**
 * Load the frame schema (idempotent). `parseFrame` needs it: the router waits for it before
 * it parses the first frame, and the server starts it once the port is bound.
 */
export function loadSchema(): Promise<void> {
  loading ??= import('./schema.js').then((m) => {
    schema = m
    return m
  })
  return loading.then(() => undefined)
}

/** Whether `parseFrame` can run now. */
export function schemaLoaded(): boolean {
  return schema !== undefined
}
export type OpName = ClientFrame['op']
export const OPS: readonly OpName[] = [
  'subscribe',
  'unsubscribe',
  'publish',
  'send',
  'presence',
  'history',
  'refresh',
  'ping',
  'resume',
]

export type ParseResult =
  | { ok: true; frame: ClientFrame }
  | { ok: false; code: ErrorCodeName; message: string; id: string | number | undefined }

/** Parse and validate one client frame (once `loadSchema()` has resolved). */
export function parseFrame(text: string): ParseResult {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    return { ok: false, code: 'BAD_JSON', message: 'the frame is not valid JSON', id: undefined }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    return { ok: false, code: 'BAD_JSON', message: 'a frame is a JSON object', id: undefined }
  const rawId = (v as { id?: unknown }).id
  const fid = typeof rawId === 'string' || typeof rawId === 'number' ? rawId : undefined
  const op = (v as { op?: unknown }).op
  if (typeof op !== 'string' || !(OPS as readonly string[]).includes(op))
    return {
      ok: false,
      code: 'UNKNOWN_OP',
      message: `unknown op ${JSON.stringify(op)}; ops are ${OPS.join(', ')}`,
      id: fid,
    }
  if (schema === undefined) throw new Error('parseFrame(): call loadSchema() first')
  const r = schema.validate(v)
  if (!r.ok)
    return { ok: false, code: 'BAD_FRAME', message: `${op}: ${r.where}: ${r.message}`, id: fid }
  return { ok: true, frame: r.frame }
}

/** A server frame as JSON text (not the hot path: `messageFrame` is). */
export function frameText(op: string, fields: Record<string, unknown>): string {
  return JSON.stringify({ op, ...fields })
}

/** The `error` frame. */
export function errorFrame(
  code: ErrorCodeName,
  message: string,
  fid: string | number | undefined,
  extra: Record<string, unknown> = {},
): string {
  return frameText('error', { ...(fid !== undefined ? { id: fid } : {}), code, message, ...extra })
}

/**
 * The `message` frame for a topic message: built once per publish by string concatenation
 * (the data is JSON text already) and sent to every recipient as is.
 */
export function messageFrame(m: {
  topic: string
  seq: number
  epoch: string
  time: number
  from: { client?: string; user?: string }
  data: string
}): string {
  const from =
    m.from.user !== undefined
      ? `{"client":"${jsonInner(m.from.client ?? '')}","user":"${jsonInner(m.from.user)}"}`
      : m.from.client !== undefined
        ? `{"client":"${jsonInner(m.from.client)}"}`
        : '{}'
  return `{"op":"message","topic":"${jsonInner(m.topic)}","seq":${m.seq},"epoch":"${jsonInner(m.epoch)}","time":${m.time},"from":${from},"data":${m.data}}`
}
