/** The broker contract against the in-process broker (two nodes sharing one hub). */
import { MemoryBroker, MemoryHub } from '../src/broker/memory.js'
import { brokerContract } from './broker-contract.js'

brokerContract('memory', async (limits) => {
  const hub = new MemoryHub()
  return { a: new MemoryBroker({ ...limits, hub }), b: new MemoryBroker({ ...limits, hub }) }
})
