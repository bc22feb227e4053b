/** Herald's browser client (wire protocol v1, docs/protocol.md). See client-js/README.md. */
export { HeraldClient, type ClientEvents, type HeraldClientOptions, type SubscribeOptions } from './client.js';
export { InvalidStateError } from './errors.js';
export {
  Subscription,
  type Publication,
  type RecoveryFailedEvent,
  type SubscribedEvent,
  type SubscriptionError,
  type SubscriptionEvents,
  type SubscriptionState,
} from './subscription.js';
export { type ConnectionState, type DeliveryStatus, LocalCause, type StateInfo } from './state.js';
export type { TokenProvider } from './renewal.js';
export type { ConnectResult, Recovery, StreamPosition } from './frames.js';
export type { Format } from './codec.js';
export type { Role } from './link.js';
export type { Environment, SocketLike } from './env.js';
export {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  backoffDelayMs,
  restartHintMs,
  retryHintMs,
} from './backoff.js';
export { CloseCode, ErrorCode, shouldReconnect } from './codes.js';
export { decode as decodeMsgpack, encode as encodeMsgpack, MsgpackError } from './msgpack.js';
