/**
 * Keys of the log seals (`--log-sign-key`, `wirelog verify-log --key`). One file, detected by
 * its content: a PEM Ed25519 key (private to sign; private or public to verify), or else an
 * HMAC-SHA256 secret (the file's bytes, a trailing newline removed, at least 16 bytes).
 *
 * What is signed is the ASCII text `wirelog-log-seal:<chain head hex>`: the head commits to
 * every line before it, across rotated files, so one signature covers the whole log so far.
 */
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto'
import { readFileSync } from 'node:fs'

export type SealAlg = 'hmac-sha256' | 'ed25519'

export interface SealKey {
  readonly alg: SealAlg
  /** A short public id of the key (not secret): the seal names it, so a wrong key is told apart. */
  readonly kid: string
  /** Signature (base64url) of a chain head; undefined for a public-only key. */
  sign?(head: string): string
  verify(head: string, sig: string): boolean
}

const MIN_SECRET = 16

export function sealedText(head: string): Buffer {
  return Buffer.from(`wirelog-log-seal:${head}`, 'latin1')
}

/** Read and detect a key file; throws an Error naming `flag` and what it accepts. */
export function loadSealKey(path: string, flag: string, forSigning: boolean): SealKey {
  let raw: Buffer
  try {
    raw = readFileSync(path)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new Error(`${flag}: cannot read ${path} (${e.code ?? e.message})`)
  }
  const text = raw.toString('latin1')
  if (text.includes('-----BEGIN ')) return pemKey(text, path, flag, forSigning)
  let end = raw.length
  while (end > 0 && (raw[end - 1] === 10 || raw[end - 1] === 13)) end--
  const secret = raw.subarray(0, end)
  if (secret.length < MIN_SECRET)
    throw new Error(
      `${flag}: ${path} holds ${secret.length} bytes; expected an HMAC secret of at least ${MIN_SECRET} bytes or an Ed25519 PEM key`,
    )
  return hmacKey(Buffer.from(secret))
}

function hmacKey(secret: Buffer): SealKey {
  // The id is a hash of a hash of the secret: it names the key without helping to guess it.
  const kid = createHash('sha256')
    .update('wirelog-kid:')
    .update(createHash('sha256').update(secret).digest())
    .digest('hex')
    .slice(0, 16)
  const mac = (head: string): Buffer =>
    createHmac('sha256', secret).update(sealedText(head)).digest()
  return {
    alg: 'hmac-sha256',
    kid,
    sign: (head) => mac(head).toString('base64url'),
    verify: (head, sig) => {
      const given = Buffer.from(sig, 'base64url')
      const want = mac(head)
      return given.length === want.length && timingSafeEqual(given, want)
    },
  }
}

function pemKey(text: string, path: string, flag: string, forSigning: boolean): SealKey {
  let priv: KeyObject | undefined
  let pub: KeyObject
  try {
    if (text.includes('PRIVATE KEY')) {
      priv = createPrivateKey(text)
      pub = createPublicKey(priv)
    } else {
      pub = createPublicKey(text)
    }
  } catch (err) {
    throw new Error(`${flag}: ${path} is not a readable PEM key (${(err as Error).message})`)
  }
  if (pub.asymmetricKeyType !== 'ed25519')
    throw new Error(
      `${flag}: ${path} is a ${pub.asymmetricKeyType} key; expected an Ed25519 PEM key or an HMAC secret`,
    )
  if (forSigning && priv === undefined)
    throw new Error(`${flag}: ${path} is a public key; signing needs the Ed25519 private key`)
  const kid = createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16)
  const key = priv
  return {
    alg: 'ed25519',
    kid,
    ...(key
      ? { sign: (head: string) => sign(null, sealedText(head), key).toString('base64url') }
      : {}),
    verify: (head, sig) => {
      try {
        return verify(null, sealedText(head), pub, Buffer.from(sig, 'base64url'))
      } catch {
        return false
      }
    },
  }
}
