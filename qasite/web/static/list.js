// @ts-check
/**
 * The question list, newest first, with a "N new questions" banner fed by `questions:new`.
 * New questions are not inserted while someone reads the list (it would move under their
 * eyes): the banner counts them, and showing them is one click.
 *
 * The scores and answer counts of the listed questions are live: the page subscribes to the
 * `question:<id>` channel of each of the first {@link WATCHED} questions shown (docs/pages.md,
 * "The live list") and unsubscribes the ones that leave the list.
 */
import { boot } from './app.js';
import { byId, flash, h, plural, timeElement } from './dom.js';
import { follow } from './live.js';
import { ApiError, api } from './session.js';

/**
 * @typedef {object} Summary
 * @property {number} id
 * @property {number} [author_id]
 * @property {string} [author_name]
 * @property {string} title
 * @property {string[]} tags
 * @property {number} score
 * @property {number} answer_count
 * @property {number | null} accepted_answer_id
 * @property {string} created_at
 */

/** @typedef {import('@herald/client').Subscription} Subscription */

/**
 * At most this many `question:<id>` subscriptions (the page size). With `questions:new`,
 * `user:<id>` and the connect, a list is 33 commands: within the fleet's burst of 50, so a
 * page load or a reconnect needs no pacing (the client retries a 429 anyway).
 */
const WATCHED = 30;

const { client, session } = boot();
const list = byId('questions');
const banner = /** @type {HTMLButtonElement} */ (byId('new-questions'));
/** New questions announced since the list was shown, oldest first. */
let waiting = /** @type {Summary[]} */ ([]);

/**
 * @param {number} answers
 * @param {boolean} accepted
 */
const answeredClass = (answers, accepted) => (accepted ? 'stat answers answered accepted' : answers > 0 ? 'stat answers answered' : 'stat answers');

/** @param {Summary} q */
function item(q) {
  const asker = q.author_name ?? (q.author_id === undefined ? null : `user #${q.author_id}`);
  return h('li', { class: 'question-summary', id: `q-${q.id}`, 'data-accepted': q.accepted_answer_id !== null }, [
    h('div', { class: 'stats' }, [
      h('span', { class: 'stat votes', 'data-score': q.score }, [plural(q.score, 'vote')]),
      h('span', { class: answeredClass(q.answer_count, q.accepted_answer_id !== null), 'data-answers': q.answer_count }, [plural(q.answer_count, 'answer')]),
    ]),
    h('div', { class: 'summary-main' }, [
      h('h2', { class: 'summary-title' }, [h('a', { href: `/questions/${q.id}` }, [q.title])]),
      h('ul', { class: 'tags', 'aria-label': 'Tags' }, q.tags.map((tag) => h('li', { class: 'tag' }, [tag]))),
      h('p', { class: 'meta' }, asker === null ? ['asked ', timeElement(q.created_at)] : ['asked by ', h('span', { class: 'author' }, [asker]), ' ', timeElement(q.created_at)]),
    ]),
  ]);
}

// --- live scores and answer counts ---------------------------------------------------------

/**
 * One listed question's subscription and what was applied to it. `scoreVersion` is the highest
 * score version applied from an event (a loaded summary carries none); `touched` says an event
 * changed the item since the last catch-up load began.
 * @typedef {{ subscription: Subscription, scoreVersion: number, acceptVersion: number, touched: boolean }} Watch
 */

/** @type {Map<number, Watch>} */
const watches = new Map();
/** @type {ReturnType<typeof setTimeout> | undefined} */
let catchUpTimer;
/** Catch-up loads done (for the browser tests, as `window.heraldList.catchUps()`). */
let catchUps = 0;
Object.assign(window, { heraldList: { watched: () => [...watches.keys()], catchUps: () => catchUps } });

/**
 * @param {number} id
 * @param {number} score
 */
function setScore(id, score) {
  const stat = document.querySelector(`#q-${id} .stat.votes`);
  if (!(stat instanceof HTMLElement) || stat.dataset.score === String(score)) return;
  stat.dataset.score = String(score);
  stat.textContent = plural(score, 'vote');
  flash(stat);
}

/**
 * @param {number} id
 * @param {number | null} answers  null: unchanged
 * @param {boolean | null} accepted  null: unchanged
 */
function setAnswers(id, answers, accepted) {
  const row = document.getElementById(`q-${id}`);
  const stat = row?.querySelector('.stat.answers');
  if (!row || !(stat instanceof HTMLElement)) return;
  const count = answers ?? Number(stat.dataset.answers);
  if (accepted !== null) row.dataset.accepted = String(accepted);
  const className = answeredClass(count, row.dataset.accepted === 'true');
  if (stat.dataset.answers === String(count) && stat.className === className) return;
  stat.dataset.answers = String(count);
  stat.className = className;
  stat.textContent = plural(count, 'answer');
  flash(stat);
}

/**
 * One publication of a listed question's channel (the payloads of qasite/domain/events.py).
 * @param {number} id
 * @param {any} data
 */
