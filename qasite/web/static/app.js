// @ts-check
/**
 * What every page has: the session, one HeraldClient, the header (sign-in links or the user's
 * name, the inbox badge and its dropdown, log out) and the connection indicator.
 *
 *     const { client, session, inbox } = boot();
 *
 * `window.herald` exposes the client and the per-channel counters of live.js, for people
 * debugging a page and for the end-to-end tests.
 */
import { HeraldClient } from '@herald/client';
import { announce, byId, h, plural, refreshTimes, timeElement } from './dom.js';
import { follow, stats } from './live.js';
import { api, loadSession, logOut, socketToken } from './session.js';

/** @typedef {import('./session.js').Session} Session */

/**
 * An inbox item as the page keeps it (the API's shape; events are converted to it).
 * @typedef {object} InboxItem
 * @property {number} id
 * @property {string} kind  answer, comment or accepted
 * @property {string | null} [actor_name]  who did it (null without an actor)
 * @property {number | null} question_id
 * @property {string | null} [question_title]  the question's title (null without a question)
 * @property {number | null} answer_id
 * @property {string} excerpt
 * @property {string} created_at
 * @property {boolean} read
 */

/**
 * @typedef {object} InboxState
 * @property {number} unread
 * @property {InboxItem[]} items  newest first
 */

/**
 * @typedef {object} Inbox
 * @property {InboxState} state
 * @property {(listener: (state: InboxState) => void) => void} listen
 * @property {(item: InboxItem) => Promise<void>} markRead
 * @property {() => Promise<void>} markAllRead
 */

/** @param {string} name */
function meta(name) {
  return document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';
}

/**
 * The fleet's URL for this user. The query names the user so that tabs signed in as
 * different users (or anonymous) never share a socket: the client shares by URL.
 * @param {Session | null} session
 */
function socketUrl(session) {
  const url = new URL(meta('herald-socket-url'), location.href);
  url.searchParams.set('as', session === null ? 'anonymous' : String(session.user.id));
  return url.toString();
}

/**
 * The header's indicator says what is true of the page's updates (docs/pages.md): "Live",
 * "Updates delayed" while the fleet's Redis is down (the socket is fine, publications wait),
 * "Reconnecting…" while there is no socket, "Offline" once stopped.
 * @param {HeraldClient} client
 */
function showConnection(client) {
  const indicator = byId('connection');
  const labels = { live: 'Live', delayed: 'Updates delayed', reconnecting: 'Reconnecting…', disconnected: 'Offline' };
  const show = () => {
    indicator.dataset.state = client.state;
    indicator.dataset.status = client.status;
    indicator.textContent = labels[client.status];
  };
  client.on('state', show);
  client.on('status', show);
  show();
}

/** @param {{ kind: string }} item */
function describe(item) {
  if (item.kind === 'answer') return 'New answer to your question';
  if (item.kind === 'comment') return 'New comment on your post';
  if (item.kind === 'accepted') return 'Your answer was accepted';
  return 'Notification';
}

/**
 * The inbox of the signed-in user, kept live on `user:<id>`: a server-side subscription (the
 * socket token names it in `subs`), so the worker subscribes it during the connect and
 * `follow` finds it live with no subscribe command; a reconnect sends its position with the
 * connect and gets what it missed behind the reply (docs/protocol.md#server-side-subscriptions).
 * @param {HeraldClient} client
 * @param {number} userId
 * @returns {Inbox}
 */
function startInbox(client, userId) {
  /** @type {InboxState} */
  const state = { unread: 0, items: [] };
  /** @type {Set<(state: InboxState) => void>} */
  const listeners = new Set();
  const changed = () => {
    for (const listener of listeners) listener(state);
  };
  /** The question this page shows, if it is a question page (issue 13, item 6). */
  const shown = document.body.dataset.page === 'question' ? Number(document.querySelector('main')?.dataset.question) : null;
  /** @param {InboxItem} item */
  const viewing = (item) => shown !== null && item.question_id === shown && document.visibilityState === 'visible';
  /** Viewing a question reads its items: marked read here and by the API (published). */
  const markQuestionRead = async (/** @type {number | null} */ questionId) => {
    if (questionId === null) return;
    /** @type {{ unread: number }} */
    const result = await api(`/api/inbox/questions/${questionId}/read`, { method: 'POST' }).catch(() => null);
    if (result === null) return;
    for (const item of state.items) if (item.question_id === questionId) item.read = true;
    state.unread = result.unread;
    changed();
  };
  let markedOnLoad = false;
  follow(client, `user:${userId}`, {
    load: () => api('/api/inbox?limit=20'),
    render: (/** @type {InboxState} */ page) => {
      state.unread = page.unread;
      state.items = page.items;
      changed();
      if (shown !== null && !markedOnLoad) {
        markedOnLoad = true; // after the load, so the marks are not undone by it
        void markQuestionRead(shown);
      }
    },
    apply: (/** @type {any} */ data) => {
      if (data?.type === 'inbox') {
        const item = data.item;
        if (!state.items.some((known) => known.id === item.id)) {
          // The loaded item's shape (issue 13, item 6): a live item reads the same.
          const added = {
            id: item.id,
            kind: item.kind,
            actor_name: item.actor_name ?? null,
            question_id: item.question,
            question_title: item.question_title ?? null,
            answer_id: item.answer,
            excerpt: item.excerpt,
            created_at: item.created_at,
            read: false,
          };
          state.items.unshift(added);
          announce(`${describe(item)}: ${item.excerpt}`);
          if (viewing(added)) void markQuestionRead(added.question_id);
        }
        state.unread = data.unread;
      } else if (data?.type === 'unread') {
        state.unread = data.unread;
        if (data.unread === 0) for (const item of state.items) item.read = true;
      } else {
        return;
      }
      changed();
    },
  });
  return {
    state,
    listen: (listener) => {
      listeners.add(listener);
      listener(state);
    },
    markRead: async (item) => {
      if (item.read) return;
      /** @type {{ unread: number }} */
      const result = await api(`/api/inbox/${item.id}/read`, { method: 'POST' });
      item.read = true;
      state.unread = result.unread;
      changed();
    },
    markAllRead: async () => {
      await api('/api/inbox/read-all', { method: 'POST' });
      for (const item of state.items) item.read = true;
      state.unread = 0;
      changed();
    },
  };
}

