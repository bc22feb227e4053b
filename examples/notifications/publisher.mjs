/**
 * The notification service's publisher: likes, comments and feed items through Herald's HTTP
 * publish API (docs/publish-api.md), with Node 20's global fetch and nothing else.
 *
 * As a module:
 *
 *     import { NotificationPublisher } from './publisher.mjs';
 *     const herald = new NotificationPublisher({ apiUrl: 'http://127.0.0.1:8090', apiKey });
 *     await herald.like({ postId: 7, authorId: 42, likerId: 9, likes: 3, comments: 1, eventId: 'like-1001' });
 *
 * As a command (one JSON line of results on stdout; see README.md):
 *
 *     HERALD_API_KEY=... node publisher.mjs like --post 7 --author 42 --by 9 --likes 3 --comments 1
 *
 * Every publication carries an event id, so a request that failed with a 5xx, a timeout or a
 * broken connection is sent again as it was: what was already published answers
 * `duplicate: true` and is not published twice (the API's idempotency, per channel). A 4xx is
 * never retried: the request itself is wrong.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** An answer of the API that retrying will not change (4xx), or retries that ran out. */
export class PublishError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, reason?: string, problems?: unknown[], attempts: number, cause?: unknown }} fields
   */
  constructor(message, { status, reason, problems, attempts, cause }) {
    super(message, { cause });
    this.name = 'PublishError';
    /** The HTTP status of the last answer; undefined when none came (timeout, network). */
    this.status = status;
    /** The error's `reason` ("invalid", "unauthenticated", "unavailable", ...). */
    this.reason = reason;
    /** Every problem found in the request (422), as the API lists them. */
    this.problems = problems ?? [];
    this.attempts = attempts;
  }
}

/**
 * @typedef {{ channel: string, epoch: string, offset: number, duplicate: boolean }} Position
 * @typedef {{ channel: string, data: unknown, event_id?: string }} Publication
 * @typedef {{ likes: number, comments: number }} Counts
 */

/** Full-jitter backoff: a random wait in [0, min(cap, base * 2^attempt)). */
export function backoffMs(attempt, { baseMs = 100, capMs = 2000, random = Math.random } = {}) {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** attempt));
}

const EVENT_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

function checkEventId(eventId) {
  if (typeof eventId !== 'string' || !EVENT_ID.test(eventId)) {
    throw new TypeError(`eventId must be 1-128 of A-Z a-z 0-9 _ . : -, not ${JSON.stringify(eventId)}`);
  }
  return eventId;
}

export class NotificationPublisher {
  /**
   * @param {object} options
   * @param {string} options.apiUrl the API's base URL, e.g. http://127.0.0.1:8090
   * @param {string} options.apiKey a key of HERALD_API_KEYS
   * @param {number} [options.timeoutMs] one request's time limit (5000)
   * @param {number} [options.retryForMs] how long to keep retrying a request (30000)
   * @param {{ baseMs?: number, capMs?: number }} [options.backoff] between retries
   * @param {typeof fetch} [options.fetch] the fetch to use (tests)
   * @param {(event: { attempt: number, status?: number, error?: string, waitMs: number }) => void} [options.onRetry]
   */
  constructor({ apiUrl, apiKey, timeoutMs = 5000, retryForMs = 30_000, backoff = {}, fetch: fetchImpl, onRetry }) {
    if (!apiKey) throw new TypeError('apiKey is required (a key of HERALD_API_KEYS)');
    this.apiUrl = apiUrl.replace(/\/+$/, '');
    this.apiKey = apiKey;
    this.timeoutMs = timeoutMs;
    this.retryForMs = retryForMs;
    this.backoff = backoff;
    this.fetch = fetchImpl ?? globalThis.fetch;
    this.onRetry = onRetry ?? (() => undefined);
  }

  // --- the API's three operations ---------------------------------------------------------

  /**
   * One publication. Resolves with its place in the channel.
   * @param {string} channel
   * @param {unknown} data
   * @param {{ eventId: string }} options
   * @returns {Promise<Position>}
   */
  async publish(channel, data, { eventId }) {
    return this.post('/api/publish', { channel, data, event_id: checkEventId(eventId) });
  }

  /**
   * The same data to several channels, one event id applied on each.
   * @param {string[]} channels
   * @param {unknown} data
   * @param {{ eventId: string }} options
   * @returns {Promise<Position[]>}
   */
  async broadcast(channels, data, { eventId }) {
    const answer = await this.post('/api/broadcast', { channels, data, event_id: checkEventId(eventId) });
    return answer.results;
  }

