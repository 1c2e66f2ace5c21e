// Every file a COPY of the Dockerfile takes from the build context survives .dockerignore, and what must never
// enter the context does not. Run by scripts/check-deploy.sh from the repository root, with NODE_PATH at its
// node_modules: `node deploy/tools/check-dockerignore.cjs`.
//
// The matching is Docker's own semantics as implemented by @balena/dockerignore (last match wins, `!`
// re-includes, a pattern matching a directory excludes what is below it); what is ours is only the list of COPY
// sources and of paths that must stay out. No Rust crate implements Docker's matcher (gitignore matchers differ:
// with `*` then `!src/`, gitignore keeps src/main.rs out, Docker lets it in), hence node here.
'use strict';
const fs = require('fs');
const { execFileSync } = require('child_process');
const ignore = require('@balena/dockerignore');

const ig = ignore().add(fs.readFileSync('.dockerignore', 'utf8'));
// The files a build context from this work tree would offer: tracked and untracked, not git-ignored.
const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => f && fs.existsSync(f));
const kept = new Set(ig.filter(files));
let problems = 0;
const fail = (msg) => {
  problems += 1;
  console.log(`  ✗ ${msg}`);
};

// COPY instructions that read the build context (not --from another stage); continuation lines joined.
const instructions = fs.readFileSync('Dockerfile', 'utf8').replace(/\\\r?\n/g, ' ').split('\n');
for (const line of instructions) {
  const m = line.match(/^\s*COPY\s+(.*)$/i);
  if (!m || /--from=/.test(m[1])) continue;
  const args = m[1].trim().split(/\s+/).filter((a) => !a.startsWith('--'));
  for (const src of args.slice(0, -1)) {
    const base = src.replace(/\/+$/, '');
    const under = files.filter((f) => f === base || f.startsWith(`${base}/`));
    const lost = under.filter((f) => !kept.has(f));
    if (under.length === 0) fail(`COPY ${src}: no such file in the repository`);
    else if (lost.length > 0) fail(`COPY ${src}: excluded by .dockerignore: ${lost.slice(0, 5).join(', ')}`);
    else console.log(`  ✓ COPY ${src}: ${under.length} file(s) in the build context`);
  }
}
// Never in the context: build output, git, local state, demo secrets, the test suite and the scripts.
for (const p of ['target/release/litellm-sync', '.git/HEAD', 'state.db', 'src/x.db', 'deploy/compose/secrets/litellm-api-key',
  'tests/integration/main.rs', 'scripts/test.sh', 'src/.env', 'src/key.pem']) {
  if (ig.ignores(p)) console.log(`  ✓ ${p} stays out of the context`);
  else fail(`${p} would be sent in the build context`);
}
if (problems > 0) {
  console.log(`  ${problems} problem(s)`);
  process.exit(1);
}
