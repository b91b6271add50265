// Subscribes with @apollo/client's HttpLink (Apollo's multipart HTTP subscriptions,
// `Accept: multipart/mixed;subscriptionSpec=1.0`) and prints one JSON line per event:
//   {"next": {...}} for each result, {"error": {...}} if the subscription errors,
//   {"complete": true} when the server completes it.
// Usage: node tests/apollo_http_subscribe.mjs URL QUERY VARIABLES_JSON [TOKEN]
// Exits 0 after `complete` or `error`.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';

const [url, query, variables, token = ''] = process.argv.slice(2);
if (!url || !query) {
  console.error('usage: node apollo_http_subscribe.mjs URL QUERY [VARIABLES_JSON] [TOKEN]');
  process.exit(2);
}

const print = (line) => console.log(JSON.stringify(line));
const client = new ApolloClient({
  link: new HttpLink({
    uri: url,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  }),
  cache: new InMemoryCache(),
});

client
  .subscribe({ query: gql(query), variables: variables ? JSON.parse(variables) : {} })
  .subscribe({
    next: (result) => print({ next: { data: result.data ?? null, error: result.error ? describe(result.error) : undefined } }),
    error: (error) => {
      print({ error: describe(error) });
      client.stop();
    },
    complete: () => {
      print({ complete: true });
      client.stop();
    },
  });

function describe(error) {
  return {
    name: error?.name,
    message: error?.message,
    errors: error?.errors ?? undefined,
    statusCode: error?.statusCode ?? undefined,
  };
}
