// @ts-check
/**
 * The question page: the question, its answers and comments, kept live on `question:<id>`
 * (events of qasite/domain/events.py), with vote, answer, comment and accept forms.
 */
import { boot } from './app.js';
import { highlightIn } from './code.js';
import { announce, byId, flash, h, markdownElement, markdownNodes, plural, timeElement } from './dom.js';
import { attachmentFigure, imagePicker, livePreview, previewRegion, uploadImages } from './editor.js';
import { follow } from './live.js';
import { ApiError, api } from './session.js';
import { tagList, userLink } from './summaries.js';

/** @typedef {import('./editor.js').AttachmentOut} AttachmentOut */

/**
 * @typedef {object} CommentOut
 * @property {number} id
 * @property {number} author_id
 * @property {string} author_name
 * @property {string} body
 * @property {number} edit_version
 * @property {string} created_at
 * @property {string | null} [edited_at]
 */

/**
 * @typedef {object} AnswerOut
 * @property {number} id
 * @property {number} author_id
 * @property {string} author_name
 * @property {string} body_html
 * @property {string} [body_md]
 * @property {number} score
 * @property {number} score_version
 * @property {number} edit_version
 * @property {string} created_at
 * @property {string | null} [edited_at]
 * @property {-1 | 0 | 1} [my_vote]
 * @property {CommentOut[]} comments
 * @property {AttachmentOut[]} [attachments]
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
 * @property {string} body_md
 * @property {string | null} [edited_at]
 * @property {-1 | 0 | 1} [my_vote]
 * @property {AnswerOut[]} answers
 * @property {CommentOut[]} comments
 * @property {AttachmentOut[]} [attachments]
 */

const { client, session } = boot();
const main = byId('main');
const questionId = Number(main.dataset.question);
const root = byId('question-root');
const me = session?.user.id ?? null;
/**
 * A comment as shown (from the API's CommentOut or a `comment` event).
 * @typedef {{ id: number, author: number, author_name?: string, body: string, version: number, created_at: string, edited_at?: string | null }} Comment
 */

/** The question's author (known once loaded): only they may accept an answer. */
let askerId = /** @type {number | null} */ (null);
/** The question's edit_version as of the last `accepted` applied. */
let acceptedVersion = 0;

/** @param {string} ref  question:<id>, answer:<id> or comment:<id> (from an event: anything) */
const elementOf = (ref) => (typeof ref === 'string' ? document.getElementById(ref.replace(':', '-')) : null);

/**
 * An author as shown: the display name (the API falls back to a neutral label) as a link to
 * their page, marked when it is the signed-in user. Events from an older server may lack the
 * name; an id that is not one (events are not trusted) is shown without a link.
 * @param {number} userId
 * @param {string | undefined} name
 */
