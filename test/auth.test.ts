/**
 * Authentication at the upgrade (static tokens, JWT per algorithm, JWKS file and URL with
 * rotation), expiry and refresh, and authorization of pubsub operations.
 */
import { strict as assert } from 'node:assert'
import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { type JWK, SignJWT } from 'jose'
import { WebSocket } from 'ws'
import { sha256 } from '../src/auth/index.js'
import { createServer, type WirelogOptions } from '../src/index.js'
import { rawHttp, upgradeRequest } from './frames.js'
import { expectRejected, tempDir, waitFor, waitForLine, withServer } from './helpers.js'
import { v1 } from './v1.js'

interface Keys {
  alg: string
  sign: KeyObject | Uint8Array
  /** What the server is given: PEM public key or the HMAC secret. */
  file: string
}

function keysFor(alg: 'HS256' | 'RS256' | 'ES256' | 'EdDSA'): Keys {
  if (alg === 'HS256') {
    const secret = randomBytes(32).toString('hex')
    return { alg, sign: new TextEncoder().encode(secret), file: secret }
  }
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519')
  return {
    alg,
    sign: pair.privateKey,
    file: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

async function jwt(
  k: { alg: string; sign: KeyObject | Uint8Array },
  claims: Record<string, unknown> = {},
  o: { sub?: string; exp?: number | string; kid?: string; iss?: string; aud?: string } = {},
): Promise<string> {
  let b = new SignJWT(claims)
    .setProtectedHeader({ alg: k.alg, ...(o.kid ? { kid: o.kid } : {}) })
    .setSubject(o.sub ?? 'alice')
    .setIssuedAt()
  if (o.exp !== undefined) b = b.setExpirationTime(o.exp)
  if (o.iss) b = b.setIssuer(o.iss)
  if (o.aud) b = b.setAudience(o.aud)
  return b.sign(k.sign)
}

function keyFile(contents: string): string {
  const p = join(tempDir('wirelog-key-'), 'key')
  writeFileSync(p, contents)
  return p
}

describe('authentication', () => {
  for (const alg of ['HS256', 'RS256', 'ES256', 'EdDSA'] as const) {
    it(`JWT ${alg}: a valid token connects as its user; a bad one gets 401 before any 101`, async () => {
      const k = keysFor(alg)
      const other = keysFor(alg)
      await withServer(
        { auth: { mode: 'jwt', jwt: { key: keyFile(k.file), issuer: 'me', audience: 'ws' } } },
        async (t) => {
          const good = await jwt(k, {}, { iss: 'me', aud: 'ws' })
          const c = await v1(t.url, { token: good })
          assert.equal(c.welcome.user, 'alice')
          assert.equal([...t.server.clients][0]!.user?.id, 'alice')
          await c.close()
          for (const [bad, reason] of [
            [await jwt(other, {}, { iss: 'me', aud: 'ws' }), 'bad token signature'],
            [await jwt(k, {}, { iss: 'someone', aud: 'ws' }), 'wrong token issuer'],
            [await jwt(k, {}, { iss: 'me', aud: 'other' }), 'wrong token audience'],
            [
              await jwt(k, {}, { iss: 'me', aud: 'ws', exp: Math.floor(Date.now() / 1000) - 120 }),
              'token expired',
            ],
            ['not.a.jwt', 'malformed token'],
          ] as const) {
            const r = await rawHttp(
              t.port,
              upgradeRequest(t.port, { set: { Authorization: `Bearer ${bad}` } }),
            )
            assert.equal(r.status, 401, reason)
            assert.match(
              r.head,
              /\r\nWWW-Authenticate: Bearer realm="wirelog", error="invalid_token"/,
            )
            assert.match(r.body, new RegExp(reason))
          }
          assert.equal(await expectRejected(t.url), 401, 'no token at all')
          const lines = await waitForLine(t.logPath, /Client rejected/, 6)
          for (const l of lines) assert.ok(!l.includes('eyJ'), 'no token in the log')
          const [connected] = await waitForLine(t.logPath, /Client connected/)
          assert.match(connected!, / user=alice/)
        },
      )
    })
  }

  it('takes the token from Authorization, a bearer.<token> subprotocol or ?token= (redacted)', async () => {
    const k = keysFor('HS256')
    await withServer({ auth: { mode: 'jwt', jwt: { key: keyFile(k.file) } } }, async (t) => {
      const token = await jwt(k)
      const viaHeader = await v1(t.url, { headers: { authorization: `Bearer ${token}` } })
      const viaProtocol = await v1(t.url, { token })
      assert.equal(viaProtocol.ws.protocol, 'wirelog.v1', 'the token is never selected')
      const viaQuery = await v1(`${t.url}/?token=${token}`)
      for (const c of [viaHeader, viaProtocol, viaQuery]) {
        assert.equal(c.welcome.user, 'alice')
        await c.close()
      }
      await waitForLine(t.logPath, /Client disconnected/, 3)
      const log = t.lines().join('\n')
      assert.ok(!log.includes(token), 'the token is not in the log')
      assert.match(log, /path="?\/\?token=\[redacted\]/)
    })
  })

  it('static tokens: clear or hashed, with permissions; unknown tokens get 401', async () => {
    const file = keyFile(
      JSON.stringify({
        tokens: [
          { token: 'tok-alice-0123456789', user: 'alice', permissions: { subscribe: ['chat.>'] } },
          { sha256: sha256('tok-bob-0123456789'), user: 'bob' },
        ],
      }),
    )
    await withServer({ auth: { mode: 'tokens', tokensFile: file } }, async (t) => {
      const a = await v1(t.url, { token: 'tok-alice-0123456789' })
      const b = await v1(t.url, { token: 'tok-bob-0123456789' })
      assert.deepEqual([a.welcome.user, b.welcome.user], ['alice', 'bob'])
      assert.equal((await a.call({ op: 'subscribe', topic: 'chat.x' })).op, 'ack')
      // Bob's entry grants nothing: with authentication on, the default is deny.
      const denied = await b.call({ op: 'subscribe', topic: 'chat.x' })
      assert.deepEqual([denied.op, denied.code], ['error', 'FORBIDDEN'])
      assert.equal(await expectRejected(t.url, { headers: { authorization: 'Bearer nope' } }), 401)
      await a.close()
      await b.close()
    })
  })

  it('closes a connection with 4003 when its token expires, unless it refreshed first', async () => {
    const k = keysFor('HS256')
    await withServer(
      { auth: { mode: 'jwt', jwt: { key: keyFile(k.file), clockSkew: 0 } } },
      async (t) => {
        const soon = Math.floor(Date.now() / 1000) + 2
        const lapsing = await v1(t.url, { token: await jwt(k, {}, { exp: soon }) })
        const refreshing = await v1(t.url, { token: await jwt(k, {}, { exp: soon }) })
        const ack = await refreshing.call({ op: 'refresh', token: await jwt(k, {}, { exp: '1h' }) })
        assert.equal(ack.op, 'ack')
        const wrong = await refreshing.call({
          op: 'refresh',
          token: await jwt(k, {}, { sub: 'mallory' }),
        })
        assert.equal(wrong.code, 'TOKEN_INVALID', 'a refresh cannot change the user')
        const [code] = (await once(lapsing.ws, 'close')) as [number]
        assert.equal(code, 4003)
        assert.equal(refreshing.ws.readyState, WebSocket.OPEN, 'the refreshed one is still open')
        assert.equal((await refreshing.call({ op: 'ping' })).op, 'pong')
        await waitForLine(t.logPath, /Credential expired: /)
        await waitForLine(t.logPath, /Credential refreshed: /)
        assert.ok(!t.lines().join('\n').includes('eyJ'), 'the refresh tokens are not in the log')
        await refreshing.close()
      },
    )
  })

  it('a JWKS file is re-read when a token names a new key (rotation)', async () => {
    const k1 = keysFor('ES256')
    const k2 = keysFor('ES256')
    const pub = async (k: Keys, kid: string): Promise<JWK> => {
      const { d: _d, ...p } = (k.sign as KeyObject).export({ format: 'jwk' }) as JWK
      return { ...p, kid, alg: 'ES256' }
    }
    const file = keyFile(JSON.stringify({ keys: [await pub(k1, 'one')] }))
    await withServer({ auth: { mode: 'jwt', jwt: { jwksFile: file } } }, async (t) => {
      const a = await v1(t.url, { token: await jwt(k1, {}, { kid: 'one' }) })
      await a.close()
      assert.equal(
        await expectRejected(t.url, {
          headers: { authorization: `Bearer ${await jwt(k2, {}, { kid: 'two' })}` },
        }),
        401,
      )
      writeFileSync(file, JSON.stringify({ keys: [await pub(k1, 'one'), await pub(k2, 'two')] }))
      await waitFor(async () => {
        try {
          const b = await v1(t.url, { token: await jwt(k2, {}, { kid: 'two' }) })
          await b.close()
          return true
        } catch {
          return false
        }
      }, 'the new key to be accepted')
    })
  })

  it('a JWKS URL is fetched, cached and refetched when keys rotate', async () => {
    const k1 = keysFor('RS256')
    const k2 = keysFor('RS256')
    const pub = async (k: Keys, kid: string): Promise<JWK> => {
      const {
        d: _d,
        p: _p,
        q: _q,
        dp: _dp,
        dq: _dq,
        qi: _qi,
        ...pub
      } = (k.sign as KeyObject).export({
        format: 'jwk',
      }) as JWK
      return { ...pub, kid, alg: 'RS256' }
    }
    let served: JWK[] = [await pub(k1, 'one')]
    let fetches = 0
    const jwks = createHttpServer((_req, res) => {
      fetches++
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys: served }))
    })
    jwks.listen(0, '127.0.0.1')
    await once(jwks, 'listening')
    const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`
    try {
      await withServer(
        { auth: { mode: 'jwt', jwt: { jwksUrl: url, jwksCooldown: 0 } } },
        async (t) => {
          for (let i = 0; i < 3; i++) {
            const c = await v1(t.url, { token: await jwt(k1, {}, { kid: 'one' }) })
            await c.close()
          }
          assert.equal(fetches, 1, 'cached')
          served = [await pub(k2, 'two')]
          const c = await v1(t.url, { token: await jwt(k2, {}, { kid: 'two' }) })
          assert.equal(c.welcome.user, 'alice')
          assert.equal(fetches, 2, 'refetched on an unknown kid')
          await c.close()
        },
      )
    } finally {
      jwks.close()
    }
  })

  it('refuses a configuration that cannot work, naming the option', async () => {
    assert.throws(() => startServerSync({ auth: { mode: 'jwt' } }), /auth\.jwt.*exactly one of key/)
    assert.throws(() => startServerSync({ auth: { mode: 'tokens' } }), /tokens file/)
    assert.throws(
      () => startServerSync({ auth: { mode: 'jwt', jwt: { key: keyFile('short') } } }),
      /at least 32 characters/,
    )
  })
})

describe('authorization', () => {
  it('permissions from JWT claims: allowed patterns pass, everything else is FORBIDDEN and logged', async () => {
    const k = keysFor('HS256')
    await withServer({ auth: { mode: 'jwt', jwt: { key: keyFile(k.file) } } }, async (t) => {
      const token = await jwt(k, {
        wirelog: {
          subscribe: ['chat.>'],
          publish: ['chat.room1'],
          presence: ['chat.room1'],
          send: true,
        },
      })
      const c = await v1(t.url, { token })
      assert.equal((await c.call({ op: 'subscribe', topic: 'chat.*' })).op, 'ack')
      assert.equal((await c.call({ op: 'publish', topic: 'chat.room1', data: 1 })).op, 'ack')
      for (const [frame, what] of [
        [{ op: 'subscribe', topic: 'admin.x' }, 'subscribe admin.x'],
        [{ op: 'subscribe', topic: '>' }, 'subscribe >'],
        [{ op: 'publish', topic: 'chat.room2', data: 1 }, 'publish chat.room2'],
        [{ op: 'presence', topic: 'chat.room2' }, 'presence chat.room2'],
        [{ op: 'history', topic: 'chat.room1' }, 'history chat.room1'],
      ] as const) {
        const r = await c.call(frame)
        assert.deepEqual([r.op, r.code], ['error', 'FORBIDDEN'], what)
      }
      assert.equal((await c.call({ op: 'ping' })).op, 'pong', 'the socket stays open')
      const lines = await waitForLine(t.logPath, /Access denied: /, 5)
      assert.match(lines[0]!, /Access denied: subscribe admin\.x .* user=alice/)
      await c.close()
    })
  })

  it('a rules file and the library hook decide too', async () => {
    const rules = keyFile(
      JSON.stringify({
        rules: [
          { users: ['anonymous'], subscribe: ['public.>'] },
          { users: ['*'], publish: ['public.>'] },
        ],
      }),
    )
    await withServer(
      {
        pubsub: {
          rules,
          authorize: (_client, op, topic) =>
            op === 'subscribe' && topic === 'vip' ? true : undefined,
        },
      },
      async (t) => {
        const c = await v1(t.url)
        assert.equal((await c.call({ op: 'subscribe', topic: 'public.news' })).op, 'ack')
        assert.equal((await c.call({ op: 'subscribe', topic: 'vip' })).op, 'ack', 'the hook allows')
        assert.equal((await c.call({ op: 'subscribe', topic: 'private' })).code, 'FORBIDDEN')
        // '*' means authenticated users: an anonymous client may not publish.
        assert.equal(
          (await c.call({ op: 'publish', topic: 'public.news', data: 1 })).code,
          'FORBIDDEN',
        )
        await c.close()
      },
    )
  })
})

/** Construction validates the options; nothing listens. */
function startServerSync(o: WirelogOptions): void {
  createServer(o)
}
