// @ts-check
/**
 * What the ask, answer and edit forms share (issue 13, item 3): a Markdown field with a live
 * preview rendered by the Q&A core (`POST /api/preview`: the same renderer and sanitizer as a
 * posted body, shown through dom.js's markdownNodes like any post), an image picker, and the
 * upload of the picked images to a post once it exists (`POST /api/{questions|answers}/{id}/
 * attachments`); an attached image is shown in its post.
 */
import { highlightIn } from './code.js';
import { h, markdownNodes } from './dom.js';
import { ApiError, accessToken, api } from './session.js';

/** Types the Q&A core accepts (it reads the type from the bytes; this only filters the picker). */
export const IMAGE_TYPES = 'image/png,image/jpeg,image/gif,image/webp';
/** The pause after the last keystroke before a preview is asked for. */
const PREVIEW_DELAY_MS = 300;

/**
 * @typedef {object} AttachmentOut
 * @property {number} id
 * @property {string} url
 * @property {string} content_type
 * @property {number} width
 * @property {number} height
 */

/**
 * Keep `preview` showing `textarea`'s Markdown as the Q&A core renders it.
 * @param {HTMLTextAreaElement} textarea
 * @param {HTMLElement} preview
 * @returns {{ refresh: () => Promise<void> }}
 */
export function livePreview(textarea, preview) {
  let asked = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const refresh = async () => {
    const mine = ++asked;
    const body = textarea.value;
    if (body.trim() === '') {
      preview.replaceChildren(h('p', { class: 'hint' }, ['The preview of your text shows here.']));
      preview.dataset.state = 'empty';
      return;
    }
    preview.dataset.state = 'loading';
    try {
      /** @type {{ body_html: string }} */
      const rendered = await api('/api/preview', { method: 'POST', body: { body } });
      if (mine !== asked) return; // a newer text is being rendered
      preview.replaceChildren(...markdownNodes(rendered.body_html));
      preview.dataset.state = 'shown';
      await highlightIn(preview);
    } catch (failure) {
      if (mine !== asked) return;
      preview.replaceChildren(h('p', { class: 'form-error' }, [`No preview: ${failure instanceof Error ? failure.message : String(failure)}`]));
      preview.dataset.state = 'failed';
    }
  };
  textarea.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => void refresh(), PREVIEW_DELAY_MS);
  });
  void refresh();
  return { refresh };
}

/**
 * The preview region for a field (`<section>` labelled "Preview").
 * @param {string} id
 */
export function previewRegion(id) {
  return h('section', { class: 'preview', 'aria-labelledby': `${id}-heading` }, [
    h('h3', { id: `${id}-heading`, class: 'preview-heading' }, ['Preview']),
    h('div', { id, class: 'body preview-body' }),
  ]);
}

/**
 * A labelled image picker (several images; PNG, JPEG, GIF or WebP).
 * @param {string} id
 * @returns {{ element: HTMLElement, input: HTMLInputElement }}
 */
export function imagePicker(id) {
  const input = /** @type {HTMLInputElement} */ (h('input', { id, type: 'file', accept: IMAGE_TYPES, multiple: true, class: 'image-input' }));
  const element = h('div', { class: 'image-picker' }, [
    h('label', { for: id }, ['Images ', h('span', { class: 'hint' }, ['(optional; PNG, JPEG, GIF or WebP, shown with the post)'])]),
    input,
  ]);
  return { element, input };
}

/**
 * Upload `files` to a post of the signed-in user, in order; the attachments made.
 * @param {'question' | 'answer'} kind
 * @param {number} postId
 * @param {Iterable<File>} files
 * @returns {Promise<AttachmentOut[]>}
 */
export async function uploadImages(kind, postId, files) {
  /** @type {AttachmentOut[]} */
  const attached = [];
  for (const file of files) {
    const send = (/** @type {string | null} */ token) => fetch(`/api/${kind}s/${postId}/attachments`, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/octet-stream', ...(token === null ? {} : { Authorization: `Bearer ${token}` }) },
      body: file,
    });
    let response = await send(await accessToken());
    if (response.status === 401) response = await send(await accessToken(true));
    /** @type {any} */
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiError(response.status, data?.error?.reason ?? 'error', `${file.name}: ${data?.error?.message ?? response.statusText}`);
    }
    attached.push(data);
  }
  return attached;
}

/**
 * An attached image as shown in its post.
 * @param {AttachmentOut} attachment
 * @param {string} noun  question or answer
 */
export function attachmentFigure(attachment, noun) {
  return h('figure', { id: `attachment-${attachment.id}`, class: 'attachment' }, [
    h('a', { href: attachment.url }, [
      h('img', { src: attachment.url, alt: `Image ${attachment.id} attached to this ${noun}`, width: attachment.width, height: attachment.height, loading: 'lazy' }),
    ]),
  ]);
}
