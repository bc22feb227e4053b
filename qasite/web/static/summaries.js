// @ts-check
/**
 * A question as a line of a list, with its tags and its author as links; shared by the lists
 * (list.js: /, /search, /tags/<name>) and the user page (user.js).
 *
 *     list.append(summaryItem(question));   tagList(['python']);   userLink(7, 'Ada')
 */
import { flash, h, plural, timeElement } from './dom.js';

/** @typedef {ReturnType<typeof import('./watch.js').watchQuestions>} Watch */

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

/** @param {string} tag */
export const tagHref = (tag) => `/tags/${encodeURIComponent(tag)}`;

/**
 * The tags of a question, each a link to its page.
 * @param {readonly string[]} tags
 */
export function tagList(tags) {
  return h('ul', { class: 'tags', 'aria-label': 'Tags' }, tags.map((tag) => h('li', {}, [h('a', { href: tagHref(tag), class: 'tag' }, [tag])])));
}

/**
 * An author's name as a link to their page.
 * @param {number} id
 * @param {string} name
 */
export function userLink(id, name) {
  return h('a', { class: 'author', href: `/users/${id}`, 'data-user': id }, [name]);
}

/**
 * @param {number} answers
 * @param {boolean} accepted
 */
export const answeredClass = (answers, accepted) => (accepted ? 'stat answers answered accepted' : answers > 0 ? 'stat answers answered' : 'stat answers');

/** @param {Summary} q */
export function summaryItem(q) {
  const asker =
    q.author_id === undefined ? null : userLink(q.author_id, q.author_name ?? `user #${q.author_id}`);
  return h('li', { class: 'question-summary', id: `q-${q.id}`, 'data-accepted': q.accepted_answer_id !== null }, [
    h('div', { class: 'stats' }, [
      h('span', { class: 'stat votes', 'data-score': q.score }, [plural(q.score, 'vote')]),
      h('span', { class: answeredClass(q.answer_count, q.accepted_answer_id !== null), 'data-answers': q.answer_count }, [plural(q.answer_count, 'answer')]),
    ]),
    h('div', { class: 'summary-main' }, [
      h('h2', { class: 'summary-title' }, [h('a', { href: `/questions/${q.id}` }, [q.title])]),
      tagList(q.tags),
      h('p', { class: 'meta' }, asker === null ? ['asked ', timeElement(q.created_at)] : ['asked by ', asker, ' ', timeElement(q.created_at)]),
    ]),
  ]);
}

// --- live numbers (list.js, user.js) ------------------------------------------------------

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
 * One publication of a listed question's channel (the payloads of qasite/domain/events.py)
 * applied to its line.
 * @param {Watch} watch
 * @param {number} id
 * @param {any} data
 */
export function applySummaryEvent(watch, id, data) {
  switch (data?.type) {
    case 'score':
      if (data.post !== `question:${id}` || !watch.newer(`score:${data.post}`, data.version)) return;
      watch.touch(id);
      setScore(id, data.score);
      return;
    case 'answer':
      watch.touch(id);
      setAnswers(id, data.answer_count, null);
      return;
    case 'accepted':
      if (!watch.newer(`accepted:${id}`, data.version)) return;
      watch.touch(id); // a catch-up load begun before it must not undo it
      setAnswers(id, null, data.answer !== null);
      return;
    case 'deleted':
      if (data.post === `question:${id}`) {
        watch.drop(id);
        document.getElementById(`q-${id}`)?.classList.add('deleted');
      } else if (typeof data.answer_count === 'number') {
        watch.touch(id);
        setAnswers(id, data.answer_count, null);
      }
      return;
    default:
      return;
  }
}

/**
 * A loaded summary's numbers on its line (a catch-up load).
 * @param {Summary} q
 */
export function setSummaryNumbers(q) {
  setScore(q.id, q.score);
  setAnswers(q.id, q.answer_count, q.accepted_answer_id !== null);
}
