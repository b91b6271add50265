// Subscribes with the reference graphql-transport-ws client (npm `graphql-ws`, on
// the `ws` package) and prints one JSON line per event:
//   {"next": {...}} for each result, {"error": [...]} for an error message,
//   {"complete": true} when the server completes the subscription.
// Usage: node tests/graphql_ws_subscribe.mjs ws://127.0.0.1:8000/graphql QUERY VARIABLES_JSON
// Exits 0 after `complete` or `error`; 1 if the connection fails.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, query, variables] = process.argv.slice(2);
if (!url || !query) {
  console.error('usage: node graphql_ws_subscribe.mjs URL QUERY [VARIABLES_JSON]');
  process.exit(2);
}

const print = (line) => console.log(JSON.stringify(line));
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
});

client.subscribe(
  { query, variables: variables ? JSON.parse(variables) : {} },
  {
    next: (result) => print({ next: result }),
    error: (error) => {
      const errors = Array.isArray(error) ? error : null;
      print({ error: errors ?? String(error?.reason ?? error) });
      client.dispose();
      process.exitCode = errors ? 0 : 1;
    },
    complete: () => {
      print({ complete: true });
      client.dispose();
    },
  },
);
