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
 * An element built from HTML the Q&A core rendered and sanitized (Markdown bodies).
 * @param {string} tag
 * @param {string} className
 * @param {string} sanitizedHtml
 */
export function trustedHtml(tag, className, sanitizedHtml) {
  const element = h(tag, { class: className });
  element.innerHTML = sanitizedHtml;
  return element;
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
