export { encodeFrameHeader, FrameDecoder } from './frame-codec.ts';
export * from './protocol.ts';
export {
  type ControlHandler,
  TunnelConnection,
  type TunnelConnectionOptions,
  type TunnelRole,
} from './tunnel-connection.ts';
export {
  TunnelClosedError,
  type TunnelEndVersion,
  TunnelProtocolError,
  TunnelStreamError,
  TunnelVersionError,
} from './tunnel-errors.ts';
export { TunnelStream } from './tunnel-stream.ts';
