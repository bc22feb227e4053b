/**
 * The built client in headless Chromium against the real fleet and a real Redis
 * (harness.mjs). Each test uses its own channels, so the tests do not see each other's
 * publications; they run in this order in one system.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSystem, stopSystem, waitFor } from './harness.mjs';

let system;

before(async () => {
  system = await startSystem();
});

after(async () => {
  if (system) await stopSystem(system);
});

async function openPage(context, { channels, format = 'json', share = false, user = '42', url, tokenLifeS, token }) {
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error('page error:', error));
  if (tokenLifeS !== undefined) await page.exposeFunction('mintToken', () => system.issuer.token(user, tokenLifeS));
  await page.goto(system.web.url);
  await page.waitForFunction(() => typeof window.startHerald === 'function');
  await page.evaluate((options) => window.startHerald(options), {
    url: url ?? system.fleet.url,
    token: token ?? system.issuer.token(user),
    tokenFromTest: tokenLifeS !== undefined,
    format,
    channels,
    share,
  });
  return page;
}

const readLog = (page) => page.evaluate(() => window.log);
const offsetsOf = (log, channel) => log.pubs[channel].map((p) => p.offset);
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function waitSubscribed(page, channels) {
  await waitFor(
    `subscribed to ${channels}`,
    () => page.evaluate((names) => names.every((name) => window.client.getSubscription(name)?.state === 'subscribed'), channels),
    { detail: async () => JSON.stringify(await readLog(page)) },
  );
}

/** Wait until the page has received at least `count` publications of `channel`. */
async function waitReceived(page, channel, count) {
  await waitFor(`${count} publications of ${channel}`, async () => offsetsOf(await readLog(page), channel).length >= count, {
    detail: async () => JSON.stringify(await readLog(page)),
  });
}

async function waitOffsets(page, channel, expected) {
  await waitFor(`${channel} to have offsets ${expected.at(0)}..${expected.at(-1)}`, async () => {
    const log = await readLog(page);
    return offsetsOf(log, channel).length >= expected.length;
  }, { detail: async () => JSON.stringify(await readLog(page)) });
  // Nothing lost, nothing twice, in order: exactly the expected offsets.
  assert.deepEqual(offsetsOf(await readLog(page), channel), expected);
}

/** Run `body` in a fresh browser context (its own tabs, storage and network), closed afterwards. */
async function inContext(body) {
  const context = await system.browser.newContext();
  try {
    await body(context);
  } finally {
    await context.close();
  }
}

/** A page subscribed to `channel` that has received two publications, `early`. */
async function receivingPage(context, channel, options = {}) {
  const page = await openPage(context, { channels: [channel], ...options });
  await waitSubscribed(page, [channel]);
  const early = await publishMany(channel, 2, 0);
  await waitOffsets(page, channel, early);
  return { page, early };
}

/** Publish `count` events to `channel`, one every `everyMs`; returns the offsets the publisher got. */
async function publishMany(channel, count, everyMs) {
  const offsets = [];
  for (let i = 0; i < count; i++) {
    const result = await system.publisher.publishEventually(channel, { n: i, score: i });
    offsets.push(result.offset);
    if (everyMs > 0) await sleep(everyMs);
  }
  return offsets;
}

test('a page subscribes and receives publications in order, on a private channel too', () =>
  inContext(async (context) => {
    const page = await openPage(context, { channels: ['question:101', 'user:42'] });
    await waitSubscribed(page, ['question:101', 'user:42']);
    const offsets = await publishMany('question:101', 5, 0);
    await system.publisher.publish('user:42', { unread: 1 });
    await waitOffsets(page, 'question:101', offsets);
    await waitOffsets(page, 'user:42', [1]);
    const log = await readLog(page);
    assert.deepEqual(log.pubs['question:101'].map((p) => p.data.n), [0, 1, 2, 3, 4]);
    assert.deepEqual(log.pubs['user:42'][0].data, { unread: 1 });
    assert.deepEqual(log.errors, []);
  }));

test('a user channel of another user is refused with 403 and nothing is delivered', () =>
  inContext(async (context) => {
    const page = await openPage(context, { channels: ['user:7', 'question:112'], user: '42' });
    await waitFor('the 403 error', async () => (await readLog(page)).errors.length > 0);
    await waitSubscribed(page, ['question:112']);
    await system.publisher.publish('user:7', { secret: true });
    // Published after it through the same Redis: once this one has arrived, so would have the other.
    const marker = await system.publisher.publish('question:112', { marker: true });
    await waitOffsets(page, 'question:112', [marker.offset]);
    const log = await readLog(page);
    assert.equal(log.errors[0].code, 403);
    assert.deepEqual(log.pubs['user:7'], []);
  }));

