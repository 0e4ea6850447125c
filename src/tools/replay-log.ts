/**
 * Reading a json activity log back as a script to replay: per recorded client, where it
 * connected (path, subprotocol, origin), what it sent and when (`message.received` lines),
 * what the server answered (`message.sent` lines) and how it closed.
 *
 * A message's content is known when its line carries `data` and no `truncated` flag (every
 * message with `--log-payloads full`, small ones with the default preview). A cut one is
 * known only by its prefix and size: it is replayed padded to its size, and its replies are
 * checked by size.
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'

/** A message as the log recorded it. */
export interface RecordedMessage {
  /** Recorded time (ms since the epoch). */
  readonly at: number
  readonly binary: boolean
  readonly bytes: number
  /** The whole content, when recorded whole: a string for text, bytes for binary. */
  readonly data: string | Buffer | undefined
  /** What was recorded of a cut message (its first bytes). */
  readonly prefix: string | Buffer | undefined
}

export interface RecordedReply extends RecordedMessage {
  /** Index in `sends` of the client message this reply followed (-1: none before it). */
  readonly cause: number
}

export interface RecordedClose {
  readonly at: number
  readonly code: number
  readonly reason: string
  /** `client` or `server` when the log says who closed first. */
  readonly initiator: string | undefined
}

export interface RecordedClient {
  readonly id: string
  readonly connectedAt: number
  readonly path: string | undefined
  readonly protocol: string | undefined
  readonly origin: string | undefined
  /** What the client sent, in order. */
  readonly sends: RecordedMessage[]
  /** What the server sent it, in order. */
  readonly replies: RecordedReply[]
  close: RecordedClose | undefined
}

export interface Recording {
  /** Clients in the order they connected. */
  readonly clients: RecordedClient[]
  /**
   * Time of the first replayed event: the first connect, or `since` for a client connected
   * before it (which is opened at the start of the window).
   */
  readonly start: number
  /** Whether any `message.sent` line was recorded (they are written at level debug). */
  readonly hasSentLines: boolean
  /** Lines skipped: not a wirelog event, or an event replay does not use. */
  readonly skipped: number
  /** Lines the recording server dropped (its `log.dropped` lines): the recording has gaps. */
  readonly dropped: number
}

/** A log line that is not JSON: the log was not written with `--log-format json`. */
export class LogFormatError extends Error {
  readonly code = 'WIRELOG_ERR_LOG_FORMAT'
}

export interface RecordingFilter {
  /** Only these recorded client ids (empty = all). */
  readonly clients?: readonly string[]
  /** Only events at or after this time (ms since the epoch). */
  readonly since?: number
  /** Only events at or before this time. */
  readonly until?: number
}

interface Line {
  readonly time?: unknown
  readonly event?: unknown
  readonly client?: unknown
  [k: string]: unknown
}

/** Read the log files (in any order: lines are sorted by time) into a recording. */
export async function readRecording(
  files: readonly string[],
  filter: RecordingFilter = {},
): Promise<Recording> {
  const lines: Array<{ line: Line; seq: number }> = []
  let seq = 0
  for (const file of files) {
    const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity })
    let n = 0
    for await (const text of rl) {
      n++
      if (text.length === 0) continue
      let line: Line
      try {
        line = JSON.parse(text) as Line
      } catch {
        throw new LogFormatError(
          `${file}:${n}: not a json log line (record with --log-format json to replay)`,
        )
      }
      if (line !== null && typeof line === 'object') lines.push({ line, seq: seq++ })
    }
  }
  // Rotated files, or files of several workers: one timeline. Equal times keep file order.
  lines.sort((a, b) => num(a.line.time) - num(b.line.time) || a.seq - b.seq)
  return buildRecording(
    lines.map((l) => l.line),
    filter,
  )
}

/** The recording of parsed log lines in time order (exported for unit tests). */
export function buildRecording(lines: readonly Line[], filter: RecordingFilter = {}): Recording {
  const wanted = filter.clients && filter.clients.length > 0 ? new Set(filter.clients) : undefined
  const since = filter.since ?? -Infinity
  const until = filter.until ?? Infinity
  const byId = new Map<string, RecordedClient>()
  const order: RecordedClient[] = []
  const used = new Set<RecordedClient>()
  const markUsed = (c: RecordedClient): void => {
    if (used.has(c)) return
    used.add(c)
    order.push(c)
  }
  let hasSentLines = false
  let skipped = 0
  let dropped = 0
  for (const line of lines) {
    const event = line.event
    if (event === 'log.dropped' && typeof line.dropped === 'number') dropped += line.dropped
    const id = typeof line.client === 'string' ? line.client : undefined
    const at = num(line.time)
    if (event === 'message.sent') hasSentLines = true
    if (id === undefined || (wanted && !wanted.has(id))) {
      skipped++
      continue
    }
    if (event === 'client.connected') {
      const c: RecordedClient = {
        id,
        connectedAt: at,
        path: str(line.path),
        protocol: str(line.protocol),
        origin: str(line.origin),
        sends: [],
        replies: [],
        close: undefined,
      }
      byId.set(id, c)
      continue
    }
    const c = byId.get(id)
    // A client whose connection is not in these files cannot be re-opened faithfully.
    if (c === undefined) {
      skipped++
      continue
    }
    const inWindow = at >= since && at <= until
    switch (event) {
      case 'message.received':
        if (inWindow) {
          markUsed(c)
          c.sends.push(message(line, at))
        }
        break
      case 'message.sent':
        if (inWindow) c.replies.push({ ...message(line, at), cause: c.sends.length - 1 })
        break
      case 'client.disconnected':
        if (at >= since && at <= until) {
          markUsed(c)
          c.close = {
            at,
            code: typeof line.code === 'number' ? line.code : 1005,
            reason: str(line.reason) ?? '',
            initiator: str(line.initiator),
          }
        }
        break
      default:
        skipped++
    }
  }
  // Clients connected inside the window but silent in it are replayed too (connect, close).
  for (const c of byId.values()) if (c.connectedAt >= since && c.connectedAt <= until) markUsed(c)
  order.sort((a, b) => a.connectedAt - b.connectedAt)
  const first = order[0]?.connectedAt ?? 0
  return { clients: order, start: Math.max(first, since), hasSentLines, skipped, dropped }
}

function message(line: Line, at: number): RecordedMessage {
  const binary = line.binary === true
  const raw = typeof line.data === 'string' ? line.data : undefined
  const bytes =
    typeof line.bytes === 'number'
      ? line.bytes
      : raw === undefined
        ? 0
        : binary
          ? Buffer.from(raw, 'base64').length
          : Buffer.byteLength(raw)
  const content = raw === undefined ? undefined : binary ? Buffer.from(raw, 'base64') : raw
  const whole = content !== undefined && line.truncated !== true
  return {
    at,
    binary,
    bytes,
    data: whole ? content : undefined,
    prefix: whole ? undefined : content,
  }
}

/**
 * What to send for a recorded message: its content, or for a cut one its recorded prefix
 * padded to its recorded size (spaces for text, zeros for binary).
 */
export function payloadOf(m: RecordedMessage): string | Buffer {
  if (m.data !== undefined) return m.data
  if (m.binary) {
    const out = Buffer.alloc(m.bytes)
    if (Buffer.isBuffer(m.prefix)) m.prefix.copy(out, 0, 0, m.bytes)
    return out
  }
  const prefix = typeof m.prefix === 'string' ? m.prefix : ''
  const pad = m.bytes - Buffer.byteLength(prefix)
  return pad > 0 ? prefix + ' '.repeat(pad) : prefix
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}
