/**
 * Authentication at the upgrade, before any 101: static tokens (a file of token → user,
 * tokens stored as SHA-256 hashes or in clear) or JWT (HS256, RS256, ES256, EdDSA, … through
 * `jose`; a key file, a JWKS file, or a JWKS URL fetched and cached with rotation), with
 * issuer/audience checks and clock skew.
 *
 * The token comes from `Authorization: Bearer <token>`, from a `bearer.<token>`
 * `Sec-WebSocket-Protocol` entry (browsers cannot set headers), or from `?token=` /
 * `?access_token=` (redacted wherever it could be logged). A failure answers 401 with
 * `WWW-Authenticate` and a reason that never contains the token.
 */
import { createHash, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { type AdmissionRequest, accept, type Reject, reject } from '../admission.js'
import type { ClientUser, Permissions } from '../connection.js'

export type AuthMode = 'none' | 'tokens' | 'jwt'

export interface JwtOptions {
  /** A key file: PEM public key or certificate, a JWK (JSON), or an HMAC secret. */
  key?: string | undefined
  /** A JWKS file ({ "keys": [...] }); re-read when a token names a kid it lacks. */
  jwksFile?: string | undefined
  /** A JWKS URL, fetched and cached; refetched on an unknown kid (key rotation). */
  jwksUrl?: string | undefined
  issuer?: string | undefined
  audience?: string | undefined
  /** Accepted `alg` values. */
  algorithms: readonly string[]
  /** Seconds of clock skew tolerated on exp/nbf/iat. */
  clockSkew: number
  /** The claim holding the user id. */
  userClaim: string
  /** The claim holding topic permissions (`{ subscribe, publish, presence, history, send }`). */
  permissionsClaim: string
  /** Seconds a fetched JWKS is trusted before it is refetched. */
  jwksCacheMaxAge: number
  /** Shortest interval between two JWKS fetches, in seconds. */
  jwksCooldown: number
}

export interface AuthOptions {
  mode: AuthMode
  /** Static tokens file (mode `tokens`). */
  tokensFile?: string | undefined
  jwt: JwtOptions
}

/** A failed verification: `reason` is safe to log and show. */
export class AuthError extends Error {
  readonly status: 401 | 403
  constructor(reason: string, status: 401 | 403 = 401) {
    super(reason)
    this.status = status
  }
}

export interface Authenticator {
  readonly mode: AuthMode
  /** The admission rule: accept with the user, or refuse with 401. */
  admit(req: AdmissionRequest): Promise<ReturnType<typeof accept> | Reject>
  /** Verify a token (for `refresh`); throws AuthError. */
  verify(token: string): Promise<ClientUser>
}

/** The token a request presents, and where it came from. */
export function tokenFrom(
  req: Pick<AdmissionRequest, 'headers' | 'protocols' | 'query'>,
): string | undefined {
  const auth = req.headers.authorization
  if (typeof auth === 'string' && /^bearer /i.test(auth)) return auth.slice(7).trim() || undefined
  for (const p of req.protocols) if (p.startsWith('bearer.') && p.length > 7) return p.slice(7)
  return req.query.get('token') ?? req.query.get('access_token') ?? undefined
}

function challenge(reason: string): Record<string, string> {
  return {
    'WWW-Authenticate': `Bearer realm="wirelog", error="invalid_token", error_description="${reason.replace(/["\\]/g, '')}"`,
  }
}

export function createAuthenticator(opts: AuthOptions): Authenticator {
  const verify =
    opts.mode === 'tokens'
      ? staticTokens(required(opts.tokensFile, 'auth.tokensFile (--auth-tokens)'))
      : opts.mode === 'jwt'
        ? jwtVerifier(opts.jwt)
        : async (): Promise<ClientUser> => {
            throw new AuthError('authentication is not enabled')
          }
  return {
    mode: opts.mode,
    verify,
    async admit(req) {
      const token = tokenFrom(req)
      if (token === undefined) return reject(401, 'missing token', challenge('missing token'))
      try {
        const user = await verify(token)
        return accept(undefined, user)
      } catch (err) {
        const reason = err instanceof AuthError ? err.message : 'token rejected'
        const status = err instanceof AuthError ? err.status : 401
        return reject(status, reason, status === 401 ? challenge(reason) : undefined)
      }
    },
  }
}

function required<T>(v: T | undefined, what: string): T {
  if (v === undefined || v === '') throw new TypeError(`${what} is required`)
  return v
}

interface TokenEntry {
  user: string
  permissions?: Permissions
  claims?: Record<string, unknown>
  /** ISO date after which the token is refused. */
  expires?: string
}

/** Static tokens: `{ "tokens": [{ "token" | "sha256": …, "user": …, "permissions": … }] }`. */
function staticTokens(file: string): (token: string) => Promise<ClientUser> {
  let parsed: { tokens?: unknown }
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as { tokens?: unknown }
  } catch (err) {
    throw new TypeError(`auth tokens file ${file}: ${(err as Error).message}`)
  }
  if (!Array.isArray(parsed.tokens))
    throw new TypeError(`auth tokens file ${file}: expected { "tokens": [ … ] }`)
  const byHash = new Map<string, TokenEntry>()
  for (const [i, raw] of parsed.tokens.entries()) {
    const e = raw as Partial<TokenEntry> & { token?: unknown; sha256?: unknown }
    if (typeof e.user !== 'string' || e.user.length === 0)
      throw new TypeError(`auth tokens file ${file}: tokens[${i}].user must be a non-empty string`)
    const hash =
      typeof e.sha256 === 'string'
        ? e.sha256.toLowerCase()
        : typeof e.token === 'string'
          ? sha256(e.token)
          : undefined
    if (hash === undefined || !/^[0-9a-f]{64}$/.test(hash))
      throw new TypeError(`auth tokens file ${file}: tokens[${i}] needs "token" or a hex "sha256"`)
    byHash.set(hash, e as TokenEntry)
  }
  return async (token) => {
    // Looked up by the hash of what was presented: timing says nothing about stored tokens.
    const e = byHash.get(sha256(token))
    if (e === undefined) throw new AuthError('unknown token')
    const expiresAt = e.expires ? Date.parse(e.expires) : undefined
    if (expiresAt !== undefined && expiresAt <= Date.now()) throw new AuthError('token expired')
    return {
      id: e.user,
      claims: { ...e.claims },
      ...(expiresAt !== undefined ? { expiresAt } : {}),
      ...(e.permissions ? { permissions: e.permissions } : {}),
    }
  }
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

/** A key from a file: PEM (public key or certificate), a JWK, or else an HMAC secret. */
function keyFromFile(file: string): KeyObject {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new TypeError(`JWT key file ${file}: ${(err as Error).message}`)
  }
  const t = text.trim()
  try {
    if (t.startsWith('-----BEGIN')) return createPublicKey(t)
    if (t.startsWith('{')) {
      const jwk = JSON.parse(t) as { kty?: string; k?: string }
      if (jwk.kty === 'oct' && typeof jwk.k === 'string')
        return createSecretKey(Buffer.from(jwk.k, 'base64url'))
      return createPublicKey({ key: jwk as never, format: 'jwk' })
    }
  } catch (err) {
    throw new TypeError(`JWT key file ${file}: ${(err as Error).message}`)
  }
  if (t.length < 32)
    throw new TypeError(`JWT key file ${file}: an HMAC secret must be at least 32 characters`)
  return createSecretKey(Buffer.from(t, 'utf8'))
}

