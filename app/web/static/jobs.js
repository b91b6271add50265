// The live jobs page: the newest jobs from the `jobs` query over HTTP, then every
// change from the `jobUpdates` subscription over WebSocket (graphql-transport-ws,
// the pinned graphql-ws client), so the table follows without reloading.
(function () {
  "use strict";

  var LIMIT = 50;
  var FIELDS = "id status progress video inputs createdAt updatedAt deletedAt";
  var LIST_QUERY =
    "query JobsPage($first: Int!, $filter: JobFilter) {" +
    " jobs(first: $first, filter: $filter) { totalCount edges { node { " + FIELDS + " } } } }";
  // Unfiltered, whatever the status filter: a job leaving the shown status (an
  // IN_PROGRESS one completing) must still reach the page so its row can go.
  var UPDATES = "subscription JobsPageUpdates { jobUpdates { " + FIELDS + " } }";
  var LABELS = { IN_PROGRESS: "in progress", COMPLETED: "completed", FAILED: "failed" };

  var endpoint = new URL("graphql", location.href).href;
  var needsToken = document.body.dataset.auth === "token";
  var statusSelect = document.getElementById("status");
  var tokenForm = document.getElementById("token-form");
  var tokenInput = document.getElementById("token");
  var live = document.getElementById("live");
  var problem = document.getElementById("problem");
  var tbody = document.querySelector("#jobs tbody");
  var summary = document.getElementById("summary");

  var jobs = new Map(); // id -> the latest state seen of every known job
  var rows = new Map(); // id -> <tr>
  var totalCount = null;
  var client = null;
  var loadNumber = 0;

  // Kept under one key, read by GraphiQL too (static/tokens.js).
  var token = JobsGatewayTokens.token;

  function authHeaders() {
    return token() ? { Authorization: "Bearer " + token() } : {};
  }

  function showProblem(text) {
    problem.textContent = text;
    problem.hidden = !text;
  }

  function setLive(state, text) {
    live.className = "live " + state;
    live.textContent = text;
  }

  function describe(errors) {
    var error = (errors && errors[0]) || {};
    var code = error.extensions && error.extensions.code;
    return (code ? code + ": " : "") + (error.message || String(errors));
  }

  function shown(job) {
    return !job.deletedAt && (!statusSelect.value || job.status === statusSelect.value);
  }

  // Updates can overtake the list query (or each other on a reconnect): the newest
  // `updatedAt` wins. The timestamps share one format, so strings compare in order.
  function remember(job) {
    var known = jobs.get(job.id);
    if (!known || known.updatedAt <= job.updatedAt) jobs.set(job.id, job);
  }

  function cell(row, name) {
    return row.querySelector("td." + name);
  }

  function newRow(job) {
    var row = document.createElement("tr");
    row.dataset.jobId = job.id;
    row.innerHTML =
      '<td class="id"><code></code></td><td class="status"><span class="badge"></span></td>' +
      '<td class="progress"><span class="bar" role="progressbar" aria-valuemin="0" ' +
      'aria-valuemax="100"><span class="fill"></span></span>' +
      '<span class="pct"></span></td><td class="video"><code></code></td>' +
      '<td class="inputs"></td><td class="created"><time></time></td>' +
      '<td class="updated"><time></time></td>';
    var id = cell(row, "id").firstChild;
    id.textContent = job.id.slice(0, 8);
    id.title = job.id;
    var video = cell(row, "video").firstChild;
    video.textContent = job.video.slice(0, 8);
    video.title = job.video;
    cell(row, "inputs").textContent = String(job.inputs.length);
    setTime(cell(row, "created").firstChild, job.createdAt);
    return row;
  }

  function setTime(element, iso) {
    element.dateTime = iso;
    element.textContent = new Date(iso).toLocaleString();
  }

  function fillRow(row, job) {
    var status = job.deletedAt ? "DELETED" : job.status;
    row.dataset.status = status;
    var badge = cell(row, "status").firstChild;
    badge.className = "badge " + status.toLowerCase().replace("_", "-");
    badge.textContent = job.deletedAt ? "deleted" : LABELS[job.status] || job.status;
    var bar = cell(row, "progress").querySelector(".bar");
    bar.setAttribute("aria-valuenow", String(job.progress));
    bar.firstChild.style.width = job.progress + "%";
    cell(row, "progress").querySelector(".pct").textContent = job.progress + "%";
    setTime(cell(row, "updated").firstChild, job.updatedAt);
  }

  // Rows are kept and updated in place, so a progress bar moves instead of
  // being redrawn.
  function render() {
    var visible = Array.from(jobs.values())
      .filter(shown)
      .sort(function (a, b) {
        return a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0;
      })
      .slice(0, LIMIT);
    var keep = new Set();
    visible.forEach(function (job) {
      var row = rows.get(job.id);
      if (!row) rows.set(job.id, (row = newRow(job)));
      fillRow(row, job);
      tbody.appendChild(row); // moves an existing row into sorted order
      keep.add(job.id);
    });
    rows.forEach(function (row, id) {
      if (!keep.has(id)) {
        row.remove();
        rows.delete(id);
      }
    });
    summary.textContent =
      visible.length === 0
        ? "No jobs" + (statusSelect.value ? " with this status." : " yet.")
        : "Showing the " + visible.length + " newest" +
          (totalCount !== null && totalCount > visible.length ? " of " + totalCount : "") +
          " jobs.";
  }

  // Resolves to whether the list was loaded (else the problem is shown).
  function loadList() {
    var number = ++loadNumber;
    var variables = { first: LIMIT, filter: statusSelect.value ? { status: statusSelect.value } : null };
    return fetch(endpoint, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json", Accept: "application/json" }, authHeaders()),
      body: JSON.stringify({ query: LIST_QUERY, variables: variables }),
    })
      .then(function (response) {
        return response.json();
      })
      .then(function (result) {
        if (number !== loadNumber) return false; // a newer load (filter or token change) won
        if (result.errors) {
          showProblem("Cannot list jobs: " + describe(result.errors));
          return false;
        }
        showProblem("");
        totalCount = result.data.jobs.totalCount;
        result.data.jobs.edges.forEach(function (edge) {
          remember(edge.node);
        });
        render();
        return true;
      })
      .catch(function (error) {
        if (number === loadNumber) showProblem("Cannot reach the gateway: " + error.message);
        return false;
      });
  }

  // dispose() rejects with the close event when the connection was refused;
  // that is handled in `closed`, not an error of the page.
  function stop(oldClient) {
    if (oldClient) Promise.resolve(oldClient.dispose()).catch(function () {});
  }

  function connect() {
    stop(client);
    client = null;
    if (!window.graphqlWs) {
      setLive("offline", "no live updates");
      showProblem("Live updates cannot load: the graphql-ws files are not installed on this " +
        "server. Run npm ci in the gateway's folder, then reload.");
      loadList();
      return;
    }
    var current = (client = graphqlWs.createClient({
      url: endpoint.replace(/^http/, "ws"),
      connectionParams: authHeaders,
      lazy: false,
      retryAttempts: Infinity,
      onNonLazyError: function () {}, // shown by `closed` below, not console.error
      on: {
        connecting: function () {
          if (client === current) setLive("connecting", "connecting…");
        },
        // Also after a reconnect: reload the list, since changes may have been missed.
        connected: function () {
          if (client !== current) return;
          setLive("connected", "live");
          loadList();
        },
        closed: function (event) {
          if (client !== current) return;
          if (!event || event.code !== 4403) {
            setLive("connecting", "reconnecting…");
            return;
          }
          // Refused at connection_init: retrying cannot help until the token
          // changes. The WebSocket close says only "Forbidden"; the list query
          // over HTTP gets the reason (UNAUTHENTICATED: token expired, ...).
          stop(current);
          client = null;
          setLive("offline", "token refused");
          loadList().then(function (listed) {
            if (listed) showProblem("The gateway refused the token for live updates.");
          });
        },
      },
    }));
    current.subscribe(
      { query: UPDATES },
      {
        next: function (result) {
          if (result.errors) {
            showProblem("Live updates: " + describe(result.errors));
            return;
          }
          remember(result.data.jobUpdates);
          render();
        },
        error: function (error) {
          if (client !== current) return;
          setLive("offline", "no live updates");
          showProblem("Live updates stopped: " + (Array.isArray(error) ? describe(error) :
            error && error.reason ? error.reason : "connection closed"));
        },
        complete: function () {},
      },
    );
  }

  function start() {
    jobs.clear();
    totalCount = null;
    render();
    if (needsToken && !token()) {
      stop(client);
      client = null;
      setLive("offline", "no token");
      showProblem("Enter a token with the jobs:read scope to see jobs.");
      return;
    }
    showProblem("");
    connect();
  }

  statusSelect.value = new URLSearchParams(location.search).get("status") || "";
  statusSelect.addEventListener("change", function () {
    var url = new URL(location.href);
    if (statusSelect.value) url.searchParams.set("status", statusSelect.value);
    else url.searchParams.delete("status");
    history.replaceState(null, "", url);
    totalCount = null;
    render(); // what is known already, at once; then the server's list
    loadList();
  });

  if (needsToken) {
    tokenForm.hidden = false;
    tokenInput.value = token();
    tokenForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var value = tokenInput.value.trim().replace(/^Bearer\s+/i, "");
      JobsGatewayTokens.remember(value);
      start();
    });
    document.getElementById("forget").addEventListener("click", function () {
      // Every copy: GraphiQL's entries too, even those an older page left.
      JobsGatewayTokens.forget();
      tokenInput.value = "";
      start();
    });
  }

  start();
})();
