import { defineConfig } from 'vite';

// The server embeds the output (build.rs runs `npm run build -- --outDir $OUT_DIR/web`).
// During front-end work, `npx vite` serves src/ with the API proxied to a running server.
export default defineConfig({
  // Preact's JSX (the components in src/), no plugin needed.
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    target: 'es2022',
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    // hls.js alone is about 600 kB (185 kB gzipped); the app's own code is a small fraction.
    chunkSizeWarningLimit: 700,
    rollupOptions: {
      output: {
        // hls.js is loaded only where a player is shown, as its own file.
        manualChunks: (id) => (id.includes('node_modules/hls.js') ? 'hls' : undefined),
      },
    },
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/live': 'http://127.0.0.1:8080',
      '/vod/': 'http://127.0.0.1:8080',
      '/clips': 'http://127.0.0.1:8080',
      '/ws': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
});
