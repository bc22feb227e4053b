// @ts-check
/**
 * A user's page (/users/<id>): their name, member since, how many questions and answers, and
 * both lists newest first, a page at a time ("More ..." appends the next). Not live: a
 * profile changes rarely, and each question links to its own live page.
 */
import { boot } from './app.js';
import { byId, h, plural, timeElement } from './dom.js';
import { api } from './session.js';
import { summaryItem } from './summaries.js';

/** @typedef {import('./summaries.js').Summary} Summary */
/** @typedef {{ id: number, display_name: string, created_at: string, question_count: number, answer_count: number }} Profile */
/** @typedef {{ id: number, question_id: number, question_title: string, score: number, accepted: boolean, created_at: string }} AnswerLine */

boot();
const userId = Number(byId('main').dataset.user);
const PAGE = 20;

/** @param {string} message */
const fail = (message) => {
  byId('profile-error').textContent = message;
};

/** @param {AnswerLine} a */
function answerItem(a) {
  return h('li', { class: a.accepted ? 'answer-line accepted' : 'answer-line', id: `a-${a.id}` }, [
    h('span', { class: 'stat votes', 'data-score': a.score }, [plural(a.score, 'vote')]),
    a.accepted ? h('span', { class: 'stat accepted' }, ['accepted']) : null,
    h('a', { href: `/questions/${a.question_id}#answer-${a.id}` }, [a.question_title]),
    h('span', { class: 'meta' }, ['answered ', timeElement(a.created_at)]),
  ]);
}

/**
 * A list filled a page at a time by *more*.
 * @template T
 * @param {string} listId
 * @param {string} buttonId
 * @param {(after: string | null) => Promise<{ items: T[], next: string | null }>} fetchPage
 * @param {(item: T) => HTMLElement} draw
 * @param {string} none
 */
function pagedList(listId, buttonId, fetchPage, draw, none) {
  const list = byId(listId);
  const button = /** @type {HTMLButtonElement} */ (byId(buttonId));
  let after = /** @type {string | null} */ (null);
  const more = async () => {
    button.disabled = true;
    try {
      const page = await fetchPage(after);
      if (after === null) list.replaceChildren(...(page.items.length === 0 ? [h('li', { class: 'empty' }, [none])] : []));
      list.append(...page.items.map(draw));
      list.setAttribute('aria-busy', 'false');
      after = page.next;
      button.hidden = after === null;
    } catch (failure) {
      fail(failure instanceof Error ? failure.message : String(failure));
    } finally {
      button.disabled = false;
    }
  };
  button.addEventListener('click', () => void more());
  return more;
}

const moreQuestions = pagedList(
  'profile-questions',
  'more-questions',
  async (after) => {
    /** @type {{ items: Summary[], next_cursor: string | null }} */
    const page = await api(`/api/questions?author=${userId}&limit=${PAGE}${after === null ? '' : `&cursor=${encodeURIComponent(after)}`}`);
    return { items: page.items, next: page.next_cursor };
  },
  summaryItem,
  'No questions yet.',
);
const moreAnswers = pagedList(
  'profile-answers',
  'more-answers',
  async (after) => {
    /** @type {{ items: AnswerLine[], next_before: number | null }} */
    const page = await api(`/api/users/${userId}/answers?limit=${PAGE}${after === null ? '' : `&before=${after}`}`);
    return { items: page.items, next: page.next_before === null ? null : String(page.next_before) };
  },
  answerItem,
  'No answers yet.',
);

api(`/api/users/${userId}`).then(
  (/** @type {Profile} */ profile) => {
    byId('profile-name').textContent = profile.display_name;
    byId('profile-meta').replaceChildren(
      'Member since ',
      h('span', { class: 'member-since', 'data-at': profile.created_at }, [new Date(profile.created_at).toLocaleDateString('en', { dateStyle: 'long' })]),
      ` · ${plural(profile.question_count, 'question')} · ${plural(profile.answer_count, 'answer')}`,
    );
  },
  (/** @type {unknown} */ failure) => fail(failure instanceof Error ? failure.message : String(failure)),
);
void moreQuestions();
void moreAnswers();
