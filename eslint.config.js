// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
    files: ['src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/ledger/**', '**/ledger/*'],
              message: 'src/domain must not import src/ledger',
            },
            { group: ['**/rpc/**', '**/rpc/*'], message: 'src/domain must not import src/rpc' },
            { group: ['pg', 'pg-*'], message: 'src/domain must not touch the database' },
          ],
        },
      ],
    },
  },
);
