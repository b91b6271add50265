// GraphiQL on the gateway's own copies of React and GraphiQL (/vendor/...): no CDN.
// Queries and mutations go over HTTP, subscriptions over WebSocket
// (graphql-transport-ws, the client bundled in GraphiQL) to this same URL. The
// headers editor's headers go with both: as HTTP headers, and as the
// `connection_init` payload, where the gateway reads `Authorization`.
(function () {
  "use strict";

  var root = document.getElementById("graphiql");

  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    root.innerHTML =
      '<p class="graphiql-status" role="alert">GraphiQL cannot load: its files are not ' +
      "installed on this server. Run <code>npm ci</code> in the gateway's folder, " +
      "then reload this page.</p>";
    return;
  }

  var url = location.href.split(/[?#]/)[0];
  var httpOrWebSocket = GraphiQL.createFetcher({
    url: url,
    subscriptionUrl: url.replace(/^http/, "ws"),
  });
  // The fetcher sends subscriptions over WebSocket when `documentAST` says so, but
  // GraphiQL re-parses the editor 100 ms after a change: run at once after a
  // paste and a subscription would go over HTTP. Parse what is sent instead.
  function fetcher(params, options) {
    var documentAST = null;
    try {
      documentAST = GraphiQL.GraphQL.parse(params.query);
    } catch (error) {
      // Not GraphQL: let the server say what is wrong.
    }
    return httpOrWebSocket(
      params,
      documentAST ? Object.assign({}, options, { documentAST: documentAST }) : options,
    );
  }

  var needsToken = document.body.dataset.auth === "token";
  // The jobs page's token, if one was entered there (static/tokens.js).
  var token = JobsGatewayTokens.token();
  var defaultHeaders = token
    ? JSON.stringify({ Authorization: "Bearer " + token }, null, 2)
    : needsToken
      ? '{\n  "Authorization": "Bearer "\n}'
      : "";

  var defaultQuery = [
    "# The newest jobs. Run: Ctrl-Enter or the ▶ button.",
    needsToken
      ? '# Token: after "Bearer " in Headers, below.'
      : "# Open server: no token needed.",
    "# Live: subscription { jobUpdates { id progress } }",
    "{",
    "  jobs(first: 5) {",
    "    totalCount",
    "    edges { node { id status progress } }",
    "  }",
    "}",
    "",
  ].join("\n");

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: defaultHeaders,
      // Saved tabs come back without headers: give the open one the jobs page's
      // token (new tabs get `defaultHeaders`).
      headers: token ? defaultHeaders : undefined,
      defaultEditorToolsVisibility: needsToken && !token ? "headers" : false,
      isHeadersEditorEnabled: true,
      // Headers (with the token) stay in memory: not in saved tabs (GraphiQL's
      // setting, whose toggle it then hides), nor in history, which GraphiQL
      // saves with headers whatever the setting: the storage drops them.
      shouldPersistHeaders: false,
      storage: JobsGatewayTokens.graphiqlStorage(),
    }),
  );
})();
