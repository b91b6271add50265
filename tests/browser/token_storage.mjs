// Tokens left in the browser: GraphiQL keeps the headers it sends in memory only,
// and the jobs page's Forget removes every copy of its token, GraphiQL's included
// (even copies an older version of the page left in its tabs and history).
import { run } from "./harness.mjs";

const QUERY_EDITOR = ".graphiql-query-editor .CodeMirror";
const HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror";

async function replaceText(page, editor, text) {
  await page.click(editor);
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(text);
}

function editorText(page, selector) {
  return page.evaluate((selector) => {
    const editor = document.querySelector(selector);
    return editor ? editor.CodeMirror.getValue() : null;
  }, selector);
}

// Every key and value in localStorage and sessionStorage, and the cookies.
function stored(page) {
  return page.evaluate(() => {
    const entries = [];
    for (const [name, storage] of [["localStorage", localStorage], ["sessionStorage", sessionStorage]]) {
      for (let index = 0; index < storage.length; index++) {
        const key = storage.key(index);
        entries.push({ where: `${name}[${key}]`, text: key + " " + storage.getItem(key) });
      }
    }
    entries.push({ where: "document.cookie", text: document.cookie });
    return entries;
  });
}

// Throws naming each place (other than `allowed`) that holds any of `tokens`.
async function assertNowhere(page, tokens, allowed = []) {
  const found = (await stored(page)).filter(
    (entry) => !allowed.includes(entry.where) && tokens.some((token) => entry.text.includes(token)),
  );
  if (found.length) throw new Error(`token kept in ${found.map((entry) => entry.where).join(", ")}`);
}

async function runQuery(session, page, totalCount) {
  await replaceText(page, QUERY_EDITOR, "{ jobs(first: 1) { totalCount } }");
  await page.click(".graphiql-execute-button");
  await session.waitFor((wanted) => {
    const editor = document.querySelector(".graphiql-response .CodeMirror");
    return Boolean(editor) && editor.CodeMirror.getValue().includes(wanted);
  }, `"totalCount": ${totalCount}`);
}

await run(async ({ base, pageToken, graphiqlToken, oldToken, totalCount }, session) => {
  const { page, step } = session;
  const TOKEN_KEY = "localStorage[jobs-gateway:token]";

  // What the page before this fix left behind: headers saved in GraphiQL's tabs
  // and history.
  await page.goto(`${base}/jobs`);
  await page.evaluate((old) => {
    const headers = JSON.stringify({ Authorization: `Bearer ${old}`, "X-Trace": "1" });
    const tab = { id: "t1", hash: null, title: "old", query: "{ jobs { totalCount } }", variables: null, headers, operationName: null, response: null };
    localStorage.setItem("graphiql:tabState", JSON.stringify({ tabs: [tab], activeTabIndex: 0 }));
    localStorage.setItem("graphiql:queries", JSON.stringify({ queries: [{ query: "{ jobs { totalCount } }", headers }] }));
    localStorage.setItem("graphiql:headers", headers);
  }, oldToken);
  step("storage holds headers an older GraphiQL page saved");

  await page.reload();
  await page.fill("#token", pageToken);
  await page.click("#token-form button[type=submit]");
  await session.waitFor(() => document.getElementById("live").textContent === "live");
  await assertNowhere(page, [oldToken]);
  await assertNowhere(page, [pageToken], [TOKEN_KEY]);
  step("jobs page: token in use, kept under its one key; the old copies scrubbed");

  await page.goto(`${base}/graphql`);
  await page.waitForSelector(QUERY_EDITOR);
  await page.getByRole("button", { name: "Headers" }).click();
  await page.waitForSelector(HEADERS_EDITOR);
  if (!(await editorText(page, HEADERS_EDITOR)).includes(pageToken)) {
    throw new Error("GraphiQL did not fill in the jobs page's token");
  }
  await runQuery(session, page, totalCount);
  step("GraphiQL ran a query with the jobs page's token");

  await replaceText(page, HEADERS_EDITOR, JSON.stringify({ Authorization: `Bearer ${graphiqlToken}`, "X-Trace": "2" }));
  await runQuery(session, page, totalCount);
  step("GraphiQL ran a query with a token typed into its headers");
  // GraphiQL saves tabs 500 ms after a change, and history on each run.
  await page.waitForTimeout(1500);
  const saved = await stored(page);
  if (!saved.some((entry) => entry.where === "localStorage[graphiql:queries]")) {
    throw new Error("GraphiQL saved no history: nothing was checked");
  }
  if (!saved.some((entry) => entry.where === "localStorage[graphiql:queries]" && entry.text.includes("X-Trace"))) {
    // Only Authorization is dropped: the other headers stay in history.
    throw new Error("history lost the other headers");
  }
  await assertNowhere(page, [graphiqlToken, oldToken]);
  await assertNowhere(page, [pageToken], [TOKEN_KEY]);
  step("GraphiQL's tabs and history were saved without either token");

  await page.reload();
  await page.waitForSelector(QUERY_EDITOR);
  await page.getByRole("button", { name: "Headers" }).click();
  await page.waitForSelector(HEADERS_EDITOR);
  const headers = await editorText(page, HEADERS_EDITOR);
  if (headers.includes(graphiqlToken)) throw new Error("GraphiQL's token survived a reload");
  await assertNowhere(page, [graphiqlToken, oldToken]);
  step("after a reload GraphiQL has forgotten the token typed into it");

  await page.goto(`${base}/jobs`);
  await page.click("#forget");
  await session.waitFor(() => document.getElementById("live").textContent === "no token");
  await assertNowhere(page, [pageToken, graphiqlToken, oldToken]);
  step("Forget: no token in localStorage, sessionStorage or cookies");

  await page.goto(`${base}/graphql`);
  await page.waitForSelector(HEADERS_EDITOR);
  if ((await editorText(page, HEADERS_EDITOR)).includes(pageToken)) {
    throw new Error("GraphiQL still sends the forgotten token");
  }
  await assertNowhere(page, [pageToken, graphiqlToken, oldToken]);
  step("GraphiQL after Forget: no token");
});
