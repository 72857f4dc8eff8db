// Validates an OpenAPI document file with swagger-parser (schema and $ref
// checks), then checks what the schema cannot: unique operation ids, a
// problem+json answer documented for every error status, and that a broken
// copy is refused (so this check can fail at all).
import SwaggerParser from "@apidevtools/swagger-parser";
import { readFileSync } from "node:fs";

const file = process.argv[2];
const text = readFileSync(file, "utf8");
const doc = JSON.parse(text);
await SwaggerParser.validate(structuredClone(doc));

const ids = new Set();
let operations = 0;
for (const [path, item] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(item)) {
    operations++;
    if (ids.has(op.operationId)) throw new Error(`duplicate operationId ${op.operationId}`);
    ids.add(op.operationId);
    for (const [status, response] of Object.entries(op.responses)) {
      if (Number(status) >= 400 && !response.content?.["application/problem+json"])
        throw new Error(`${method.toUpperCase()} ${path} ${status} lacks application/problem+json`);
    }
  }
}

const broken = structuredClone(doc);
delete broken.components.schemas.Problem;
let refused = false;
try {
  await SwaggerParser.validate(broken);
} catch {
  refused = true;
}
if (!refused) throw new Error("the validator accepted a document with a dangling $ref");
console.log(`OpenAPI document valid: ${Object.keys(doc.paths).length} paths, ${operations} operations`);
