// The live jobs page: lists the newest jobs, moves a progress bar as a worker
// reports and shows a finished job as completed, all without reloading.
import { report, run } from "./harness.mjs";

const row = (id) => `tr[data-job-id="${id}"]`;

await run(async ({ base, readToken, reportToken, writeToken, jobIds }, session) => {
  const { page, step } = session;
  const [moving] = jobIds;
  await page.goto(`${base}/`);
  await page.waitForURL(`${base}/jobs`);
  step("/ led to /jobs");

  if (readToken) {
    await page.fill("#token", "not-a-token");
    await page.click("#token-form button[type=submit]");
    await session.waitFor(() =>
      document.getElementById("problem").textContent.includes("UNAUTHENTICATED"),
    );
    step("a bad token is refused, saying why");
    // The list request was answered 401 (as a refused token is); Chromium logs every
    // 4xx a page fetches. That one was expected: anything else still counts.
    const expected = (error) => error.includes("status of 401 (Unauthorized)") && error.includes("/graphql");
    if (!session.report.errors.some(expected)) throw new Error("the bad token was not refused with 401");
    session.report.errors = session.report.errors.filter((error) => !expected(error));
    await page.fill("#token", readToken);
    await page.click("#token-form button[type=submit]");
    step("token entered");
  }
  await session.waitFor((ids) => ids.every((id) => document.querySelector(`tr[data-job-id="${id}"]`)), jobIds);
  await session.waitFor(() => document.getElementById("live").textContent === "live");
  step(`listed ${jobIds.length} jobs, live`);
  // Set on this document only: still there later means the page never reloaded.
  await page.evaluate(() => (window.sameDocument = true));

  const bar = (id) =>
    page.locator(`${row(id)} [role=progressbar]`).getAttribute("aria-valuenow");
  if ((await bar(moving)) !== "0") throw new Error(`job starts at ${await bar(moving)}%`);

  await report(base, reportToken, moving, { progress: 40 });
  await session.waitFor(
    (selector) => document.querySelector(selector)?.getAttribute("aria-valuenow") === "40",
    `${row(moving)} [role=progressbar]`,
  );
  step("a progress report moved the bar to 40%");
  const width = await page.locator(`${row(moving)} .fill`).evaluate((fill) => fill.style.width);
  if (width !== "40%") throw new Error(`bar width ${width}`);

  const created = await fetch(`${base}/encoding/jobs`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(writeToken ? { Authorization: `Bearer ${writeToken}` } : {}) },
    body: JSON.stringify({
      inputs: ["340dd145-c06b-4d72-a8cc-0f6b270eb065"],
      profile: "2876db3d-ed16-4cf2-af82-98a383009e3c",
      video: "62dcb602-e95b-483c-badf-9497914717a5",
    }),
  }).then((response) => response.json());
  await session.waitFor(
    (id) => document.querySelector("#jobs tbody tr")?.dataset.jobId === id,
    created.id,
  );
  step("a new job appeared at the top");
  await report(base, reportToken, created.id, { progress: 75 });
  await session.waitFor(
    (selector) => document.querySelector(selector)?.getAttribute("aria-valuenow") === "75",
    `${row(created.id)} [role=progressbar]`,
  );
  await session.screenshot("jobs-page.png");

  await report(base, reportToken, moving, { status: 1 });
  await session.waitFor(
    (selector) => document.querySelector(selector)?.textContent === "completed",
    `${row(moving)} .badge`,
  );
  if ((await bar(moving)) !== "100") throw new Error(`completed job at ${await bar(moving)}%`);
  step("the finished job shows as completed, at 100%");

  await page.selectOption("#status", "COMPLETED");
  await session.waitFor((id) => {
    const rows = Array.from(document.querySelectorAll("#jobs tbody tr"));
    return rows.some((row) => row.dataset.jobId === id) &&
      rows.every((row) => row.dataset.status === "COMPLETED");
  }, moving);
  step("filtered by status: completed jobs only");
  await session.screenshot("jobs-page-completed.png");
  await page.selectOption("#status", "");
  await session.waitFor((count) => document.querySelectorAll("#jobs tbody tr").length === count, jobIds.length + 1);

  if (!(await page.evaluate(() => window.sameDocument === true))) throw new Error("the page reloaded");
  step("no reload");
});
