/**
 * Server-to-client WebSocket frames built once and written as is to many sockets (RFC 6455
 * §5.2: FIN, opcode, unmasked, 7/16/64-bit length). Only for connections without
 * extensions: permessage-deflate transforms each payload per socket.
 */

/** A complete unmasked text frame holding `text`. */
export function wsTextFrame(text: string): Buffer {
  const len = Buffer.byteLength(text)
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10
  const buf = Buffer.allocUnsafe(head + len)
  buf[0] = 0x81
  if (head === 2) buf[1] = len
  else if (head === 4) {
    buf[1] = 126
    buf.writeUInt16BE(len, 2)
  } else {
    buf[1] = 127
    buf.writeUInt32BE(Math.floor(len / 2 ** 32), 2)
    buf.writeUInt32BE(len >>> 0, 6)
  }
  buf.write(text, head, 'utf8')
  return buf
}
