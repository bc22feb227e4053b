// @ts-check
/**
 * The ask page (/questions/ask, issue 13, item 3): guidance, a live Markdown preview, tag
 * suggestions from the existing tags (`GET /api/tag-suggestions`), images uploaded to the new
 * question once it exists; then the question's page.
 */
import { boot } from './app.js';
import { byId, h } from './dom.js';
import { imagePicker, livePreview, previewRegion, uploadImages } from './editor.js';
import { TAG } from './finder.js';
import { ApiError, api } from './session.js';

const { session } = boot();
const form = /** @type {HTMLFormElement} */ (byId('ask-page-form'));
const title = /** @type {HTMLInputElement} */ (byId('ask-page-title'));
const body = /** @type {HTMLTextAreaElement} */ (byId('ask-page-body'));
const tags = /** @type {HTMLInputElement} */ (byId('ask-page-tags'));
const suggestions = byId('ask-page-tag-suggestions');
const error = byId('ask-page-form-error');
const status = byId('ask-page-status');
const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));

/** The tag being typed: the last word of the field (lower case), or '' after a space. */
const typedTag = () => (/(?:^|\s)(\S+)$/.exec(tags.value)?.[1] ?? '').toLowerCase();

/** @param {string} name  put in place of the tag being typed */
function takeSuggestion(name) {
  const words = tags.value.split(/\s+/).filter(Boolean);
  if (!/\s$/.test(tags.value)) words.pop();
  if (!words.includes(name)) words.push(name);
  tags.value = `${words.join(' ')} `;
  suggestions.replaceChildren();
  tags.focus();
}

let asked = 0;
async function suggest() {
  const mine = ++asked;
  const prefix = typedTag();
  if (!TAG.test(prefix)) {
    suggestions.replaceChildren();
    return;
  }
  /** @type {{ name: string, questions: number }[]} */
  const found = await api(`/api/tag-suggestions?prefix=${encodeURIComponent(prefix)}`).catch(() => []);
  if (mine !== asked) return;
  suggestions.replaceChildren(...found.map((tag) => {
    const button = h('button', { type: 'button', class: 'tag-suggestion', 'data-tag': tag.name }, [
      tag.name, h('span', { class: 'hint' }, [` ×${tag.questions}`]),
    ]);
    button.addEventListener('click', () => takeSuggestion(tag.name));
    return h('li', {}, [button]);
  }));
}

if (session === null) {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
} else {
  byId('ask-page-preview-slot').replaceWith(previewRegion('ask-page-preview'));
  livePreview(body, byId('ask-page-preview'));
  const picker = imagePicker('ask-page-images');
  byId('ask-page-images-slot').replaceWith(picker.element);
  tags.addEventListener('input', () => void suggest());
  // Asked from a tag's page (/questions/ask?tags=python): its tag is filled in.
  const given = (new URLSearchParams(location.search).get('tags') ?? '').split(/[\s,]+/).filter((tag) => TAG.test(tag));
  if (given.length > 0 && tags.value === '') tags.value = `${given.join(' ')} `;
  submit.removeAttribute('disabled'); // disabled in the HTML until the handler is attached
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    submit.setAttribute('disabled', '');
    /** @type {number | null} */
    let questionId = null;
    try {
      const names = tags.value.split(/[\s,]+/).filter(Boolean);
      /** @type {{ id: number }} */
      const question = await api('/api/questions', { method: 'POST', body: { title: title.value, body: body.value, tags: names } });
      questionId = question.id;
      const files = [...(picker.input.files ?? [])];
      if (files.length > 0) {
        status.textContent = `Uploading ${files.length === 1 ? 'the image' : `${files.length} images`}…`;
        await uploadImages('question', question.id, files);
      }
      location.assign(`/questions/${question.id}`);
    } catch (failure) {
      const message = failure instanceof ApiError ? failure.message : 'Something went wrong; try again.';
      if (questionId === null) {
        error.textContent = message;
      } else {
        // The question was posted; only an image failed: say so and let them go on to it.
        error.replaceChildren(`Your question was posted, but an image was not: ${message}. `, h('a', { href: `/questions/${questionId}` }, ['See your question']));
      }
      status.textContent = '';
      submit.removeAttribute('disabled');
    }
  });
}
