// Copies the dashboard's static files (HTML, CSS) next to the compiled modules: dist/ui/index.html, dist/ui/assets/*.
// Part of `npm run build` (and so of `npm ci`, through `prepare`). Nothing is fetched: the dashboard works air-gapped.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'ui', 'static');
const to = join(root, 'dist', 'ui');
mkdirSync(join(to, 'assets'), { recursive: true });
for (const name of readdirSync(from)) {
  copyFileSync(join(from, name), name.endsWith('.html') ? join(to, name) : join(to, 'assets', name));
}
