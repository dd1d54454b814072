// Validate custom resources with the JSON-schema validators generated from their CRDs by
// @kubernetes-models (installed by `make k8s-tools` from config/k8s/crd-models).
//   node validate_crd_models.mjs NODE_MODULES_DIR < objects.json  ->  [{kind, name, errors}]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const MODELS = {
  "gateway.networking.k8s.io/v1/Gateway": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway.js",
  "gateway.networking.k8s.io/v1/HTTPRoute": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute.js",
  "networking.gke.io/v1/GCPBackendPolicy": "@kubernetes-models/gke/networking.gke.io/v1/GCPBackendPolicy.mjs",
  "networking.gke.io/v1/HealthCheckPolicy": "@kubernetes-models/gke/networking.gke.io/v1/HealthCheckPolicy.mjs",
  "networking.gke.io/v1/ManagedCertificate": "@kubernetes-models/gke/networking.gke.io/v1/ManagedCertificate.mjs",
};

const nodeModules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const path = MODELS[key];
  if (!path) {
    results.push({ kind: obj.kind, name: obj.metadata.name, errors: [`no validator for ${key}`] });
    continue;
  }
  const module = await import(pathToFileURL(join(nodeModules, path)).href);
  const Model = module[obj.kind];
  try {
    new Model(obj).validate();
    results.push({ kind: obj.kind, name: obj.metadata.name, errors: [] });
  } catch (e) {
    const errors = (e.errors ?? [e]).map((x) => `${x.instancePath ?? ""} ${x.message}`.trim());
    results.push({ kind: obj.kind, name: obj.metadata.name, errors });
  }
}
process.stdout.write(JSON.stringify(results));
