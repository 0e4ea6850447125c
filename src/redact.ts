/**
 * Redaction of credentials wherever the server shows a request: query parameters in paths
 * (`/ws?token=…` → `/ws?token=[redacted]`), credential headers, user:password in URLs.
 * Applied once, where the value enters the server (a client's `path`, a rejection's path),
 * so the log, events, the dashboard and metrics all see the redacted form.
 */

export const REDACTED = '[redacted]'

/** Parameter names redacted by default (compared case-insensitively). */
export const DEFAULT_REDACT: readonly string[] = [
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'auth',
  'authorization',
  'key',
  'api_key',
  'apikey',
  'password',
  'passwd',
  'pass',
  'pwd',
  'secret',
  'client_secret',
  'jwt',
  'sig',
  'signature',
  'session',
  'sessionid',
  'code',
  'credential',
  'credentials',
]

/** Header names whose values are always redacted. */
const SECRET_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'x-auth-token',
])

/** Substrings that make a parameter name credential-like (`x_auth_token`, `apiKey`, …). */
const SECRET_PARTS = ['token', 'secret', 'passw', 'apikey', 'api_key', 'api-key', 'credential']

export type Redactor = {
  /** A request target (`/path?query`) with credential-like query values redacted. */
  path(target: string): string
  /** A header value as it may be shown. */
  header(name: string, value: string): string
  /** Whether a parameter / field name is credential-like. */
  isSecret(name: string): boolean
}

export function createRedactor(extra: readonly string[] = []): Redactor {
  const names = new Set([...DEFAULT_REDACT, ...extra].map((n) => n.toLowerCase()))
  const isSecret = (name: string): boolean => {
    const n = name.toLowerCase()
    if (names.has(n)) return true
    for (const part of SECRET_PARTS) if (n.includes(part)) return true
    return false
  }
  const path = (target: string): string => {
    const q = target.indexOf('?')
    const base = redactUserinfo(q < 0 ? target : target.slice(0, q))
    if (q < 0) return base
    const hash = target.indexOf('#', q)
    const query = target.slice(q + 1, hash < 0 ? undefined : hash)
    const parts = query.split('&').map((pair) => {
      const eq = pair.indexOf('=')
      const rawName = eq < 0 ? pair : pair.slice(0, eq)
      let name = rawName
      try {
        name = decodeURIComponent(rawName.replace(/\+/g, ' '))
      } catch {}
      return isSecret(name) && eq >= 0 ? `${rawName}=${REDACTED}` : pair
    })
    return `${base}?${parts.join('&')}`
  }
  const header = (name: string, value: string): string => {
    const n = name.toLowerCase()
    if (SECRET_HEADERS.has(n) || names.has(n)) return REDACTED
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? path(value) : value
  }
  return { path, header, isSecret }
}

/** `scheme://user:pass@host/…` → `scheme://[redacted]@host/…`. */
function redactUserinfo(s: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/@]*)@/i.exec(s)
  return m ? `${m[1]}${REDACTED}@${s.slice(m[0].length)}` : s
}

const JSON_TOKEN =
  /"(token|access_token|refresh_token|password|secret|resume)"(\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)/g

/**
 * A JSON text with the values of credential fields (`"token": "…"`, and the `"resume"` token
 * of the server's welcome and resumed frames) redacted: the
 * `wirelog.v1` frames that carry credentials (`resume`, `refresh`) are logged like any
 * message, minus those values.
 */
export function redactJsonSecrets(text: string): string {
  return text.replace(JSON_TOKEN, `"$1"$2"${REDACTED}"`)
}
