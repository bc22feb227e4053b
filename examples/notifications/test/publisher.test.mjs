/**
 * The notification publisher against a fake fetch: what it sends, and which failures it
 * retries with the same body (so the same event ids). The real API is in
 * tests/examples/test_notifications.py. Run: node --test examples/notifications/test/
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NotificationPublisher, PublishError, backoffMs, main } from '../publisher.mjs';

const KEY = 'test-key-0123456789abcdef';

/** A fetch that answers each call with the next of `answers` and records the requests. */
function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, method: init.method, headers: init.headers, body: JSON.parse(init.body) });
    const answer = answers.shift();
    if (answer === undefined) throw new Error('no more answers');
    if (typeof answer === 'function') return answer(init);
    if (answer instanceof Error) throw answer;
    const [status, body, headers = {}] = answer;
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
  };
  return { fetch, calls };
}

function publisher(fetch, options = {}) {
  return new NotificationPublisher({ apiUrl: 'http://api/', apiKey: KEY, fetch, backoff: { baseMs: 1, capMs: 2 }, ...options });
}

const position = (channel, offset, duplicate = false) => ({ channel, epoch: 'e1', offset, duplicate });
const unavailable = [503, { error: { code: 503, reason: 'unavailable', message: 'the bus did not take it' } }];

test('a publish posts the channel, data and event id with the key', async () => {
  const { fetch, calls } = fakeFetch([[200, position('post:7', 1)]]);
  const answer = await publisher(fetch).publish('post:7', { type: 'counts' }, { eventId: 'e-1' });
  assert.deepEqual(answer, position('post:7', 1));
  assert.equal(calls[0].url, 'http://api/api/publish');
  assert.equal(calls[0].method, 'POST');
  assert.equal(calls[0].headers['x-api-key'], KEY);
  assert.deepEqual(calls[0].body, { channel: 'post:7', data: { type: 'counts' }, event_id: 'e-1' });
});

test('a 503 is retried with the same body until it is published', async () => {
  const retries = [];
  const { fetch, calls } = fakeFetch([unavailable, unavailable, [200, position('post:7', 4)]]);
  const herald = publisher(fetch, { onRetry: (event) => retries.push(event) });
  assert.deepEqual(await herald.publish('post:7', 1, { eventId: 'e-2' }), position('post:7', 4));
  assert.equal(calls.length, 3);
  assert.deepEqual(calls[2].body, calls[0].body);
  assert.deepEqual(retries.map((r) => [r.attempt, r.status]), [[1, 503], [2, 503]]);
});

test('a broken connection and a timeout are retried with the same event ids', async () => {
  // AbortSignal.timeout's timer does not keep Node alive (a real fetch's socket does): hold it.
  const neverAnswers = (init) =>
    new Promise((_, reject) => {
      const alive = setInterval(() => undefined, 1000);
      init.signal.addEventListener('abort', () => (clearInterval(alive), reject(init.signal.reason)));
    });
  const broken = new TypeError('fetch failed', { cause: new Error('other side closed') });
  const batch = { results: [position('post:7', 5, true), position('feed:42', 2, true)] };
  const { fetch, calls } = fakeFetch([broken, neverAnswers, [200, batch]]);
  const errors = [];
  const herald = publisher(fetch, { timeoutMs: 20, onRetry: (event) => errors.push(event.error) });
  const result = await herald.like({ postId: 7, authorId: 42, likerId: 9, likes: 3, comments: 0, eventId: 'like-1' });
  assert.deepEqual(result, { counts: batch.results[0], feed: batch.results[1] });
  assert.equal(calls.length, 3);
  assert.deepEqual(calls[1].body, calls[0].body);
  assert.deepEqual(calls[2].body, calls[0].body);
  assert.match(errors[0], /other side closed/);
  assert.match(errors[1], /TimeoutError/);
});

test('a 4xx is not retried and carries the reason and the problems', async () => {
  const problems = [{ where: 'channel', reason: 'invalid_channel', problem: 'unknown kind' }];
  const { fetch, calls } = fakeFetch([[422, { error: { code: 422, reason: 'invalid', message: 'channel: unknown kind', problems } }]]);
  await assert.rejects(publisher(fetch).publish('nope:1', 1, { eventId: 'e-3' }), (error) => {
    assert.ok(error instanceof PublishError);
    assert.equal(error.status, 422);
    assert.equal(error.reason, 'invalid');
    assert.deepEqual(error.problems, problems);
    assert.equal(error.attempts, 1);
    return true;
  });
  assert.equal(calls.length, 1);
});

