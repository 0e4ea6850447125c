/**
 * The zod schema of `wirelog.v1` client frames (see protocol.ts). Validation is on the hot
 * path of every pubsub op, and zod's v4 API validates a frame in about half the time of its
 * v3 API; its code takes ~45 ms to load, so this module is loaded apart, after the port is
 * bound (`--behaviour pubsub`) or when the first wirelog.v1 frame arrives (`loadSchema()`).
 */
import { z } from 'zod'

const id = z.union([z.string().min(1).max(64), z.number().int().min(0)]).optional()
const topic = z.string()
const position = z.object({
  seq: z.number().int().min(0),
  epoch: z.string().max(64).optional(),
})

export const clientFrame = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('subscribe'),
    id,
    topic,
    /** Replay history after this position before live messages. */
    since: position.optional(),
    /** Receive `join` / `leave` frames for this topic. */
    presence: z.boolean().optional(),
  }),
  z.object({ op: z.literal('unsubscribe'), id, topic }),
  z.object({ op: z.literal('publish'), id, topic, data: z.unknown() }),
  z.object({
    op: z.literal('send'),
    id,
    to: z.union([
      z.object({ client: z.string().min(1).max(128) }),
      z.object({ user: z.string().min(1).max(256) }),
    ]),
    data: z.unknown(),
  }),
  z.object({ op: z.literal('presence'), id, topic }),
  z.object({
    op: z.literal('history'),
    id,
    topic,
    since: z.number().int().min(0).optional(),
    limit: z.number().int().min(1).max(1000).optional(),
  }),
  z.object({ op: z.literal('refresh'), id, token: z.string().min(1).max(16_384) }),
  z.object({ op: z.literal('ping'), id }),
  z.object({
    op: z.literal('resume'),
    id,
    token: z.string().min(1).max(512),
    /** Last seq seen per topic. */
    positions: z.record(z.string().max(256), position).optional(),
  }),
])

export type ClientFrame = z.infer<typeof clientFrame>

/** Validate a parsed frame: the frame, or the first problem (`path: message`). */
export function validate(
  v: unknown,
): { ok: true; frame: ClientFrame } | { ok: false; where: string; message: string } {
  const r = clientFrame.safeParse(v)
  if (r.success) return { ok: true, frame: r.data }
  const issue = r.error.issues[0]!
  return {
    ok: false,
    where: issue.path.length ? issue.path.join('.') : 'frame',
    message: issue.message,
  }
}
