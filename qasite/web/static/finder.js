// @ts-check
/**
 * What a list shows, read from its URL, so every list is a shareable link: the query
 * (`q`, `tag` repeated or `tags` space-separated, `created_from`, `created_to`, `min_score`,
 * `answered`), the sort (`sort`) and the page (`cursor`, the API's `next_cursor`).
 *
 *     const query = readQuery(location.search, pageTag);
 *     api(apiUrl(query, { count: true }));   location.assign(pageUrl(query, { cursor: null }));
 *
 * No DOM here: list.js draws it.
 */

/** The channel grammar's tag alphabet (herald_contract/channels.py). */
export const TAG = /^[a-z0-9.][a-z0-9+#.-]{0,34}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
export const SORTS = /** @type {const} */ (['newest', 'votes', 'activity', 'relevance']);

/**
 * @typedef {object} Query
 * @property {string} q  the full-text query ('' for none)
 * @property {string[]} tags  every tag required, the page's own first
 * @property {string | null} pageTag  the tag of /tags/<name> (not removable)
 * @property {string} sort  as asked ('' for the default)
 * @property {string | null} answered  'true', 'false' or null
 * @property {string | null} createdFrom  YYYY-MM-DD
 * @property {string | null} createdTo  YYYY-MM-DD
 * @property {string | null} minScore  an integer as text
 * @property {string | null} cursor
 * @property {string[]} problems  what in the URL was not understood, in words
 */

/**
 * @param {string} search  location.search
 * @param {string | null} pageTag
 * @returns {Query}
 */
export function readQuery(search, pageTag) {
  const params = new URLSearchParams(search);
  /** @type {string[]} */
  const problems = [];
  const text = (/** @type {string} */ name) => (params.get(name) ?? '').trim() || null;
  const named = [...params.getAll('tag'), ...(params.get('tags') ?? '').split(/[\s,]+/)].map((t) => t.trim().toLowerCase()).filter(Boolean);
  const tags = [...new Set([...(pageTag === null ? [] : [pageTag]), ...named])];
  for (const tag of tags) if (!TAG.test(tag)) problems.push(`“${tag}” is not a tag: tags are letters a-z, digits and + # . - (up to 35).`);
  const sort = text('sort') ?? '';
  if (sort !== '' && !SORTS.includes(/** @type {any} */ (sort))) problems.push(`Unknown sort “${sort}”: use newest, votes, activity or relevance.`);
  const answered = text('answered');
  if (answered !== null && answered !== 'true' && answered !== 'false') problems.push('“answered” is true or false.');
  const createdFrom = text('created_from');
  const createdTo = text('created_to');
  for (const date of [createdFrom, createdTo]) if (date !== null && !DATE.test(date)) problems.push(`“${date}” is not a date (YYYY-MM-DD).`);
  const minScore = text('min_score');
  if (minScore !== null && !/^-?\d{1,9}$/.test(minScore)) problems.push(`The minimum score “${minScore}” is not a whole number.`);
  return { q: text('q') ?? '', tags: tags.filter((t) => TAG.test(t)), pageTag, sort, answered, createdFrom, createdTo, minScore, cursor: text('cursor'), problems };
}

/** The sort the API applies: relevance with words, else newest. @param {Query} query */
export const effectiveSort = (query) => query.sort || (query.q ? 'relevance' : 'newest');

/**
 * The API's URL for this query.
 * @param {Query} query
 * @param {{ count?: boolean, limit?: number }} [options]
 */
export function apiUrl(query, { count = false, limit = 30 } = {}) {
  const params = new URLSearchParams();
  if (query.q) params.set('q', query.q);
  for (const tag of query.tags) params.append('tag', tag);
  if (query.sort) params.set('sort', query.sort);
  if (query.answered !== null) params.set('answered', query.answered);
  if (query.createdFrom !== null) params.set('created_from', `${query.createdFrom}T00:00:00Z`);
  if (query.createdTo !== null) params.set('created_to', `${query.createdTo}T00:00:00Z`);
  if (query.minScore !== null) params.set('min_score', query.minScore);
  if (query.cursor !== null) params.set('cursor', query.cursor);
  if (count) params.set('count', 'true');
  params.set('limit', String(limit));
  return `/api/questions?${params}`;
}

/**
 * This page's URL for the query with *changes* (a `null` removes a field); the page's own tag
 * stays in the path. Any change but the cursor starts again from the first page.
 * @param {Query} query
 * @param {Partial<Query>} changes
 * @param {string} [path]
 */
export function pageUrl(query, changes, path = location.pathname) {
  const next = { ...query, ...changes };
  if (!('cursor' in changes)) next.cursor = null;
  const params = new URLSearchParams();
  if (next.q) params.set('q', next.q);
  for (const tag of next.tags) if (tag !== next.pageTag) params.append('tag', tag);
  if (next.sort) params.set('sort', next.sort);
  if (next.answered !== null) params.set('answered', next.answered);
  if (next.createdFrom !== null) params.set('created_from', next.createdFrom);
  if (next.createdTo !== null) params.set('created_to', next.createdTo);
  if (next.minScore !== null) params.set('min_score', next.minScore);
  if (next.cursor !== null) params.set('cursor', next.cursor);
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/**
 * The live feed that announces this list's new questions, or why there is none: a new
 * question is the newest one, so it belongs at the top of a list sorted by newest, and its
 * tags, score (0), answers (none) and time are known, so the page can tell whether it
 * matches. Whether it matches words is the search engine's to say (stemming, ranking): a
 * text search has no live count, nor has a list sorted by votes or activity.
 * @param {Query} query
 * @returns {{ channel: string } | { none: string }}
 */
export function liveFeed(query) {
  if (query.q) return { none: 'A text search is not updated live: search again for new questions.' };
  if (effectiveSort(query) !== 'newest') return { none: 'Only the newest-first list counts new questions live.' };
  return { channel: query.tags.length > 0 ? `tag:${query.tags[0]}` : 'questions:new' };
}

/**
 * Whether an announced new question belongs in this list.
 * @param {Query} query
 * @param {{ tags?: unknown, created_at?: unknown }} event
 */
export function matches(query, event) {
  const tags = Array.isArray(event.tags) ? event.tags : [];
  if (!query.tags.every((tag) => tags.includes(tag))) return false;
  if (query.answered === 'true') return false;
  if (query.minScore !== null && Number(query.minScore) > 0) return false;
  const day = typeof event.created_at === 'string' ? event.created_at.slice(0, 10) : '';
  if (query.createdTo !== null && day >= query.createdTo) return false;
  if (query.createdFrom !== null && day < query.createdFrom) return false;
  return true;
}