test('retries stop once retryForMs has passed', async () => {
  const { fetch } = fakeFetch(Array.from({ length: 1000 }, () => unavailable));
  const herald = publisher(fetch, { retryForMs: 30, backoff: { baseMs: 5, capMs: 5 } });
  await assert.rejects(herald.publish('post:7', 1, { eventId: 'e-4' }), (error) => {
    assert.ok(error instanceof PublishError);
    assert.equal(error.status, 503);
    assert.match(error.message, /^gave up after \d+ attempts: 503 unavailable/);
    return true;
  });
});

test('an event id is required and checked before anything is sent', async () => {
  const { fetch, calls } = fakeFetch([]);
  await assert.rejects(publisher(fetch).publish('post:7', 1, {}), TypeError);
  await assert.rejects(publisher(fetch).publish('post:7', 1, { eventId: 'has space' }), TypeError);
  assert.equal(calls.length, 0);
});

test('a comment is one batch: the comment then the counts on the post, and a feed item', async () => {
  const results = [position('post:7', 1), position('post:7', 2), position('feed:42', 1)];
  const { fetch, calls } = fakeFetch([[200, { results }]]);
  const answer = await publisher(fetch).comment({
    postId: 7, authorId: 42, commentId: 300, commenterId: 9, text: 'Nice', likes: 0, comments: 1, eventId: 'c-300',
  });
  assert.deepEqual(answer, { comment: results[0], counts: results[1], feed: results[2] });
  assert.equal(calls[0].url, 'http://api/api/batch');
  assert.deepEqual(calls[0].body.publications, [
    { channel: 'post:7', data: { type: 'comment', post: 7, id: 300, by: 9, text: 'Nice' }, event_id: 'c-300' },
    { channel: 'post:7', data: { type: 'counts', post: 7, likes: 0, comments: 1 }, event_id: 'c-300.counts' },
    { channel: 'feed:42', data: { type: 'comment', post: 7, id: 300, by: 9 }, event_id: 'c-300' },
  ]);
});

test('a fan-out is a broadcast to the followers feeds', async () => {
  const results = [position('feed:1', 1), position('feed:2', 1)];
  const { fetch, calls } = fakeFetch([[200, { results }]]);
  assert.deepEqual(await publisher(fetch).fanOut([1, 2], { type: 'post', post: 8, by: 3 }, { eventId: 'p-8' }), results);
  assert.equal(calls[0].url, 'http://api/api/broadcast');
  assert.deepEqual(calls[0].body, { channels: ['feed:1', 'feed:2'], data: { type: 'post', post: 8, by: 3 }, event_id: 'p-8' });
});

test('backoff is full jitter below the capped window', () => {
  assert.equal(backoffMs(0, { baseMs: 100, capMs: 2000, random: () => 0.999 }), 99);
  assert.equal(backoffMs(10, { baseMs: 100, capMs: 2000, random: () => 0.5 }), 1000);
  assert.equal(backoffMs(3, { random: () => 0 }), 0);
});

/** Runs the command with a fake fetch; returns its exit code and output. */
async function command(argv, answers, env = { HERALD_API_KEY: KEY }) {
  const out = [];
  const err = [];
  const { fetch, calls } = fakeFetch(answers);
  const code = await main(argv, {
    env, fetch, stdout: { write: (s) => out.push(s) }, stderr: { write: (s) => err.push(s) },
  });
  return { code, stdout: out.join(''), stderr: err.join(''), calls };
}

test('the command prints the positions as one JSON line and reuses its event id', async () => {
  const batch = { results: [position('post:7', 3), position('feed:42', 1)] };
  const run = await command(
    ['like', '--api', 'http://api', '--post', '7', '--author', '42', '--by', '9', '--likes', '1', '--comments', '0'],
    [unavailable, [200, batch]],
  );
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), { counts: batch.results[0], feed: batch.results[1] });
  assert.match(run.stderr, /^publisher: retry 1 in \d+ ms after 503 unavailable/);
  const ids = run.calls.map((call) => call.body.publications.map((p) => p.event_id));
  assert.deepEqual(ids[1], ids[0]);
  assert.match(ids[0][0], /^n-[0-9a-f-]{36}$/);
});

test('the command refuses bad usage with 2 and a refusal with 1', async () => {
  assert.equal((await command(['like', '--post', 'x'], [])).code, 2);
  assert.equal((await command(['like'], [], {})).code, 2); // no key
  assert.equal((await command(['frobnicate'], [])).code, 2);
  const refused = await command(
    ['publish', '--channel', 'feed:x', '--data', '{}', '--event-id', 'e-9'],
    [[422, { error: { code: 422, reason: 'invalid', message: 'channel: bad key' } }]],
  );
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, 'publisher: 422 invalid: channel: bad key\n');
});