/**
 * One inbox item as a list entry linking to its question.
 * @param {InboxItem} item
 * @param {Inbox} inbox
 */
export function inboxEntry(item, inbox) {
  const href = item.question_id === null ? '/inbox' : `/questions/${item.question_id}${item.answer_id === null ? '' : `#answer-${item.answer_id}`}`;
  const link = h('a', { href, class: 'inbox-link' }, [
    h('span', { class: 'inbox-kind' }, [describe(item)]),
    item.actor_name ? h('span', { class: 'inbox-actor' }, [`from ${item.actor_name}`]) : null,
    item.question_title ? h('span', { class: 'inbox-question' }, [`on “${item.question_title}”`]) : null,
    h('span', { class: 'inbox-excerpt' }, [item.excerpt]),
    timeElement(item.created_at),
  ]);
  link.addEventListener('click', () => void inbox.markRead(item).catch(() => undefined));
  return h('li', { class: item.read ? 'inbox-item' : 'inbox-item unread', 'data-item': item.id }, [link]);
}

/**
 * The header's inbox button with the unread badge, and its dropdown.
 * @param {HTMLElement} container
 * @param {Inbox} inbox
 */
function inboxDropdown(container, inbox) {
  const badge = h('span', { class: 'badge', id: 'inbox-unread' }, ['0']);
  const button = h('button', { type: 'button', class: 'inbox-button', 'aria-expanded': 'false', 'aria-controls': 'inbox-menu', id: 'inbox-button' }, ['Inbox ', badge]);
  const list = h('ul', { class: 'inbox-list' });
  const markAll = h('button', { type: 'button', class: 'link-button' }, ['Mark all read']);
  const menu = h('div', { id: 'inbox-menu', class: 'inbox-menu', role: 'region', 'aria-label': 'Inbox', hidden: true }, [
    h('div', { class: 'inbox-menu-head' }, [h('strong', {}, ['Inbox']), markAll]),
    list,
    h('p', { class: 'inbox-menu-foot' }, [h('a', { href: '/inbox' }, ['See all'])]),
  ]);
  container.append(h('div', { class: 'inbox' }, [button, menu]));

  /** @param {boolean} open */
  const setOpen = (open) => {
    menu.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
  };
  button.addEventListener('click', () => setOpen(menu.hidden));
  markAll.addEventListener('click', () => void inbox.markAllRead());
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !menu.hidden) {
      setOpen(false);
      button.focus();
    }
  });
  document.addEventListener('click', (event) => {
    if (!menu.hidden && event.target instanceof Node && !container.contains(event.target)) setOpen(false);
  });
  inbox.listen((state) => {
    badge.textContent = String(state.unread);
    badge.dataset.count = String(state.unread);
    button.setAttribute('aria-label', `Inbox, ${plural(state.unread, 'unread item')}`);
    list.replaceChildren(
      ...(state.items.length === 0 ? [h('li', { class: 'empty' }, ['Nothing yet.'])] : state.items.slice(0, 8).map((item) => inboxEntry(item, inbox))),
    );
  });
}

/**
 * @param {Session | null} session
 * @param {HeraldClient} client
 * @param {Inbox | null} inbox
 */
function renderHeader(session, client, inbox) {
  const account = byId('account');
  if (session === null) {
    const next = encodeURIComponent(location.pathname + location.search);
    account.replaceChildren(h('a', { href: `/login?next=${next}` }, ['Log in']), h('a', { href: '/signup', class: 'button' }, ['Sign up']));
    return;
  }
  account.replaceChildren();
  if (inbox !== null) inboxDropdown(account, inbox);
  const logout = h('button', { type: 'button', class: 'link-button' }, ['Log out']);
  logout.addEventListener('click', async () => {
    client.close();
    await logOut();
    location.assign('/');
  });
  account.append(h('span', { class: 'user-name', id: 'user-name' }, [session.user.display_name]), logout);
}

/**
 * Start the page: one client for this tab (its socket shared with the site's other tabs).
 * @returns {{ client: HeraldClient, session: Session | null, inbox: Inbox | null }}
 */
export function boot() {
  const session = loadSession();
  const client = new HeraldClient(socketUrl(session), {
    getToken: session === null ? () => null : socketToken,
  });
  showConnection(client);
  setInterval(refreshTimes, 30_000);
  const inbox = session === null ? null : startInbox(client, session.user.id);
  renderHeader(session, client, inbox);
  client.connect();
  // Closing the tab hands a shared socket to another tab at once (the lock would anyway).
  addEventListener('pagehide', () => client.close());
  addEventListener('pageshow', (event) => {
    if (event.persisted) location.reload(); // back from the page cache with a closed client
  });
  /** Why the client was (re)connecting each time: a close code, 0 for a client-side cause. */
  const closes = /** @type {number[]} */ ([]);
  client.on('connecting', (info) => closes.push(info.code));
  Object.assign(window, { herald: { client, stats, closes } });
  return { client, session, inbox };
}
