// @ts-check
/**
 * The question lists: `/` (every question), `/tags/<name>` (one tag's) and `/search` (the
 * search form), one page at a time. What is listed is in the URL (finder.js): the sort tabs,
 * the filter chips and the pager are links, so any list can be shared or bookmarked.
 *
 * New questions are not inserted while someone reads the list (it would move under their
 * eyes): a "N new questions" banner counts those that match the list, fed by `questions:new`
 * or the first filtered tag's `tag:<name>`, and showing them is one click. A text search, or
 * a list sorted by votes or activity, has no banner (finder.js, liveFeed, says why).
 *
 * The scores and answer counts of the listed questions are live: the page subscribes to the
 * `question:<id>` channel of each of the first {@link WATCHED} questions shown (docs/pages.md,
 * "The live list") and unsubscribes the ones that leave the list.
 */
import { boot } from './app.js';
import { byId, flash, h, plural } from './dom.js';
import { SORTS, apiUrl, effectiveSort, liveFeed, matches, pageUrl, readQuery } from './finder.js';
import { follow } from './live.js';
import { ApiError, api } from './session.js';
import { answeredClass, summaryItem as item } from './summaries.js';

/** @typedef {import('./summaries.js').Summary} Summary */
/** @typedef {import('@herald/client').Subscription} Subscription */
/** @typedef {{ items: Summary[], next_cursor: string | null, total?: number | null }} Page */

/**
 * At most this many `question:<id>` subscriptions (the page size). With `questions:new`,
 * `user:<id>` and the connect, a list is 33 commands: within the fleet's burst of 50, so a
 * page load or a reconnect needs no pacing (the client retries a 429 anyway).
 */
const WATCHED = 30;

const { client, session } = boot();
const root = byId('main');
const mode = root.dataset.finder ?? 'list';
const query = readQuery(location.search, root.dataset.tag ?? null);
const list = byId('questions');
const banner = /** @type {HTMLButtonElement} */ (byId('new-questions'));
const countLine = byId('result-count');
const listError = byId('list-error');
/** New questions announced since the list was shown, oldest first. */
let waiting = /** @type {Summary[]} */ ([]);
/** Every match, as counted by the API at the last load (null: not known). */
let total = /** @type {number | null} */ (null);

// --- the query as tabs, chips, a count and a pager -----------------------------------------

const SORT_LABELS = { newest: 'Newest', votes: 'Votes', activity: 'Activity', relevance: 'Relevance' };

function drawTabs() {
  const current = effectiveSort(query);
  const tabs = SORTS.filter((sort) => sort !== 'relevance' || query.q);
  byId('sort-tabs').replaceChildren(
    ...tabs.map((sort) => h('a', { href: pageUrl(query, { sort: sort === (query.q ? 'relevance' : 'newest') ? '' : sort }), class: 'sort-tab', 'aria-current': sort === current ? 'page' : null, 'data-sort': sort }, [SORT_LABELS[sort]])),
  );
}

/**
 * @param {string} label
 * @param {Partial<import('./finder.js').Query>} removal
 * @param {string} what  for the remove link's accessible name
 */
const chip = (label, removal, what) =>
  h('li', { class: 'chip' }, [h('span', {}, [label]), h('a', { href: pageUrl(query, removal), class: 'chip-remove', 'aria-label': `Remove ${what}`, title: `Remove ${what}` }, ['×'])]);

function drawChips() {
  const unanswered = query.answered === 'false';
  const chips = [
    h('li', { class: 'chip toggle' }, [h('a', { href: pageUrl(query, { answered: unanswered ? null : 'false' }), 'aria-pressed': String(unanswered), role: 'button', 'data-filter': 'unanswered' }, ['Unanswered'])]),
    query.answered === 'true' ? chip('Answered', { answered: null }, 'the answered filter') : null,
    ...query.tags.filter((tag) => tag !== query.pageTag).map((tag) => chip(`tag: ${tag}`, { tags: query.tags.filter((t) => t !== tag) }, `the tag ${tag}`)),
    query.createdFrom !== null ? chip(`asked from ${query.createdFrom}`, { createdFrom: null }, 'the start date') : null,
    query.createdTo !== null ? chip(`asked before ${query.createdTo}`, { createdTo: null }, 'the end date') : null,
    query.minScore !== null ? chip(`score ≥ ${query.minScore}`, { minScore: null }, 'the minimum score') : null,
    query.q && mode !== 'search' ? chip(`“${query.q}”`, { q: '' }, 'the search words') : null,
  ];
  byId('filter-chips').replaceChildren(...chips.filter((c) => c !== null));
}

// The Unanswered toggle is a link (shareable) in the role of a button: Space presses it too.
byId('filter-chips').addEventListener('keydown', (event) => {
  if (event.key !== ' ' || !(event.target instanceof HTMLAnchorElement) || event.target.getAttribute('role') !== 'button') return;
  event.preventDefault();
  event.target.click();
});

