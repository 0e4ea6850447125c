/** The scale-out options: broker, Redis, workers and forwarding flags, and their errors. */
import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { configFrom } from '../src/cli-args.js'
import { workerCount, workerLogFile } from '../src/cluster.js'
import { createServer } from '../src/index.js'

describe('scale-out options', () => {
  it('parse --broker redis, --redis-*, --workers, --forward-*', () => {
    const { config } = configFrom(
      [
        '--broker',
        'redis',
        '--redis-url',
        'rediss://app:secret@redis.example:6380/2',
        '--redis-prefix',
        'prod:',
        '--redis-command-timeout',
        '500',
        '--redis-node-ttl',
        '3000',
        '--workers',
        'auto',
        '--forward-events',
        'client.*,topic.published',
        '--forward-nats-subject',
        'wirelog.events',
      ],
      {},
    )
    assert.equal(config.broker.type, 'redis')
    assert.deepEqual(
      [config.broker.redis.url, config.broker.redis.prefix, config.broker.redis.commandTimeout],
      ['rediss://app:secret@redis.example:6380/2', 'prod:', 500],
    )
    assert.equal(config.broker.redis.nodeTtl, 3000)
    assert.equal(config.workers, 'auto')
    assert.ok(workerCount(config.workers) >= 1)
    assert.deepEqual(config.forward.events, ['client.*', 'topic.published'])
    assert.equal(config.forward.nats.subject, 'wirelog.events')
    assert.equal(configFrom(['--workers', '3'], {}).config.workers, 3)
  })

  it('name the flag and what it accepts when a value is wrong', () => {
    assert.throws(
      () => configFrom(['--workers', 'two'], {}),
      /--workers: expected a whole number from 1 to 256, or auto/,
    )
    assert.throws(
      () => configFrom(['--broker', 'etcd'], {}),
      /--broker: expected one of: memory, redis/,
    )
    assert.throws(() => configFrom(['--redis-url', 'http://x'], {}), /--redis-url/)
    assert.throws(() => configFrom(['--redis-node-ttl', '10'], {}), /--redis-node-ttl/)
  })

  it('a server on the redis broker is created without connecting; memory stays the default', () => {
    assert.equal(createServer({ log: { enabled: false } }).broker.kind, 'memory')
    const s = createServer({ log: { enabled: false }, broker: { type: 'redis' } })
    assert.equal(s.broker.kind, 'redis')
    assert.equal(s.broker.connected, false)
  })

  it('gives each worker its own log file', () => {
    assert.equal(workerLogFile('websocket_activity.log', 2), 'websocket_activity.2.log')
    assert.equal(workerLogFile('activity', 1), 'activity.1')
  })
})
