/**
 * Write a chained activity log of a given size through the real chained sink (no server,
 * no sockets), for timing `wirelog verify-log` on it:
 *
 *   npm run build && npx tsc -p tsconfig.test.json
 *   node .build/bench/chain-gen.js /tmp/big.log 1000     # MB
 *   time node dist/cli.js verify-log /tmp/big.log
 *   rm /tmp/big.log
 *
 * Lines are shaped like the json format's message line (about 330 bytes with the chain).
 */
import { setImmediate as turn } from 'node:timers/promises'
import { Chain } from '../src/log/chain.js'
import { Sink } from '../src/log/sink.js'

const [path, mbArg] = process.argv.slice(2)
if (path === undefined) {
  process.stderr.write('usage: node .build/bench/chain-gen.js <file> [megabytes, default 1000]\n')
  process.exit(2)
}
const target = Number(mbArg ?? 1000) * 1e6
const sink = await Sink.openFile(path, {
  sync: false,
  flushInterval: 50,
  maxBuffer: 64 * 1024 * 1024,
  chain: new Chain(),
})
const t0 = Date.now()
let lines = 0
let bytes = 0
while (bytes < target) {
  for (let k = 0; k < 2000; k++, lines++) {
    const c = lines % 50
    const line = `{"level":30,"time":${1764000000000 + lines},"pid":4242,"hostname":"bench","event":"message.received","client":"c${c}","ip":"127.0.0.1","bytes":64,"data":"L-c${c}-m${lines}-abcdefghabcdefghabcdefghabcdef","msg":"Message received: L-c${c}-m${lines}-abcdefghabcdefghabcdefghabcdef"}\n`
    bytes += line.length + 85
    sink.write(line)
  }
  // Let the writes go out: memory stays bounded by the sink's buffer.
  while (sink.buffered > 32 * 1024 * 1024) await new Promise((r) => setTimeout(r, 5))
  await turn()
}
await sink.close()
if (sink.dropped > 0) throw new Error(`${sink.dropped} lines dropped`)
const s = (Date.now() - t0) / 1000
process.stdout.write(
  `${lines.toLocaleString('en-US')} lines, about ${(bytes / 1e6).toFixed(0)} MB, written in ${s.toFixed(1)} s\n`,
)