const who = (userId, name) => {
  const shown = typeof name === 'string' ? name : `user #${userId}`;
  const text = userId === me ? `${shown} (you)` : shown;
  return Number.isSafeInteger(userId) && userId > 0 ? userLink(userId, text) : h('span', { class: 'author' }, [text]);
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
 * Show the signed-in user's vote on a post: the chosen arrow is pressed (aria-pressed).
 * @param {string} ref
 * @param {number} value  1, -1 or 0
 */
function showMyVote(ref, value) {
  const controls = elementOf(ref)?.querySelector(':scope > .vote');
  if (!(controls instanceof HTMLElement)) return;
  controls.dataset.myVote = String(value);
  controls.querySelector('.vote-up')?.setAttribute('aria-pressed', String(value === 1));
  controls.querySelector('.vote-down')?.setAttribute('aria-pressed', String(value === -1));
}

/**
 * Vote `value` on the post; the arrow already pressed takes the vote back (DELETE).
 * @param {string} ref
 * @param {1 | -1} value
 */
async function vote(ref, value) {
  if (!requireLogin(location.pathname)) return;
  const [kind, id] = ref.split(':');
  const post = elementOf(ref);
  const status = post?.querySelector(':scope > .post-main > .post-status') ?? null;
  const current = Number(post?.querySelector(':scope > .vote')?.getAttribute('data-my-vote') ?? 0);
  const retract = current === value;
  try {
    /** @type {{ post: string, score: number, version: number, my_vote: number }} */
    const result = await api(`/api/${kind}s/${id}/vote`, retract ? { method: 'DELETE' } : { method: 'PUT', body: { value } });
    setScore(result.post, result.score, result.version);
    showMyVote(ref, result.my_vote);
    say(status, '');
    if (retract) announce('Your vote was taken back');
  } catch (error) {
    say(status, error instanceof Error ? error.message : String(error));
  }
}

/**
 * @param {string} ref
 * @param {number} score
 * @param {number} version
 * @param {string} noun
 * @param {number} myVote  the signed-in user's vote (0: none)
 */
function voteControls(ref, score, version, noun, myVote = 0) {
  const up = h('button', { type: 'button', class: 'vote-up', 'aria-label': `Vote this ${noun} up`, 'aria-pressed': String(myVote === 1) }, ['▲']);
  const down = h('button', { type: 'button', class: 'vote-down', 'aria-label': `Vote this ${noun} down`, 'aria-pressed': String(myVote === -1) }, ['▼']);
  up.addEventListener('click', () => void vote(ref, 1));
  down.addEventListener('click', () => void vote(ref, -1));
  return h('div', { class: 'vote', 'data-my-vote': myVote }, [up, h('output', { class: 'score', 'data-version': version, 'aria-label': `${noun} score` }, [String(score)]), down]);
}

/**
 * "edited 3 minutes ago" (empty when never edited).
 * @param {string | null | undefined} editedAt
 */
function editedNote(editedAt) {
  const note = h('span', { class: 'edited' });
  setEdited(note, editedAt);
  return note;
}

/**
 * @param {Element | null | undefined} note
 * @param {string | null | undefined} editedAt
 */
function setEdited(note, editedAt) {
  if (!note || typeof editedAt !== 'string' || Number.isNaN(Date.parse(editedAt))) return; // events are not trusted
  note.replaceChildren('edited ', timeElement(editedAt));
}

/**
 * A post's attached images.
 * @param {AttachmentOut[]} attachments
 * @param {string} noun
 */
function gallery(attachments, noun) {
  return h('div', { class: 'attachments', 'aria-label': 'Images' }, attachments.map((a) => attachmentFigure(a, noun)));
}

/**
 * @param {string} ref
 * @param {AttachmentOut} attachment
 */
function addAttachment(ref, attachment) {
  // Events are not trusted: only an image this origin serves, with numeric sizes.
  if (!Number.isSafeInteger(attachment?.id) || attachment.url !== `/api/attachments/${attachment.id}`) return;
  if (!Number.isSafeInteger(attachment.width) || !Number.isSafeInteger(attachment.height)) return;
  if (document.getElementById(`attachment-${attachment.id}`) !== null) return;
  const list = elementOf(ref)?.querySelector(':scope > .post-main > .attachments');
  if (!list) return;
  const figure = attachmentFigure(attachment, ref.split(':')[0]);
  list.append(figure);
  flash(figure);
}

/**
 * Edit and delete buttons for the signed-in user's own question or answer.
 * @param {string} ref
 */
function postActions(ref) {
  const [kind] = ref.split(':');
  const edit = h('button', { type: 'button', class: 'link-button edit-post' }, ['Edit']);
  const remove = h('button', { type: 'button', class: 'link-button delete-post' }, ['Delete']);
  edit.addEventListener('click', () => void openPostEditor(ref));
  remove.addEventListener('click', () => void deletePost(ref));
  return h('span', { class: 'post-actions', 'aria-label': `Your ${kind}` }, [edit, remove]);
}

/** @param {string} ref */
async function deletePost(ref) {
  const [kind, id] = ref.split(':');
  if (!confirm(`Delete your ${kind}? This cannot be undone.`)) return;
  const status = elementOf(ref)?.querySelector(':scope > .post-main > .post-status') ?? null;
  try {
    await api(`/api/${kind}s/${id}`, { method: 'DELETE' });
    if (kind === 'question') {
      location.assign('/');
      return;
    }
    elementOf(ref)?.remove();
    updateAnswerCount();
    announce(`Your ${kind} was deleted`);
  } catch (error) {
    say(status, error instanceof Error ? error.message : String(error));
  }
}

/**
 * Replace the post's body with an edit form (Markdown, preview, images; title and tags for
 * the question). The current Markdown is read from the API: an event carries only the HTML.
 * @param {string} ref
 */
async function openPostEditor(ref) {
  const [kind, idText] = ref.split(':');
  const id = Number(idText);
  const post = elementOf(ref);
  const main = post?.querySelector(':scope > .post-main');
  if (!post || !main || main.querySelector(':scope > .post-editor') !== null) return;
  const status = main.querySelector(':scope > .post-status');
  /** @type {QuestionOut} */
  let page;
  try {
    page = await api(`/api/questions/${questionId}`);
  } catch (error) {
    say(status, error instanceof Error ? error.message : String(error));
    return;
  }
  const source = kind === 'question' ? page : page.answers.find((a) => a.id === id);
  if (source === undefined) return;
  const prefix = `edit-${kind}-${id}`;
  const body = /** @type {HTMLTextAreaElement} */ (h('textarea', { id: `${prefix}-body`, rows: 8, required: true, maxlength: 30000 }));
  body.value = source.body_md ?? '';
  /** @type {HTMLInputElement | null} */
  let title = null;
  /** @type {HTMLInputElement | null} */
  let tags = null;
  /** @type {HTMLElement[]} */
  const fields = [];
  if (kind === 'question') {
    title = /** @type {HTMLInputElement} */ (h('input', { id: `${prefix}-title`, type: 'text', required: true, minlength: 5, maxlength: 150 }));
    title.value = page.title;
    tags = /** @type {HTMLInputElement} */ (h('input', { id: `${prefix}-tags`, type: 'text', required: true, autocomplete: 'off' }));
    tags.value = page.tags.join(' ');
    fields.push(h('label', { for: title.id }, ['Title']), title);
  }
  fields.push(h('label', { for: body.id }, ['Body ', h('span', { class: 'hint' }, ['(Markdown)'])]), body, previewRegion(`${prefix}-preview`));
  if (tags !== null) fields.push(h('label', { for: tags.id }, ['Tags ', h('span', { class: 'hint' }, ['(1 to 5, separated by spaces)'])]), tags);
  const picker = imagePicker(`${prefix}-images`);
  const error = h('p', { class: 'form-error', role: 'alert' });
  const save = h('button', { type: 'submit' }, ['Save edits']);
  const cancel = h('button', { type: 'button', class: 'link-button' }, ['Cancel']);
  const form = h('form', { class: 'post-editor stack', 'aria-label': `Edit your ${kind}` }, [...fields, picker.element, error, h('div', { class: 'editor-buttons' }, [save, cancel])]);
  const shown = [...main.querySelectorAll(':scope > .body, :scope > .tags')];
  const close = () => {
    form.remove();
    for (const element of shown) element.removeAttribute('hidden');
  };
  for (const element of shown) element.setAttribute('hidden', '');
  main.prepend(form);
  livePreview(body, byId(`${prefix}-preview`));
  (title ?? body).focus();
  cancel.addEventListener('click', close);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    save.setAttribute('disabled', '');
    try {
      const change = kind === 'question'
        ? { title: title?.value, body: body.value, tags: (tags?.value ?? '').split(/[\s,]+/).filter(Boolean) }
        : { body: body.value };
      /** @type {QuestionOut | AnswerOut} */
      const saved = await api(`/api/${kind}s/${id}`, { method: 'PATCH', body: change });
      const files = [...(picker.input.files ?? [])];
      for (const attachment of await uploadImages(kind === 'question' ? 'question' : 'answer', id, files)) addAttachment(ref, attachment);
      close();
      applyEdit({ post: ref, version: saved.edit_version, body_html: saved.body_html, edited_at: saved.edited_at, ...('title' in saved ? { title: saved.title, tags: saved.tags } : {}) });
      announce(`Your ${kind} was saved`);
    } catch (failure) {
      say(error, failure instanceof Error ? failure.message : String(failure));
      save.removeAttribute('disabled');
    }
  });
}

