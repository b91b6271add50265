// Subscribes with the reference GraphQL over Server-Sent Events client (npm
// `graphql-sse`) and prints one JSON line per event:
//   {"next": {...}} for each result, {"error": "..."} if the client fails,
//   {"complete": true} when the server completes the subscription.
// Usage: node tests/graphql_sse_subscribe.mjs URL QUERY VARIABLES_JSON [MODE] [TOKEN]
//   MODE: "distinct" (default) or "single" (graphql-sse's single connection mode).
// Exits 0 after `complete`; 1 if the client fails.
import { createClient } from 'graphql-sse';

const [url, query, variables, mode = 'distinct', token = ''] = process.argv.slice(2);
if (!url || !query) {
  console.error('usage: node graphql_sse_subscribe.mjs URL QUERY [VARIABLES_JSON] [MODE] [TOKEN]');
  process.exit(2);
}

const print = (line) => console.log(JSON.stringify(line));
const client = createClient({
  url,
  singleConnection: mode === 'single',
  headers: token ? { Authorization: `Bearer ${token}` } : {},
  retryAttempts: 0,
});

client.subscribe(
  { query, variables: variables ? JSON.parse(variables) : {} },
  {
    next: (result) => print({ next: result }),
    error: (error) => {
      const status = error?.response?.status;
      print({ error: status ? `HTTP ${status}` : String(error?.message ?? error) });
      client.dispose();
      process.exitCode = 1;
    },
    complete: () => {
      print({ complete: true });
      client.dispose();
    },
  },
);