function drawCount() {
  if (total === null) {
    countLine.textContent = '';
    return;
  }
  const noun = query.q ? 'result' : 'question';
  countLine.textContent = query.q ? `${plural(total, noun)} for “${query.q}”` : plural(total, noun);
  countLine.dataset.total = String(total);
}

/** @param {string | null} nextCursor */
function drawPager(nextCursor) {
  byId('pager').replaceChildren(
    ...[
      query.cursor !== null ? h('a', { href: pageUrl(query, { cursor: null }), class: 'pager-link', rel: 'first' }, ['« First page']) : null,
      nextCursor !== null ? h('a', { href: pageUrl(query, { cursor: nextCursor }), class: 'pager-link', rel: 'next' }, ['Next page »']) : null,
    ].filter((link) => link !== null),
  );
}

/** @param {string} message */
function showError(message) {
  listError.textContent = message;
  list.replaceChildren(h('li', { class: 'empty' }, ['No questions to show.']));
  list.setAttribute('aria-busy', 'false');
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
    page = await api(apiUrl(query, { limit: WATCHED }));
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
  if (query.cursor !== null) {
    location.assign(pageUrl(query, { cursor: null })); // new questions are on the first page
    return;
  }
  const shown = waiting;
  waiting = [];
  for (const q of shown) list.prepend(item(q));
  list.querySelector('.empty')?.remove();
  if (total !== null) total += shown.length;
  drawCount();
  showBanner();
  watchShown();
  list.querySelector('a')?.focus();
});

/**
 * The page's questions, or the API's refusal in words (a bad cursor or query is not retried).
 * @returns {Promise<Page | { error: string }>}
 */
async function load() {
  try {
    return await api(apiUrl(query, { count: true }));
  } catch (failure) {
    if (failure instanceof ApiError && failure.status >= 400 && failure.status < 500) return { error: failure.message };
    throw failure;
  }
}

/** @param {Page | { error: string }} page */
function render(page) {
  waiting = [];
  showBanner();
  if ('error' in page) {
    showError(page.error);
    return;
  }
  listError.textContent = '';
  total = page.total ?? null;
  drawCount();
  drawPager(page.next_cursor);
  const empty = query.cursor === null ? (mode === 'list' && query.tags.length === 0 ? 'No questions yet.' : 'No questions match.') : 'No more questions.';
  list.replaceChildren(...(page.items.length === 0 ? [h('li', { class: 'empty' }, [empty])] : page.items.map(item)));
  list.setAttribute('aria-busy', 'false');
  watchShown();
}

drawTabs();
drawChips();
const feed = liveFeed(query);
root.dataset.live = 'channel' in feed ? feed.channel : 'none';
if (query.problems.length > 0) {
  showError(query.problems.join(' '));
} else if ('channel' in feed) {
  follow(client, feed.channel, {
    load,
    render,
    apply: (/** @type {any} */ data) => {
      if (data?.type !== 'question' || document.getElementById(`q-${data.id}`) !== null) return;
      if (waiting.some((q) => q.id === data.id) || !matches(query, data)) return;
      waiting.push({ id: data.id, author_id: data.author, author_name: data.author_name, title: data.title, tags: data.tags, score: 0, answer_count: 0, accepted_answer_id: null, created_at: data.created_at });
      showBanner();
      flash(banner);
    },
  });
} else {
  root.title = feed.none;
  load().then(render, (/** @type {unknown} */ failure) => showError(failure instanceof Error ? failure.message : String(failure)));
}

// The search form: its fields show the query; submitting goes to the query's own URL.
if (mode === 'search') {
  const form = /** @type {HTMLFormElement} */ (byId('search-form'));
  /** @param {string} id */
  const field = (id) => /** @type {HTMLInputElement} */ (byId(id));
  field('search-q').value = query.q;
  field('search-tags').value = query.tags.join(' ');
  field('search-from').value = query.createdFrom ?? '';
  field('search-to').value = query.createdTo ?? '';
  field('search-min-score').value = query.minScore ?? '';
  field('search-unanswered').checked = query.answered === 'false';
  if (query.tags.length > 0 || query.createdFrom || query.createdTo || query.minScore !== null || query.answered !== null) /** @type {HTMLDetailsElement} */ (byId('search-more')).open = true;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const fresh = readQuery(new URLSearchParams(/** @type {any} */ (new FormData(form))).toString(), null);
    const keepSort = query.sort === 'relevance' && !fresh.q ? '' : query.sort;
    location.assign(pageUrl(fresh, { sort: keepSort, answered: field('search-unanswered').checked ? 'false' : query.answered === 'true' ? 'true' : null }, '/search'));
  });
}
const headerSearch = document.getElementById('site-search-q');
if (headerSearch instanceof HTMLInputElement && query.q) headerSearch.value = query.q;

// Asking: the new question opens at once; the others' lists learn of it through their banner.
if (session !== null && document.getElementById('ask') !== null) {
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
