// The package entry: `import { ... } from "dohost-guest-sdk"` (asc resolves a package to
// its root index.ts). The exports an entry file re-exports are in
// "dohost-guest-sdk/assembly/exports".
export * from "./assembly/index";
