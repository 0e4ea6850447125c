/**
 * The one registry of WebSocket close codes wirelog sends or reports.
 *
 * 1000–1015 are RFC 6455 §7.4.1; 4000–4999 are wirelog's own. Each entry says whether a
 * well-behaved client should reconnect (`reconnect`) or give up (`terminal`).
 */
export const CloseCode = {
  /** The purpose of the connection was fulfilled. */
  NORMAL: 1000,
  /** The server is shutting down (or the page navigated away). */
  GOING_AWAY: 1001,
  /** The peer broke the protocol (bad frame, bad opcode, unmasked frame, bad close payload). */
  PROTOCOL_ERROR: 1002,
  /** A data type the endpoint cannot accept. */
  UNSUPPORTED_DATA: 1003,
  /** Reserved: no status code was present (never sent on the wire). */
  NO_STATUS: 1005,
  /** Reserved: the connection dropped without a close frame (never sent on the wire). */
  ABNORMAL: 1006,
  /** A text message (or close reason) was not valid UTF-8. */
  INVALID_PAYLOAD: 1007,
  /** Policy violation: origin, authentication, rate limit. */
  POLICY_VIOLATION: 1008,
  /** A message exceeded the maximum message size. */
  MESSAGE_TOO_BIG: 1009,
  /** The server hit an unexpected condition. */
  INTERNAL_ERROR: 1011,
  /** The server is over capacity; try again later. */
  TRY_AGAIN_LATER: 1013,
  /** wirelog: the client read too slowly and its outbound buffer passed the cap. */
  SLOW_CONSUMER: 4000,
  /** wirelog: the client sent nothing for longer than the idle timeout. */
  IDLE_TIMEOUT: 4001,
  /** wirelog: the client stopped answering heartbeat pings. */
  HEARTBEAT_TIMEOUT: 4002,
  /** wirelog: the client's credential expired and was not refreshed; reconnect with a new token. */
  AUTH_EXPIRED: 4003,
  /** wirelog: another connection resumed this client's session. */
  SESSION_TAKEN_OVER: 4004,
} as const

export type CloseCodeName = keyof typeof CloseCode
export type CloseCodeValue = (typeof CloseCode)[CloseCodeName]

export interface CloseCodeInfo {
  readonly code: number
  readonly name: CloseCodeName
  /** What a client should do after receiving this code. */
  readonly advice: 'reconnect' | 'terminal'
  readonly description: string
}

const info: Record<CloseCodeName, Omit<CloseCodeInfo, 'code' | 'name'>> = {
  NORMAL: { advice: 'terminal', description: 'normal closure' },
  GOING_AWAY: { advice: 'reconnect', description: 'server shutting down' },
  PROTOCOL_ERROR: { advice: 'terminal', description: 'protocol error' },
  UNSUPPORTED_DATA: { advice: 'terminal', description: 'unsupported data' },
  NO_STATUS: { advice: 'reconnect', description: 'no status received' },
  ABNORMAL: { advice: 'reconnect', description: 'abnormal closure (no close frame)' },
  INVALID_PAYLOAD: { advice: 'terminal', description: 'invalid UTF-8 payload' },
  POLICY_VIOLATION: { advice: 'terminal', description: 'policy violation' },
  MESSAGE_TOO_BIG: { advice: 'terminal', description: 'message too big' },
  INTERNAL_ERROR: { advice: 'reconnect', description: 'internal server error' },
  TRY_AGAIN_LATER: { advice: 'reconnect', description: 'over capacity, try again later' },
  SLOW_CONSUMER: { advice: 'reconnect', description: 'slow consumer: outbound buffer cap reached' },
  IDLE_TIMEOUT: { advice: 'reconnect', description: 'idle timeout' },
  HEARTBEAT_TIMEOUT: { advice: 'reconnect', description: 'heartbeat timeout: pongs missed' },
  AUTH_EXPIRED: {
    advice: 'reconnect',
    description: 'credential expired: reconnect with a fresh token',
  },
  SESSION_TAKEN_OVER: { advice: 'terminal', description: 'session resumed by another connection' },
}

const byCode = new Map<number, CloseCodeInfo>()
for (const name of Object.keys(CloseCode) as CloseCodeName[]) {
  byCode.set(CloseCode[name], Object.freeze({ code: CloseCode[name], name, ...info[name] }))
}

/** Look up what a close code means; `undefined` for codes wirelog does not define. */
export function describeCloseCode(code: number): CloseCodeInfo | undefined {
  return byCode.get(code)
}

/** Every registered close code, in ascending order. */
export function closeCodes(): CloseCodeInfo[] {
  return [...byCode.values()].sort((a, b) => a.code - b.code)
}
