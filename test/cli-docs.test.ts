/**
 * The README's generated parts (the `--help` copy and the table of config keys) match what
 * `npm run docs:config` writes from the schema and the OPTIONS table.
 */
import { strict as assert } from 'node:assert'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { configTable, readmePath, updateReadme } from '../scripts/docs-config.js'
import { configPaths, KEY_DOCS, OPTIONS } from '../src/config.js'

describe('README', () => {
  it('is what npm run docs:config generates (run it after changing an option)', () => {
    const readme = readFileSync(readmePath(), 'utf8')
    const expected = updateReadme(readme)
    if (readme !== expected) {
      const a = readme.split('\n')
      const b = expected.split('\n')
      const i = a.findIndex((l, n) => l !== b[n])
      assert.fail(
        `README.md is out of date (run npm run docs:config); first difference at line ${i + 1}:\n` +
          `  README:    ${a[i]}\n  generated: ${b[i]}`,
      )
    }
  })

  it('the table has a row for every config key, with flag and environment variable', () => {
    const table = configTable()
    const rows = new Map(
      table
        .split('\n')
        .slice(2)
        .map((r) => [/^\| `([^`]+)`/.exec(r)![1]!, r]),
    )
    for (const o of OPTIONS) {
      const row = rows.get(o.path)
      assert.ok(row, `row for ${o.path}`)
      assert.ok(row.includes(`\`${o.flag}\``) && row.includes(`\`${o.env}\``), row)
    }
    for (const [path, doc] of Object.entries(KEY_DOCS)) {
      assert.ok(configPaths().includes(path), `KEY_DOCS names a real key: ${path}`)
      if (doc.library) assert.match(rows.get(path)!, /\| library only \| library only \|/)
    }
    assert.match(rows.get('log.format')!, /\| `"text" \\\| "json" \\\| "plain"` \| `"text"` \|/)
    assert.match(rows.get('limits.maxPayload')!, /\| `integer ≥ 1` \| `1048576` \(1 MiB\) \|/)
    assert.match(
      rows.get('backlog')!,
      /\| `integer 1–65535` \| `511` \| `--backlog` \| `WIRELOG_BACKLOG` \|/,
    )
    assert.ok(rows.has('perMessageDeflate.threshold'))
    assert.ok(
      !rows.has('log') && !rows.has('limits') && !rows.has('log.rotate'),
      'sections are not rows',
    )
  })

  it('documents --backlog with Node default and the somaxconn cap', () => {
    const readme = readFileSync(readmePath(), 'utf8')
    const para = readme.slice(readme.indexOf('**`--backlog <n>`**')).split('\n\n')[0]!
    assert.match(para, /511/)
    assert.match(para, /net\.core\.somaxconn/)
    assert.match(para, /\/proc\/sys\/net\/core\/somaxconn/)
    assert.match(para, /WIRELOG_BACKLOG/)
  })
})
