import { strict as assert } from 'node:assert'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { addRecorder, emit } from '../src/events.js'
import { EventBus, type WsEvents } from '../src/index.js'

describe('EventBus', () => {
  it('delivers register/trigger payloads synchronously, in registration order', () => {
    const bus = new EventBus()
    const seen: string[] = []
    bus.register('app', 'order.created', (e) => {
      seen.push(`a${String(e.id)}`)
    })
    bus.register('app', 'order.created', (e) => {
      seen.push(`b${String(e.id)}`)
    })
    const n = bus.trigger('app', 'order.created', { id: 42 })
    assert.equal(n, 2)
    assert.deepEqual(seen, ['a42', 'b42'])
  })

  it('types built-in payloads (the seed call shape compiles and works)', () => {
    const bus = new EventBus()
    const lines: string[] = []
    const log = (s: string): void => {
      lines.push(s)
    }
    bus.register('ws', 'message.received', (e) => log(`Message received: ${e.data}`))
    const payload = {
      data: 'Hello Server',
      bytes: 12,
      binary: false,
    } as unknown as WsEvents['message.received']
    emit(bus, 'message.received', payload)
    assert.deepEqual(lines, ['Message received: Hello Server'])
  })

  it('on() returns an unsubscribe function; off() removes; once() fires once', () => {
    const bus = new EventBus()
    let a = 0
    let b = 0
    let c = 0
    const unsub = bus.on('x', 'e', () => {
      a++
    })
    const hb = (): void => {
      b++
    }
    bus.on('x', 'e', hb)
    bus.once('x', 'e', () => {
      c++
    })
    bus.trigger('x', 'e', {})
    unsub()
    bus.off('x', 'e', hb)
    bus.trigger('x', 'e', {})
    assert.deepEqual([a, b, c], [1, 1, 1])
    assert.equal(bus.listenerCount('x', 'e'), 0)
  })

  it('matches ns:* and *:* wildcards and passes the event name and namespace', () => {
    const bus = new EventBus()
    const seen: string[] = []
    bus.on('app', '*', (_p, name, ns) => {
      seen.push(`app* ${ns}:${name}`)
    })
    bus.on('*', '*', (_p, name, ns) => {
      seen.push(`** ${ns}:${name}`)
    })
    bus.trigger('app', 'a', {})
    bus.trigger('other', 'b', {})
    assert.deepEqual(seen, ['app* app:a', '** app:a', '** other:b'])
    // @ts-expect-error: '*' is not a namespace one can trigger
    assert.throws(() => bus.trigger('*', 'x', {}), /concrete/)
  })

  it('isolates a throwing handler, reports handler.failed, keeps delivering', () => {
    const bus = new EventBus()
    const failures: Array<WsEvents['handler.failed']> = []
    let after = 0
    bus.on('ws', 'handler.failed', (f) => {
      failures.push(f)
    })
    bus.on('app', 'boom', () => {
      throw new Error('sync boom')
    })
    bus.on('app', 'boom', () => {
      after++
    })
    bus.trigger('app', 'boom', {})
    assert.equal(after, 1)
    assert.equal(failures.length, 1)
    assert.equal(failures[0]!.event, 'app:boom')
    assert.match(String(failures[0]!.error), /sync boom/)
  })

  it('reports a rejected async handler without awaiting it', async () => {
    const bus = new EventBus()
    const failed = new Promise<WsEvents['handler.failed']>((resolve) =>
      bus.once('ws', 'handler.failed', resolve),
    )
    let settled = false
    bus.on('app', 'later', async () => {
      await new Promise((r) => setTimeout(r, 5))
      settled = true
      throw new Error('async boom')
    })
    bus.trigger('app', 'later', {})
    assert.equal(settled, false, 'trigger returned before the async handler finished')
    const f = await failed
    assert.equal(f.event, 'app:later')
    assert.match(String(f.error), /async boom/)
  })

  it('does not recurse when a handler.failed handler itself throws; warns instead', async () => {
    const bus = new EventBus()
    let calls = 0
    bus.on('ws', 'handler.failed', () => {
      calls++
      throw new Error('bad reporter')
    })
    bus.on('app', 'x', () => {
      throw new Error('first')
    })
    const warned = once(process, 'warning') as Promise<[Error]>
    bus.trigger('app', 'x', {})
    assert.equal(calls, 1)
    const [warning] = await warned
    assert.match(warning.message, /a handler\.failed handler threw: Error: bad reporter/)
  })

  it('rejects bad registrations with a TypeError', () => {
    const bus = new EventBus()
    assert.throws(() => bus.on('', 'x', () => {}), TypeError)
    assert.throws(() => bus.on('a', '', () => {}), TypeError)
    assert.throws(() => bus.on('a', 'b', 42 as never), TypeError)
  })

  it('the ws namespace belongs to the server: trigger() refuses it, at compile time too', () => {
    const bus = new EventBus()
    const seen: unknown[] = []
    bus.on('ws', 'server.closed', (e) => seen.push(e))
    // @ts-expect-error: user code cannot trigger ws events
    assert.throws(() => bus.trigger('ws', 'server.closed', { reason: 'forged' }), {
      name: 'TypeError',
      message: /"ws" namespace belongs to the server/,
    })
    // A namespace only known at run time is refused too.
    const ns: string = ['w', 's'].join('')
    assert.throws(() => bus.trigger(ns, 'server.closed', {}), TypeError)
    assert.deepEqual(seen, [])
    // The server's own path still delivers.
    emit(bus, 'server.closed', { reason: 'real' })
    assert.deepEqual(seen, [{ reason: 'real' }])
  })

  it('built-in event names are a closed set: a typo does not compile and throws', () => {
    const bus = new EventBus()
    // @ts-expect-error: 'message.recieved' is not a built-in event
    assert.throws(() => bus.register('ws', 'message.recieved', () => {}), {
      name: 'TypeError',
      message: /no built-in event "ws:message\.recieved" \(did you mean "message\.received"\?\)/,
    })
    // User namespaces stay open, wildcards still work.
    bus.register('app', 'anything.at.all', () => {})
    bus.register('ws', '*', () => {})
    bus.register('*', '*', () => {})
    // @ts-expect-error: a '*' namespace takes only the '*' name
    assert.throws(() => bus.register('*', 'x', () => {}), TypeError)
  })

  it('a recorder sees every event before any handler, and nested events after their cause', () => {
    const bus = new EventBus()
    const order: string[] = []
    addRecorder(bus, {
      record: (ns, name) => order.push(`record ${ns}:${name}`),
      wants: () => true,
    })
    // Registered first, yet it must not run before the recorder.
    bus.on('*', '*', (_p, name, ns) => {
      order.push(`all ${ns}:${name}`)
    })
    bus.on('app', 'outer', () => {
      order.push('outer handler')
      bus.trigger('app', 'inner', {})
    })
    bus.trigger('app', 'outer', {})
    assert.deepEqual(order, [
      'record app:outer',
      'outer handler',
      'record app:inner',
      'all app:inner',
      'all app:outer',
    ])
  })

  it('unsubscribing during dispatch does not skip other handlers', () => {
    const bus = new EventBus()
    const seen: number[] = []
    const unsubs: Array<() => void> = []
    unsubs.push(
      bus.on('a', 'e', () => {
        seen.push(1)
        unsubs[1]!()
      }),
    )
    unsubs.push(
      bus.on('a', 'e', () => {
        seen.push(2)
      }),
    )
    bus.trigger('a', 'e', {})
    bus.trigger('a', 'e', {})
    assert.deepEqual(seen, [1, 2, 1])
  })
})