  /**
   * Several publications in one request; on one channel they are made in this order.
   * @param {Publication[]} publications every one with its event_id
   * @returns {Promise<Position[]>} in request order
   */
  async batch(publications) {
    for (const publication of publications) checkEventId(publication.event_id);
    const answer = await this.post('/api/batch', { publications });
    return answer.results;
  }

  // --- the notification service's events --------------------------------------------------

  /**
   * Someone liked a post: its new counts on `post:<id>` (conflatable: the newest wins) and an
   * item in the author's feed, in one batch.
   * @param {{ postId: number, authorId: number, likerId: number, likes: number, comments: number, eventId: string }} like
   * @returns {Promise<{ counts: Position, feed: Position }>}
   */
  async like({ postId, authorId, likerId, likes, comments, eventId }) {
    const [counts, feed] = await this.batch([
      { channel: `post:${postId}`, data: { type: 'counts', post: postId, likes, comments }, event_id: eventId },
      { channel: `feed:${authorId}`, data: { type: 'like', post: postId, by: likerId }, event_id: eventId },
    ]);
    return { counts, feed };
  }

  /**
   * Someone commented on a post: the comment and the new counts on `post:<id>` (in that order),
   * and an item in the author's feed. The event id is used on each channel, with a suffix for
   * the two publications on the post's channel.
   * @param {{ postId: number, authorId: number, commentId: number, commenterId: number, text: string, likes: number, comments: number, eventId: string }} comment
   * @returns {Promise<{ comment: Position, counts: Position, feed: Position }>}
   */
  async comment({ postId, authorId, commentId, commenterId, text, likes, comments, eventId }) {
    checkEventId(`${eventId}.counts`);
    const [comment, counts, feed] = await this.batch([
      { channel: `post:${postId}`, data: { type: 'comment', post: postId, id: commentId, by: commenterId, text }, event_id: eventId },
      { channel: `post:${postId}`, data: { type: 'counts', post: postId, likes, comments }, event_id: `${eventId}.counts` },
      { channel: `feed:${authorId}`, data: { type: 'comment', post: postId, id: commentId, by: commenterId }, event_id: eventId },
    ]);
    return { comment, counts, feed };
  }

  /**
   * One item in each follower's feed (a new post by someone they follow): a broadcast.
   * @param {number[]} followerIds
   * @param {Record<string, unknown>} item
   * @param {{ eventId: string }} options
   */
  async fanOut(followerIds, item, { eventId }) {
    return this.broadcast(followerIds.map((id) => `feed:${id}`), item, { eventId });
  }

  // --- HTTP with retries ------------------------------------------------------------------

