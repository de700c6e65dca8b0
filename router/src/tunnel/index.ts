export { encodeFrameHeader, FrameDecoder } from './frame-codec.ts';
export * from './protocol.ts';
export {
  type ControlHandler,
  TunnelConnection,
  type TunnelConnectionOptions,
  type TunnelRole,
} from './tunnel-connection.ts';
export { TunnelClosedError, TunnelProtocolError, TunnelStreamError } from './tunnel-errors.ts';
export { TunnelStream } from './tunnel-stream.ts';
