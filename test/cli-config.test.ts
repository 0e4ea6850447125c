/**
 * Configuration from a file and the environment: every mistake at once, each named by file
 * and key path, with the nearest known key; unknown `WIRELOG_*` variables warned about.
 */
import { strict as assert } from 'node:assert'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { configFrom } from '../src/cli-args.js'
import {
  acceptsText,
  ConfigError,
  coerce,
  numberRange,
  OPTIONS,
  resolveConfig,
  suggestKey,
  unknownEnv,
} from '../src/config.js'
import { connect, runCli, startCli, tempDir } from './helpers.js'

function writeConfig(content: unknown): string {
  const file = join(tempDir(), 'wirelog.json')
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content))
  return file
}

function problems(fn: () => unknown): readonly string[] {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return err.problems
  }
  assert.fail('expected a ConfigError')
}

describe('cli config file', () => {
  it('reports every mistake at once, with the file and key path, exit 2', async () => {
    const file = writeConfig({ format: 'json', port: 'x', logDir: '/tmp' })
    const c = runCli(['--config', file])
    assert.equal(await c.exited, 2)
    assert.deepEqual(c.stderr().trimEnd().split('\n'), [
      `wirelog: ${file}: unknown option "format" (did you mean "log.format"?)`,
      `wirelog: ${file}: option "port": expected an integer from 0 to 65535, got "x"`,
      `wirelog: ${file}: unknown option "logDir" (did you mean "log.dir"?)`,
    ])
    assert.equal(c.stdout(), '')
  })

  it('finds unknown keys at any depth and bad values in sections', () => {
    const file = writeConfig({
      log: { fromat: 'json', rotate: { sise: 10, keep: 0 } },
      maxPayload: 10,
      limits: { maxPayload: 0, rateLimitAction: 'ban' },
      perMessageDeflate: { level: 12 },
    })
    assert.deepEqual(
      problems(() => configFrom(['--config', file], {})),
      [
        `${file}: unknown option "log.fromat" (did you mean "log.format"?)`,
        `${file}: unknown option "log.rotate.sise" (did you mean "log.rotate.size"?)`,
        `${file}: option "log.rotate.keep": expected an integer from 1 to 1000, got 0`,
        `${file}: unknown option "maxPayload" (did you mean "limits.maxPayload"?)`,
        `${file}: option "limits.maxPayload": expected a whole number of bytes (at least 1), got 0`,
        `${file}: option "limits.rateLimitAction": expected one of: drop, close, got "ban"`,
        `${file}: option "perMessageDeflate.level": expected an integer from 0 to 9, got 12`,
      ],
    )
  })

  it('names each value by where it came from: flag, variable or file', () => {
    const file = writeConfig({ timeout: -1 })
    assert.deepEqual(
      problems(() =>
        configFrom(['--config', file, '--max-payload', '0'], { WIRELOG_HEARTBEAT_MISSED: '0' }),
      ),
      [
        `${file}: option "timeout": expected a number of seconds from 0 to 86400, got -1`,
        'WIRELOG_HEARTBEAT_MISSED: expected an integer from 1 to 100, got "0"',
        '--max-payload: expected a whole number of bytes (at least 1), got "0"',
      ],
    )
  })

  it('a file that cannot be read or parsed is named once, without a repeated code', () => {
    const missing = join(tempDir(), 'nope.json')
    assert.deepEqual(
      problems(() => configFrom(['--config', missing], {})),
      [`--config: cannot read ${missing}: no such file or directory (ENOENT)`],
    )
    assert.deepEqual(
      problems(() => configFrom([], { WIRELOG_CONFIG: missing })),
      [`WIRELOG_CONFIG: cannot read ${missing}: no such file or directory (ENOENT)`],
    )
    const broken = writeConfig('{"port": 80,')
    assert.match(problems(() => configFrom(['--config', broken], {}))[0]!, /not valid JSON/)
    const list = writeConfig('[1]')
    assert.deepEqual(
      problems(() => configFrom(['--config', list], {})),
      [`${list}: expected a JSON object of options, got an array`],
    )
  })

  it('suggests the nearest key: typos, flat keys that belong in a section, other spellings', () => {
    assert.deepEqual(suggestKey('format'), ['log.format'])
    assert.deepEqual(suggestKey('logDir'), ['log.dir'])
    assert.deepEqual(suggestKey('log_format'), ['log.format'])
    assert.deepEqual(suggestKey('log.rotateSize'), ['log.rotate.size'])
    assert.deepEqual(suggestKey('log.maxPayload'), ['limits.maxPayload'])
    assert.deepEqual(suggestKey('prot'), ['port'])
    assert.deepEqual(suggestKey('limits.maxPayolad'), ['limits.maxPayload'])
    assert.deepEqual(suggestKey('level').sort(), ['log.level', 'perMessageDeflate.level'])
    assert.deepEqual(suggestKey('completelyDifferent'), [])
  })

  it('the library reports all mistakes too, unknown keys with a suggestion', () => {
    assert.deepEqual(
      problems(() => resolveConfig({ port: 99999, format: 'json' } as never)),
      [
        'option "port": expected an integer from 0 to 65535, got 99999',
        'unknown option "format" (did you mean "log.format"?)',
      ],
    )
  })

  it('every numeric option states the range its schema accepts', () => {
    for (const o of OPTIONS.filter((x) => x.kind === 'int' || x.kind === 'number')) {
      const r = numberRange(o.path)
      assert.ok(r && r.min !== undefined, `${o.path} has a lower bound in the schema`)
      const text = acceptsText(o)
      assert.ok(text.includes(String(r.min)), `${o.flag}: ${text}`)
      if (r.max !== undefined) assert.ok(text.includes(`to ${r.max}`), `${o.flag}: ${text}`)
      assert.throws(
        () => coerce(o, 'abc', o.flag),
        (e: Error) => e.message === `${o.flag}: expected ${text}, got "abc"`,
      )
    }
  })
})

