import { resetArtifacts } from "./stack.js";

/** Once per run, before any browser test file: the artifacts of an earlier run go. */
export default function setup(): void {
  resetArtifacts();
}