/** @param {Comment} comment */
function commentItem(comment) {
  /** @type {HTMLElement | null} */
  let actions = null;
  if (me !== null && comment.author === me) {
    const edit = h('button', { type: 'button', class: 'link-button edit-comment', 'aria-label': 'Edit your comment' }, ['edit']);
    const remove = h('button', { type: 'button', class: 'link-button delete-comment', 'aria-label': 'Delete your comment' }, ['delete']);
    edit.addEventListener('click', () => editComment(comment.id));
    remove.addEventListener('click', () => void deleteComment(comment.id));
    actions = h('span', { class: 'comment-actions' }, [edit, remove]);
  }
  return h('li', { id: `comment-${comment.id}`, class: 'comment', 'data-version': comment.version }, [
    h('span', { class: 'comment-body' }, [comment.body]),
    ' – ',
    h('span', { class: 'comment-meta' }, [who(comment.author, comment.author_name), ' ', timeElement(comment.created_at), ' ', editedNote(comment.edited_at)]),
    actions,
  ]);
}

/** @param {number} commentId */
function editComment(commentId) {
  const item = document.getElementById(`comment-${commentId}`);
  const text = item?.querySelector(':scope > .comment-body');
  if (!item || !text || item.querySelector('form') !== null) return;
  const id = `comment-edit-${commentId}`;
  const input = /** @type {HTMLInputElement} */ (h('input', { id, type: 'text', required: true, maxlength: 600, autocomplete: 'off' }));
  input.value = text.textContent ?? '';
  const error = h('p', { class: 'form-error', role: 'alert' });
  const cancel = h('button', { type: 'button', class: 'link-button' }, ['Cancel']);
  const form = h('form', { class: 'comment-edit' }, [
    h('label', { for: id, class: 'visually-hidden' }, ['Edit your comment']),
    h('div', { class: 'inline-field' }, [input, h('button', { type: 'submit' }, ['Save']), cancel]),
    error,
  ]);
  cancel.addEventListener('click', () => form.remove());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      /** @type {CommentOut} */
      const saved = await api(`/api/comments/${commentId}`, { method: 'PATCH', body: { body: input.value } });
      form.remove();
      applyCommentEdit({ id: saved.id, body: saved.body, version: saved.edit_version, edited_at: saved.edited_at });
    } catch (failure) {
      say(error, failure instanceof Error ? failure.message : String(failure));
    }
  });
  item.append(form);
  input.focus();
}

