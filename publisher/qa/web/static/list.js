// @ts-check
/**
 * The question list, newest first, with a "N new questions" banner fed by `questions:new`.
 * New questions are not inserted while someone reads the list (it would move under their
 * eyes): the banner counts them, and showing them is one click.
 */
import { boot } from './app.js';
import { byId, flash, h, plural, timeElement } from './dom.js';
import { follow } from './live.js';
import { ApiError, api } from './session.js';

/**
 * @typedef {object} Summary
 * @property {number} id
 * @property {string} title
 * @property {string[]} tags
 * @property {number} score
 * @property {number} answer_count
 * @property {number | null} accepted_answer_id
 * @property {string} created_at
 */

const { client, session } = boot();
const list = byId('questions');
const banner = /** @type {HTMLButtonElement} */ (byId('new-questions'));
/** New questions announced since the list was shown, oldest first. */
let waiting = /** @type {Summary[]} */ ([]);

/** @param {Summary} q */
function item(q) {
  const answered = q.accepted_answer_id !== null ? 'stat answered accepted' : q.answer_count > 0 ? 'stat answered' : 'stat';
  return h('li', { class: 'question-summary', id: `q-${q.id}` }, [
    h('div', { class: 'stats' }, [
      h('span', { class: 'stat' }, [plural(q.score, 'vote')]),
      h('span', { class: answered }, [plural(q.answer_count, 'answer')]),
    ]),
    h('div', { class: 'summary-main' }, [
      h('h2', { class: 'summary-title' }, [h('a', { href: `/questions/${q.id}` }, [q.title])]),
      h('ul', { class: 'tags', 'aria-label': 'Tags' }, q.tags.map((tag) => h('li', { class: 'tag' }, [tag]))),
      h('p', { class: 'meta' }, ['asked ', timeElement(q.created_at)]),
    ]),
  ]);
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
  list.querySelector('a')?.focus();
});

follow(client, 'questions:new', {
  load: () => api('/api/questions?limit=30'),
  render: (/** @type {{ items: Summary[] }} */ page) => {
    waiting = [];
    list.replaceChildren(...(page.items.length === 0 ? [h('li', { class: 'empty' }, ['No questions yet.'])] : page.items.map(item)));
    list.setAttribute('aria-busy', 'false');
    showBanner();
  },
  apply: (/** @type {any} */ data) => {
    if (data?.type !== 'question' || document.getElementById(`q-${data.id}`) !== null) return;
    if (waiting.some((q) => q.id === data.id)) return;
    waiting.push({ id: data.id, title: data.title, tags: data.tags, score: 0, answer_count: 0, accepted_answer_id: null, created_at: data.created_at });
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