describe('cli environment', () => {
  it('warns once per unknown WIRELOG_* variable, with the nearest name', () => {
    assert.deepEqual(
      unknownEnv({
        WIRELOG_LOG_FROMAT: 'json',
        WIRELOG_FORMAT: 'json',
        WIRELOG_MAXPAYLOAD: '5',
        WIRELOG_XYZZY: '1',
        WIRELOG_PORT: '1',
        WIRELOG_CONFIG: 'x',
        HOME: '/root',
      }),
      [
        'ignoring unknown environment variable WIRELOG_FORMAT (did you mean WIRELOG_LOG_FORMAT?)',
        'ignoring unknown environment variable WIRELOG_LOG_FROMAT (did you mean WIRELOG_LOG_FORMAT?)',
        'ignoring unknown environment variable WIRELOG_MAXPAYLOAD (did you mean WIRELOG_MAX_PAYLOAD?)',
        'ignoring unknown environment variable WIRELOG_XYZZY',
      ],
    )
  })

  it('the CLI prints the warnings on stderr and starts anyway', async () => {
    const dir = tempDir()
    const c = await startCli(['--no-log'], {
      cwd: dir,
      env: { WIRELOG_LOG_FROMAT: 'json', WIRELOG_ECHO_PREFIX: 'E: ' },
    })
    try {
      const client = await connect(`ws://127.0.0.1:${c.port}`)
      client.ws.send('x')
      assert.deepEqual(await client.waitMessages(1), ['E: x'])
      client.ws.close()
      await client.closed
    } finally {
      c.proc.kill('SIGTERM')
      assert.equal(await c.exited, 0)
    }
    const warnings = c
      .stderr()
      .split('\n')
      .filter((l) => l.includes('warning'))
    assert.deepEqual(warnings, [
      'wirelog: warning: ignoring unknown environment variable WIRELOG_LOG_FROMAT (did you mean WIRELOG_LOG_FORMAT?)',
    ])
  })
})
