// @ts-check
/**
 * Keeping a page's view of one channel in step with the server: subscribe first, then load.
 *
 *     follow(client, 'question:42', { load, render, apply })
 *
 * The rule (docs/pages.md, "No gap between the load and the subscription"): the state is
 * loaded over HTTP only *after* a subscribe reply that starts a fresh position (recovery `none` or `failed`). The Q&A core publishes an
 * event only after the transaction it describes has committed (transactional outbox), so every
 * event up to the reply's offset was committed before the load began and is in the loaded
 * state; every later one arrives as a publication. Publications that arrive while the state
 * is loading are held and applied, in order, on top of it. Payloads carry state with versions,
 * so one the load already included is harmless when applied again. After a reconnect the
 * client recovers from its position (`recovered`) and nothing needs loading.
 *
 * If the socket is slow to come up, the state is loaded once anyway after `provisionalMs`, so
 * the page is never empty while the fleet is away; the first subscribe reply loads it again.
 */

/** @typedef {import('@herald/client').HeraldClient} HeraldClient */
/** @typedef {import('@herald/client').Publication} Publication */

/**
 * @template S
 * @typedef {object} FollowOptions
 * @property {() => Promise<S>} load  fetch the current state over HTTP
 * @property {(state: S) => void} render  replace the view with `state`
 * @property {(data: unknown, publication: Publication) => void} apply  apply one publication
 * @property {(message: string) => void} [onError]  a load failed (it is retried)
 * @property {number} [provisionalMs]
 */

/**
 * Counters per channel, for people debugging a page and for the end-to-end tests.
 * @typedef {object} FollowStats
 * @property {number} loads  states loaded and rendered
 * @property {number} applied  publications applied
 * @property {number} recoveryFailed  subscribe replies that said `failed`
 * @property {number} recovered  subscribe replies that said `recovered`
 * @property {number} held  publications waiting for the state being loaded
 * @property {string} state  the subscription's state
 */

/** @type {Map<string, FollowStats>} */
export const stats = new Map();

/**
 * @template S
 * @param {HeraldClient} client
 * @param {string} channel
 * @param {FollowOptions<S>} options
 * @returns {{ reload: () => void, stats: FollowStats }}
 */
export function follow(client, channel, options) {
  /** @type {FollowStats} */
  const counters = { loads: 0, applied: 0, recoveryFailed: 0, recovered: 0, held: 0, state: 'unsubscribed' };
  stats.set(channel, counters);
  let generation = 0; // bumped by every fresh position: a load begun before it is stale
  let loading = false;
  let hasState = false;
  /** @type {Publication[]} */
  let held = [];

  /** @param {Publication} publication */
  const deliver = (publication) => {
    counters.applied++;
    options.apply(publication.data, publication);
  };

  const sync = async () => {
    const mine = ++generation;
    loading = true;
    for (let attempt = 0; ; attempt++) {
      try {
        const state = await options.load();
        if (mine !== generation) return; // a newer load is on its way
        options.render(state);
        counters.loads++;
        hasState = true;
        loading = false;
        const pending = held;
        held = [];
        counters.held = 0;
        for (const publication of pending) deliver(publication);
        return;
      } catch (error) {
        if (mine !== generation) return;
        options.onError?.(error instanceof Error ? error.message : String(error));
        await new Promise((resolve) => setTimeout(resolve, Math.min(8000, 250 * 2 ** attempt)));
        if (mine !== generation) return;
      }
    }
  };

  const subscription = client.subscribe(channel, (publication) => {
    if (loading || !hasState) counters.held = held.push(publication);
    else deliver(publication);
  });
  subscription.on('state', (state) => {
    counters.state = state;
  });
  subscription.on('subscribed', (event) => {
    if (event.recovery === 'recovered') {
      counters.recovered++;
      return;
    }
    if (event.recovery === 'failed') counters.recoveryFailed++;
    // Everything held so far is at or before this position, so the load below includes it.
    held = [];
    counters.held = 0;
    void sync();
  });
  const timer = setTimeout(() => {
    if (!hasState && !loading) void sync();
  }, options.provisionalMs ?? 1500);
  subscription.on('subscribed', () => clearTimeout(timer));

  return {
    reload: () => {
      held = []; // published before now, so in the state about to be loaded
      counters.held = 0;
      void sync();
    },
    stats: counters,
  };
}