/** @param {number} commentId */
async function deleteComment(commentId) {
  if (!confirm('Delete your comment?')) return;
  try {
    await api(`/api/comments/${commentId}`, { method: 'DELETE' });
    document.getElementById(`comment-${commentId}`)?.remove();
    announce('Your comment was deleted');
  } catch (error) {
    announce(error instanceof Error ? error.message : String(error));
  }
}

/**
 * A comment's new text, if `version` is newer than the one shown.
 * @param {{ id: number, body: string, version: number, edited_at?: string | null }} comment
 */
function applyCommentEdit(comment) {
  const item = document.getElementById(`comment-${comment.id}`);
  if (item === null || comment.version <= Number(item.dataset.version)) return;
  item.dataset.version = String(comment.version);
  const body = item.querySelector('.comment-body');
  if (body !== null) body.textContent = comment.body;
  setEdited(item.querySelector('.comment-meta > .edited'), comment.edited_at);
  flash(item);
}

/**
 * A post's new state after an edit (an `edit` event or the answer to the user's own PATCH),
 * if `version` is newer than the one shown.
 * @param {{ post: string, version: number, body_html: string, edited_at?: string | null, title?: string, tags?: string[] }} edit
 */
function applyEdit(edit) {
  const post = elementOf(edit.post);
  if (post === null || edit.version <= Number(post.dataset.editVersion ?? 0)) return;
  post.dataset.editVersion = String(edit.version);
  const body = post.querySelector(':scope > .post-main > .body');
  body?.replaceChildren(...markdownNodes(edit.body_html)); // data, not markup: see markdownNodes
  if (body) void highlightIn(body);
  if (typeof edit.title === 'string') {
    byId('question-title').textContent = edit.title;
    document.title = `${edit.title} – Herald Q&A`;
  }
  if (Array.isArray(edit.tags)) {
    // The items only: the list may be hidden by an open editor, which shows it again on close.
    post.querySelector(':scope > .post-main > .tags')?.replaceChildren(...tagList(edit.tags.filter((tag) => typeof tag === 'string')).children);
  }
  setEdited(post.querySelector(':scope > .post-main > .meta > .edited'), edit.edited_at);
  flash(body);
}

/** @param {CommentOut} c */
const commentOf = (c) => ({ id: c.id, author: c.author_id, author_name: c.author_name, body: c.body, version: c.edit_version, created_at: c.created_at, edited_at: c.edited_at });

/**
 * The comments of a post and the form to add one.
 * @param {string} ref
 * @param {CommentOut[]} comments
 */
