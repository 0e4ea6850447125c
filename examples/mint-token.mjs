#!/usr/bin/env node
/**
 * Mint a demo JWT for `wirelog --auth jwt --jwt-key <public key>`:
 *
 *   node examples/mint-token.mjs jwt-private.pem alice [minutes]
 *
 * The token is for user `alice`, may use every `chat.*` topic and send direct messages, and
 * expires after `minutes` (default 60). The key is a PEM private key (EC P-256 → ES256,
 * Ed25519 → EdDSA, RSA → RS256).
 */
import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { SignJWT } from 'jose'

const [file, user, minutes = '60'] = process.argv.slice(2)
if (!file || !user) {
  process.stderr.write('usage: node examples/mint-token.mjs <private-key.pem> <user> [minutes]\n')
  process.exit(2)
}
const key = createPrivateKey(readFileSync(file))
const alg =
  key.asymmetricKeyType === 'ec' ? 'ES256' : key.asymmetricKeyType === 'ed25519' ? 'EdDSA' : 'RS256'
const token = await new SignJWT({
  wirelog: { subscribe: ['chat.>'], publish: ['chat.>'], presence: ['chat.>'], send: true },
})
  .setProtectedHeader({ alg })
  .setSubject(user)
  .setIssuedAt()
  .setExpirationTime(`${Number(minutes)}m`)
  .sign(key)
process.stdout.write(`${token}\n`)
