// @ts-check
/**
 * The question page: the question, its answers and comments, kept live on `question:<id>`
 * (events of qasite/domain/events.py), with vote, answer, comment and accept forms.
 */
import { boot } from './app.js';
import { announce, byId, flash, h, markdownElement, markdownNodes, plural, timeElement } from './dom.js';
import { follow } from './live.js';
import { ApiError, api } from './session.js';

/**
 * @typedef {object} CommentOut
 * @property {number} id
 * @property {number} author_id
 * @property {string} author_name
 * @property {string} body
 * @property {number} edit_version
 * @property {string} created_at
 */

/**
 * @typedef {object} AnswerOut
 * @property {number} id
 * @property {number} author_id
 * @property {string} author_name
 * @property {string} body_html
 * @property {number} score
 * @property {number} score_version
 * @property {number} edit_version
 * @property {string} created_at
 * @property {CommentOut[]} comments
 */

/**
 * @typedef {object} QuestionOut
 * @property {number} id
 * @property {number} author_id
 * @property {string} author_name
 * @property {string} title
 * @property {string[]} tags
 * @property {string} body_html
 * @property {number} score
 * @property {number} score_version
 * @property {number} edit_version
 * @property {number | null} accepted_answer_id
 * @property {string} created_at
 * @property {AnswerOut[]} answers
 * @property {CommentOut[]} comments
 */

const { client, session } = boot();
const main = byId('main');
const questionId = Number(main.dataset.question);
const root = byId('question-root');
const me = session?.user.id ?? null;
/**
 * A comment as shown (from the API's CommentOut or a `comment` event).
 * @typedef {{ id: number, author: number, author_name?: string, body: string, version: number, created_at: string }} Comment
 */

/** The question's author (known once loaded): only they may accept an answer. */
let askerId = /** @type {number | null} */ (null);
/** The question's edit_version as of the last `accepted` applied. */
let acceptedVersion = 0;

/** @param {string} ref  question:<id>, answer:<id> or comment:<id> */
const elementOf = (ref) => document.getElementById(ref.replace(':', '-'));

/**
 * An author as shown: the display name (the API falls back to a neutral label), marked when it
 * is the signed-in user. Events from an older server may lack the name.
 * @param {number} userId
 * @param {string | undefined} name
 */
const who = (userId, name) => {
  const shown = name ?? `user #${userId}`;
  return h('span', { class: 'author', 'data-user': userId }, [userId === me ? `${shown} (you)` : shown]);
};
/**
 * The same as text, for announcements.
 * @param {number} userId
 * @param {string | undefined} name
 */
const whoText = (userId, name) => (userId === me ? 'you' : (name ?? `user #${userId}`));

/** @param {string} next */
function requireLogin(next) {
  if (session !== null) return true;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
  return false;
}

/**
 * Show `message` in the post's status line (role=status) or the form's error line (role=alert).
 * @param {Element | null} element
 * @param {string} message
 */
function say(element, message) {
  if (element !== null) element.textContent = message;
}

/**
 * Set a score if `version` is newer than the one shown (events may repeat an older state).
 * @param {string} ref
 * @param {number} score
 * @param {number} version
 */
function setScore(ref, score, version) {
  const output = elementOf(ref)?.querySelector(':scope > .vote > .score');
  if (!(output instanceof HTMLElement) || version <= Number(output.dataset.version)) return;
  output.dataset.version = String(version);
  if (output.textContent !== String(score)) flash(output);
  output.textContent = String(score);
}

/**
 * @param {string} ref
 * @param {1 | -1} value
 */
async function vote(ref, value) {
  if (!requireLogin(location.pathname)) return;
  const [kind, id] = ref.split(':');
  const status = elementOf(ref)?.querySelector(':scope > .post-main > .post-status') ?? null;
  try {
    /** @type {{ post: string, score: number, version: number }} */
    const result = await api(`/api/${kind}s/${id}/vote`, { method: 'PUT', body: { value } });
    setScore(result.post, result.score, result.version);
    say(status, '');
  } catch (error) {
    say(status, error instanceof Error ? error.message : String(error));
  }
}

