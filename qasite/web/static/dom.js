// @ts-check
/** Small DOM helpers shared by the page scripts. */

/** @typedef {Node | string | number | null | undefined | false} Child */

/**
 * An element with attributes and children; `null`/`false` attributes and children are left out.
 * Text children become text nodes (never HTML).
 * @param {string} tag
 * @param {Record<string, string | number | boolean | null | undefined>} [attrs]
 * @param {Child[]} [children]
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, children = []) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === 'number' ? String(child) : child);
  }
  return element;
}

/**
 * The element with this id; throws when the page lacks it (a template bug).
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`no element #${id}`);
  return element;
}

/**
 * The elements and attributes of the Q&A core's Markdown output: the allowlist of
 * qasite/domain/rendering.py (markdown-it with raw HTML off, then nh3). Keep the two in step.
 * @type {Record<string, readonly string[]>}
 */
const MARKDOWN = {
  a: ['href', 'title'],
  blockquote: [], br: [], code: [], del: [], em: [],
  h1: [], h2: [], h3: [], h4: [], h5: [], h6: [],
  hr: [],
  img: ['src', 'alt', 'title'],
  li: [], ol: [], p: [], pre: [], strong: [],
  table: [], tbody: [], td: [], th: [], thead: [], tr: [], ul: [],
};
/** Elements whose content is code, not text: dropped whole (any other unknown element is
 * replaced by its content). */
const DROPPED = new Set(['script', 'style', 'template', 'noscript', 'iframe', 'object', 'svg', 'math', 'title', 'textarea', 'select']);
/** URL schemes a link or an image may have (resolved against the page, so relative is fine). */
const SCHEMES = { href: new Set(['http:', 'https:', 'mailto:']), src: new Set(['http:', 'https:']) };
const ALIGNMENT = /^\s*text-align\s*:\s*(left|right|center)\s*;?\s*$/i;

/**
 * The nodes of a Markdown body (`body_html`, rendered and sanitized by the Q&A core), built
 * here with createElement from an inert parse, whatever the string holds.
 *
 * The HTML may come from a publication, and anything that can reach Redis can publish: it is
 * not trusted. It is parsed by DOMParser into a document that has no browsing context (no
 * script runs, nothing loads, a `<meta http-equiv=refresh>` moves nothing), then copied into
 * new elements of this page: only the elements and attributes of the Markdown allowlist
 * ({@link MARKDOWN}), links and images only with http(s) (and mailto) URLs, text as text
 * nodes. Nothing is serialized back to HTML, so no string is parsed into the page itself:
 * what the Q&A core produces comes out unchanged, anything else loses what Markdown cannot
 * produce (event handlers, styles, ids, classes, frames, forms, scripts, refreshes).
 * @param {string} html
 * @returns {Node[]}
 */
export function markdownNodes(html) {
  const inert = new DOMParser().parseFromString(typeof html === 'string' ? html : '', 'text/html');
  return copyChildren(inert.body);
}

/**
 * An element holding a Markdown body (see {@link markdownNodes}).
 * @param {string} tag
 * @param {string} className
 * @param {string} html
 */
export function markdownElement(tag, className, html) {
  return h(tag, { class: className }, markdownNodes(html));
}

/**
 * @param {Node} parent
 * @returns {Node[]}
 */
function copyChildren(parent) {
  /** @type {Node[]} */
  const copies = [];
  for (const child of parent.childNodes) copies.push(...copyNode(child));
  return copies;
}

/**
 * @param {Node} node  a node of the inert document
 * @returns {Node[]}  its copy in this page: none, one, or (an unknown element) its content
 */
function copyNode(node) {
  if (node.nodeType === Node.TEXT_NODE) return [document.createTextNode(node.textContent ?? '')];
  if (node.nodeType !== Node.ELEMENT_NODE) return []; // comments, processing instructions
  const source = /** @type {Element} */ (node);
  const tag = source.localName;
  if (source.namespaceURI !== 'http://www.w3.org/1999/xhtml' || DROPPED.has(tag)) return [];
  const allowed = Object.hasOwn(MARKDOWN, tag) ? MARKDOWN[tag] : null;
  if (allowed === null) return copyChildren(source);
  const element = document.createElement(tag);
  for (const name of allowed) {
    const value = source.getAttribute(name);
    if (value === null) continue;
    if (name === 'href' || name === 'src') {
      const url = safeUrl(value, SCHEMES[name]);
      if (url !== null) element.setAttribute(name, url);
    } else {
      element.setAttribute(name, value);
    }
  }
  if (tag === 'a') element.setAttribute('rel', 'nofollow noopener');
  // Code blocks and tables scroll inside themselves at any width: reachable by keyboard too.
  if (tag === 'pre' || tag === 'table') element.tabIndex = 0;
  if (tag === 'th' || tag === 'td') {
    // The one style Markdown tables carry; set through the CSSOM (the CSP forbids style attributes' text).
    const align = ALIGNMENT.exec(source.getAttribute('style') ?? '');
    if (align !== null) element.style.textAlign = align[1].toLowerCase();
  }
  element.append(...copyChildren(source));
  return [element];
}

/**
 * `value` if it is a URL with one of `schemes` once resolved against the page, else null.
 * @param {string} value
 * @param {Set<string>} schemes
 */
function safeUrl(value, schemes) {
  try {
    return schemes.has(new URL(value, location.href).protocol) ? value : null;
  } catch {
    return null;
  }
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

/**
 * A `<time>` element: "3 minutes ago", with the exact time in `datetime` and `title`.
 * @param {string} iso
 */
export function timeElement(iso) {
  const date = new Date(iso);
  return h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, [ago(date)]);
}

/** Bring every `<time>` of the page up to date ("just now" does not stay true). */
export function refreshTimes() {
  for (const element of document.querySelectorAll('time[datetime]')) {
    element.textContent = ago(new Date(element.getAttribute('datetime') ?? ''));
  }
}

/** @param {Date} date */
function ago(date) {
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  /** @type {[Intl.RelativeTimeFormatUnit, number][]} */
  const units = [['day', 86400], ['hour', 3600], ['minute', 60]];
  let text = relative.format(Math.min(0, seconds), 'second');
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) {
      text = relative.format(Math.trunc(seconds / size), unit);
      break;
    }
  }
  return Math.abs(seconds) < 10 ? 'just now' : text;
}

/**
 * Say `text` to screen readers through the page's polite live region.
 * @param {string} text
 */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (region === null) return;
  region.textContent = '';
  // A separate task, so that the same text said twice is announced twice.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/**
 * "1 answer", "2 answers".
 * @param {number} count
 * @param {string} noun
 */
export function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

const calm = matchMedia('(prefers-reduced-motion: reduce)');

/**
 * Draw the eye to something that just changed live (a soft yellow fading out), unless the
 * person asked for reduced motion. Web Animations: no classes or style attributes touched.
 * @param {Element | null | undefined} element
 */
export function flash(element) {
  if (!element || calm.matches || typeof element.animate !== 'function') return;
  element.animate([{ backgroundColor: '#fff8c5' }, { backgroundColor: 'transparent' }], { duration: 1600, easing: 'ease-out' });
}
