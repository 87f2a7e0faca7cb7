// Vite builds the GUI into dist/ (index.html + hashed files under assets/), which the daemon
// serves at / (packages/cli/src/api/web-root.ts). JSX goes through esbuild for Preact: no Babel.
import { defineConfig } from 'vite';

export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    // One small bundle: no module-preload polyfill (it would add a script the CSP must allow).
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 200,
  },
  // `pnpm dev` next to a running daemon: API calls go to it.
  server: { proxy: { '/api': 'http://127.0.0.1:9090' } },
});