/**
 * @param {string} ref
 * @param {number} score
 * @param {number} version
 * @param {string} noun
 */
function voteControls(ref, score, version, noun) {
  const up = h('button', { type: 'button', class: 'vote-up', 'aria-label': `Vote this ${noun} up` }, ['▲']);
  const down = h('button', { type: 'button', class: 'vote-down', 'aria-label': `Vote this ${noun} down` }, ['▼']);
  up.addEventListener('click', () => void vote(ref, 1));
  down.addEventListener('click', () => void vote(ref, -1));
  return h('div', { class: 'vote' }, [up, h('output', { class: 'score', 'data-version': version, 'aria-label': `${noun} score` }, [String(score)]), down]);
}

/** @param {Comment} comment */
function commentItem(comment) {
  return h('li', { id: `comment-${comment.id}`, class: 'comment', 'data-version': comment.version }, [
    h('span', { class: 'comment-body' }, [comment.body]),
    ' – ',
    h('span', { class: 'comment-meta' }, [who(comment.author, comment.author_name), ' ', timeElement(comment.created_at)]),
  ]);
}

/** @param {CommentOut} c */
const commentOf = (c) => ({ id: c.id, author: c.author_id, author_name: c.author_name, body: c.body, version: c.edit_version, created_at: c.created_at });

/**
 * The comments of a post and the form to add one.
 * @param {string} ref
 * @param {CommentOut[]} comments
 */
function commentSection(ref, comments) {
  const id = `comment-input-${ref.replace(':', '-')}`;
  const input = /** @type {HTMLInputElement} */ (h('input', { id, name: 'body', type: 'text', required: true, maxlength: 600, autocomplete: 'off' }));
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { class: 'comment-form' }, [
    h('label', { for: id }, ['Add a comment']),
    h('div', { class: 'inline-field' }, [input, h('button', { type: 'submit' }, ['Comment'])]),
    error,
  ]);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!requireLogin(location.pathname)) return;
    const [kind, postId] = ref.split(':');
    try {
      /** @type {CommentOut} */
      const comment = await api(`/api/${kind}s/${postId}/comments`, { method: 'POST', body: { body: input.value } });
      addComment(ref, commentOf(comment));
      input.value = '';
      say(error, '');
    } catch (failure) {
      say(error, failure instanceof Error ? failure.message : String(failure));
    }
  });
  return h('section', { class: 'comments', 'aria-label': 'Comments' }, [
    h('ul', { class: 'comment-list' }, comments.map((c) => commentItem(commentOf(c)))),
    form,
  ]);
}

/**
 * @param {string} ref
 * @param {Comment} comment
 */
function addComment(ref, comment) {
  if (document.getElementById(`comment-${comment.id}`) !== null) return false;
  const list = elementOf(ref)?.querySelector(':scope > .post-main > .comments > .comment-list');
  if (!list) return false;
  const item = commentItem(comment);
  list.append(item);
  flash(item);
  return true;
}

/**
 * @param {{ id: number, author: number, author_name?: string, body_html: string, score: number, score_version: number, edit_version: number, created_at: string }} answer
 * @param {CommentOut[]} comments
 * @param {boolean} accepted
 */
