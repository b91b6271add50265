// Drives the gateway with Apollo Client and its persisted-query link (npm
// `@apollo/client`), and prints one JSON object: what each client got, and every
// HTTP request the link sent (method, whether it carried the document, the status,
// the error codes of the answer).
// Usage: node tests/apollo_persisted.mjs URL_A URL_B
//   URL_A, URL_B: two gateways on one database (two processes: B never saw a query).
import { createHash } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

const [urlA, urlB] = process.argv.slice(2);
const requests = [];

async function recordingFetch(input, init = {}) {
  const url = new URL(String(input));
  const method = init.method ?? 'GET';
  const body = typeof init.body === 'string' ? JSON.parse(init.body) : null;
  const response = await fetch(input, init);
  const text = await response.clone().text();
  let codes = [];
  try {
    codes = (JSON.parse(text).errors ?? []).map((e) => e.extensions?.code);
  } catch {}
  requests.push({
    server: url.origin,
    method,
    query: method === 'GET' ? url.searchParams.has('query') : Boolean(body?.query),
    hash: method === 'GET' ? url.searchParams.has('extensions') : Boolean(body?.extensions?.persistedQuery),
    status: response.status,
    codes,
  });
  return response;
}

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function client(uri, options = {}) {
  const persisted = new PersistedQueryLink({ sha256, ...options });
  return new ApolloClient({
    link: persisted.concat(new HttpLink({ uri: `${uri}/graphql`, fetch: recordingFetch })),
    cache: new InMemoryCache(),
  });
}

const CREATE = gql`
  mutation Create($input: CreateJobInput!) {
    createJob(input: $input) { id status progress }
  }
`;
const JOB = gql`
  query Job($id: UUID!) {
    job(id: $id) { id status progress }
  }
`;
const input = {
  inputs: ['340dd145-c06b-4d72-a8cc-0f6b270eb065'],
  profile: '2876db3d-ed16-4cf2-af82-98a383009e3c',
  video: '62dcb602-e95b-483c-badf-9497914717a5',
};

const steps = [];
async function step(name, run) {
  const first = requests.length;
  try {
    const result = await run();
    steps.push({ name, data: result.data ?? null, error: null, requests: requests.slice(first) });
  } catch (error) {
    steps.push({ name, data: null, error: String(error), requests: requests.slice(first) });
  }
}

const a = client(urlA);
let id = null;
await step('create', async () => {
  const result = await a.mutate({ mutation: CREATE, variables: { input } });
  id = result.data.createJob.id;
  return result;
});
await step('first query', () => a.query({ query: JOB, variables: { id }, fetchPolicy: 'network-only' }));
await step('second query', () => a.query({ query: JOB, variables: { id }, fetchPolicy: 'network-only' }));
const getting = client(urlA, { useGETForHashedQueries: true });
await step('GET query', () => getting.query({ query: JOB, variables: { id }, fetchPolicy: 'network-only' }));
const other = client(urlB, { useGETForHashedQueries: true });
await step('other process', () => other.query({ query: JOB, variables: { id }, fetchPolicy: 'network-only' }));
await step('other process again', () => other.query({ query: JOB, variables: { id }, fetchPolicy: 'network-only' }));
console.log(JSON.stringify({ steps }));
