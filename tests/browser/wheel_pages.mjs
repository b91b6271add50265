// GraphiQL and the jobs page as an installed wheel serves them, network closed:
// both render, GraphiQL answers a query, the jobs page lists the job and goes live.
import { run } from "./harness.mjs";

const QUERY_EDITOR = ".graphiql-query-editor .CodeMirror";

await run(async ({ base, jobId }, session) => {
  const { page, step } = session;
  await page.goto(`${base}/graphql`);
  await page.waitForSelector(QUERY_EDITOR);
  step("GraphiQL rendered");
  await page.evaluate(
    (selector) => document.querySelector(selector).CodeMirror.setValue("{ jobs(first: 1) { totalCount } }"),
    QUERY_EDITOR,
  );
  await page.click(".graphiql-execute-button");
  await session.waitFor(() => {
    const editor = document.querySelector(".graphiql-response .CodeMirror");
    return Boolean(editor) && editor.CodeMirror.getValue().includes('"totalCount": 1');
  });
  step("GraphiQL answered a query");
  await session.screenshot("wheel-graphiql.png");

  await page.goto(`${base}/jobs`);
  await session.waitFor((id) => Boolean(document.querySelector(`tr[data-job-id="${id}"]`)), jobId);
  await session.waitFor(() => document.getElementById("live").textContent === "live");
  step("jobs page listed the job, live");
  await session.screenshot("wheel-jobs-page.png");
});
