/**
 * TLS through the CLI: a CA and certificates made here with openssl; wss:// with the echo
 * for a client trusting the CA, refused without it; both-or-neither flags; client
 * certificates required; SIGHUP swaps the certificate for new connections while open ones
 * carry on, and a bad file keeps the old one; headless Chromium trusting the certificate.
 */
import { strict as assert } from 'node:assert'
import { execFileSync } from 'node:child_process'
import { createHash, createHmac, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { WebSocket } from 'ws'
import { withChromium } from './chromium.js'
import { type Child, ROOT, readLines, runCli, tempDir, waitFor } from './helpers.js'

// —— a small PKI ——

const openssl = (dir: string, ...args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

interface Pki {
  dir: string
  ca: string
  /** Make a key and a certificate signed by the CA; returns the file paths. */
  issue(name: string, usage: 'serverAuth' | 'clientAuth'): { cert: string; key: string }
}

function makePki(): Pki {
  const dir = tempDir('wirelog-pki-')
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(
    dir,
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=wirelog test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  )
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    issue(name, usage) {
      const ext = join(dir, `${name}.ext`)
      writeFileSync(
        ext,
        `${usage === 'serverAuth' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : ''}extendedKeyUsage=${usage}\n`,
      )
      openssl(
        dir,
        'req',
        ...ec,
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        `/CN=${name}`,
      )
      openssl(
        dir,
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '2',
        '-extfile',
        ext,
      )
      return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) }
    },
  }
}

const fingerprint = (certFile: string): string =>
  new X509Certificate(readFileSync(certFile)).fingerprint256

// —— the CLI over TLS ——

const LISTENING = /listening on (wss?):\/\/127\.0\.0\.1:(\d+)/

interface Running extends Child {
  port: number
  url: string
  log: string
  lines(): Array<Record<string, unknown>>
  stop(): Promise<number | string>
}

async function start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Running> {
  const dir = tempDir()
  const log = join(dir, 'websocket_activity.log')
  const c = runCli(
    [
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--log-dir',
      dir,
      '--log-format',
      'json',
      '--log-flush-interval',
      '5',
      ...args,
    ],
    { env },
  )
  const m = await waitFor(
    () => LISTENING.exec(c.stderr()) ?? (c.proc.exitCode !== null ? assert.fail(c.stderr()) : null),
    'the listening line',
    10_000,
  )
  return {
    ...c,
    port: Number(m[2]),
    url: `${m[1]}://127.0.0.1:${m[2]}`,
    log,
    lines: () => readLines(log).map((l) => JSON.parse(l) as Record<string, unknown>),
    stop: async () => {
      if (c.proc.exitCode === null) c.proc.kill('SIGTERM')
      return c.exited
    },
  }
}

interface Opened {
  ws: WebSocket
  /** SHA-256 fingerprint of the certificate the server presented. */
  fingerprint: string
  echo(text: string): Promise<string>
}

/** Connect; rejects with the error if the connection fails. */
async function open(
  url: string,
  opts: ConstructorParameters<typeof WebSocket>[2] = {},
): Promise<Opened> {
  const ws = new WebSocket(url, opts)
  let fp = ''
  ws.on('upgrade', (res) => {
    fp = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256
  })
  const failed = new Promise<never>((_, reject) => {
    ws.once('error', reject)
    ws.once('close', (code) => reject(new Error(`closed with ${code} before opening`)))
  })
  await Promise.race([once(ws, 'open'), failed])
  ws.on('error', () => {})
  return {
    ws,
    fingerprint: fp,
    echo: async (text) => {
      ws.send(text)
      const [data] = (await once(ws, 'message')) as [Buffer]
      return data.toString()
    },
  }
}

async function refused(
  url: string,
  opts: ConstructorParameters<typeof WebSocket>[2] = {},
): Promise<Error> {
  try {
    const o = await open(url, opts)
    // TLS 1.3: the client's handshake can finish before the server's alert arrives.
    const [code] = (await once(o.ws, 'close')) as [number]
    return new Error(`closed with ${code}`)
  } catch (err) {
    return err as Error
  }
}

async function close(o: Opened): Promise<void> {
  o.ws.close()
  await once(o.ws, 'close')
}

