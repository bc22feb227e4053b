// @ts-check
/**
 * The inbox page: every item of the signed-in user. The newest page is the header's live
 * inbox (app.js); "Show older items" pages back with the API's cursor (the id of the oldest
 * item shown), older items appended below.
 */
import { boot, inboxEntry } from './app.js';
import { byId, h, plural } from './dom.js';
import { api } from './session.js';

/** @typedef {import('./app.js').InboxItem} InboxItem */

const PAGE = 20;
const { inbox } = boot();
const list = byId('inbox-items');
const summary = byId('inbox-summary');
const olderButton = /** @type {HTMLButtonElement} */ (byId('inbox-older'));
if (inbox === null) {
  summary.replaceChildren(h('a', { href: '/login?next=/inbox' }, ['Log in']), ' to see your inbox.');
} else {
  /** @type {InboxItem[]} */
  const older = [];
  /** @type {boolean | null} null until known: the live page is full, so there may be more */
  let more = null;
  const render = () => {
    const live = inbox.state.items;
    const known = new Set(live.map((item) => item.id));
    const items = [...live, ...older.filter((item) => !known.has(item.id))];
    summary.textContent = `${plural(inbox.state.unread, 'unread item')}.`;
    list.replaceChildren(...(items.length === 0 ? [h('li', { class: 'empty' }, ['Nothing yet.'])] : items.map((item) => inboxEntry(item, inbox))));
    olderButton.hidden = more === false || (more === null && live.length < PAGE);
  };
  const markAll = byId('mark-all-read');
  markAll.hidden = false;
  markAll.addEventListener('click', () => {
    for (const item of older) item.read = true;
    void inbox.markAllRead();
  });
  olderButton.addEventListener('click', async () => {
    const shown = [...inbox.state.items, ...older];
    if (shown.length === 0) return;
    const before = Math.min(...shown.map((item) => item.id));
    olderButton.disabled = true;
    try {
      /** @type {{ items: InboxItem[], next_cursor: string | null }} */
      const page = await api(`/api/inbox?limit=${PAGE}&before=${before}`);
      older.push(...page.items);
      more = page.next_cursor !== null;
      render();
      const first = page.items[0];
      if (first !== undefined) /** @type {HTMLElement | null} */ (list.querySelector(`[data-item="${first.id}"] a`))?.focus(); // keyboard users continue where the new items start
    } finally {
      olderButton.disabled = false;
    }
  });
  inbox.listen(render);
}
