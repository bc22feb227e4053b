// @ts-check
/**
 * Syntax highlighting of the code blocks of a post (highlight.js, vendored in ./vendor/ and
 * loaded on first use: pages without code never fetch it).
 *
 * The Q&A core's sanitizer keeps no class on `<code>`, so the language is detected. The
 * library returns HTML; it is parsed inert (DOMParser) and only its `<span class="hljs-…">`
 * elements and text are copied into the page, as dom.js does for post bodies: no string is
 * ever parsed into the page itself.
 */

/** Blocks longer than this are left plain (detection runs every grammar over the text). */
const MAX_CHARS = 20_000;

/** @type {Promise<import('./vendor/highlight.min.js').HLJSApi> | null} */
let library = null;

function load() {
  if (library === null) {
    const link = document.createElement('link');
    link.rel = 'stylesheet';
    link.href = '/static/web/vendor/highlight-github.min.css';
    document.head.append(link);
    library = import('./vendor/highlight.min.js').then((module) => module.default);
  }
  return library;
}

/**
 * Highlight every `pre > code` under `root` not highlighted yet.
 * @param {ParentNode} root
 * @returns {Promise<void>}
 */
export async function highlightIn(root) {
  const blocks = [...root.querySelectorAll('pre > code:not([data-highlighted])')];
  if (blocks.length === 0) return;
  const hljs = await load();
  for (const block of blocks) {
    const text = block.textContent ?? '';
    block.setAttribute('data-highlighted', '');
    if (text.length > MAX_CHARS || !block.isConnected) continue;
    const result = hljs.highlightAuto(text);
    if (result.language === undefined) continue;
    const inert = new DOMParser().parseFromString(`<code>${result.value}</code>`, 'text/html');
    const parsed = inert.body.firstElementChild;
    if (parsed === null || parsed.textContent !== text) continue; // not the same text: keep it plain
    block.replaceChildren(...copySpans(parsed));
    block.setAttribute('data-language', result.language);
  }
}

/**
 * @param {Node} parent  a node of the inert document
 * @returns {Node[]}
 */
function copySpans(parent) {
  /** @type {Node[]} */
  const copies = [];
  for (const node of parent.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      copies.push(document.createTextNode(node.textContent ?? ''));
    } else if (node instanceof Element) {
      const classes = (node.getAttribute('class') ?? '').split(/\s+/).filter((c) => /^hljs-[a-z_-]+$/.test(c) || /^[a-z_]+_$/.test(c));
      if (node.localName !== 'span' || classes.length === 0) {
        copies.push(...copySpans(node));
        continue;
      }
      const span = document.createElement('span');
      span.className = classes.join(' ');
      span.append(...copySpans(node));
      copies.push(span);
    }
  }
  return copies;
}
