// @ts-check
/**
 * A question as a line of a list, with its tags and its author as links; shared by the lists
 * (list.js: /, /search, /tags/<name>) and the user page (user.js).
 *
 *     list.append(summaryItem(question));   tagList(['python']);   userLink(7, 'Ada')
 */
import { h, plural, timeElement } from './dom.js';

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
