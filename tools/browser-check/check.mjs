// Opens a nabla report in headless Chromium and fails when a section is
// missing, a picture did not render, or the page logged an error; saves a
// screenshot of the first screen.
//
//   node tools/browser-check/check.mjs report/index.html docs/report-screenshot.png
//
// Needs Debian's chromium (apt-get install chromium) and `npm ci` in this folder.
import { chromium } from "playwright-core";
import { resolve } from "node:path";
import { existsSync } from "node:fs";

const [page_path, screenshot] = process.argv.slice(2);
if (!page_path || !screenshot) {
  console.error("usage: node check.mjs REPORT.html SCREENSHOT.png");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  console.error(`no Chromium at ${executablePath}: apt-get install chromium, or set CHROMIUM`);
  process.exit(2);
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`failed request: ${r.url()}`));
  page.on("request", (r) => {
    if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) problems.push(`network request: ${r.url()}`);
  });
  await page.goto("file://" + resolve(page_path), { waitUntil: "load" });

  const headings = await page.$$eval("h2", (hs) => hs.map((h) => h.textContent));
  for (let n = 1; n <= 5; n++) {
    if (!headings.some((h) => h.startsWith(`Problem ${n}`))) problems.push(`missing section "Problem ${n}"`);
  }
  // Every picture must have drawn something: a non-empty box and content.
  const figures = await page.$$eval("figure", (fs) =>
    fs.map((f, i) => {
      const svg = f.querySelector("svg");
      const img = f.querySelector("img");
      if (svg) {
        const box = svg.getBoundingClientRect();
        return { i, ok: box.width > 50 && box.height > 50 && svg.querySelectorAll("path,line,polyline,text,rect").length > 3 };
      }
      if (img) return { i, ok: img.complete && img.naturalWidth > 0 };
      return { i, ok: false };
    }),
  );
  for (const f of figures) if (!f.ok) problems.push(`figure ${f.i + 1} did not render`);
  if (figures.length === 0) problems.push("no figures at all");
  const failures = await page.$$eval("pre.failure", (ps) => ps.map((p) => p.textContent));
  for (const f of failures) problems.push(`a part failed: ${f.slice(0, 300)}`);
  const empty = await page.$$eval("section", (ss) => ss.filter((s) => s.innerText.trim().length < 20).map((s) => s.id));
  for (const id of empty) problems.push(`section #${id} is empty`);

  await page.screenshot({ path: screenshot });
  console.log(`${headings.length} sections, ${figures.length} figures checked; screenshot ${screenshot}`);
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
