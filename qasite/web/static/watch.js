// @ts-check
/**
 * Following the `question:<id>` channels of the questions a page lists (the lists of list.js,
 * the user page of user.js), and catching up with what happened before the subscriptions
 * started (docs/pages.md, "The live list").
 *
 *     const watch = watchQuestions(client, { apply, catchUp });
 *     watch.show([7, 9, 12]);          // subscribe these, unsubscribe the rest
 *     watch.newer('score:answer:5', v)  // in apply: whether v beats the last version applied
 *
 * The page was loaded before these subscriptions began, so an event between the load and a
 * subscribe reply would be missed. Once every watched channel has a fresh reply (and again
 * after any later fresh reply, such as a failed recovery), `catchUp` loads the page's numbers
 * once more and sets those of every question no event has touched since it began (an event
 * applied after the replies is newer than that load; before them, older).
 */

/** @typedef {import('@herald/client').HeraldClient} HeraldClient */
/** @typedef {import('@herald/client').Subscription} Subscription */

/**
 * @typedef {object} WatchOptions
 * @property {(id: number, data: any) => void} apply  one publication of `question:<id>`
 * @property {(untouched: (id: number) => boolean) => Promise<void>} catchUp  load the numbers
 *   again and set those of the questions for which `untouched(id)` is true
 */

/**
 * @param {HeraldClient} client
 * @param {WatchOptions} options
 */
export function watchQuestions(client, options) {
  /** @type {Map<number, { subscription: Subscription, touched: boolean }>} */
  const watches = new Map();
  /** The highest version applied per key (a score per post, the accepted answer per question). */
  const versions = new Map();
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  let catchUps = 0;

  const run = async () => {
    if ([...watches.values()].some((watch) => watch.subscription.state !== 'subscribed')) return; // the last reply schedules it
    for (const watch of watches.values()) watch.touched = false;
    try {
      await options.catchUp((id) => watches.get(id)?.touched === false);
      catchUps++;
    } catch {
      // the next event of each question sets its numbers
    }
  };

  /** @param {number} id */
  const drop = (id) => {
    watches.get(id)?.subscription.unsubscribe();
    watches.delete(id);
  };

  return {
    /**
     * Follow exactly these questions (in the order given; callers cap the count).
     * @param {number[]} ids
     */
    show(ids) {
      for (const id of watches.keys()) if (!ids.includes(id)) drop(id);
      for (const id of ids) {
        if (watches.has(id)) continue;
        const subscription = client.subscribe(`question:${id}`, (publication) => {
          const watch = watches.get(id);
          if (watch === undefined) return;
          options.apply(id, publication.data);
        });
        subscription.on('subscribed', (event) => {
          if (event.recovery === 'recovered') return;
          clearTimeout(timer);
          timer = setTimeout(() => void run(), 100);
        });
        watches.set(id, { subscription, touched: false });
      }
    },
    drop,
    /**
     * An event changed what the page shows of question *id*: a catch-up under way leaves it.
     * @param {number} id
     */
    touch(id) {
      const watch = watches.get(id);
      if (watch !== undefined) watch.touched = true;
    },
    /**
     * Whether *version* is newer than the last one applied under *key* (then it is recorded).
     * @param {string} key
     * @param {unknown} version
     */
    newer(key, version) {
      if (typeof version !== 'number' || version <= (versions.get(key) ?? -1)) return false;
      versions.set(key, version);
      return true;
    },
    /** The followed question ids. */
    ids: () => [...watches.keys()],
    /** Catch-up loads done. */
    catchUps: () => catchUps,
  };
}
