// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** src/server.ts, however it is imported. */
const SERVER = ['**/server', '**/server.js', '**/server.ts'];

// What src/ledger must not import: it is called by the transports, the scheduler and the
// call batching, never the other way round.
const LEDGER_PATTERNS = [
  ...['rpc', 'transport', 'auth', 'scheduler', 'batching'].map((dir) => ({
    group: [`**/${dir}/**`, `**/${dir}/*`],
    message: `src/ledger must not import src/${dir}`,
  })),
  { group: SERVER, message: 'src/ledger must not import src/server.ts' },
];

export default tseslint.config(
  { ignores: ['node_modules/', 'src/gen/', '.data/', 'dist/', 'console/dist/', 'test-output/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // The domain is pure: period math and quota decisions know nothing of SQL or transports.
    // It imports nothing of ours from outside src/domain (luxon and node builtins only).
    files: ['src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              // Anything reached through "../" has left src/domain (ledger, rpc, transport,
              // auth, batching, database, scheduler, server, config, metrics, logger ...).
              group: ['../*', '../**'],
              message: 'src/domain imports nothing of ours from outside src/domain',
            },
            { group: ['pg', 'pg-*'], message: 'src/domain must not touch the database' },
          ],
        },
      ],
    },
  },
  {
    // The ledger is called by the transports and the scheduler, never the other way round.
    files: ['src/ledger/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: LEDGER_PATTERNS }] },
  },
  {
    // Authentication sits below the RPC layer: it knows nothing of the handlers, the
    // transports, the scheduler or the server that wires them together.
    files: ['src/auth/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/rpc/**', '**/rpc/*', '**/transport/**', '**/transport/*'],
              message: 'src/auth must not import src/rpc or src/transport',
            },
            { group: SERVER, message: 'src/auth must not import src/server.ts' },
            {
              group: ['**/scheduler/**', '**/scheduler/*'],
              message: 'src/auth must not import the scheduler',
            },
          ],
        },
      ],
    },
  },
  {
    // Configuration reads the environment into settings; it does not reach into the RPC
    // layer, the server or the scheduler (shared settings live in src/scheduler/settings.ts).
    files: ['src/config.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/rpc/**', '**/rpc/*'], message: 'src/config.ts must not import src/rpc' },
            { group: SERVER, message: 'src/config.ts must not import src/server.ts' },
            {
              group: ['**/scheduler/reset-scheduler*'],
              message: 'import reset settings from src/scheduler/settings.ts, not the scheduler',
            },
          ],
        },
      ],
    },
  },
);
