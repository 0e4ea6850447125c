/**
 * The package as a consumer gets it: what `npm pack` ships, `import` and `require`, and every
 * exported type by name.
 */
import { strict as assert } from 'node:assert'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type {
  Accept,
  AdmissionDecision,
  AdmissionHook,
  AdmissionRequest,
  Behaviour,
  Client,
  ClientConnected,
  ClientDisconnected,
  ClientError,
  ClientInfo,
  ClientRejected,
  ClientUser,
  Config,
  EventMap,
  Handler,
  HandlerFailed,
  LogDropped,
  LogError,
  Logger,
  LogRotated,
  MessageDropped,
  MessageReceived,
  MessageSent,
  Reject,
  RouteHandler,
  RouteOptions,
  SendResult,
  ServerClosed,
  ServerClosing,
  ServerListening,
  ServerState,
  TrustProxy,
  WirelogOptions,
  WsEventName,
  WsEvents,
} from '../src/index.js'
import * as api from '../src/index.js'
import { ROOT, tempDir } from './helpers.js'

// Every payload type the README names is exported by name (this file would not compile otherwise).
type _Exported = [
  Accept,
  AdmissionDecision,
  AdmissionHook,
  AdmissionRequest,
  Behaviour,
  Client,
  ClientConnected,
  ClientDisconnected,
  ClientError,
  ClientInfo,
  ClientRejected,
  ClientUser,
  Config,
  EventMap,
  Handler,
  HandlerFailed,
  LogDropped,
  LogError,
  Logger,
  LogRotated,
  MessageDropped,
  MessageReceived,
  MessageSent,
  Reject,
  RouteHandler,
  RouteOptions,
  SendResult,
  ServerClosed,
  ServerClosing,
  ServerListening,
  ServerState,
  TrustProxy,
  WirelogOptions,
  WsEventName,
  WsEvents,
]

describe('packaging', () => {
  it('exports the documented values', () => {
    for (const name of [
      'createServer',
      'WirelogServer',
      'EventBus',
      'ActivityLog',
      'CloseCode',
      'closeCodes',
      'describeCloseCode',
      'resolveConfig',
      'defaults',
      'ConfigError',
      'echo',
      'silent',
      'accept',
      'reject',
    ])
      assert.ok(name in api, `${name} is exported`)
  })

  it('ships LICENSE, README and dist without source maps or the CLI typings', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: ROOT,
      encoding: 'utf8',
    })
    const files = (JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map(
      (f) => f.path,
    )
    for (const f of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts'])
      assert.ok(files.includes(f), `${f} is shipped`)
    assert.ok(files.includes('dist/cli.js'), 'the bin is shipped')
    // The dashboard's page is code in the package: nothing to fetch at run time.
    for (const f of ['dist/http/dashboard/index.js', 'dist/http/dashboard/page.js'])
      assert.ok(files.includes(f), `${f} is shipped`)
    assert.deepEqual(
      files.filter((f) => f.endsWith('.map') || f === 'dist/cli.d.ts' || f.startsWith('src/')),
      [],
    )
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    > & { scripts: Record<string, string> }
    assert.equal(pkg.scripts.prepare, undefined, 'no build on a consumer install')
    assert.equal(pkg.scripts.prepack, 'npm run build')
    for (const k of ['repository', 'bugs', 'homepage']) assert.equal(pkg[k], undefined, k)
  })

  it('works from import and from require() in a consumer project', () => {
    const dir = tempDir('wirelog-consumer-')
    try {
      mkdirSync(join(dir, 'node_modules'))
      symlinkSync(ROOT, join(dir, 'node_modules', 'wirelog'), 'dir')
      const viaRequire = execFileSync(
        process.execPath,
        ['-e', "const w = require('wirelog'); console.log(typeof w.createServer, typeof w.echo)"],
        { cwd: dir, encoding: 'utf8' },
      )
      assert.equal(viaRequire.trim(), 'function function')
      const viaImport = execFileSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          "import { createServer } from 'wirelog'; console.log(typeof createServer)",
        ],
        { cwd: dir, encoding: 'utf8' },
      )
      assert.equal(viaImport.trim(), 'function')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
