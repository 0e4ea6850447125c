/**
 * JWT verification through `jose`, loaded only when `auth.mode` is `jwt` (see `jwtVerifier`
 * in `./index.ts`, which checks the options and reads the keys before this module loads).
 */

import type { KeyObject } from 'node:crypto'
import { statSync } from 'node:fs'
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type JWTPayload,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
} from 'jose'
import type { ClientUser, Permissions } from '../connection.js'
import { AuthError, type JwtKeySource, type JwtOptions, readJwks } from './index.js'

export function jwtVerifier(
  o: JwtOptions,
  source: JwtKeySource,
): (token: string) => Promise<ClientUser> {
  let getKey: KeyObject | JWTVerifyGetKey
  if ('key' in source) getKey = source.key
  else if ('jwksFile' in source) getKey = jwksFileSet(source.jwksFile, source.jwks)
  else
    getKey = createRemoteJWKSet(source.jwksUrl, {
      cacheMaxAge: o.jwksCacheMaxAge * 1000,
      cooldownDuration: o.jwksCooldown * 1000,
    })
  const options = {
    algorithms: [...o.algorithms],
    clockTolerance: o.clockSkew,
    ...(o.issuer ? { issuer: o.issuer } : {}),
    ...(o.audience ? { audience: o.audience } : {}),
  }
  return async (token) => {
    let payload: JWTPayload
    try {
      payload = (await jwtVerify(token, getKey as JWTVerifyGetKey, options)).payload
    } catch (err) {
      throw new AuthError(jwtReason(err))
    }
    const id = payload[o.userClaim]
    if (typeof id !== 'string' || id.length === 0)
      throw new AuthError(`token has no "${o.userClaim}" claim`)
    const perms = payload[o.permissionsClaim]
    return {
      id,
      claims: payload as Record<string, unknown>,
      ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp * 1000 } : {}),
      ...(perms !== null && typeof perms === 'object' ? { permissions: perms as Permissions } : {}),
    }
  }
}

/** A JWKS file, re-read (at most once a second) when a token names a key it does not hold. */
function jwksFileSet(file: string, initial: { keys: unknown[] }): JWTVerifyGetKey {
  type Jwks = Parameters<typeof createLocalJWKSet>[0]
  const load = (): { set: JWTVerifyGetKey; mtime: number } => {
    const mtime = statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0
    return { set: createLocalJWKSet(readJwks(file) as Jwks), mtime }
  }
  // Read at start-up before its mtime was taken: the first unknown kid re-reads it once.
  let cur: { set: JWTVerifyGetKey; mtime: number } = {
    set: createLocalJWKSet(initial as Jwks),
    mtime: Number.NaN,
  }
  let checkedAt = 0
  return async (header, token) => {
    try {
      return await cur.set(header, token)
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey) || Date.now() - checkedAt < 1000) throw err
      checkedAt = Date.now()
      let mtime = 0
      try {
        mtime = statSync(file).mtimeMs
      } catch {}
      if (mtime === cur.mtime) throw err
      cur = load()
      return cur.set(header, token)
    }
  }
}

function jwtReason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired'
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'token not yet valid'
    if (err.claim === 'iss') return 'wrong token issuer'
    if (err.claim === 'aud') return 'wrong token audience'
    return `token claim "${err.claim}" invalid`
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad token signature'
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm not allowed'
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key matches the token'
  if (err instanceof joseErrors.JWKSTimeout) return 'key set unavailable (timeout)'
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid)
    return 'malformed token'
  return 'token rejected'
}
