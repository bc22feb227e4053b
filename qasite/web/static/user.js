// @ts-check
/**
 * A user's page (/users/<id>): their name, member since, how many questions and answers, and
 * both lists newest first, a page at a time ("More ..." appends the next).
 *
 * Live, with the pages' machinery and no channel of its own (`user:<id>` is that user's
 * private inbox): `questions:new` through live.js's `follow` (subscribe, then load the page,
 * so a question they ask meanwhile is never missed) adds their new questions at the top; the
 * `question:<id>` channels of the questions listed (theirs, and those they answered: the first
 * {@link WATCHED}, through watch.js) carry the scores, answer counts, accepted answers, titles
 * and deletions of their posts, and their new answers to those questions.
 */
import { boot } from './app.js';
import { announce, byId, flash, h, plural, timeElement } from './dom.js';
import { follow } from './live.js';
import { api } from './session.js';
import { applySummaryEvent, setSummaryNumbers, summaryItem } from './summaries.js';
import { watchQuestions } from './watch.js';

/** @typedef {import('./summaries.js').Summary} Summary */
/** @typedef {{ id: number, display_name: string, created_at: string, question_count: number, answer_count: number }} Profile */
/** @typedef {{ id: number, question_id: number, question_title: string, score: number, accepted: boolean, created_at: string }} AnswerLine */
/**
 * @template T
 * @typedef {{ items: T[], next: string | null }} Paged
 */
/** @typedef {{ profile: Profile, questions: Paged<Summary>, answers: Paged<AnswerLine> }} State */

const { client } = boot();
const userId = Number(byId('main').dataset.user);
const PAGE = 20;
/**
 * Questions followed at most: the first pages of both lists. With `questions:new`, `user:<id>`
 * and the connect, 43 commands: within the fleet's burst of 50.
 */
const WATCHED = 2 * PAGE;

/** @param {string} message */
const fail = (message) => {
  byId('profile-error').textContent = message;
};

/**
 * Whether an event's time can be shown (events are not trusted).
 * @param {unknown} value
 * @returns {value is string}
 */
const isTime = (value) => typeof value === 'string' && !Number.isNaN(Date.parse(value));

/** The profile as last loaded, its counts kept up to date by events. */
let profile = /** @type {Profile | null} */ (null);

function drawProfile() {
  if (profile === null) return;
  byId('profile-name').textContent = profile.display_name;
  byId('profile-meta').replaceChildren(
    'Member since ',
    h('span', { class: 'member-since', 'data-at': profile.created_at }, [new Date(profile.created_at).toLocaleDateString('en', { dateStyle: 'long' })]),
    ' · ',
    h('span', { id: 'profile-question-count', 'data-count': profile.question_count }, [plural(profile.question_count, 'question')]),
    ' · ',
    h('span', { id: 'profile-answer-count', 'data-count': profile.answer_count }, [plural(profile.answer_count, 'answer')]),
  );
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let countTimer;
/**
 * Their post counts changed: read them again (a count kept by adding events up would miss
 * posts on questions this page does not follow).
 */
function recount() {
  clearTimeout(countTimer);
  countTimer = setTimeout(async () => {
    /** @type {Profile | null} */
    const fresh = await api(`/api/users/${userId}`).catch(() => null);
    if (fresh === null || profile === null) return;
    profile = fresh;
    drawProfile();
  }, 100);
}

/** @param {AnswerLine} a */
function answerItem(a) {
  return h('li', { class: a.accepted ? 'answer-line accepted' : 'answer-line', id: `a-${a.id}`, 'data-question': a.question_id }, [
    h('span', { class: 'stat votes', 'data-score': a.score }, [plural(a.score, 'vote')]),
    h('span', { class: 'stat accepted', hidden: !a.accepted }, ['accepted']),
    h('a', { href: `/questions/${a.question_id}#answer-${a.id}` }, [a.question_title]),
    h('span', { class: 'meta' }, ['answered ', timeElement(a.created_at)]),
  ]);
}

/**
 * A list shown a page at a time: `show` draws the first page, `more` appends the next.
 * @template T
 * @param {string} listId
 * @param {string} buttonId
 * @param {(after: string | null) => Promise<Paged<T>>} fetchPage
 * @param {(item: T) => HTMLElement} draw
 * @param {string} none
 */
function pagedList(listId, buttonId, fetchPage, draw, none) {
  const list = byId(listId);
  const button = /** @type {HTMLButtonElement} */ (byId(buttonId));
  let after = /** @type {string | null} */ (null);
  /** @param {Paged<T>} page */
  const show = (page) => {
    list.replaceChildren(...(page.items.length === 0 ? [h('li', { class: 'empty' }, [none])] : page.items.map(draw)));
    list.setAttribute('aria-busy', 'false');
    after = page.next;
    button.hidden = after === null;
  };
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const page = await fetchPage(after);
      list.append(...page.items.map(draw));
      after = page.next;
      button.hidden = after === null;
    } catch (failure) {
      fail(failure instanceof Error ? failure.message : String(failure));
    } finally {
      button.disabled = false;
    }
  });
  /** @param {HTMLElement} item  a new item, at the top */
  const prepend = (item) => {
    list.querySelector(':scope > .empty')?.remove();
    list.prepend(item);
    flash(item);
  };
  return { show, prepend, list };
}