/**
 * JWT verification. Everything a config can get wrong is checked here, at start-up, without
 * `jose`; `jose` itself (tens of milliseconds to load) is imported only in this mode, starting
 * now, so a server without JWT never loads it and the first token rarely waits for it.
 */
function jwtVerifier(o: JwtOptions): (token: string) => Promise<ClientUser> {
  const sources = [o.key, o.jwksFile, o.jwksUrl].filter((x) => x !== undefined && x !== '')
  if (sources.length !== 1)
    throw new TypeError(
      'auth.jwt: give exactly one of key (--jwt-key), jwksFile (--jwks-file) or jwksUrl (--jwks-url)',
    )
  let source: JwtKeySource
  if (o.key) source = { key: keyFromFile(o.key) }
  else if (o.jwksFile) source = { jwksFile: o.jwksFile, jwks: readJwks(o.jwksFile) }
  else {
    try {
      source = { jwksUrl: new URL(o.jwksUrl!) }
    } catch {
      throw new TypeError(`auth.jwt.jwksUrl: not a URL: ${o.jwksUrl}`)
    }
  }
  const ready = import('./jwt.js').then((m) => m.jwtVerifier(o, source))
  // Awaited by each verification; without this a failed load would also be unhandled.
  ready.catch(() => {})
  return async (token) => (await ready)(token)
}

/** Where JWT keys come from, already read and checked. */
export type JwtKeySource =
  | { readonly key: KeyObject }
  | { readonly jwksFile: string; readonly jwks: { keys: unknown[] } }
  | { readonly jwksUrl: URL }

/** A JWKS file's contents, checked for the shape `jose` accepts (`{ "keys": [ {…}, … ] }`). */
export function readJwks(file: string): { keys: unknown[] } {
  let jwks: { keys?: unknown } | null
  try {
    jwks = JSON.parse(readFileSync(file, 'utf8')) as { keys?: unknown } | null
  } catch (err) {
    throw new TypeError(`JWKS file ${file}: ${(err as Error).message}`)
  }
  if (
    jwks === null ||
    typeof jwks !== 'object' ||
    !Array.isArray(jwks.keys) ||
    !jwks.keys.every((k) => k !== null && typeof k === 'object' && !Array.isArray(k))
  )
    throw new TypeError(`JWKS file ${file}: JSON Web Key Set malformed`)
  return jwks as { keys: unknown[] }
}
