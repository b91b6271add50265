// GraphiQL served by the gateway: renders offline, runs a query over HTTP with the
// Authorization header typed into its headers editor, and shows a subscription's
// updates (WebSocket, graphql-transport-ws) as a worker reports progress.
import { report, run } from "./harness.mjs";

const QUERY_EDITOR = ".graphiql-query-editor .CodeMirror";

async function replaceText(page, editor, text) {
  await page.click(editor);
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  // insertText, not type: CodeMirror would close each bracket typed a second time.
  await page.keyboard.insertText(text);
}

// Resolves once GraphiQL's response pane contains `text`.
function responseShows(session, text) {
  return session.waitFor((wanted) => {
    const editor = document.querySelector(".graphiql-response .CodeMirror");
    return Boolean(editor) && editor.CodeMirror.getValue().includes(wanted);
  }, text);
}

await run(async ({ base, readToken, reportToken, jobId, totalCount }, session) => {
  const { page, step } = session;

  // Without its files (npm packages not installed: /vendor/ answers 404) the page
  // still comes up and says what to run. A page of its own: the 404s it logs are
  // expected there.
  const bare = await page.context().newPage();
  await bare.route("**/vendor/**", (route) => route.fulfill({ status: 404, body: "" }));
  await bare.goto(`${base}/graphql`);
  const notice = await bare.getByRole("alert").textContent();
  if (!notice.includes("npm ci")) throw new Error(`no install hint: ${notice}`);
  await bare.close();
  step("without its files, GraphiQL says to run npm ci");
  await page.goto(`${base}/graphql`);
  await page.waitForSelector(QUERY_EDITOR);
  step("GraphiQL rendered");

  if (readToken) {
    await page.getByRole("button", { name: "Headers" }).click();
    const headers = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror";
    await page.waitForSelector(headers);
    await replaceText(page, headers, JSON.stringify({ Authorization: `Bearer ${readToken}` }));
    step("Authorization typed into the headers editor");
  }

  await replaceText(page, QUERY_EDITOR, "{ jobs(first: 1) { totalCount } }");
  await page.click(".graphiql-execute-button");
  await responseShows(session, `"totalCount": ${totalCount}`);
  step(`query answered totalCount ${totalCount}`);
  await session.screenshot("graphiql-query.png");

  await replaceText(
    page,
    QUERY_EDITOR,
    `subscription {\n  jobProgress(id: "${jobId}") {\n    id\n    status\n    progress\n  }\n}\n`,
  );
  await page.click(".graphiql-execute-button");
  const shows = (text) => responseShows(session, text);
  await shows('"progress": 0');
  step("subscription sent the current state");
  await report(base, reportToken, jobId, { progress: 40 });
  await shows('"progress": 40');
  step("subscription showed progress 40");
  await session.screenshot("graphiql-subscription.png");
  await report(base, reportToken, jobId, { status: 1 });
  await shows('"status": "COMPLETED"');
  step("subscription showed COMPLETED");
});
