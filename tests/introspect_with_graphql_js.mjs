// graphql-js 16 and 17 read the live endpoint's introspection as schema tools do:
// their own introspection query, buildClientSchema, introspectionFromSchema (where
// graphql-js 16 failed on a directive location it cannot represent), printSchema.
// Usage: node introspect_with_graphql_js.mjs URL
// Prints one JSON object: {"16": SDL, "17": SDL}.
import * as v16 from "graphql";
import * as v17 from "graphql17";

const url = process.argv[2];
const printed = {};
for (const [name, graphql] of [["16", v16], ["17", v17]]) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query: graphql.getIntrospectionQuery() }),
  });
  const result = await response.json();
  if (result.errors) throw new Error(`graphql ${name}: ${JSON.stringify(result.errors)}`);
  const schema = graphql.buildClientSchema(result.data);
  graphql.buildClientSchema(graphql.introspectionFromSchema(schema));
  printed[name] = graphql.printSchema(schema);
}
console.log(JSON.stringify(printed));
