/** The error the client throws when a method is called in a state that does not allow it. */

/** A call in the wrong state; the message names the state (or what is closed). */
export class InvalidStateError extends Error {
  override readonly name = 'InvalidStateError';
}