test('a token the fleet refuses (4500) stops the client: no reconnect with the refused token', () =>
  inContext(async (context) => {
    await context.clock.install(); // time flows as usual until the test moves it on
    const forged = `${system.issuer.token('42').slice(0, -8)}AAAAAAAA`; // a broken signature
    const page = await openPage(context, { channels: ['question:111'], token: forged });
    await waitFor('the client to stop', () => page.evaluate(() => window.client.state === 'disconnected'), {
      detail: async () => JSON.stringify(await readLog(page)),
    });
    // Past the backoff cap (2 s) at once: a retrying client would have opened another socket.
    await context.clock.fastForward(2500);
    const log = await readLog(page);
    assert.equal(log.closes.at(-1), 4500);
    assert.equal(await page.evaluate(() => window.socketsOpened), 1);
    assert.equal(log.tokens, 2, 'the provider was asked once more after the refusal');
  }));

test('the msgpack wire format delivers the same publications', () =>
  inContext(async (context) => {
    const page = await openPage(context, { channels: ['question:202'], format: 'msgpack' });
    await waitSubscribed(page, ['question:202']);
    assert.equal(await page.evaluate(() => window.client.state), 'connected');
    const offsets = await publishMany('question:202', 3, 0);
    await system.publisher.publish('question:202', { text: 'ünïcødé ✓', big: 2 ** 40, neg: -5, f: 1.5, list: [null, true] });
    await waitOffsets(page, 'question:202', [...offsets, offsets.at(-1) + 1]);
    const log = await readLog(page);
    assert.deepEqual(log.pubs['question:202'].at(-1).data, { text: 'ünïcødé ✓', big: 2 ** 40, neg: -5, f: 1.5, list: [null, true] });
  }));

test('the fleet restarts mid-stream (SIGTERM drain, restart hint) and the page converges: nothing lost, nothing twice', () =>
  inContext(async (context) => {
    const page = await openPage(context, { channels: ['question:303'] });
    await waitSubscribed(page, ['question:303']);
    const publishing = publishMany('question:303', 60, 40);
    await waitReceived(page, 'question:303', 5); // the restart comes mid-stream
    const code = await system.fleet.terminate();
    assert.equal(code, 0, 'the fleet drained and exited cleanly');
    await system.fleet.start();
    const offsets = await publishing;
    assert.deepEqual(offsets, range(1, 60));
    await waitOffsets(page, 'question:303', range(1, 60));
    const log = await readLog(page);
    assert.ok(log.closes.includes(4000), `the drain closed with 4000 (saw ${log.closes})`);
    assert.deepEqual(log.failed, [], 'recovery did not fail');
    assert.equal(await page.evaluate(() => window.client.state), 'connected');
  }));

test('Redis restarts without its history: the page is told plainly that recovery failed, then continues', () =>
  inContext(async (context) => {
    const page = await openPage(context, { channels: ['question:404'] });
    await waitSubscribed(page, ['question:404']);
    const before = await publishMany('question:404', 3, 0);
    await waitOffsets(page, 'question:404', before);
    const oldEpoch = (await readLog(page)).pubs['question:404'][0].epoch;
    await system.publisher.restartRedisWithoutData();
    // New publications start a new epoch; the fleet closes the page (4003) or the page
    // resubscribes after the fleet's bus came back: either way recovery must say "failed".
    let latest;
    await waitFor('a recoveryFailed event', async () => {
      latest = await system.publisher.publishEventually('question:404', { after: true });
      return (await readLog(page)).failed.length > 0;
    }, { timeoutMs: 30_000, intervalMs: 300, detail: async () => JSON.stringify(await readLog(page)) + system.fleet.log() });
    const log = await readLog(page);
    const failed = log.failed[0];
    assert.equal(failed.channel, 'question:404');
    assert.notEqual(failed.position.epoch, oldEpoch);
    // After the reload point, publications of the new epoch arrive in order.
    const next = await system.publisher.publish('question:404', { final: true });
    await waitFor('the publication after the failure', async () => {
      const pubs = (await readLog(page)).pubs['question:404'];
      return pubs.some((p) => p.epoch === next.epoch && p.offset === next.offset);
    }, { detail: async () => JSON.stringify(await readLog(page)) });
    const newEpochOffsets = (await readLog(page)).pubs['question:404'].filter((p) => p.epoch === next.epoch).map((p) => p.offset);
    assert.deepEqual(newEpochOffsets, range(failed.position.offset + 1, next.offset));
    assert.ok(latest.offset <= next.offset);
  }));

