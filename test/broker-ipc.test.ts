/**
 * The broker contract against the in-host broker of `--workers` (each node an `IpcBroker`
 * talking to one `IpcBrokerHost` over an asynchronous, copying channel, as cluster IPC is).
 */
import { IpcBroker, IpcBrokerHost, portPair } from '../src/broker/ipc.js'
import { brokerContract } from './broker-contract.js'

brokerContract('ipc', async (limits) => {
  const host = new IpcBrokerHost(limits)
  const [a1, a2] = portPair()
  const [b1, b2] = portPair()
  host.attach(a2)
  host.attach(b2)
  return { a: new IpcBroker(a1), b: new IpcBroker(b1) }
})