function answerArticle(answer, comments, accepted) {
  const ref = `answer:${answer.id}`;
  const status = h('p', { class: 'post-status', role: 'status' });
  /** @type {HTMLElement | null} */
  let acceptButton = null;
  if (me !== null && me === askerId) {
    acceptButton = h('button', { type: 'button', class: 'accept-button' }, [accepted ? 'Unaccept' : 'Accept this answer']);
    acceptButton.addEventListener('click', async () => {
      const article = elementOf(ref);
      const isAccepted = article?.classList.contains('accepted') ?? false;
      try {
        /** @type {QuestionOut} */
        const question = await api(`/api/answers/${answer.id}/accept`, { method: isAccepted ? 'DELETE' : 'POST' });
        setAccepted(question.accepted_answer_id, question.edit_version);
      } catch (error) {
        say(status, error instanceof Error ? error.message : String(error));
      }
    });
  }
  return h('article', { id: `answer-${answer.id}`, class: accepted ? 'post answer accepted' : 'post answer', 'data-post': ref, 'data-edit-version': answer.edit_version }, [
    voteControls(ref, answer.score, answer.score_version, 'answer'),
    h('div', { class: 'post-main' }, [
      h('p', { class: 'accepted-mark' }, ['✓ Accepted answer']),
      markdownElement('div', 'body', answer.body_html),
      h('p', { class: 'meta' }, ['answered by ', who(answer.author, answer.author_name), ' ', timeElement(answer.created_at), ' ', acceptButton]),
      status,
      commentSection(ref, comments),
    ]),
  ]);
}

function updateAnswerCount() {
  const count = byId('answers').querySelectorAll(':scope > article').length;
  byId('answers-heading').textContent = plural(count, 'answer');
}

/**
 * @param {number | null} answerId
 * @param {number} version
 */
function setAccepted(answerId, version) {
  if (version <= acceptedVersion) return;
  acceptedVersion = version;
  for (const article of byId('answers').querySelectorAll(':scope > article')) {
    const accepted = article.id === `answer-${answerId}`;
    article.classList.toggle('accepted', accepted);
    const button = article.querySelector('.accept-button');
    if (button !== null) button.textContent = accepted ? 'Unaccept' : 'Accept this answer';
  }
}

/** @param {QuestionOut | null} q  null: there is no such question */
function render(q) {
  if (q === null) {
    document.title = 'Question not found – Herald Q&A';
    root.replaceChildren(h('h1', {}, ['Question not found']), h('p', {}, ['It may have been deleted. ', h('a', { href: '/' }, ['See the newest questions']), '.']));
    root.setAttribute('aria-busy', 'false');
    byId('answer-compose').hidden = true;
    return;
  }
  askerId = q.author_id;
  acceptedVersion = q.edit_version;
  document.title = `${q.title} – Herald Q&A`;
  const ref = `question:${q.id}`;
  const question = h('article', { id: `question-${q.id}`, class: 'post question', 'data-post': ref, 'data-edit-version': q.edit_version }, [
    voteControls(ref, q.score, q.score_version, 'question'),
    h('div', { class: 'post-main' }, [
      markdownElement('div', 'body', q.body_html),
      h('ul', { class: 'tags', 'aria-label': 'Tags' }, q.tags.map((tag) => h('li', { class: 'tag' }, [tag]))),
      h('p', { class: 'meta' }, ['asked by ', who(q.author_id, q.author_name), ' ', timeElement(q.created_at)]),
      h('p', { class: 'post-status', role: 'status' }),
      commentSection(ref, q.comments),
    ]),
  ]);
  const answers = h('div', { id: 'answers' }, q.answers.map((a) => answerArticle(
    { id: a.id, author: a.author_id, author_name: a.author_name, body_html: a.body_html, score: a.score, score_version: a.score_version, edit_version: a.edit_version, created_at: a.created_at },
    a.comments,
    a.id === q.accepted_answer_id,
  )));
  root.replaceChildren(
    h('h1', { id: 'question-title' }, [q.title]),
    question,
    h('section', { class: 'answers', 'aria-labelledby': 'answers-heading' }, [h('h2', { id: 'answers-heading' }), answers]),
  );
  root.setAttribute('aria-busy', 'false');
  updateAnswerCount();
}

/**
 * One publication of `question:<id>`.
 * @param {any} data
 */
