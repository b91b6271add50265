// Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, with
// the network closed to everything but the gateway under test: every request to
// another origin is recorded and aborted, and host names do not resolve.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];
const WAIT = { timeout: 20_000 };

export async function openBrowser({ base, artifacts }) {
  mkdirSync(artifacts, { recursive: true });
  const origin = new URL(base).origin;
  const wsOrigin = origin.replace(/^http/, "ws");
  const report = { blocked: [], websockets: [], errors: [], screenshots: [], steps: [], times: [] };
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(origin + "/") || url.startsWith("data:")) return route.continue();
    report.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  const page = await context.newPage();
  page.on("websocket", (ws) => {
    report.websockets.push(ws.url());
    if (!ws.url().startsWith(wsOrigin + "/")) report.blocked.push(ws.url());
  });
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const { url, lineNumber } = message.location();
    report.errors.push(`${message.text()} (${url}:${lineNumber})`);
  });
  page.on("pageerror", (error) => report.errors.push(String(error)));
  return {
    page,
    report,
    step(text) {
      report.steps.push(text);
      report.times.push(Math.round(performance.now()));
    },
    async screenshot(name) {
      const path = join(artifacts, name);
      await page.screenshot({ path });
      report.screenshots.push(path);
    },
    waitFor(fn, arg) {
      return page.waitForFunction(fn, arg, WAIT);
    },
    async close() {
      await browser.close();
    },
  };
}

// A worker's report over REST, as an encoder would send it.
export async function report(base, token, id, body) {
  const response = await fetch(`${base}/encoding/jobs/${id}`, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  if (response.status !== 200) throw new Error(`PATCH ${id} ${JSON.stringify(body)}: ${response.status} ${await response.text()}`);
  return response.json();
}

// Run `main(args, session)` with args from argv (JSON: base, artifacts, ...) and
// print the report as the last line of stdout, for pytest to check.
export async function run(main) {
  const args = JSON.parse(process.argv[2]);
  let session;
  try {
    session = await openBrowser(args);
    await main(args, session);
    console.log(JSON.stringify({ ok: true, ...session.report }));
  } catch (error) {
    if (session) await session.screenshot("failure.png").catch(() => {});
    console.log(JSON.stringify({ ok: false, error: String(error.stack || error), ...session?.report }));
    process.exitCode = 1;
  } finally {
    await session?.close();
  }
}