test('two tabs share one socket; closing the leader tab keeps the other one receiving, without loss', () =>
  inContext(async (context) => {
    const channel = 'question:505';
    const first = await openPage(context, { channels: [channel], share: true });
    await waitFor('the first tab to lead', () => first.evaluate(() => window.client.role === 'leader'));
    const second = await openPage(context, { channels: [channel, 'questions:new'], share: true });
    await waitSubscribed(first, [channel]);
    await waitSubscribed(second, [channel, 'questions:new']);
    assert.equal(await second.evaluate(() => window.client.role), 'follower');
    assert.equal(await first.evaluate(() => window.socketsOpened), 1);
    assert.equal(await second.evaluate(() => window.socketsOpened), 0, 'the second tab opened no socket');

    const early = await publishMany(channel, 5, 0);
    await system.publisher.publish('questions:new', { id: 1 });
    await waitOffsets(first, channel, early);
    await waitOffsets(second, channel, early);
    await waitOffsets(second, 'questions:new', [1]);

    // Close the leader while publications keep coming.
    const publishing = publishMany(channel, 30, 40);
    await waitReceived(second, channel, early.length + 3);
    await first.close({ runBeforeUnload: false });
    await waitFor('the second tab to take over', () => second.evaluate(() => window.client.role === 'leader'));
    const rest = await publishing;
    await system.publisher.publish('questions:new', { id: 2 });
    await waitOffsets(second, channel, [...early, ...rest]);
    await waitOffsets(second, 'questions:new', [1, 2]);
    assert.equal(await second.evaluate(() => window.socketsOpened), 1, 'the new leader opened one socket');
    assert.deepEqual((await readLog(second)).failed, []);
  }));

test('a hidden page does not reconnect after a fleet restart, and catches up as soon as it is shown', () =>
  inContext(async (context) => {
    const channel = 'question:707';
    const { page, early } = await receivingPage(context, channel);
    await page.evaluate(() => window.setHidden(true));
    assert.equal(await system.fleet.terminate(), 0);
    await system.fleet.start();
    const missed = await publishMany(channel, 3, 0);
    // The retry comes due while the page is hidden, and the client says it waits for the
    // page to be shown: it must still have its first socket only.
    await waitFor(
      'the retry to wait for the page to be shown',
      async () => (await readLog(page)).reasons.includes('waiting for the page to be shown'),
      { detail: async () => JSON.stringify(await readLog(page)) },
    );
    assert.equal(await page.evaluate(() => window.socketsOpened), 1, 'no socket opened while hidden');
    assert.equal(await page.evaluate(() => window.client.state), 'connecting');
    await page.evaluate(() => window.setHidden(false));
    await waitOffsets(page, channel, [...early, ...missed]);
    assert.equal(await page.evaluate(() => window.socketsOpened), 2);
  }));

test('a deaf socket (open, silent) is detected without help from the server, and the page recovers', () =>
  inContext(async (context) => {
    const channel = 'question:808';
    const { page, early } = await receivingPage(context, channel, { url: system.proxy.url });
    system.proxy.deafenAll();
    const missed = await publishMany(channel, 4, 0);
    await waitOffsets(page, channel, [...early, ...missed]);
    const log = await readLog(page);
    assert.ok(
      log.reasons.includes('no frame within ping_interval_ms + pong_timeout_ms'),
      `the client itself detected the silence (reasons: ${log.reasons})`,
    );
    assert.equal(await page.evaluate(() => window.socketsOpened), 2);
  }));

test('short-lived tokens are renewed on the open socket (refresh) before they expire, and nothing is lost', () =>
  inContext(async (context) => {
    const channel = 'user:42';
    const page = await openPage(context, { channels: [channel], tokenLifeS: 4 });
    await waitSubscribed(page, [channel]);
    const offsets = await publishMany(channel, 40, 150);
    await waitOffsets(page, channel, offsets);
    const log = await readLog(page);
    assert.ok(log.tokens >= 3, `the provider was asked again (${log.tokens} times)`);
    assert.ok(!log.reasons.includes('reconnecting with a fresh token'), 'renewed without reconnecting');
    assert.equal(await page.evaluate(() => window.socketsOpened), 1, 'one socket throughout');
    assert.deepEqual(log.failed, []);
  }));

test('offline drops the socket and waits; online reconnects at once and catches up', () =>
  inContext(async (context) => {
    await context.clock.install(); // time flows as usual until the test moves it on
    const channel = 'question:909';
    const { page, early } = await receivingPage(context, channel);
    await context.setOffline(true);
    await waitFor('the client to notice it is offline', async () => (await readLog(page)).reasons.includes('the browser is offline'));
    const missed = await publishMany(channel, 3, 0);
    // Past the backoff cap (2 s) at once: a client that did not wait would have tried.
    await context.clock.fastForward(2500);
    assert.equal(await page.evaluate(() => window.socketsOpened), 1, 'no socket attempt while offline');
    await context.setOffline(false);
    await waitOffsets(page, channel, [...early, ...missed]);
    assert.equal(await page.evaluate(() => window.socketsOpened), 2);
  }));

test('without sharing, each tab of a context has its own socket', () =>
  inContext(async (context) => {
    const a = await openPage(context, { channels: ['question:606'], share: false });
    const b = await openPage(context, { channels: ['question:606'], share: false });
    await waitSubscribed(a, ['question:606']);
    await waitSubscribed(b, ['question:606']);
    assert.equal(await a.evaluate(() => window.client.role), 'local');
    assert.equal(await a.evaluate(() => window.socketsOpened), 1);
    assert.equal(await b.evaluate(() => window.socketsOpened), 1);
  }));