/**
 * @param {string | null} after
 * @param {number} [limit]
 * @returns {Promise<Paged<Summary>>}
 */
async function fetchQuestions(after, limit = PAGE) {
  /** @type {{ items: Summary[], next_cursor: string | null }} */
  const page = await api(`/api/questions?author=${userId}&limit=${limit}${after === null ? '' : `&cursor=${encodeURIComponent(after)}`}`);
  return { items: page.items, next: page.next_cursor };
}

/**
 * @param {string | null} after
 * @param {number} [limit]
 * @returns {Promise<Paged<AnswerLine>>}
 */
async function fetchAnswers(after, limit = PAGE) {
  /** @type {{ items: AnswerLine[], next_before: number | null }} */
  const page = await api(`/api/users/${userId}/answers?limit=${limit}${after === null ? '' : `&before=${after}`}`);
  return { items: page.items, next: page.next_before === null ? null : String(page.next_before) };
}

const questions = pagedList('profile-questions', 'more-questions', fetchQuestions, summaryItem, 'No questions yet.');
const answers = pagedList('profile-answers', 'more-answers', fetchAnswers, answerItem, 'No answers yet.');

// --- live: their posts on the questions shown ---------------------------------------------

/** @returns {HTMLElement[]} */
const answerLines = () => [...answers.list.querySelectorAll(':scope > li.answer-line')].map((li) => /** @type {HTMLElement} */ (li));

/** Follow the questions of the first lines of both lists. */
function watchShown() {
  const asked = [...questions.list.querySelectorAll(':scope > li.question-summary:not(.deleted)')].slice(0, PAGE).map((li) => Number(li.id.slice(2)));
  const answered = answerLines().slice(0, PAGE).map((li) => Number(li.dataset.question));
  watch.show([...new Set([...asked, ...answered])].slice(0, WATCHED));
}

/**
 * @param {HTMLElement} line
 * @param {number} score
 */
function setAnswerScore(line, score) {
  const stat = line.querySelector('.stat.votes');
  if (!(stat instanceof HTMLElement) || stat.dataset.score === String(score)) return;
  stat.dataset.score = String(score);
  stat.textContent = plural(score, 'vote');
  flash(stat);
}

/**
 * @param {HTMLElement} line
 * @param {boolean} accepted
 */
function setAnswerAccepted(line, accepted) {
  if (line.classList.contains('accepted') === accepted) return;
  line.classList.toggle('accepted', accepted);
  line.querySelector('.stat.accepted')?.toggleAttribute('hidden', !accepted);
  flash(line);
}

/**
 * One publication of `question:<id>` applied to their answers to that question (its summary
 * line, if it is theirs, is summaries.js's).
 * @param {number} id
 * @param {any} data
 */
