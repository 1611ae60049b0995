// Writes the README's TypeScript example to target/readme-example.ts, for tsc to check.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
if (blocks.length === 0) throw new Error("README.md has no ```ts example");
mkdirSync(new URL("../target", import.meta.url), { recursive: true });
writeFileSync(new URL("../target/readme-example.ts", import.meta.url), blocks.join("\n"));
