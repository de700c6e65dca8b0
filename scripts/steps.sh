# Sourced by detour's set-up and build scripts (bash): a script names each step it enters with
# `step NAME FIX`; when the script fails, its last line says which step failed, with which exit
# code, and the fix. Nothing is thrown away: `quiet` keeps a noisy command's output and prints it
# when the command fails.
detour_script=$(basename "$0" .sh)
detour_step_name=start
detour_step_fix='see the output above'

# step <name> [fix]: the step the script is in from here on, and what to do when it fails.
step() {
  detour_step_name=$1
  detour_step_fix=${2:-see the output above}
}

detour_step_report() {
  [ "$1" -eq 0 ] || echo "$detour_script: step '$detour_step_name' failed (exit $1): $detour_step_fix" >&2
}
# Scripts with their own exit trap call `detour_step_report $?` from it first.
trap 'detour_step_report $?' EXIT

# quiet <command...>: runs the command with its output held back; prints it (stderr) only on failure.
quiet() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || printf '%s\n' "$out" >&2
  return "$rc"
}
