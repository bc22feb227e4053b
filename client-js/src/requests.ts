/**
 * The commands in flight on a connection: command ids, and the handler waiting for each
 * command's answer (a reply or an error frame with the same id, docs/protocol.md#commands).
 */
import type { Answer } from './frames.js';

/** Ids stay within a signed 32-bit integer and wrap around to 1. */
const MAX_ID = 2_147_483_647;

export type AnswerHandler = (answer: Answer) => void;

export class Requests {
  private nextId = 1;
  private readonly waiting = new Map<number, AnswerHandler>();

  /** A fresh command id. Ids are not reused within 2^31 commands, socket after socket. */
  takeId(): number {
    const id = this.nextId;
    this.nextId = id >= MAX_ID ? 1 : id + 1;
    return id;
  }

  /** `handler` receives the answer to command `id`, once. */
  expect(id: number, handler: AnswerHandler): void {
    this.waiting.set(id, handler);
  }

  /** Drop the handler of command `id`: its answer, if one comes, is ignored. */
  cancel(id: number): void {
    this.waiting.delete(id);
  }

  /** Hand `answer` to the handler waiting for its id, if any. */
  answer(answer: Answer): void {
    if (answer.id === null) return; // an answer to a message the server could not read
    const handler = this.waiting.get(answer.id);
    this.waiting.delete(answer.id);
    handler?.(answer);
  }

  /** The socket is gone: no answer will come to the commands sent on it. */
  clear(): void {
    this.waiting.clear();
  }
}
