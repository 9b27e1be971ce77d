// Parse and validate an AsyncAPI document with the AsyncAPI project's parser (@asyncapi/parser, found
// through NODE_PATH): `node asyncapi_check.cjs FILE` prints {ok, diagnostics, summary}; exit 1 on any error.
const fs = require("fs");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

async function main() {
  const text = fs.readFileSync(process.argv[2], "utf8");
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text);
  const names = ["error", "warning", "information", "hint"];
  const report = diagnostics.map((d) => ({
    severity: names[d.severity] || String(d.severity), code: d.code, message: d.message, path: d.path,
  }));
  const errors = report.filter((d) => d.severity === "error");
  const summary = document ? {
    version: document.version(),
    channels: document.channels().all().map((c) => c.id()),
    operations: document.operations().all().map((o) => o.id()),
    messages: document.components().messages().all().map((m) => m.id()),
  } : null;
  process.stdout.write(JSON.stringify({ ok: errors.length === 0 && !!document, diagnostics: report, summary }));
  process.exit(errors.length === 0 && document ? 0 : 1);
}
main().catch((err) => { console.error(err); process.exit(2); });
