// tap.mjs - what the interop scripts share: numbered "ok N - name" / "not ok N - name"
// lines, counted on from BKV_INTEROP_SETUP_PASSED (the lines the run script printed
// before), and the closing "N passed, M failed" line with the exit code.
let passed = Number(process.env.BKV_INTEROP_SETUP_PASSED || 0);
let failed = 0;

export function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log(`ok ${passed + failed} - ${name}`);
  } else {
    failed++;
    console.log(`not ok ${passed + failed} - ${name}${detail === undefined ? "" : ": " + detail}`);
  }
  return cond;
}

// Prints "<prefix>N passed, M failed" and exits: 0 if nothing failed.
export function summary(prefix = "") {
  console.log(`${prefix}${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
