/**
 * The broker a configuration asks for. The Redis broker loads its client library only when
 * it starts, so a server on the memory broker never loads it.
 */
import type { Config } from '../config.js'
import { MemoryBroker } from './memory.js'
import { RedisBroker } from './redis.js'
import type { Broker } from './types.js'

export function createBroker(cfg: Config): Broker {
  const ps = cfg.pubsub
  const limits = {
    historySize: ps.historySize,
    historyTtl: ps.historyTtl * 1000,
    historyTopics: ps.historyTopics,
  }
  if (cfg.broker.type === 'redis') return new RedisBroker({ ...limits, ...cfg.broker.redis })
  return new MemoryBroker(limits)
}
