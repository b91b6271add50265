// Runs the GraphQL-over-HTTP spec's audit suite (npm `graphql-http`) against a
// running server and prints one JSON line per audit:
//   {"id": "22EB", "name": "SHOULD accept ...", "status": "ok"|"notice"|"warn"|"error",
//    "reason": "...", "body": "..."}
// Usage: node tests/graphql_http_audit.mjs http://127.0.0.1:8000/graphql
// Exits 0 when every audit ran (whatever their outcome); the caller judges them.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node graphql_http_audit.mjs URL');
  process.exit(2);
}

for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    // The response body says why the server answered as it did.
    try {
      line.body = (await result.response.text()).slice(0, 500);
    } catch {
      line.body = '(body already read)';
    }
  }
  console.log(JSON.stringify(line));
}