function applyToItem(id, data) {
  const watch = watches.get(id);
  if (watch === undefined) return;
  switch (data?.type) {
    case 'score':
      if (data.post !== `question:${id}` || data.version <= watch.scoreVersion) return;
      watch.scoreVersion = data.version;
      watch.touched = true;
      setScore(id, data.score);
      return;
    case 'answer':
      watch.touched = true;
      setAnswers(id, data.answer_count, null);
      return;
    case 'accepted':
      if (data.version <= watch.acceptVersion) return;
      watch.acceptVersion = data.version;
      setAnswers(id, null, data.answer !== null);
      return;
    case 'deleted':
      if (data.post === `question:${id}`) {
        unwatch(id);
        document.getElementById(`q-${id}`)?.classList.add('deleted');
      } else if (typeof data.answer_count === 'number') {
        watch.touched = true;
        setAnswers(id, data.answer_count, null);
      }
      return;
    default:
      return;
  }
}

/** @param {number} id */
function unwatch(id) {
  watches.get(id)?.subscription.unsubscribe();
  watches.delete(id);
}

/**
 * Subscribe to the channels of the first {@link WATCHED} questions shown; unsubscribe the rest.
 */
function watchShown() {
  const shown = [...list.querySelectorAll(':scope > li.question-summary:not(.deleted)')].slice(0, WATCHED).map((li) => Number(li.id.slice(2)));
  for (const id of watches.keys()) if (!shown.includes(id)) unwatch(id);
  for (const id of shown) {
    if (watches.has(id)) continue;
    const subscription = client.subscribe(`question:${id}`, (publication) => applyToItem(id, publication.data));
    subscription.on('subscribed', (event) => {
      if (event.recovery !== 'recovered') scheduleCatchUp();
    });
    watches.set(id, { subscription, scoreVersion: -1, acceptVersion: -1, touched: false });
  }
}

/**
 * The list was loaded before these subscriptions started: once each has a fresh subscribe
 * reply, load the list again and set the numbers of every item no event has changed since
 * (an event after the reply is newer than that load; before it, older). A later fresh reply
 * (recovery failed) catches up again.
 */
function scheduleCatchUp() {
  clearTimeout(catchUpTimer);
  catchUpTimer = setTimeout(() => void catchUp(), 100);
}

async function catchUp() {
  if ([...watches.values()].some((watch) => watch.subscription.state !== 'subscribed')) return; // the last reply schedules it
  for (const watch of watches.values()) watch.touched = false;
  /** @type {{ items: Summary[] }} */
  let page;
  try {
    page = await api(`/api/questions?limit=${WATCHED}`);
  } catch {
    return; // the next event of each question sets its numbers
  }
  for (const q of page.items) {
    const watch = watches.get(q.id);
    if (watch === undefined || watch.touched) continue;
    setScore(q.id, q.score);
    setAnswers(q.id, q.answer_count, q.accepted_answer_id !== null);
  }
  catchUps++;
}

function showBanner() {
  banner.hidden = waiting.length === 0;
  banner.textContent = `${plural(waiting.length, 'new question')}: show`;
  banner.dataset.count = String(waiting.length);
}

banner.addEventListener('click', () => {
  const shown = waiting;
  waiting = [];
  for (const q of shown) list.prepend(item(q));
  list.querySelector('.empty')?.remove();
  showBanner();
  watchShown();
  list.querySelector('a')?.focus();
});

follow(client, 'questions:new', {
  load: () => api('/api/questions?limit=30'),
  render: (/** @type {{ items: Summary[] }} */ page) => {
    waiting = [];
    list.replaceChildren(...(page.items.length === 0 ? [h('li', { class: 'empty' }, ['No questions yet.'])] : page.items.map(item)));
    list.setAttribute('aria-busy', 'false');
    showBanner();
    watchShown();
  },
  apply: (/** @type {any} */ data) => {
    if (data?.type !== 'question' || document.getElementById(`q-${data.id}`) !== null) return;
    if (waiting.some((q) => q.id === data.id)) return;
    waiting.push({ id: data.id, author_id: data.author, author_name: data.author_name, title: data.title, tags: data.tags, score: 0, answer_count: 0, accepted_answer_id: null, created_at: data.created_at });
    showBanner();
    flash(banner);
  },
});

// Asking: the new question opens at once; the others' lists learn of it through their banner.
if (session !== null) {
  const ask = byId('ask');
  const form = /** @type {HTMLFormElement} */ (byId('ask-form'));
  const error = byId('ask-form-error');
  /** @param {string} id */
  const value = (id) => /** @type {HTMLInputElement | HTMLTextAreaElement} */ (byId(id)).value;
  ask.hidden = false;
  form.querySelector('button[type="submit"]')?.removeAttribute('disabled');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const tags = value('ask-tags').split(/[\s,]+/).filter(Boolean);
      /** @type {{ id: number }} */
      const question = await api('/api/questions', { method: 'POST', body: { title: value('ask-title'), body: value('ask-body'), tags } });
      location.assign(`/questions/${question.id}`);
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
  });
}
