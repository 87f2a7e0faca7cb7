import { defineConfig } from 'vitest/config';

// One config for unit tests (packages/*/test) and end-to-end tests with real peers (test/).
// Files run one at a time: the machine has 2 cores and the e2e tests start daemons and peers.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
