/** vitest for the unit tests (test/unit): Node, no DOM; sockets, timers and the page are faked. */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    environment: 'node',
    pool: 'threads',
  },
});
