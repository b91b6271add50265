// graphql-request 7 with the refresh-on-401 a frontend wires around it: the first
// request carries an expired token; on HTTP 401 the client takes a fresh one and retries.
// Usage: node graphql_request_refresh.mjs URL EXPIRED_TOKEN FRESH_TOKEN
// Prints one JSON line: what the 401 carried and what the retry answered.
import { ClientError, GraphQLClient } from "graphql-request";

const [url, expired, fresh] = process.argv.slice(2);
const client = new GraphQLClient(url, { headers: { authorization: `Bearer ${expired}` } });

const query = "{ jobs(first: 1) { totalCount } }";
const report = { refreshed: 0 };
try {
  report.data = await client.request(query);
} catch (error) {
  if (!(error instanceof ClientError) || error.response.status !== 401) throw error;
  report.refreshed += 1;
  report.status = error.response.status;
  report.challenge = error.response.headers.get("www-authenticate");
  report.errors = error.response.errors;
  client.setHeader("authorization", `Bearer ${fresh}`);
  report.data = await client.request(query);
}
console.log(JSON.stringify(report));