function applyToAnswers(id, data) {
  const lines = answerLines().filter((line) => line.dataset.question === String(id));
  switch (data?.type) {
    case 'score': {
      const line = typeof data.post === 'string' && data.post.startsWith('answer:') ? document.getElementById(`a-${data.post.slice(7)}`) : null;
      if (line === null || !lines.includes(line) || !watch.newer(`score:${data.post}`, data.version)) return;
      watch.touch(id);
      setAnswerScore(line, data.score);
      return;
    }
    case 'accepted':
      if (!watch.newer(`answer-accepted:${id}`, data.version)) return;
      watch.touch(id);
      for (const line of lines) setAnswerAccepted(line, line.id === `a-${data.answer}`);
      return;
    case 'answer': {
      const a = data.answer;
      if (a?.author !== userId || !Number.isSafeInteger(a.id) || document.getElementById(`a-${a.id}`) !== null) return;
      const title = document.querySelector(`#q-${id} .summary-title a`)?.textContent ?? lines[0]?.querySelector('a')?.textContent;
      if (typeof title !== 'string' || !isTime(a.created_at)) return;
      answers.prepend(answerItem({ id: a.id, question_id: id, question_title: title, score: 0, accepted: false, created_at: a.created_at }));
      recount();
      announce(`New answer by ${profile?.display_name ?? 'this user'}`);
      watchShown();
      return;
    }
    case 'edit':
      if (data.post !== `question:${id}` || typeof data.title !== 'string') return;
      for (const link of [document.querySelector(`#q-${id} .summary-title a`), ...lines.map((line) => line.querySelector('a'))]) {
        if (link instanceof HTMLElement && link.textContent !== data.title) {
          link.textContent = data.title;
          flash(link);
        }
      }
      return;
    case 'deleted': {
      const gone = data.post === `question:${id}` ? lines : lines.filter((line) => data.post === `answer:${line.id.slice(2)}`);
      for (const line of gone) line.remove();
      if (gone.length > 0 || document.getElementById(`q-${id}`) !== null) recount();
      if (answers.list.children.length === 0) answers.list.append(h('li', { class: 'empty' }, ['No answers yet.']));
      return;
    }
    default:
      return;
  }
}

const watch = watchQuestions(client, {
  apply: (id, data) => {
    applyToAnswers(id, data);
    if (document.getElementById(`q-${id}`) !== null) applySummaryEvent(watch, id, data);
  },
  catchUp: async (untouched) => {
    const [asked, answered] = await Promise.all([fetchQuestions(null), fetchAnswers(null)]);
    for (const q of asked.items) if (untouched(q.id)) setSummaryNumbers(q);
    for (const a of answered.items) {
      const line = document.getElementById(`a-${a.id}`);
      if (line === null || !untouched(a.question_id)) continue;
      setAnswerScore(line, a.score);
      setAnswerAccepted(line, a.accepted);
    }
  },
});
Object.assign(window, { heraldUser: { watched: watch.ids, catchUps: watch.catchUps } });

// --- their new questions, and the page's state --------------------------------------------

follow(client, 'questions:new', {
  /** @returns {Promise<State>} */
  load: async () => {
    const [loaded, asked, answered] = await Promise.all([api(`/api/users/${userId}`), fetchQuestions(null), fetchAnswers(null)]);
    return { profile: loaded, questions: asked, answers: answered };
  },
  render: (/** @type {State} */ state) => {
    profile = state.profile;
    fail('');
    drawProfile();
    questions.show(state.questions);
    answers.show(state.answers);
    watchShown();
  },
  apply: (/** @type {any} */ data) => {
    if (data?.type !== 'question' || data.author !== userId || !Number.isSafeInteger(data.id) || !isTime(data.created_at)) return;
    if (document.getElementById(`q-${data.id}`) !== null) return;
    const tags = Array.isArray(data.tags) ? data.tags.filter((/** @type {unknown} */ t) => typeof t === 'string') : [];
    questions.prepend(summaryItem({ id: data.id, author_id: userId, author_name: data.author_name, title: String(data.title), tags, score: 0, answer_count: 0, accepted_answer_id: null, created_at: data.created_at }));
    recount();
    announce(`New question by ${profile?.display_name ?? 'this user'}`);
    watchShown();
  },
  onError: fail,
});
