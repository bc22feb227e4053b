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
import { applySummaryEvent, setSummaryNumbers, summaryItem as item } from './summaries.js';
import { watchQuestions } from './watch.js';

/** @typedef {import('./summaries.js').Summary} Summary */
/** @typedef {{ items: Summary[], next_cursor: string | null, prev_cursor?: string | null, total?: number | null }} Page */

/**
 * At most this many `question:<id>` subscriptions (the page size). With `questions:new`,
 * `user:<id>` and the connect, a list is 33 commands: within the fleet's burst of 50, so a
 * page load or a reconnect needs no pacing (the client retries a 429 anyway).
 */
const WATCHED = 30;

const { client } = boot();
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

/**
 * First, previous and next page links (the API's cursors: keyset pages in both directions).
 * @param {Page} page
 */
function drawPager(page) {
  const prev = page.prev_cursor ?? null;
  const onFirst = query.cursor === null || (prev === null && page.items.length > 0);
  byId('pager').replaceChildren(
    ...[
      onFirst ? null : h('a', { href: pageUrl(query, { cursor: null }), class: 'pager-link', rel: 'first' }, ['« First page']),
      prev !== null ? h('a', { href: pageUrl(query, { cursor: prev }), class: 'pager-link', rel: 'prev' }, ['‹ Previous page']) : null,
      page.next_cursor !== null ? h('a', { href: pageUrl(query, { cursor: page.next_cursor }), class: 'pager-link', rel: 'next' }, ['Next page »']) : null,
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

const watch = watchQuestions(client, {
  apply: (id, data) => applySummaryEvent(watch, id, data),
  catchUp: async (untouched) => {
    /** @type {{ items: Summary[] }} */
    const page = await api(apiUrl(query, { limit: WATCHED }));
    for (const q of page.items) {
      if (!untouched(q.id)) continue;
      setSummaryNumbers(q);
    }
  },
});
Object.assign(window, { heraldList: { watched: watch.ids, catchUps: watch.catchUps } });

/** Follow the first {@link WATCHED} questions shown; unfollow the rest. */
function watchShown() {
  watch.show([...list.querySelectorAll(':scope > li.question-summary:not(.deleted)')].slice(0, WATCHED).map((li) => Number(li.id.slice(2))));
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
  drawPager(page);
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