function apply(data) {
  if (document.getElementById(`question-${questionId}`) === null) return; // not found, or deleted
  switch (data?.type) {
    case 'score':
      setScore(data.post, data.score, data.version);
      return;
    case 'answer': {
      const a = data.answer;
      if (document.getElementById(`answer-${a.id}`) !== null) return;
      if (a.body_html === null) {
        view.reload(); // too long to travel in an event
        return;
      }
      const article = answerArticle({ ...a, score: 0, score_version: 0, edit_version: 0 }, [], false);
      byId('answers').append(article);
      flash(article);
      updateAnswerCount();
      announce(`New answer from ${whoText(a.author, a.author_name)}`);
      return;
    }
    case 'comment':
      if (addComment(data.post, data.comment)) announce(`New comment from ${whoText(data.comment.author, data.comment.author_name)}`);
      return;
    case 'comment_edit': {
      const item = document.getElementById(`comment-${data.comment.id}`);
      if (item === null || data.comment.version <= Number(item.dataset.version)) return;
      item.dataset.version = String(data.comment.version);
      const body = item.querySelector('.comment-body');
      if (body !== null) body.textContent = data.comment.body;
      return;
    }
    case 'edit': {
      const post = elementOf(data.post);
      if (post === null || data.version <= Number(post.dataset.editVersion ?? 0)) return;
      if (data.body_html === null) {
        view.reload();
        return;
      }
      post.dataset.editVersion = String(data.version);
      const body = post.querySelector(':scope > .post-main > .body');
      body?.replaceChildren(...markdownNodes(data.body_html)); // data, not markup: see markdownNodes
      if (typeof data.title === 'string') {
        byId('question-title').textContent = data.title;
        document.title = `${data.title} – Herald Q&A`;
      }
      if (Array.isArray(data.tags)) {
        post.querySelector('.tags')?.replaceChildren(...data.tags.map((/** @type {string} */ tag) => h('li', { class: 'tag' }, [tag])));
      }
      return;
    }
    case 'accepted':
      setAccepted(data.answer, data.version);
      return;
    case 'deleted':
      if (data.post === `question:${questionId}`) {
        root.replaceChildren(h('h1', {}, ['This question was deleted']), h('p', {}, [h('a', { href: '/' }, ['Back to the questions'])]));
        byId('answer-compose').hidden = true;
        return;
      }
      elementOf(data.post)?.remove();
      updateAnswerCount();
      return;
    default:
      return;
  }
}

const view = follow(client, `question:${questionId}`, {
  load: () =>
    api(`/api/questions/${questionId}`).catch((error) => {
      if (error instanceof ApiError && error.status === 404) return null; // final: no retry
      throw error;
    }),
  render,
  apply,
  onError: (message) => {
    if (root.getAttribute('aria-busy') === 'true') root.replaceChildren(h('p', { class: 'form-error', role: 'alert' }, [`Could not load the question: ${message}`]));
  },
});

// The answer form (outside the live region, so a reload never loses what is being typed).
const compose = byId('answer-compose');
if (session === null) {
  compose.replaceChildren(
    h('h2', {}, ['Your answer']),
    h('p', {}, [h('a', { href: `/login?next=${encodeURIComponent(location.pathname)}` }, ['Log in']), ' to answer, vote and comment.']),
  );
} else {
  const form = /** @type {HTMLFormElement} */ (byId('answer-form'));
  const textarea = /** @type {HTMLTextAreaElement} */ (byId('answer-body'));
  const error = byId('answer-error');
  form.querySelector('button[type="submit"]')?.removeAttribute('disabled'); // disabled until now
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      /** @type {AnswerOut & { accepted: boolean }} */
      const answer = await api(`/api/questions/${questionId}/answers`, { method: 'POST', body: { body: textarea.value } });
      if (document.getElementById(`answer-${answer.id}`) === null) {
        byId('answers').append(answerArticle({ ...answer, author: answer.author_id }, [], answer.accepted));
        updateAnswerCount();
      }
      textarea.value = '';
      say(error, '');
      announce('Your answer was posted');
    } catch (failure) {
      say(error, failure instanceof ApiError ? failure.message : String(failure));
    }
  });
}
