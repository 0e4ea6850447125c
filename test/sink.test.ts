/**
 * The file writer on its own: sync mode, the bounded synchronous flush, close(), lines that
 * do not fit the chunk, and what a rotation hands to which file.
 */
import { strict as assert } from 'node:assert'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { Sink, type SinkOptions } from '../src/log/sink.js'
import { within } from './durability-helpers.js'
import { readLines, tempDir, waitFor } from './helpers.js'

const MiB = 1024 * 1024
const base: SinkOptions = { sync: false, flushInterval: 60_000, maxBuffer: MiB }

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir('wirelog-sink-')
  try {
    await fn(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('sink', () => {
  it('sync: every line is in the file when write() returns', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'a.log')
      const sink = await Sink.openFile(path, { ...base, sync: true })
      for (let i = 0; i < 50; i++) {
        sink.write(`{"n":${i}}\n`)
        assert.equal(readLines(path).length, i + 1)
        assert.equal(sink.buffered, 0)
      }
      await sink.close()
    })
  })

  it('asynchronous: nothing is written before the flush interval or 64 KiB; then in one go', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'a.log')
      const sink = await Sink.openFile(path, base)
      sink.write('{"n":1}\n')
      sink.write('{"n":2}\n')
      assert.equal(sink.buffered, 16)
      sink.flush()
      await waitFor(() => readLines(path).length === 2, 'both lines')
      // 64 KiB pending hands itself over without a flush call.
      const line = `{"pad":"${'x'.repeat(1000)}"}\n`
      for (let i = 0; i < 70; i++) sink.write(line)
      await waitFor(() => readLines(path).length >= 2 + 64, 'the early flush')
      await sink.close()
      assert.equal(readLines(path).length, 72)
    })
  })

  it('flushSync on a device that refuses writes returns at once, keeps the lines and counts the error', async () => {
    const reported: string[] = []
    const sink = await Sink.openFile('/dev/full', {
      ...base,
      onError: (e) => reported.push(e.code ?? ''),
    })
    for (let i = 0; i < 100; i++) sink.write(`{"n":${i}}\n`)
    const started = Date.now()
    sink.flushSync()
    sink.flushSync()
    assert.ok(Date.now() - started < 500, 'no loop on ENOSPC')
    assert.deepEqual(reported, ['ENOSPC'], 'reported once')
    assert.equal(sink.errors, 2, 'each attempt counted')
    assert.ok(sink.buffered > 0, 'the lines stay queued for a retry')
    // close() gives up after its deadline and counts what it held.
    await within(sink.close(), 5000, 'close() against /dev/full')
    assert.equal(sink.dropped, 100)
    assert.equal(sink.buffered, 0)
  })

  it('close() is idempotent: every call waits for the same flush', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'a.log')
      const sink = await Sink.openFile(path, base)
      sink.write('{"n":1}\n')
      const a = sink.close()
      const b = sink.close()
      assert.equal(a, b)
      await a
      assert.deepEqual(readLines(path), ['{"n":1}'])
      sink.write('{"n":2}\n')
      await sink.close()
      assert.deepEqual(readLines(path), ['{"n":1}'], 'nothing accepted after close()')
    })
  })

  it('a line too long for the chunk, also after onRotate wrote one, is written whole and in order', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'a.log')
      let sink: Sink | undefined
      sink = await Sink.openFile(path, {
        ...base,
        rotateSize: 1000,
        onRotate: () => sink!.write('{"rotated":true}\n'),
      })
      sink.write(`{"pad":"${'x'.repeat(1200)}"}\n`)
      // 32,768 UTF-16 units: at 3 bytes each it just fits an empty 96 KiB chunk, and its
      // 98,302 bytes do not fit one that holds the line onRotate wrote in between.
      const big = '€'.repeat(32_767)
      sink.write(`${big}\n`)
      await sink.close()
      assert.equal(readLines(`${path}.1`).length, 1)
      assert.deepEqual(readLines(path), ['{"rotated":true}', big])
      assert.ok(readFileSync(path, 'utf8').endsWith('€\n'))
    })
  })

  it('rotate(): what was handed over before goes to the rotated file; an empty file is not rotated', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'a.log')
      const rotated: string[] = []
      const sink = await Sink.openFile(path, { ...base, onRotate: (to) => rotated.push(to) })
      assert.equal(sink.rotate(), false, 'nothing written yet')
      for (let i = 0; i < 3; i++) {
        sink.write(`{"n":${i}}\n`)
        sink.flush()
      }
      // Still queued behind the first write: it belongs to the old file all the same.
      assert.equal(sink.rotate(), true)
      sink.write('{"n":3}\n')
      await sink.close()
      assert.deepEqual(rotated, [`${path}.1`])
      assert.deepEqual(readLines(`${path}.1`), ['{"n":0}', '{"n":1}', '{"n":2}'])
      assert.deepEqual(readLines(path), ['{"n":3}'])
    })
  })
})
