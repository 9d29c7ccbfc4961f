"""What the conformance tests share: names under a subject prefix, a NATS
client speaking the contract, the JSON Schemas, and the deployment the suite
runs against (given by URL, or started and restarted by the suite)."""
