/**
 * `--help`: wrapped to the terminal at word boundaries with a hanging indent, placeholders
 * that say what a value is, units in every time and size option.
 */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { helpText, helpWidth, wrap } from '../src/cli-args.js'
import { defaults, getPath, OPTIONS } from '../src/config.js'
import { helpBlocks } from './cli-helpers.js'
import { runCli } from './helpers.js'

/** The words an option's description must show, in order. */
function expectedWords(o: (typeof OPTIONS)[number]): string[] {
  return o.help.split(/\s+/)
}

describe('cli --help', () => {
  for (const width of [60, 72, 80, 100, 132]) {
    it(`wraps at word boundaries to ${width} columns with a hanging indent`, () => {
      const help = helpText(width)
      const lines = help.split('\n')
      for (const l of lines) assert.ok(l.length <= width, `${l.length} > ${width}: ${l}`)
      const blocks = helpBlocks(help)
      // Every description column starts at the same place; continuation lines hang there.
      const starts = new Set<number>()
      for (const l of lines) {
        const m = /^( {2}--\S+(?: \S+)? {2,})\S/.exec(l)
        if (m) starts.add(m[1]!.length)
      }
      assert.equal(starts.size, 1, `one description column: ${[...starts]}`)
      const col = [...starts][0]!
      for (const l of lines) {
        if (/^ {3,}\S/.test(l)) assert.equal(l.length - l.trimStart().length, col, l)
      }
      for (const o of OPTIONS) {
        const b = blocks.get(o.flag)
        assert.ok(b, o.flag)
        // No word is split: the joined lines hold the help text word for word.
        assert.ok(
          b.text.startsWith(expectedWords(o).join(' ')),
          `${o.flag}: ${JSON.stringify(b.text)}`,
        )
      }
    })
  }

  it('never goes below 60 columns', () => {
    assert.equal(helpWidth({ columns: 20 }, {}), 60)
    assert.equal(helpWidth({}, { COLUMNS: '40' }), 60)
    assert.equal(helpWidth({}, {}), 80)
    assert.equal(helpWidth({ columns: 140 }, { COLUMNS: '90' }), 140)
    assert.equal(helpWidth({}, { COLUMNS: '90' }), 90)
    for (const l of helpText(30).split('\n')) assert.ok(l.length <= 60, l)
  })

  it('wrap() keeps a token longer than the width whole', () => {
    assert.deepEqual(wrap(['a', 'bbbbbbbbbb', 'c', 'd'], 5), ['a', 'bbbbbbbbbb', 'c d'])
  })

  it('the CLI wraps to COLUMNS when stdout is not a terminal', async () => {
    const c = runCli(['--help'], { env: { COLUMNS: '64' } })
    assert.equal(await c.exited, 0)
    const lines = c.stdout().trimEnd().split('\n')
    assert.ok(lines.length > OPTIONS.length)
    for (const l of lines) assert.ok(l.length <= 64, l)
    assert.ok(
      lines.some((l) => l.length > 56),
      'uses the width it has',
    )
  })

  it('names what a value is instead of <value>', () => {
    const blocks = helpBlocks(helpText(80))
    const arg = (flag: string) => blocks.get(flag)?.arg
    assert.equal(arg('--port'), '<port>')
    assert.equal(arg('--host'), '<host>')
    assert.equal(arg('--shutdown-timeout'), '<ms>')
    assert.equal(arg('--timeout'), '<seconds>')
    assert.equal(arg('--max-payload'), '<bytes>')
    assert.equal(arg('--log-dir'), '<path>')
    assert.equal(arg('--config'), '<path>')
    assert.equal(arg('--backlog'), '<n>')
    assert.equal(arg('--allowed-origins'), '<list>')
    assert.equal(arg('--echo-prefix'), '<text>')
    assert.equal(arg('--log-format'), '<text|json|plain>')
    assert.equal(arg('--log-sync'), '')
    for (const o of OPTIONS) assert.notEqual(o.arg, '<value>', o.flag)
  })

  it('every time option says its unit and every size says bytes', () => {
    const time = /timeout|interval/i
    const size = /payload|bytes|buffer|preview|rotate\.size|threshold/i
    const checked = { time: 0, size: 0 }
    for (const o of OPTIONS) {
      if (time.test(o.path)) {
        checked.time++
        assert.ok(['<ms>', '<seconds>'].includes(o.arg), `${o.flag} has a time placeholder`)
        const unit = o.arg === '<ms>' ? /\bmilliseconds\b/ : /\bseconds\b/
        assert.match(o.help, unit, `${o.flag} says its unit`)
      }
      // An enum is a choice, not an amount (log.payloads: preview | full).
      if (size.test(o.path) && o.kind !== 'enum') {
        checked.size++
        assert.equal(o.arg, '<bytes>', `${o.flag} is a size`)
        assert.match(o.help, /\bbytes\b/, `${o.flag} says bytes`)
      }
      if (o.arg === '<bytes>') assert.match(o.help, /\bbytes\b/, o.flag)
      if (o.arg === '<ms>') assert.match(o.help, /\bmilliseconds\b/, o.flag)
      if (o.arg === '<seconds>') assert.match(o.help, /\bseconds\b/, o.flag)
    }
    assert.ok(checked.time >= 6 && checked.size >= 5, JSON.stringify(checked))
  })

  it('shows sizes in bytes with a readable equivalent', () => {
    const blocks = helpBlocks(helpText(100))
    assert.match(blocks.get('--max-payload')!.text, /\(default: 1048576 \(1 MiB\); env/)
    assert.equal(getPath(defaults(), 'limits.maxPayload'), 1048576)
  })

  it('--backlog names Node default and the kernel cap', () => {
    const b = helpBlocks(helpText(100)).get('--backlog')!
    assert.match(b.text, /listen\(\)/)
    assert.match(b.text, /511/)
    assert.match(b.text, /net\.core\.somaxconn/)
    assert.match(b.text, /env WIRELOG_BACKLOG\)$/)
  })
})