function commentSection(ref, comments) {
  const list = h('ul', { class: 'comment-list' }, comments.map((c) => commentItem(commentOf(c))));
  if (session === null) {
    // No box that only leads to the login page on submit: the link says so first.
    const login = h('a', { href: `/login?next=${encodeURIComponent(location.pathname)}` }, ['Log in to comment']);
    return h('section', { class: 'comments', 'aria-label': 'Comments' }, [list, h('p', { class: 'comment-login' }, [login])]);
  }
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
  return h('section', { class: 'comments', 'aria-label': 'Comments' }, [list, form]);
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
 * @param {{ id: number, author: number, author_name?: string, body_html: string, score: number, score_version: number, edit_version: number, created_at: string, edited_at?: string | null, my_vote?: number, attachments?: AttachmentOut[] }} answer
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
    voteControls(ref, answer.score, answer.score_version, 'answer', answer.my_vote ?? 0),
    h('div', { class: 'post-main' }, [
      h('p', { class: 'accepted-mark' }, ['✓ Accepted answer']),
      markdownElement('div', 'body', answer.body_html),
      gallery(answer.attachments ?? [], 'answer'),
      h('p', { class: 'meta' }, ['answered by ', who(answer.author, answer.author_name), ' ', timeElement(answer.created_at), ' ', editedNote(answer.edited_at), ' ', acceptButton, answer.author === me ? postActions(ref) : null]),
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
    voteControls(ref, q.score, q.score_version, 'question', q.my_vote ?? 0),
    h('div', { class: 'post-main' }, [
      markdownElement('div', 'body', q.body_html),
      gallery(q.attachments ?? [], 'question'),
      tagList(q.tags),
      h('p', { class: 'meta' }, ['asked by ', who(q.author_id, q.author_name), ' ', timeElement(q.created_at), ' ', editedNote(q.edited_at), q.author_id === me ? postActions(ref) : null]),
      h('p', { class: 'post-status', role: 'status' }),
      commentSection(ref, q.comments),
    ]),
  ]);
  const answers = h('div', { id: 'answers' }, q.answers.map((a) => answerArticle(
    { id: a.id, author: a.author_id, author_name: a.author_name, body_html: a.body_html, score: a.score, score_version: a.score_version, edit_version: a.edit_version, created_at: a.created_at, edited_at: a.edited_at, my_vote: a.my_vote, attachments: a.attachments },
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
  void highlightIn(root);
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
      void highlightIn(article);
      flash(article);
      updateAnswerCount();
      announce(`New answer from ${whoText(a.author, a.author_name)}`);
      return;
    }
    case 'comment':
      if (addComment(data.post, data.comment)) announce(`New comment from ${whoText(data.comment.author, data.comment.author_name)}`);
      return;
    case 'comment_edit':
      applyCommentEdit(data.comment);
      return;
    case 'edit': {
      const post = elementOf(data.post);
      if (post === null || data.version <= Number(post.dataset.editVersion ?? 0)) return;
      if (data.body_html === null) {
        view.reload();
        return;
      }
      applyEdit(data);
      return;
    }
    case 'attachment':
      addAttachment(data.post, data.attachment);
      return;
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
  byId('answer-preview-slot').replaceWith(previewRegion('answer-preview'));
  const preview = livePreview(textarea, byId('answer-preview'));
  const picker = imagePicker('answer-images');
  byId('answer-images-slot').replaceWith(picker.element);
  form.querySelector('button[type="submit"]')?.removeAttribute('disabled'); // disabled until now
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    /** @type {string | null} */
    let posted = null;
    try {
      /** @type {AnswerOut & { accepted: boolean }} */
      const answer = await api(`/api/questions/${questionId}/answers`, { method: 'POST', body: { body: textarea.value } });
      posted = `answer:${answer.id}`;
      if (document.getElementById(`answer-${answer.id}`) === null) {
        const article = answerArticle({ ...answer, author: answer.author_id }, [], answer.accepted);
        byId('answers').append(article);
        void highlightIn(article);
        updateAnswerCount();
      }
      textarea.value = '';
      void preview.refresh();
      say(error, '');
      announce('Your answer was posted');
      const files = [...(picker.input.files ?? [])];
      picker.input.value = '';
      for (const attachment of await uploadImages('answer', answer.id, files)) addAttachment(posted, attachment);
    } catch (failure) {
      const message = failure instanceof ApiError ? failure.message : String(failure);
      say(error, posted === null ? message : `Your answer was posted, but an image was not: ${message}`);
    }
  });
}