describe('TLS', () => {
  const pki = makePki()
  const server = pki.issue('server', 'serverAuth')
  const ca = readFileSync(pki.ca)

  it('serves wss://: a client trusting the CA gets the echo, one without it is refused', async () => {
    const r = await start(['--tls-cert', server.cert, '--tls-key', server.key])
    try {
      assert.ok(r.url.startsWith('wss://'), r.stderr())
      assert.match(r.stderr(), new RegExp(`TLS certificate ${fingerprint(server.cert)}`))
      const c = await open(r.url, { ca })
      assert.equal(c.fingerprint, fingerprint(server.cert))
      assert.equal(await c.echo('over tls'), 'Echo: over tls')
      await close(c)
      const err = await refused(r.url)
      assert.equal((err as NodeJS.ErrnoException).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
      const listening = r.lines().find((l) => l.event === 'server.listening')
      assert.equal(listening?.url, r.url)
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('--tls-cert and --tls-key go together: either alone is a usage error (exit 2)', async () => {
    const a = runCli(['--no-log', '--tls-cert', server.cert])
    assert.equal(await a.exited, 2)
    assert.equal(
      a.stderr(),
      'wirelog: --tls-cert: needs its key too (--tls-key, tls.key): TLS takes both, or neither\n',
    )
    const b = runCli(['--no-log', '--tls-key', server.key])
    assert.equal(await b.exited, 2)
    assert.equal(
      b.stderr(),
      'wirelog: --tls-key: needs its certificate too (--tls-cert, tls.cert): TLS takes both, or neither\n',
    )
    const c = runCli(['--no-log', '--tls-client-cert', 'require'])
    assert.equal(await c.exited, 2)
    assert.match(c.stderr(), /--tls-client-cert: needs TLS/)
    const d = runCli([
      '--no-log',
      '--tls-cert',
      server.cert,
      '--tls-key',
      server.key,
      '--tls-client-cert',
      'require',
    ])
    assert.equal(await d.exited, 2)
    assert.match(d.stderr(), /--tls-client-cert: needs --tls-ca/)
  })

  it("a key that is not the certificate's, or a missing file: one line naming it, exit 1", async () => {
    const other = pki.issue('other', 'serverAuth')
    const a = runCli(['--no-log', '--port', '0', '--tls-cert', server.cert, '--tls-key', other.key])
    assert.equal(await a.exited, 1)
    assert.match(
      a.stderr(),
      new RegExp(
        `^wirelog: --tls-key: ${other.key} cannot be used with ${server.cert} \\(.+\\)\\n$`,
      ),
    )
    const b = runCli([
      '--no-log',
      '--port',
      '0',
      '--tls-cert',
      '/no/such.pem',
      '--tls-key',
      server.key,
    ])
    assert.equal(await b.exited, 1)
    assert.equal(
      b.stderr(),
      'wirelog: --tls-cert: cannot read /no/such.pem: no such file or directory (ENOENT)\n',
    )
  })

  it('--tls-client-cert require: refuses a client without a certificate, accepts one with', async () => {
    const client = pki.issue('alice', 'clientAuth')
    const r = await start([
      '--tls-cert',
      server.cert,
      '--tls-key',
      server.key,
      '--tls-ca',
      pki.ca,
      '--tls-client-cert',
      'require',
    ])
    try {
      const err = await refused(r.url, { ca })
      assert.ok(err instanceof Error)
      const rejected = await waitFor(
        () => r.lines().find((l) => l.event === 'client.rejected'),
        'the refusal in the log',
      )
      assert.equal(rejected.status, 496)
      assert.equal(rejected.reason, 'client certificate required')
      // A certificate from another CA: refused as not accepted (495).
      const stranger = makePki().issue('mallory', 'clientAuth')
      await refused(r.url, {
        ca,
        cert: readFileSync(stranger.cert),
        key: readFileSync(stranger.key),
      })
      const notAccepted = await waitFor(
        () => r.lines().find((l) => l.event === 'client.rejected' && l.status === 495),
        'the 495 refusal in the log',
      )
      assert.match(String(notAccepted.reason), /^client certificate not accepted \(.+\)$/)
      const c = await open(r.url, {
        ca,
        cert: readFileSync(client.cert),
        key: readFileSync(client.key),
      })
      assert.equal(await c.echo('with a certificate'), 'Echo: with a certificate')
      await close(c)
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('SIGHUP: a new certificate for new connections, open ones carry on; a bad file keeps the old one', async () => {
    const dir = tempDir('wirelog-tls-')
    const cert = join(dir, 'cert.pem')
    const key = join(dir, 'key.pem')
    copyFileSync(server.cert, cert)
    copyFileSync(server.key, key)
    const next = pki.issue('server-2', 'serverAuth')
    const r = await start(['--tls-cert', cert, '--tls-key', key])
    try {
      const before = await open(r.url, { ca })
      assert.equal(before.fingerprint, fingerprint(server.cert))
      assert.equal(await before.echo('one'), 'Echo: one')

      copyFileSync(next.cert, cert)
      copyFileSync(next.key, key)
      r.proc.kill('SIGHUP')
      const reloaded = await waitFor(
        () => r.lines().find((l) => l.msg === '[tls] certificate reloaded'),
        'the reload line',
      )
      assert.equal(reloaded.fingerprint, fingerprint(next.cert))
      assert.equal(reloaded.level, 30)

      assert.equal(await before.echo('still here'), 'Echo: still here')
      const after = await open(r.url, { ca })
      assert.equal(after.fingerprint, fingerprint(next.cert))
      assert.equal(await after.echo('two'), 'Echo: two')

      writeFileSync(cert, 'not a certificate\n')
      r.proc.kill('SIGHUP')
      const failed = await waitFor(
        () =>
          r
            .lines()
            .find((l) => l.msg === '[tls] certificate reload failed, keeping the previous one'),
        'the failed reload line',
      )
      assert.equal(failed.level, 50)
      assert.equal(failed.fingerprint, fingerprint(next.cert))
      assert.match(String(failed.error), /--tls-cert: .*cert\.pem is not a PEM certificate/)
      const third = await open(r.url, { ca })
      assert.equal(third.fingerprint, fingerprint(next.cert))
      for (const o of [before, after, third]) await close(o)
      assert.match(r.stderr(), /TLS reload failed: --tls-cert:/)
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('headless Chromium trusting the certificate (by its SPKI hash) talks over wss://', async () => {
    const r = await start(['--tls-cert', server.cert, '--tls-key', server.key])
    try {
      const spki = createHash('sha256')
        .update(
          new X509Certificate(readFileSync(server.cert)).publicKey.export({
            type: 'spki',
            format: 'der',
          }),
        )
        .digest('base64')
      const reply = await withChromium(
        async (browser) => {
          const page = await browser.newPage()
          const res = await page.goto(`https://127.0.0.1:${r.port}/health`)
          assert.equal(res?.status(), 200)
          return page.evaluate(
            (url) =>
              new Promise<string>((resolve, reject) => {
                const ws = new WebSocket(url)
                ws.onopen = () => ws.send('from chromium')
                ws.onmessage = (e) => {
                  resolve(String(e.data))
                  ws.close()
                }
                ws.onerror = () => reject(new Error('websocket error'))
              }),
            r.url,
          )
        },
        undefined,
        [`--ignore-certificate-errors-spki-list=${spki}`],
      )
      assert.equal(reply, 'Echo: from chromium')
    } finally {
      assert.equal(await r.stop(), 0)
    }
  })

  it('all at once, as the README puts it: wss://, a chat handler module, signed webhooks of client.*', async () => {
    const secret = 'a long random webhook secret'
    const deliveries: Array<{ event: string; payload: { client?: { id?: string } } }> = []
    const receiver = createHttpServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => {
        body += d.toString()
      })
      req.on('end', () => {
        const ts = String(req.headers['wirelog-timestamp'])
        const sig = String(req.headers['wirelog-signature'])
        const want = `sha256=${createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')}`
        assert.equal(sig, want, 'the receiver verifies the signature')
        deliveries.push(JSON.parse(body) as (typeof deliveries)[number])
        res.end()
      })
    })
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`
    const handler = join(ROOT, '.build/examples/handlers/chat-relay.js')
    const r = await start(
      [
        '--tls-cert',
        server.cert,
        '--tls-key',
        server.key,
        '--behaviour',
        'silent',
        '--handler',
        handler,
        '--webhook',
        `client.*=${hook}`,
      ],
      { WIRELOG_WEBHOOK_SECRET: secret },
    )
    try {
      assert.ok(r.url.startsWith('wss://'))
      const a = await open(r.url, { ca })
      const b = await open(r.url, { ca })
      const got = once(b.ws, 'message')
      a.ws.send('hello over wss')
      const [data] = (await got) as [Buffer]
      assert.equal(data.toString(), 'hello over wss', 'the handler relays to the other client')
      await close(a)
      await close(b)
      await waitFor(
        () => deliveries.filter((d) => d.event === 'client.disconnected').length === 2,
        'two signed client.disconnected deliveries',
      )
      assert.equal(deliveries.filter((d) => d.event === 'client.connected').length, 2)
      assert.ok(
        deliveries.every((d) => d.event.startsWith('client.')),
        'only client.* events',
      )
    } finally {
      assert.equal(await r.stop(), 0)
      receiver.close()
    }
  })
})