  /**
   * POST `body` as JSON; retry on 5xx, timeouts and network errors with the same body (so
   * the same event ids) until `retryForMs` has passed.
   * @param {string} path
   * @param {unknown} body
   * @returns {Promise<any>}
   */
  async post(path, body) {
    const text = JSON.stringify(body);
    const giveUpAt = Date.now() + this.retryForMs;
    for (let attempt = 0; ; attempt += 1) {
      /** @type {{ status?: number, reason?: string, problems?: unknown[], message: string, retryAfterMs: number, cause?: unknown }} */
      let failure;
      try {
        const response = await this.fetch(`${this.apiUrl}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': this.apiKey },
          body: text,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const answer = await response.json().catch(() => null);
        if (response.ok) return answer;
        const error = answer?.error ?? {};
        failure = {
          status: response.status,
          reason: error.reason,
          problems: error.problems,
          message: `${response.status} ${error.reason ?? response.statusText}: ${error.message ?? ''}`.trim(),
          retryAfterMs: 1000 * Number(response.headers.get('retry-after') ?? 0),
        };
        if (response.status < 500) throw new PublishError(failure.message, { ...failure, attempts: attempt + 1 });
      } catch (error) {
        if (error instanceof PublishError) throw error;
        // A timeout (AbortSignal.timeout), a refused or broken connection: the request may or
        // may not have been published; the retry's event ids make that not matter.
        failure = { message: `${error?.name ?? 'Error'}: ${error?.cause?.message ?? error?.message}`, retryAfterMs: 0, cause: error };
      }
      const waitMs = Math.max(failure.retryAfterMs, backoffMs(attempt, this.backoff));
      if (Date.now() + waitMs > giveUpAt) {
        throw new PublishError(`gave up after ${attempt + 1} attempts: ${failure.message}`, { ...failure, attempts: attempt + 1 });
      }
      this.onRetry({ attempt: attempt + 1, status: failure.status, error: failure.message, waitMs });
      await sleep(waitMs);
    }
  }
}

// --- the command ----------------------------------------------------------------------------

const USAGE = `usage: node publisher.mjs <command> [options]

  like     --post ID --author ID --by ID --likes N --comments N
  comment  --post ID --author ID --by ID --comment ID --text TEXT --likes N --comments N
  fanout   --followers ID,ID,... --post ID --by ID
  publish  --channel NAME --data JSON

common:   --api URL (HERALD_API_URL, http://127.0.0.1:8090)
          --key-file PATH (else HERALD_API_KEY)
          --event-id ID (default: a new one per run, reused by its retries)
          --timeout-ms N (5000)   --retry-for-ms N (30000)

Prints one JSON line: the positions of what was published. Retries go to stderr.
Exit 0: published (or already published); 1: refused or gave up; 2: bad usage.`;

const OPTIONS = {
  api: { type: 'string' },
  'key-file': { type: 'string' },
  'event-id': { type: 'string' },
  'timeout-ms': { type: 'string' },
  'retry-for-ms': { type: 'string' },
  post: { type: 'string' },
  author: { type: 'string' },
  by: { type: 'string' },
  comment: { type: 'string' },
  text: { type: 'string' },
  likes: { type: 'string' },
  comments: { type: 'string' },
  followers: { type: 'string' },
  channel: { type: 'string' },
  data: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

class UsageError extends Error {}

function wholeNumber(values, name) {
  const raw = values[name];
  if (raw === undefined) throw new UsageError(`--${name} is required`);
  if (!/^\d+$/.test(raw)) throw new UsageError(`--${name} must be a whole number, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

function required(values, name) {
  if (values[name] === undefined) throw new UsageError(`--${name} is required`);
  return values[name];
}

/** Runs the command with `argv` (without node and the script); returns the exit code. */
export async function main(argv, { env = process.env, stdout = process.stdout, stderr = process.stderr, fetch: fetchImpl } = {}) {
  let command;
  let values;
  try {
    ({ values, positionals: [command] = [] } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true }));
  } catch (error) {
    stderr.write(`publisher: ${error.message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    stdout.write(`${USAGE}\n`);
    return 0;
  }
  try {
    const apiKey = values['key-file'] ? readFileSync(values['key-file'], 'utf8').trim() : env.HERALD_API_KEY;
    if (!apiKey) throw new UsageError('no API key: --key-file PATH or HERALD_API_KEY');
    const eventId = values['event-id'] ?? `n-${randomUUID()}`;
    const herald = new NotificationPublisher({
      apiUrl: values.api ?? env.HERALD_API_URL ?? 'http://127.0.0.1:8090',
      apiKey,
      fetch: fetchImpl,
      timeoutMs: values['timeout-ms'] ? wholeNumber(values, 'timeout-ms') : undefined,
      retryForMs: values['retry-for-ms'] ? wholeNumber(values, 'retry-for-ms') : undefined,
      onRetry: (event) => stderr.write(`publisher: retry ${event.attempt} in ${event.waitMs} ms after ${event.error}\n`),
    });
    let result;
    if (command === 'like') {
      result = await herald.like({
        postId: wholeNumber(values, 'post'),
        authorId: wholeNumber(values, 'author'),
        likerId: wholeNumber(values, 'by'),
        likes: wholeNumber(values, 'likes'),
        comments: wholeNumber(values, 'comments'),
        eventId,
      });
    } else if (command === 'comment') {
      result = await herald.comment({
        postId: wholeNumber(values, 'post'),
        authorId: wholeNumber(values, 'author'),
        commenterId: wholeNumber(values, 'by'),
        commentId: wholeNumber(values, 'comment'),
        text: required(values, 'text'),
        likes: wholeNumber(values, 'likes'),
        comments: wholeNumber(values, 'comments'),
        eventId,
      });
    } else if (command === 'fanout') {
      const followers = required(values, 'followers').split(',').map((id) => {
        if (!/^\d+$/.test(id)) throw new UsageError(`--followers must be ids separated by commas, not ${JSON.stringify(id)}`);
        return Number(id);
      });
      const item = { type: 'post', post: wholeNumber(values, 'post'), by: wholeNumber(values, 'by') };
      result = await herald.fanOut(followers, item, { eventId });
    } else if (command === 'publish') {
      let data;
      try {
        data = JSON.parse(required(values, 'data'));
      } catch (error) {
        if (error instanceof UsageError) throw error;
        throw new UsageError(`--data is not JSON: ${error.message}`);
      }
      result = await herald.publish(required(values, 'channel'), data, { eventId });
    } else {
      throw new UsageError(command === undefined ? 'a command is required' : `unknown command ${JSON.stringify(command)}`);
    }
    stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      stderr.write(`publisher: ${error.message}\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof PublishError || error instanceof TypeError) {
      stderr.write(`publisher: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
